"""Fetch a public dataset archive, verify it against a pinned SHA-256, and unpack it safely.

Why so strict: the archive comes from the network and is unpacked into the user's home. A
pinned size + SHA-256 means a truncated download, a changed upstream file or a tampered mirror
is refused before anything is extracted; every member is checked to land inside the target (no
absolute paths, no ``..``, no links or devices); and the dataset folder appears only once
complete (download to a temp file, extract into a temp dir, then one rename), so an interrupted
run never leaves a half dataset that later loads as if it were whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from deploy.runtime.artifact import atomic_write_text, safe_member_path
from deploy.runtime.errors import KitError

from .folds import canonical_name
from .paths import resolve_data_dir

MARKER = ".kit-download.json"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ArchiveSpec:
    """A downloadable archive: where it is, what it must hash to, and where it goes.

    ``target`` is the folder created under the data dir; ``expect`` a path that must exist in the
    unpacked tree (checked before it is installed). A single top-level folder without it is
    stripped, so ``free-spoken-digit-dataset-1.0.9/recordings`` becomes ``fsdd/recordings``.
    ``md5``: where the publisher lists only an MD5 (Zenodo's file listing does), that published
    figure is pinned instead of a SHA-256 nobody published; ``sha256`` is then empty. Either way
    the SHA-256 of what was installed is recorded in the marker file. Tar and zip both unpack.
    """

    name: str
    url: str
    sha256: str
    size: int | None
    target: str
    expect: str
    source: str = ""
    description: str = ""
    md5: str = ""


REGISTRY: dict[str, ArchiveSpec] = {
    # Checksum source: tensorflow/datasets, tensorflow_datasets/audio/spoken_digit/checksums.tsv
    # (TFDS "spoken_digit" builder pins this exact tag archive).
    "fsdd": ArchiveSpec(
        name="fsdd",
        url="https://github.com/Jakobovski/free-spoken-digit-dataset/archive/v1.0.9.tar.gz",
        sha256="8bc44cde129d505cbbb6b365c09f80c663f2aa77578afc634e6141a2f87100c0",
        size=11975353,
        target="fsdd",
        expect="recordings",
        source="tensorflow/datasets tensorflow_datasets/audio/spoken_digit/checksums.tsv",
        description="Free Spoken Digit Dataset v1.0.9 (GitHub release archive, 12 MB)",
    ),
    # Checksum source: tensorflow/datasets, tensorflow_datasets/url_checksums/speech_commands.txt
    # (listed for http://download.tensorflow.org/...; the same object is served over https).
    "speech_commands": ArchiveSpec(
        name="speech_commands",
        url="https://download.tensorflow.org/data/speech_commands_v0.02.tar.gz",
        sha256="af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58",
        size=2428923189,
        target="speech_commands",
        expect="yes",
        source="tensorflow/datasets tensorflow_datasets/url_checksums/speech_commands.txt",
        description="Google Speech Commands v0.02, full release with validation/testing lists (2.4 GB)",
    ),
    # Same checksum file as above. The official 12-class test set (with _unknown_ and _silence_
    # folders): the layout of the project's shared copy, installed as speech_commands; its
    # speakers all hash into "test", so the loader falls back to a speaker split (see loader).
    "speech_commands_test": ArchiveSpec(
        name="speech_commands_test",
        url="https://download.tensorflow.org/data/speech_commands_test_set_v0.02.tar.gz",
        sha256="cc2a00c1147c2254e9be3fa0f779d8c17421dc349b86366567a8edfa9acd51df",
        size=112563277,
        target="speech_commands",
        expect="yes",
        source="tensorflow/datasets tensorflow_datasets/url_checksums/speech_commands.txt",
        description="Google Speech Commands v0.02 official test set only (113 MB), installed as speech_commands",
    ),
    # Zenodo publishes an MD5 per file, no SHA-256: record 1203745 lists UrbanSound8K.tar.gz with
    # md5 9aa69802...; soundata's urbansound8k loader pins the same figure. Zenodo states the size
    # only as "6.6 GB", so no byte count is pinned (the MD5 still refuses a truncated file).
    "urbansound8k": ArchiveSpec(
        name="urbansound8k",
        url="https://zenodo.org/record/1203745/files/UrbanSound8K.tar.gz",
        sha256="",
        md5="9aa69802bbf37fb986f71ec1483a196e",
        size=None,
        target="urbansound8k",
        expect="audio",
        source="Zenodo record 10.5281/zenodo.1203745 file listing (MD5); also soundata urbansound8k.py REMOTES",
        description="UrbanSound8K v1.0: 8732 slices, 10 classes, official folds fold1..fold10 (6.6 GB)",
    ),
    # Zenodo record 1188976 lists Audio_Speech_Actors_01-24.zip at 208,468,073 bytes, md5 bc696df6...
    "ravdess": ArchiveSpec(
        name="ravdess",
        url="https://zenodo.org/record/1188976/files/Audio_Speech_Actors_01-24.zip",
        sha256="",
        md5="bc696df654c87fed845eb13823edef8a",
        size=208468073,
        target="ravdess",
        expect="Actor_01",
        source="Zenodo record 10.5281/zenodo.1188976 file listing (MD5 and size)",
        description="RAVDESS audio-only speech, 24 actors x 60 files, 48 kHz (208 MB)",
    ),
    # The ESC-50 repository has no release archive; the master-branch zip is what its README links.
    # Size and SHA-256 as measured and published by a third party (a data-provenance table in a
    # public project, found through a code search); if the branch moves, the check refuses it.
    "esc50": ArchiveSpec(
        name="esc50",
        url="https://github.com/karolpiczak/ESC-50/archive/master.zip",
        sha256="805afc618aff80eff0641d51311647871fead5807da68bb18e43a27db47a79ce",
        size=645695005,
        target="esc50",
        expect="meta/esc50.csv",
        source="third-party measurement of ESC-50-master.zip (645,695,005 bytes); branch archives can change",
        description="ESC-50 (includes ESC-10 via the esc10 column): 2000 5-s clips, 5 folds (646 MB)",
    ),
}


def fetch(url: str, dest: Path, expected_size: int | None = None, progress: bool = True) -> tuple[str, str]:
    """Stream ``url`` into ``dest``; returns the SHA-256 and MD5 of what was written."""
    digest = hashlib.sha256()
    md5 = hashlib.md5(usedforsecurity=False)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, dest.open("wb") as out:
            total = expected_size or int(response.headers.get("Content-Length") or 0) or None
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )  # lazy: optional, guarded by try

            with Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                transient=True,
                disable=not progress,
            ) as bar:
                task = bar.add_task(f"download {Path(url).name}", total=total)
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    md5.update(chunk)
                    bar.advance(task, len(chunk))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise KitError(f"download of {url} failed: {getattr(exc, 'reason', exc)}") from None
    return digest.hexdigest(), md5.hexdigest()


def _check_members(archive: Path, members: list[tarfile.TarInfo], target_dir: Path) -> None:
    """Refuse the whole archive if any member is a link, a device, or would land outside."""
    for member in members:
        if member.issym() or member.islnk():
            raise KitError(f"{archive}: refusing to extract link '{member.name}' -> '{member.linkname}'")
        if not (member.isfile() or member.isdir()):
            raise KitError(f"{archive}: refusing to extract special file '{member.name}'")
        if member.name.startswith(("/", "\\")) or ".." in Path(member.name).parts:
            raise KitError(f"{archive}: refusing to extract '{member.name}': it would land outside {target_dir}")
        safe_member_path(target_dir, member.name)


def safe_extract_tar(archive: Path, target_dir: Path) -> int:
    """Extract every regular file and folder of a (possibly compressed) tar under ``target_dir``.

    All members are checked before anything is written; returns the number of files written.
    """
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            _check_members(archive, members, target_dir)
            written = 0
            for member in members:
                dest = safe_member_path(target_dir, member.name)
                if member.isdir():
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                if source is None:
                    raise KitError(f"{archive}: cannot read member '{member.name}'")
                with source, dest.open("wb") as out:
                    shutil.copyfileobj(source, out, _CHUNK)
                written += 1
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise KitError(f"{archive}: not a readable tar archive ({exc})") from None
    return written


def _check_zip_member(archive: Path, info: zipfile.ZipInfo, target_dir: Path) -> None:
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise KitError(f"{archive}: refusing to extract link '{info.filename}'")
    kind = stat.S_IFMT(mode)  # 0 when the zip records permission bits only
    if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
        raise KitError(f"{archive}: refusing to extract special file '{info.filename}'")
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in Path(name).parts:
        raise KitError(f"{archive}: refusing to extract '{info.filename}': it would land outside {target_dir}")
    safe_member_path(target_dir, name)


def safe_extract_zip_archive(archive: Path, target_dir: Path) -> int:
    """Extract a zip under ``target_dir`` after checking every member (no links, no escapes), streaming
    each file (dataset members can be large); returns the number of files written."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for info in members:
                _check_zip_member(archive, info, target_dir)
            written = 0
            for info in members:
                dest = safe_member_path(target_dir, info.filename.replace("\\", "/"))
                if info.is_dir():
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as source, dest.open("wb") as out:
                    shutil.copyfileobj(source, out, _CHUNK)
                written += 1
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise KitError(f"{archive}: not a readable zip archive ({exc})") from None
    return written


def safe_extract(archive: Path, target_dir: Path) -> int:
    """A zip or a (compressed) tar, by content rather than by URL suffix."""
    if zipfile.is_zipfile(archive):
        return safe_extract_zip_archive(archive, target_dir)
    return safe_extract_tar(archive, target_dir)


def _content_root(extracted: Path, expect: str) -> Path:
    """The unpacked dataset folder: the archive root if it holds ``expect``, else its only sub-folder
    (GitHub release archives wrap everything in ``<repo>-<tag>/``)."""
    if (extracted / expect).exists():
        return extracted
    entries = [p for p in extracted.iterdir() if not p.name.startswith("._")]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else extracted


def install_archive(
    spec: ArchiveSpec,
    data_dir: str | os.PathLike | None = None,
    *,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Download, verify and unpack ``spec`` into ``<data_dir>/<spec.target>``; returns that folder.

    An existing target is kept (returned as is) unless ``force``. On any failure nothing new is
    left in the data dir.
    """
    root = resolve_data_dir(data_dir)
    target = root / spec.target
    if target.exists() and any(target.iterdir()) and not force:
        return target
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{spec.name}.", suffix=".partial", dir=root))
    try:
        archive = work / "archive"
        sha, md5 = fetch(spec.url, archive, spec.size, progress)
        size = archive.stat().st_size
        if spec.size is not None and size != spec.size:
            raise KitError(
                f"download of {spec.url} has {size} bytes, expected {spec.size} (truncated or changed upstream); "
                "nothing was installed"
            )
        if not (spec.sha256 or spec.md5):
            raise KitError(f"{spec.name}: no pinned checksum; refusing to extract an unverified download")
        if spec.sha256 and sha != spec.sha256:
            raise KitError(f"download of {spec.url} has SHA-256 {sha}, expected {spec.sha256}; refusing to extract it")
        if spec.md5 and md5 != spec.md5:
            raise KitError(
                f"download of {spec.url} has MD5 {md5}, expected the published {spec.md5}; refusing to extract it"
            )
        extracted = work / "extracted"
        extracted.mkdir()
        safe_extract(archive, extracted)
        archive.unlink()
        content = _content_root(extracted, spec.expect)
        if not (content / spec.expect).exists():
            raise KitError(
                f"{spec.url}: the archive has no '{spec.expect}' (not the {spec.name} layout); nothing was installed"
            )
        record = {"name": spec.name, "url": spec.url, "sha256": sha, "md5": md5}
        atomic_write_text(content / MARKER, json.dumps(record, indent=1))
        old = work / "previous"
        if target.exists():
            os.replace(target, old)
        try:
            os.replace(content, target)
        except OSError:
            if old.exists():
                os.replace(old, target)  # put the previous copy back rather than lose it
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def download_dataset(
    name: str, data_dir: str | os.PathLike | None = None, *, force: bool = False, progress: bool = True
) -> Path:
    """Install a registered dataset by name (see ``REGISTRY``)."""
    spec = REGISTRY.get(canonical_name(name))
    if spec is None:
        raise KitError(f"no download known for '{name}' (choose from {', '.join(sorted(REGISTRY))})")
    return install_archive(spec, data_dir, force=force, progress=progress)
