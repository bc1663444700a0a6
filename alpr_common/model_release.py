"""Model releases: the manifest, its Ed25519 signature, and checks every party runs.

A release is a few files (a detector and/or an OCR ONNX model, the plate config the OCR needs,
sample images) and a manifest (JSON) naming each file with its role, size and SHA-256, the
release's figures and its self-test: which plates each sample must read as. The release key
signs the manifest's exact bytes, so the signature covers every file through its hash. The
operator's CLI builds and signs (``alpr fleet models upload``); the hub refuses an upload whose
files or signature do not match; the node checks again after downloading, with the key it
trusts (a local setting), before it runs anything.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

FORMAT = 1
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
ROLES = ("detector", "ocr", "plate_config", "sample")
RELEASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}(/[A-Za-z0-9][A-Za-z0-9._-]{0,99})?$")
MAX_FILES = 64


class ReleaseError(ValueError):
    """A release that must not be stored or run, and why."""


@dataclass(frozen=True)
class ReleaseFile:
    name: str
    role: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Sample:
    file: str
    plates: tuple[str, ...]


@dataclass(frozen=True)
class Manifest:
    """A parsed, checked manifest; ``raw`` holds the exact signed bytes."""

    release_id: str
    files: tuple[ReleaseFile, ...]
    samples: tuple[Sample, ...]
    min_share: float
    figures: dict[str, Any]
    raw: bytes = field(repr=False)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def file(self, name: str) -> ReleaseFile | None:
        return next((f for f in self.files if f.name == name), None)

    def by_role(self, role: str) -> ReleaseFile | None:
        return next((f for f in self.files if f.role == role), None)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def parse_manifest(raw: bytes) -> Manifest:
    """Check the manifest's shape; ReleaseError naming the first problem otherwise."""
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise ReleaseError(f"manifest is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ReleaseError("manifest must be a JSON object")
    if data.get("format") != FORMAT:
        raise ReleaseError(f"manifest format must be {FORMAT}, not {data.get('format')!r}")
    rid = data.get("release")
    if not isinstance(rid, str) or not RELEASE_ID.match(rid):
        raise ReleaseError("manifest `release`: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    files_in = data.get("files")
    if not isinstance(files_in, dict) or not files_in or len(files_in) > MAX_FILES:
        raise ReleaseError(f"manifest `files`: an object of 1-{MAX_FILES} files")
    files = []
    for name, spec in files_in.items():
        if not isinstance(name, str) or not FILE_NAME.match(name) or ".." in name:
            raise ReleaseError(f"manifest file {name!r}: a plain name (letters, digits, . _ -, one folder at most)")
        if not isinstance(spec, dict):
            raise ReleaseError(f"manifest file {name}: must be an object with role, sha256 and bytes")
        role, digest, size = spec.get("role"), spec.get("sha256"), spec.get("bytes")
        if role not in ROLES:
            raise ReleaseError(f"manifest file {name}: role must be one of {', '.join(ROLES)}, not {role!r}")
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ReleaseError(f"manifest file {name}: sha256 must be 64 lower-case hex digits")
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ReleaseError(f"manifest file {name}: bytes must be a positive integer")
        files.append(ReleaseFile(name, role, digest, size))
    roles = [f.role for f in files]
    for single in ("detector", "ocr", "plate_config"):
        if roles.count(single) > 1:
            raise ReleaseError(f"manifest: at most one {single} file")
    if "detector" not in roles and "ocr" not in roles:
        raise ReleaseError("manifest: a release carries a detector or an OCR model (or both)")
    if "ocr" in roles and "plate_config" not in roles:
        raise ReleaseError("manifest: an OCR model needs its plate_config file")
    test = data.get("self_test")
    if not isinstance(test, dict) or not isinstance(test.get("samples"), list) or not test["samples"]:
        raise ReleaseError("manifest `self_test.samples`: at least one sample image with the plates it must read")
    samples = []
    for s in test["samples"]:
        if not isinstance(s, dict) or not isinstance(s.get("plates"), list):
            raise ReleaseError("manifest self-test sample: an object with `file` and `plates`")
        f = next((x for x in files if x.name == s.get("file")), None)
        if f is None or f.role != "sample":
            raise ReleaseError(f"manifest self-test sample {s.get('file')!r}: not a file of role sample")
        plates = tuple(str(p).upper() for p in s["plates"])
        if not plates or not all(re.fullmatch(r"[A-Z0-9]{1,16}", p) for p in plates):
            raise ReleaseError(f"manifest self-test sample {f.name}: plates must be 1-16 letters or digits each")
        samples.append(Sample(f.name, plates))
    share = test.get("min_share", 1.0)
    if not isinstance(share, int | float) or not 0 < share <= 1:
        raise ReleaseError("manifest `self_test.min_share`: a share above 0, at most 1")
    figures = data.get("figures", {})
    if not isinstance(figures, dict):
        raise ReleaseError("manifest `figures`: an object")
    return Manifest(rid, tuple(files), tuple(samples), float(share), figures, raw)


def build_manifest(
    release_id: str,
    files: Mapping[str, tuple[Path, str]],
    samples: Iterable[tuple[str, list[str]]],
    *,
    min_share: float = 1.0,
    figures: Mapping[str, Any] | None = None,
) -> bytes:
    """The manifest's bytes for ``files`` (release name -> (local path, role))."""
    data = {
        "format": FORMAT,
        "release": release_id,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": {
            name: {"role": role, "sha256": sha256_file(path), "bytes": path.stat().st_size}
            for name, (path, role) in files.items()
        },
        "self_test": {"samples": [{"file": f, "plates": p} for f, p in samples], "min_share": min_share},
        "figures": dict(figures or {}),
    }
    raw = json.dumps(data, indent=1, sort_keys=True).encode()
    parse_manifest(raw)
    return raw


# -- keys and signatures ---------------------------------------------------------------------


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def new_key(private_path: Path) -> Path:
    """A new release key: the private key (PEM, mode 600) and ``<name>.pub`` beside it."""
    key = Ed25519PrivateKey.generate()
    private_path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    private_path.touch(mode=0o600, exist_ok=False)
    private_path.write_bytes(pem)
    pub = private_path.with_suffix(".pub")
    pub.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return pub


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise ReleaseError(f"release key {path}: {e}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ReleaseError(f"release key {path}: not an Ed25519 key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as e:
        raise ReleaseError(f"release public key {path}: {e}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ReleaseError(f"release public key {path}: not an Ed25519 key")
    return key


def sign(manifest: bytes, key: Ed25519PrivateKey) -> bytes:
    return key.sign(manifest)


def verify(manifest: bytes, signature: bytes, trusted: Iterable[Ed25519PublicKey]) -> str:
    """The id of the trusted key that signed ``manifest``; ReleaseError when none did."""
    keys = list(trusted)
    if not keys:
        raise ReleaseError("no release key is trusted here: configure the release public key")
    for k in keys:
        try:
            k.verify(signature, manifest)
            return key_id(k)
        except InvalidSignature:
            continue
    raise ReleaseError(
        "the manifest's signature does not verify with any trusted release key (tampered or unknown key)"
    )


def check_folder(folder: Path, manifest: Manifest) -> None:
    """Every file of the release is in ``folder`` with the manifest's size and SHA-256."""
    for f in manifest.files:
        path = folder / f.name
        if not path.is_file():
            raise ReleaseError(f"{f.name}: missing")
        size = path.stat().st_size
        if size != f.size:
            raise ReleaseError(f"{f.name}: {size} bytes, the manifest says {f.size}")
        if sha256_file(path) != f.sha256:
            raise ReleaseError(f"{f.name}: SHA-256 differs from the manifest (corrupt or tampered)")
