"""Every output says it was AI-dubbed (container metadata, manifest, optional label) and can carry a signed C2PA manifest.

The stages run directly (Probe, Mix, Mux), without Ray: a 2 s generated clip
and one dubbed line, a tone standing in for the new speech. The signing
certificate is made here: a test CA and a leaf with the extensions C2PA asks
for (P-256, digitalSignature, emailProtection).
"""
import datetime
import hashlib
import json
import subprocess

import av
import c2pa
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from operators import audio, provenance
from operators.config import Config, ConfigError
from operators.media import ffmpeg
from operators.mix import Mix
from operators.mux import Mux
from operators.probe import ProbeMedia

MODELS = [{"stage": "synthesize", "name": "espeak-ng", "version": "1.51", "license": "GPL-3.0-or-later",
           "source": "apt:espeak-ng"},
          {"stage": "translate", "name": "apertium-en-es", "version": "3.0", "license": "GPL-2.0",
           "source": "apt:apertium-en-es"}]


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "raydub tests")])


def _usage(**on):
    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
             "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(**{n: on.get(n, False) for n in names})


def _cert(subject, issuer, key, issuer_key, *extensions):
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
         .not_valid_after(now + datetime.timedelta(days=7)))
    for ext, critical in extensions:
        b = b.add_extension(ext, critical=critical)
    return b.sign(issuer_key, hashes.SHA256())


def _pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A CA, a signing certificate C2PA accepts, and one it refuses (TLS server EKU): files and the CA's PEM."""
    d = tmp_path_factory.mktemp("certs")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert(_name("raydub test CA"), _name("raydub test CA"), ca_key, ca_key,
               (x509.BasicConstraints(ca=True, path_length=0), True),
               (_usage(key_cert_sign=True, crl_sign=True), True),
               (x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False))

    def leaf(name, eku):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(_name(name), ca.subject, key, ca_key,
                     (x509.BasicConstraints(ca=False, path_length=None), True),
                     (_usage(digital_signature=True), True),
                     (x509.ExtendedKeyUsage([eku]), False),
                     (x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False),
                     (x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False))
        (d / f"{name}.chain.pem").write_bytes(_pem(cert) + _pem(ca))
        (d / f"{name}.key.pem").write_bytes(_key_pem(key))
        return str(d / f"{name}.chain.pem"), str(d / f"{name}.key.pem")

    good = leaf("signer", ExtendedKeyUsageOID.EMAIL_PROTECTION)
    tls = leaf("tls", ExtendedKeyUsageOID.SERVER_AUTH)
    (d / "other.key.pem").write_bytes(_key_pem(ec.generate_private_key(ec.SECP256R1())))
    return {"chain": good[0], "key": good[1], "tls": tls, "other_key": str(d / "other.key.pem"),
            "ca_pem": _pem(ca).decode()}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A 2 s grey clip with a tone, probed; and a re-encoded copy of its picture standing in for a lip render."""
    d = tmp_path_factory.mktemp("clip")
    clip = str(d / "clip.mp4")
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:size=320x240:rate=25:duration=2", "-f", "lavfi",
           "-i", "sine=frequency=300:duration=2", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac",
           "-ac", "2", "-shortest", clip)
    rendered = str(d / "rendered.mp4")
    ffmpeg("-i", clip, "-map", "0:v", "-c:v", "libx264", "-crf", "18", "-pix_fmt", "yuv420p", rendered)
    row = ProbeMedia(Config(), str(d / "work"), str(d / "out")).process_row(
        {"video_id": "clip", "uri": clip, "source_lang": "en", "audio_track": None})
    fit = str(d / "line.fit.wav")
    audio.write_wav(fit, 0.3 * np.sin(2 * np.pi * 1000 * np.arange(48000) / 48000)[:, None], 48000)
    row = {**row, "lang": "es", "status": None, "models": MODELS, "segments": [
        {"segment_id": "clip@00000500-00001500", "start_s": 0.5, "end_s": 1.5, "fit_uri": fit,
         "placed_start_s": 0.5, "placed_end_s": 1.5, "target_text": "La casa es roja."}]}
    return d, row, rendered


def _dub(source, out, rendered=False, **sections):
    d, row, rendered_uri = source
    config = Config.from_dict(sections)
    work = str(d / "work")
    row = Mix(config, work, str(out)).process_row(dict(row))
    return Mux(config, work, str(out)).process_row({**row, "rendered_video_uri": rendered_uri if rendered else None})


def _tags(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format_tags", "-of", "json", path],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)["format"]["tags"]


def _read(path, ca_pem=None):
    """The C2PA reader's verdict on a file: (validation state, active manifest, failure codes)."""
    context = c2pa.Context(c2pa.Settings.from_dict({"trust": {"trust_anchors": ca_pem}})) if ca_pem else None
    with c2pa.Reader(path, context=context) as reader:
        results = reader.get_validation_results() or {}
        failures = [f["code"] for f in results.get("activeManifest", {}).get("failure", [])]
        return reader.get_validation_state(), reader.get_active_manifest(), failures


def _assertion(manifest, label):
    return next(a["data"] for a in manifest["assertions"] if a["label"].split(".v")[0] == label)


@pytest.fixture(scope="module")
def unsigned(source, tmp_path_factory):
    return _dub(source, tmp_path_factory.mktemp("unsigned"))


def test_every_output_discloses_ai_dubbing_in_its_metadata(unsigned):
    text = Config().disclosure.text_voice_only
    assert text == "AI-dubbed by raydub: the voice is AI-generated."
    video = _tags(unsigned["video_out_uri"])
    assert (video["comment"], video["description"]) == (text, text)
    wav = _tags(unsigned["dub_audio_uri"])
    assert wav["comment"] == text
    assert wav["encoder"].startswith(f"raydub {provenance.version()}")        # the INFO chunk's ISFT
    assert unsigned["disclosure"] == text and unsigned["disclosure_label"] is None
    assert unsigned["provenance_status"] == "not signed: no key configured"
    assert unsigned["output_video_copied"] is True            # disclosure alone never re-encodes the picture
    # the tags do not disturb the audio: the wav still reads as the mix
    samples, sr = audio.read_wav(unsigned["dub_audio_uri"])
    assert sr == 48000 and samples.shape == (96000, 2)


def test_a_video_with_re_rendered_lips_says_so_and_mov_keeps_the_comment(source, tmp_path):
    row = _dub(source, tmp_path, rendered=True, output={"container": "mov"}, provenance={"sign": "off"})
    text = Config().disclosure.text
    assert text == "AI-dubbed by raydub: the voice and the lip movements are AI-generated."
    assert row["video_out_uri"].endswith("clip.es.mov")
    assert _tags(row["video_out_uri"])["comment"] == text
    assert row["disclosure"] == text
    assert row["provenance_status"] == "not signed: provenance.sign is off"


def test_signed_outputs_verify_with_the_c2pa_reader(source, certs, tmp_path):
    row = _dub(source, tmp_path, rendered=True,
               provenance={"cert_chain": certs["chain"], "private_key": certs["key"]})
    assert row["provenance_status"] == "signed"
    source_sha256 = hashlib.sha256(open(row["uri"], "rb").read()).hexdigest()
    assert row["source_sha256"] == source_sha256
    for path, edits in [(row["video_out_uri"], 2), (row["dub_audio_uri"], 1)]:
        state, manifest, failures = _read(path, certs["ca_pem"])
        assert (state, failures) == ("Trusted", [])            # the chain ends at the test CA, given as anchor
        assert _read(path)[0] == "Valid"                         # intact and well signed, from an unknown CA
        assert manifest["claim_generator_info"][0]["name"] == "raydub"
        assert manifest["signature_info"]["common_name"] == "signer"
        [ingredient] = manifest["ingredients"]
        assert (ingredient["title"], ingredient["relationship"]) == ("clip.mp4", "parentOf")
        actions = _assertion(manifest, "c2pa.actions")["actions"]
        assert [a["action"] for a in actions] == ["c2pa.opened", "c2pa.translated"] + ["c2pa.edited"] * edits
        assert actions[1]["parameters"] == {"sourceLanguage": "en", "targetLanguage": "es"}
        assert actions[1]["digitalSourceType"] == provenance.TRAINED_AI      # machine translation (apertium)
        assert {a["digitalSourceType"] for a in actions[2:]} == {provenance.COMPOSITE_AI}
        assert _assertion(manifest, "org.raydub.source")["sha256"] == source_sha256
        models = _assertion(manifest, "org.raydub.models")["models"]
        assert [(m["name"], m["license"]) for m in models] == [("espeak-ng", "GPL-3.0-or-later"),
                                                               ("apertium-en-es", "GPL-2.0")]
    video = _read(row["video_out_uri"])[1]
    assert "lip-synced video" in _assertion(video, "c2pa.actions")["actions"][3]["description"]
    assert _assertion(video, "org.raydub.disclosure")["text"] == Config().disclosure.text
    # still a playable file with every frame, and its disclosure tag survives the signature
    assert _tags(row["video_out_uri"])["comment"] == Config().disclosure.text
    with av.open(row["video_out_uri"]) as f:
        assert sum(1 for _ in f.decode(video=0)) == 50


def _flip_middle_byte(path, dest):
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF                 # inside the media data (mdat, the wav's data chunk)
    open(dest, "wb").write(bytes(data))
    return str(dest)


def test_a_tampered_file_fails_verification(source, certs, tmp_path):
    row = _dub(source, tmp_path, provenance={"cert_chain": certs["chain"], "private_key": certs["key"]})
    video = _flip_middle_byte(row["video_out_uri"], tmp_path / "tampered.mp4")
    wav = _flip_middle_byte(row["dub_audio_uri"], tmp_path / "tampered.wav")
    assert _read(video, certs["ca_pem"])[::2] == ("Invalid", ["assertion.bmffHash.mismatch"])
    assert _read(wav, certs["ca_pem"])[::2] == ("Invalid", ["assertion.dataHash.mismatch"])


def test_a_signing_failure_keeps_the_dub_with_the_reason(source, certs, tmp_path):
    import socket

    with socket.socket() as s:             # a port nobody listens on: the timestamp authority is down
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    row = _dub(source, tmp_path, provenance={"cert_chain": certs["chain"], "private_key": certs["key"],
                                             "tsa_url": f"http://127.0.0.1:{port}/tsa"})
    assert row["provenance_status"].startswith("failed: ")
    assert row.get("status") is None                          # the row goes on, ok
    assert _tags(row["video_out_uri"])["comment"] == Config().disclosure.text_voice_only
    assert c2pa.Reader.try_create(row["video_out_uri"]) is None           # unsigned, as the status says
    assert c2pa.Reader.try_create(row["dub_audio_uri"]) is None


@pytest.mark.parametrize("which, needle", [
    ("missing", "provenance.private_key: file not found"),
    ("mismatch", "test signature"),
    ("tls", "test signature"),
])
def test_a_key_that_cannot_sign_fails_on_the_driver(certs, tmp_path, which, needle):
    chain, key = {"missing": (certs["chain"], str(tmp_path / "nowhere.pem")),
                  "mismatch": (certs["chain"], certs["other_key"]), "tls": certs["tls"]}[which]
    config = Config.from_dict({"provenance": {"cert_chain": chain, "private_key": key}})
    with pytest.raises(ConfigError) as e:
        Mux(config, str(tmp_path / "work"), str(tmp_path / "out"))
    assert needle in str(e.value)
    assert "PRIVATE KEY" not in str(e.value)


def test_the_cli_refuses_a_key_that_cannot_sign_before_any_work(certs, tmp_path, capsys):
    from pipelines.cli import main

    config = tmp_path / "c.toml"
    config.write_text(f'[provenance]\ncert_chain = "{certs["chain"]}"\nprivate_key = "{certs["other_key"]}"\n')
    assert main(["config", "--check", str(config)]) == 2
    assert "test signature" in capsys.readouterr().err
    catalog, out = tmp_path / "c.jsonl", tmp_path / "out"
    catalog.write_text(json.dumps({"video_id": "a", "uri": "a.mp4"}) + "\n")
    assert main(["run", "--catalog", str(catalog), "--langs", "es", "--out", str(out), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "provenance" in err and "PRIVATE KEY" not in err
    assert not out.exists()


def test_key_and_chain_are_set_together():
    with pytest.raises(ConfigError, match="cert_chain and private_key must be set together"):
        Config.from_dict({"provenance": {"cert_chain": "chain.pem"}})


def test_burned_in_label_is_drawn_where_configured(source, tmp_path):
    row = _dub(source, tmp_path, disclosure={"burn_in": True, "label": "AI-dubbed", "position": "top-left"})
    assert row["disclosure_label"] == "AI-dubbed"
    assert row["output_video_copied"] is False and row["output_video_codec"] == "h264"
    with av.open(row["uri"]) as src, av.open(row["video_out_uri"]) as out:
        before = next(src.decode(video=0)).to_ndarray(format="gray").astype(int)
        frames = [f.to_ndarray(format="gray").astype(int) for f in out.decode(video=0)]
    assert len(frames) == 50
    # 240 px high: text 10 px, margin 5 px, in a dark box: the top-left corner changes, the rest does not
    corner, rest = (slice(2, 22), slice(2, 60)), (slice(120, 240), slice(0, 320))
    assert np.abs(frames[0][corner] - before[corner]).mean() > 20
    assert np.abs(frames[0][rest] - before[rest]).max() <= 2
    assert np.abs(frames[-1][corner] - before[corner]).mean() > 20        # on every frame


def test_combined_status_names_each_file_when_they_differ():
    assert provenance.combine({"video": "signed", "audio": "signed"}) == "signed"
    assert provenance.combine({"video": "not signed: C2PA manifests cannot be embedded in mkv", "audio": "signed"}) \
        == "video: not signed: C2PA manifests cannot be embedded in mkv; audio: signed"
