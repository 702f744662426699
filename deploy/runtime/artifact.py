"""The kit's one container format: a zip of ``manifest.json`` + ``.npy`` arrays + opaque blobs.

Why this shape: a zip is inspectable with standard tools, arrays are read with
``allow_pickle=False`` (never a pickle), and every member carries a SHA-256 in the manifest, so a
truncated, corrupted or edited file is refused before anything uses it. Coresets, trained models
and deployable bundles are all artifacts of different ``kind``; later kinds add members and
metadata without a new container. Readers refuse a ``format_version`` newer than they know.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import re
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import KitError
from .safeio import atomic_write_files, open_regular

FORMAT_NAME = "kit-artifact"
# Version 2: ``meta_sha256`` covers kind, meta and the member list (names, sizes, SHA-256s), so a
# relabelled kind or a removed member no longer passes with the meta checksum intact. Version-1
# files (meta_sha256 over the meta alone) are still read, and verified the version-1 way.
FORMAT_VERSION = 2
MANIFEST = "manifest.json"

# Every kind the kit writes, with the arrays it must hold (name -> allowed ndim). Readers refuse
# other kinds; kind-specific loaders check meta and shapes on top of this.
KIND_ARRAYS: dict[str, dict[str, tuple[int, ...]]] = {
    "coreset": {"features": (4,), "labels": (1, 2), "norm_mean": (2,), "norm_std": (2,)},
    "model": {},
    "bundle": {"head_weight": (2,), "head_bias": (1,), "replay_labels": (1,)},
    "distill-checkpoint": {},
    "mtt-experts": {},
}
# A member is arrays/<name>.npy or blobs/<name>; <name> is '/'-separated segments that cannot be
# '.', '..' or empty, so no member name can point outside the archive when copied or extracted.
_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9_.+=-]*"
MEMBER_NAME = re.compile(rf"(arrays/{_SEGMENT}(/{_SEGMENT})*\.npy|blobs/{_SEGMENT}(/{_SEGMENT})*)")
_SHA256 = re.compile(r"[0-9a-f]{64}")


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
    with open_regular(path) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(array, order="C"), allow_pickle=False)
    return buf.getvalue()


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, lock: bool = False) -> None:
    """Write to a temporary file beside ``path`` and rename it over, so a crash never leaves half a file.

    The rules of :mod:`deploy.runtime.safeio` apply: an existing target that is not a regular file is
    refused (a symlink is written through to its regular-file target), the folder is fsynced after
    the rename, and ``lock=True`` serialises with other writers of the same file.
    """
    atomic_write_files({path: data}, lock=lock, option=None)


def atomic_write_text(path: str | os.PathLike, text: str, *, lock: bool = False) -> None:
    atomic_write_bytes(path, text.encode(), lock=lock)


def manifest_digest(manifest: dict) -> str:
    """The ``meta_sha256`` a manifest must carry: version 1 hashed the meta alone, version 2 hashes
    kind, meta and the member list together (so none of them can change without the other)."""
    if manifest.get("format_version") == 1:
        return sha256_bytes(_canonical(manifest.get("meta")))
    return sha256_bytes(
        _canonical({"kind": manifest.get("kind"), "meta": manifest.get("meta"), "members": manifest.get("members")})
    )


def check_finite(name: str, array: np.ndarray, where: str) -> None:
    """The one non-finite rule: no float array in any artifact may hold NaN or infinity.

    A NaN coreset trains a NaN model that "classifies" as class 0 with probability nan; refusing it
    where arrays enter or leave a file stops that at the first step.
    """
    if array.dtype.kind in "fc" and array.size and not np.isfinite(array).all():
        bad = int(array.size - np.isfinite(array).sum())
        raise KitError(f"{where}: array '{name}' holds {bad} non-finite value(s) (NaN or infinity)")


# Signatures (optional): HMAC-SHA256 with a user key over the manifest, which lists every member's
# SHA-256, so the signature covers the whole file. See docs/ARCHITECTURE.md for the threat model.
SIGNATURE_ALG = "hmac-sha256"


def _unsigned(manifest: dict) -> bytes:
    return _canonical({k: v for k, v in manifest.items() if k != "signature"})


def key_id(key: bytes) -> str:
    """A short public name for a key (so a mismatch can say which key signed), not the key itself."""
    return hashlib.sha256(b"kit-key-id:" + key).hexdigest()[:16]


def sign_manifest(manifest: dict, key: bytes) -> dict:
    return {
        "alg": SIGNATURE_ALG,
        "key_id": key_id(key),
        "mac": hmac.new(key, _unsigned(manifest), hashlib.sha256).hexdigest(),
    }


def verify_signature(path: str | os.PathLike, key: bytes) -> None:
    """Refuse ``path`` unless its manifest carries a valid HMAC-SHA256 made with ``key``."""
    path = Path(path)
    manifest = read_manifest(path)
    signature = manifest.get("signature")
    if signature is None:
        raise KitError(f"{path}: is not signed, but a signing key is configured (kit bundle --sign KEYFILE)")
    if not (
        isinstance(signature, dict) and signature.get("alg") == SIGNATURE_ALG and isinstance(signature.get("mac"), str)
    ):
        raise KitError(f"{path}: signature is malformed (expected {SIGNATURE_ALG})")
    expected = hmac.new(key, _unsigned(manifest), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature["mac"]):
        raise KitError(
            f"{path}: signature does not match the configured key (key id {key_id(key)}, "
            f"signed with {signature.get('key_id', '?')}): tampered or signed with another key"
        )


KEY_ENV = "KIT_BUNDLE_KEY"


def configured_key() -> bytes | None:
    """The verification key, if one is configured: the file named by ``$KIT_BUNDLE_KEY`` (the
    device command's ``--key KEYFILE`` sets it for its process). None: signatures are not checked."""
    where = os.environ.get(KEY_ENV)
    return read_key(where, KEY_ENV) if where else None


def read_key(path: str | os.PathLike, option: str = "--key") -> bytes:
    """A signing key from a file: its bytes (surrounding whitespace stripped), at least 16 of them."""
    try:
        with open_regular(path, "key") as handle:
            key = handle.read(1 << 16).strip()
    except KitError as exc:
        raise KitError(f"{option}: {exc}") from None
    if len(key) < 16:
        raise KitError(f"{option} {path}: a signing key needs at least 16 bytes (got {len(key)})")
    return key


def artifact_bytes(artifact: Artifact, sign_key: bytes | None = None) -> bytes:
    """The complete file of ``artifact`` in memory (for writing it together with other files);
    ``sign_key`` adds an HMAC-SHA256 signature over the manifest."""
    members: dict[str, bytes] = {}
    for name, array in artifact.arrays.items():
        if array.dtype == object:
            raise KitError(f"array '{name}' has dtype object; artifacts hold numeric arrays only")
        check_finite(name, np.asarray(array), f"{artifact.kind} artifact")
        members[f"arrays/{name}.npy"] = _npy_bytes(array)
    for name, blob in artifact.blobs.items():
        members[f"blobs/{name}"] = bytes(blob)
    created = artifact.created or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for name in members:
        if not MEMBER_NAME.fullmatch(name):
            raise KitError(f"artifact member name '{name}' is not allowed (letters, digits, _ . + = - segments)")
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "kind": artifact.kind,
        "created": created,
        "meta": artifact.meta,
        "members": {name: {"sha256": sha256_bytes(data), "size": len(data)} for name, data in members.items()},
    }
    manifest["meta_sha256"] = manifest_digest(manifest)
    if sign_key is not None:
        manifest["signature"] = sign_manifest(manifest, sign_key)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        zf.writestr(MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def write_artifact(
    path: str | os.PathLike, artifact: Artifact, *, lock: bool = False, sign_key: bytes | None = None
) -> Path:
    """Serialise ``artifact`` to ``path`` atomically; returns the path."""
    atomic_write_bytes(path, artifact_bytes(artifact, sign_key), lock=lock)
    return Path(path)


# Reading: bounded, whatever the file claims -------------------------------------------------------
MAX_MANIFEST_BYTES = 8 << 20  # a manifest is metadata: a few KB, a long fine-tune history a few hundred
MAX_MEMBER_BYTES = 2 << 30  # no coreset, model or bundle member comes near 2 GiB
MAX_RATIO = 200  # deflate of real arrays and models stays far below; a bomb is ~1000:1
RATIO_FLOOR = 1 << 20  # members smaller than this may compress as well as they like (zero arrays)
_CHUNK = 1 << 20
_READ_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    NotImplementedError,
)


def _check_entry(path: Path, info: zipfile.ZipInfo, declared: int) -> None:
    """Refuse an entry whose sizes disagree with the manifest, or that inflates absurdly, before reading it."""
    if info.file_size != declared:
        raise KitError(
            f"{path}: member {info.filename} is {info.file_size} bytes in the zip but {declared} "
            "in the manifest (corrupted or tampered)"
        )
    if declared > MAX_MEMBER_BYTES:
        raise KitError(
            f"{path}: member {info.filename} declares {declared} bytes (over {MAX_MEMBER_BYTES}); refusing it"
        )
    if declared > RATIO_FLOOR and declared > MAX_RATIO * max(info.compress_size, 1):
        raise KitError(
            f"{path}: member {info.filename} would inflate {declared / max(info.compress_size, 1):.0f}-fold "
            f"(limit {MAX_RATIO}); refusing a possible decompression bomb"
        )


def _read_capped(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, path: Path) -> bytes:
    """Inflate at most ``limit + 1`` bytes of ``info``, so a lying header cannot exhaust memory."""
    parts, total = [], 0
    with zf.open(info) as src:
        while total <= limit:
            block = src.read(min(_CHUNK, limit + 1 - total))
            if not block:
                break
            parts.append(block)
            total += len(block)
    if total > limit:
        raise KitError(
            f"{path}: member {info.filename} inflates past its declared {limit} bytes (corrupted or tampered)"
        )
    return b"".join(parts)


def _open_zip(path: Path, handle) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(handle)
    except _READ_ERRORS as exc:
        raise KitError(f"{path}: not a readable kit artifact (truncated or corrupted: {exc})") from None


def _manifest_of(path: Path, zf: zipfile.ZipFile) -> dict:
    try:
        info = zf.getinfo(MANIFEST)
    except KeyError:
        raise KitError(f"{path}: not a kit artifact (no {MANIFEST})") from None
    if info.file_size > MAX_MANIFEST_BYTES:
        raise KitError(f"{path}: {MANIFEST} declares {info.file_size} bytes (limit {MAX_MANIFEST_BYTES}); refusing it")
    try:
        manifest = json.loads(_read_capped(zf, info, MAX_MANIFEST_BYTES, path))
    except _READ_ERRORS as exc:
        raise KitError(f"{path}: not a readable kit artifact (truncated or corrupted: {exc})") from None
    _check_header(path, manifest)
    return manifest


def read_manifest(path: str | os.PathLike) -> dict:
    """Read and check the manifest alone (format, version); members are not verified here."""
    path = Path(path)
    with open_regular(path) as handle, _open_zip(path, handle) as zf:
        return _manifest_of(path, zf)


def _check_header(path: Path, manifest: object) -> None:
    """The manifest schema, checked before any field is used: every later step may index freely."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        found = manifest.get("format") if isinstance(manifest, dict) else "?"
        raise KitError(f"{path}: not a kit artifact (format is {found})")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise KitError(f"{path}: artifact has no valid format_version (an integer >= 1)")
    if version > FORMAT_VERSION:
        raise KitError(
            f"{path}: artifact format version {version} is newer than this kit reads ({FORMAT_VERSION}); "
            "upgrade the kit"
        )
    for key, types, what in (
        ("kind", str, "a string"),
        ("meta", dict, "an object"),
        ("members", dict, "an object"),
        ("meta_sha256", str, "a string"),
        ("created", str, "a string"),
    ):
        if key == "created" and key not in manifest:
            continue
        if not isinstance(manifest.get(key), types):
            raise KitError(f"{path}: artifact manifest field '{key}' must be {what}")
    if manifest["kind"] not in KIND_ARRAYS:
        raise KitError(f"{path}: unknown artifact kind '{manifest['kind'][:40]}' (known: {', '.join(KIND_ARRAYS)})")
    for name, info in manifest["members"].items():
        if not MEMBER_NAME.fullmatch(name) or name == MANIFEST:
            raise KitError(f"{path}: artifact member name {name[:80]!r} is not allowed")
        if not (
            isinstance(info, dict)
            and isinstance(info.get("size"), int)
            and not isinstance(info.get("size"), bool)
            and info["size"] >= 0
            and isinstance(info.get("sha256"), str)
            and _SHA256.fullmatch(info["sha256"])
        ):
            raise KitError(f"{path}: artifact manifest entry for {name} needs an integer size and a sha256")
    if manifest_digest(manifest) != manifest["meta_sha256"]:
        raise KitError(f"{path}: artifact metadata does not match its checksum (edited or corrupted)")


def read_artifact(path: str | os.PathLike, kind: str | tuple[str, ...] | None = None) -> Artifact:
    """Load and fully verify an artifact: format, version, kind, every member's size and SHA-256.

    Memory stays bounded by what the manifest declares: each zip entry's sizes are checked against
    the manifest (and an absurd compression ratio refused) before it is inflated, and inflation
    stops one byte past the declared size.
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    blobs: dict[str, bytes] = {}
    with open_regular(path) as handle, _open_zip(path, handle) as zf:
        manifest = _manifest_of(path, zf)
        if kind is not None:
            kinds = (kind,) if isinstance(kind, str) else kind
            if manifest.get("kind") not in kinds:
                raise KitError(f"{path}: is a '{manifest.get('kind')}' artifact, expected {' or '.join(kinds)}")
        try:
            entries = {info.filename: info for info in zf.infolist()}
            present = set(entries) - {MANIFEST}
            expected = set(manifest["members"])
            if present != expected or len(entries) != len(zf.infolist()):
                extra, missing = sorted(present - expected), sorted(expected - present)
                raise KitError(f"{path}: artifact members do not match its manifest (extra {extra}, missing {missing})")
            for name, info in manifest["members"].items():
                _check_entry(path, entries[name], info["size"])
            missing = [n for n in KIND_ARRAYS[manifest["kind"]] if f"arrays/{n}.npy" not in manifest["members"]]
            if missing:
                raise KitError(
                    f"{path}: {manifest['kind']} artifact is missing required member(s) "
                    f"{', '.join(f'arrays/{n}.npy' for n in missing)}"
                )
            for name, info in manifest["members"].items():
                data = _read_capped(zf, entries[name], info["size"], path)
                if len(data) != info["size"] or sha256_bytes(data) != info["sha256"]:
                    raise KitError(f"{path}: member {name} fails its checksum (corrupted or tampered)")
                if name.startswith("arrays/") and name.endswith(".npy"):
                    array = np.load(io.BytesIO(data), allow_pickle=False)
                    check_finite(name, array, str(path))
                    arrays[name[len("arrays/") : -len(".npy")]] = array
                elif name.startswith("blobs/"):
                    blobs[name[len("blobs/") :]] = data
                else:
                    raise KitError(f"{path}: unexpected member {name}")
        except _READ_ERRORS as exc:
            raise KitError(f"{path}: not a readable kit artifact (truncated or corrupted: {exc})") from None
    for name, ndims in KIND_ARRAYS[manifest["kind"]].items():
        if arrays[name].ndim not in ndims:
            raise KitError(
                f"{path}: array '{name}' has shape {arrays[name].shape}; a {manifest['kind']} needs "
                f"{' or '.join(str(n) for n in ndims)} dimensions"
            )
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
    with open_regular(archive, "zip archive") as handle, zipfile.ZipFile(handle) as zf:
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
