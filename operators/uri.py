"""Every path is a URI: local paths and anything fsspec opens (s3://, gs://, memory://).

Operators read and write artifacts only through these helpers, so catalogs,
work folders and outputs can move to object storage without touching them.
Tools that need a local file (ffmpeg, model runtimes) get one through
`local_copy` and write through `staged_output`.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec

REDACTED = "REDACTED"
# A URI inside free text (an error message, a log line): scheme://, up to a space, quote or bracket.
_URI_IN_TEXT = re.compile(r"""[A-Za-z][A-Za-z0-9+.-]{1,15}://[^\s'"<>()\[\]]+""")
# Signature and token parameters outside a URI (a library may print a query string on its own).
_SECRET_PARAM = re.compile(
    r"(?i)\b(x-amz-[a-z-]+|x-goog-[a-z-]+|signature|sig|se|sv|token|access_token|id_token|api_key|apikey|"
    r"key|password|passwd|secret|credential|awsaccesskeyid|policy|key-pair-id|code|auth)=([^&\s'\"<>]+)")


def is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def strip_file(uri: str) -> str:
    return uri[len("file://"):] if uri.startswith("file://") else uri


def redacted(uri: str) -> str:
    """The URI as it may be stored or shown: no user:password@, every query value and the fragment replaced.

    Every query value goes, not only known signature parameters: presigned
    URLs (S3, GCS, Azure SAS, CloudFront) each name their tokens differently,
    and a query never says more about the media than its path does. The
    unredacted URI is used only to read the media.
    """
    if not isinstance(uri, str) or "://" not in uri:
        return uri
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError:
        return REDACTED
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    query = "&".join(f"{k}={REDACTED}" if v or "=" in pair else k
                     for pair in parts.query.split("&") if pair
                     for k, _, v in [pair.partition("=")])
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, REDACTED if parts.fragment else ""))


def redact_text(text: str) -> str:
    """Free text (an error, a log line) with every URI in it redacted, and stray token parameters too."""
    if not isinstance(text, str):
        return text
    text = _URI_IN_TEXT.sub(lambda m: redacted(m.group(0)), text)
    return _SECRET_PARAM.sub(lambda m: f"{m.group(1)}={REDACTED}" if m.group(2) != REDACTED else m.group(0), text)


def path_of(uri: str) -> str:
    """The path part of a URI, without query or fragment (for its extension or file name)."""
    return urllib.parse.urlsplit(uri).path if "://" in uri and not uri.startswith("file://") else strip_file(uri)


def join(base: str, *parts: str) -> str:
    if is_local(base):
        return str(Path(strip_file(base), *parts))
    return "/".join([base.rstrip("/"), *[p.strip("/") for p in parts]])


def resolve(uri: str, relative_to: str) -> str:
    """A catalog's relative path, resolved against the folder the catalog is in."""
    if not is_local(uri) or os.path.isabs(strip_file(uri)):
        return strip_file(uri) if is_local(uri) else uri
    return join(parent(relative_to), uri)


def absolute(uri: str) -> str:
    """A local path made absolute (the manifest's URIs must not depend on the working directory); others as they are."""
    return str(Path(strip_file(uri)).resolve()) if is_local(uri) else uri


def parent(uri: str) -> str:
    if is_local(uri):
        return str(Path(strip_file(uri)).resolve().parent)
    return uri.rsplit("/", 1)[0]


# A transient object-store error (a throttle, a dropped connection, the endpoint away for some seconds)
# is retried by botocore, with exponential backoff and jitter ("standard" mode, at most 20 s between
# tries), up to this many calls in all: a minute or so. AWS_MAX_ATTEMPTS / AWS_RETRY_MODE override it.
S3_MAX_ATTEMPTS = 10


def _storage_options(uri: str) -> dict:
    if not uri.startswith(("s3://", "s3a://")) or "AWS_MAX_ATTEMPTS" in os.environ:
        return {}
    mode = os.environ.get("AWS_RETRY_MODE", "standard")
    return {"config_kwargs": {"retries": {"max_attempts": S3_MAX_ATTEMPTS, "mode": mode}}}


def filesystem(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    fs, path = fsspec.core.url_to_fs(uri, **_storage_options(uri))
    return fs, path


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    return fs.exists(path)


def read_bytes(uri: str) -> bytes:
    fs, path = filesystem(uri)
    return fs.cat_file(path)


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8-sig")


def write_bytes(uri: str, data: bytes) -> None:
    """Write a whole file at once: a reader sees the old file or the new one, never part of one.

    Locally through a temporary name of this writer's own (two writers of one
    file must not share it) and a rename; an object store's PUT is atomic."""
    put_bytes(*filesystem(uri), data)


def put_bytes(fs, path: str, data: bytes) -> None:
    """`write_bytes` to a path of a filesystem from `filesystem`."""
    if "file" not in fs.protocol:
        fs.pipe_file(path, data)
        return
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    tmp = f"{path}.{uuid.uuid4().hex[:12]}.part"
    try:
        with fs.open(tmp, "wb") as f:
            f.write(data)
        fs.mv(tmp, path)
    finally:
        if fs.exists(tmp):
            fs.rm(tmp)


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def upload(local_path: str, uri: str) -> str:
    """Put a finished local file at `uri` (atomically for local targets)."""
    if is_local(uri):
        dest = Path(strip_file(uri))
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f"{dest.name}.{uuid.uuid4().hex[:12]}.part")
        shutil.copyfile(local_path, tmp)
        os.replace(tmp, dest)
        return str(dest)
    fs, path = filesystem(uri)
    fs.put_file(local_path, path)
    return uri


@contextlib.contextmanager
def local_copy(uri: str) -> Iterator[str]:
    """A local path with the content of `uri` (the file itself when it is local)."""
    if is_local(uri):
        path = strip_file(uri)
        if not os.path.exists(path):
            raise FileNotFoundError(f"no such file: {uri}")
        yield path
        return
    fs, path = filesystem(uri)
    if not fs.exists(path):
        raise FileNotFoundError(f"no such object: {uri}")
    with tempfile.TemporaryDirectory(prefix="raydub-") as tmp:
        # The name only, never the query: a presigned URL's signature must not become a file name.
        local = os.path.join(tmp, os.path.basename(path_of(uri)) or "file")
        fs.get_file(path, local)
        yield local


@contextlib.contextmanager
def staged_output(uri: str) -> Iterator[str]:
    """A local path to write; on success it is uploaded to `uri`, on error nothing is left there."""
    suffix = os.path.splitext(uri)[1]
    with tempfile.TemporaryDirectory(prefix="raydub-") as tmp:
        local = os.path.join(tmp, "out" + suffix)
        yield local
        upload(local, uri)
