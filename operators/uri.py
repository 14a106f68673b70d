"""Every path is a URI: local paths and anything fsspec opens (s3://, gs://, memory://).

Operators read and write artifacts only through these helpers, so catalogs,
work folders and outputs can move to object storage without touching them.
Tools that need a local file (ffmpeg, model runtimes) get one through
`local_copy` and write through `staged_output`.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import fsspec


def is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def _strip_file(uri: str) -> str:
    return uri[len("file://"):] if uri.startswith("file://") else uri


def join(base: str, *parts: str) -> str:
    if is_local(base):
        return str(Path(_strip_file(base), *parts))
    return "/".join([base.rstrip("/"), *[p.strip("/") for p in parts]])


def resolve(uri: str, relative_to: str) -> str:
    """A catalog's relative path, resolved against the folder the catalog is in."""
    if not is_local(uri) or os.path.isabs(_strip_file(uri)):
        return _strip_file(uri) if is_local(uri) else uri
    return join(parent(relative_to), uri)


def absolute(uri: str) -> str:
    """A local path made absolute (the manifest's URIs must not depend on the working directory); others as they are."""
    return str(Path(_strip_file(uri)).resolve()) if is_local(uri) else uri


def parent(uri: str) -> str:
    if is_local(uri):
        return str(Path(_strip_file(uri)).resolve().parent)
    return uri.rsplit("/", 1)[0]


def filesystem(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    fs, path = fsspec.core.url_to_fs(uri)
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
    fs, path = filesystem(uri)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    tmp = f"{path}.part"
    with fs.open(tmp, "wb") as f:
        f.write(data)
    fs.mv(tmp, path)


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def upload(local_path: str, uri: str) -> str:
    """Put a finished local file at `uri` (atomically for local targets)."""
    if is_local(uri):
        dest = Path(_strip_file(uri))
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
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
        path = _strip_file(uri)
        if not os.path.exists(path):
            raise FileNotFoundError(f"no such file: {uri}")
        yield path
        return
    fs, path = filesystem(uri)
    if not fs.exists(path):
        raise FileNotFoundError(f"no such object: {uri}")
    with tempfile.TemporaryDirectory(prefix="raydub-") as tmp:
        local = os.path.join(tmp, os.path.basename(path) or "file")
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
