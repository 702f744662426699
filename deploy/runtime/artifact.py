"""The kit's one container format: a zip of ``manifest.json`` + ``.npy`` arrays + opaque blobs.

Why this shape: a zip is inspectable with standard tools, arrays are read with
``allow_pickle=False`` (never a pickle), and every member carries a SHA-256 in the manifest, so a
truncated, corrupted or edited file is refused before anything uses it. Coresets, trained models
and deployable bundles are all artifacts of different ``kind``; later kinds add members and
metadata without a new container. Readers refuse a ``format_version`` newer than they know.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import KitError

FORMAT_NAME = "kit-artifact"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


@dataclass
class Artifact:
    """An artifact in memory: its kind, JSON metadata, numpy arrays and raw byte blobs."""

    kind: str
    meta: dict
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    created: str = ""
    format_version: int = FORMAT_VERSION


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 of a file, read in 1-MiB blocks (models and coresets need not fit in memory twice)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(array, order="C"), allow_pickle=False)
    return buf.getvalue()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file beside ``path`` and rename it over, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_artifact(path: str | os.PathLike, artifact: Artifact) -> Path:
    """Serialise ``artifact`` to ``path`` atomically; returns the path."""
    members: dict[str, bytes] = {}
    for name, array in artifact.arrays.items():
        if array.dtype == object:
            raise KitError(f"array '{name}' has dtype object; artifacts hold numeric arrays only")
        members[f"arrays/{name}.npy"] = _npy_bytes(array)
    for name, blob in artifact.blobs.items():
        members[f"blobs/{name}"] = bytes(blob)
    created = artifact.created or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "kind": artifact.kind,
        "created": created,
        "meta": artifact.meta,
        "meta_sha256": sha256_bytes(_canonical(artifact.meta)),
        "members": {name: {"sha256": sha256_bytes(data), "size": len(data)} for name, data in members.items()},
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        zf.writestr(MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
        for name, data in members.items():
            zf.writestr(name, data)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def read_manifest(path: str | os.PathLike) -> dict:
    """Read and check the manifest alone (format, version); members are not verified here."""
    path = Path(path)
    if not path.exists():
        raise KitError(f"{path}: no such file")
    try:
        with zipfile.ZipFile(path) as zf:
            manifest = json.loads(zf.read(MANIFEST))
    except KeyError:
        raise KitError(f"{path}: not a kit artifact (no {MANIFEST})") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
        raise KitError(f"{path}: not a readable kit artifact (truncated or corrupted: {exc})") from None
    _check_header(path, manifest)
    return manifest


def _check_header(path: Path, manifest: dict) -> None:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise KitError(f"{path}: not a kit artifact (format is {manifest.get('format') if isinstance(manifest, dict) else '?'})")
    version = manifest.get("format_version")
    if not isinstance(version, int):
        raise KitError(f"{path}: artifact has no valid format_version")
    if version > FORMAT_VERSION:
        raise KitError(f"{path}: artifact format version {version} is newer than this kit reads ({FORMAT_VERSION}); upgrade the kit")
    if sha256_bytes(_canonical(manifest.get("meta"))) != manifest.get("meta_sha256"):
        raise KitError(f"{path}: artifact metadata does not match its checksum (edited or corrupted)")


def read_artifact(path: str | os.PathLike, kind: str | tuple[str, ...] | None = None) -> Artifact:
    """Load and fully verify an artifact: format, version, kind, every member's size and SHA-256."""
    path = Path(path)
    manifest = read_manifest(path)
    if kind is not None:
        kinds = (kind,) if isinstance(kind, str) else kind
        if manifest["kind"] not in kinds:
            raise KitError(f"{path}: is a '{manifest['kind']}' artifact, expected {' or '.join(kinds)}")
    arrays: dict[str, np.ndarray] = {}
    blobs: dict[str, bytes] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            present = set(zf.namelist()) - {MANIFEST}
            expected = set(manifest["members"])
            if present != expected:
                extra, missing = sorted(present - expected), sorted(expected - present)
                raise KitError(f"{path}: artifact members do not match its manifest (extra {extra}, missing {missing})")
            for name, info in manifest["members"].items():
                data = zf.read(name)
                if len(data) != info["size"] or sha256_bytes(data) != info["sha256"]:
                    raise KitError(f"{path}: member {name} fails its checksum (corrupted or tampered)")
                if name.startswith("arrays/") and name.endswith(".npy"):
                    arrays[name[len("arrays/") : -len(".npy")]] = np.load(io.BytesIO(data), allow_pickle=False)
                elif name.startswith("blobs/"):
                    blobs[name[len("blobs/") :]] = data
                else:
                    raise KitError(f"{path}: unexpected member {name}")
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, zipfile.LargeZipFile) as exc:
        raise KitError(f"{path}: not a readable kit artifact (truncated or corrupted: {exc})") from None
    return Artifact(
        kind=manifest["kind"],
        meta=manifest["meta"],
        arrays=arrays,
        blobs=blobs,
        created=manifest.get("created", ""),
        format_version=manifest["format_version"],
    )


def safe_member_path(target_dir: str | os.PathLike, member: str) -> Path:
    """Where ``member`` would land under ``target_dir``; refuses absolute paths and ``..`` escapes."""
    root = Path(target_dir).resolve()
    candidate = (root / member).resolve()
    if Path(member).is_absolute() or (candidate != root and root not in candidate.parents):
        raise KitError(f"refusing to extract '{member}': it would land outside {root}")
    return candidate


def safe_extract_zip(archive: str | os.PathLike, target_dir: str | os.PathLike) -> list[Path]:
    """Extract every member of a zip under ``target_dir``, refusing any that would escape it."""
    written = []
    with zipfile.ZipFile(archive) as zf:
        targets = [(info, safe_member_path(target_dir, info.filename)) for info in zf.infolist()]
        for info, dest in targets:
            if info.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src:
                atomic_write_bytes(dest, src.read())
            written.append(dest)
    return written
