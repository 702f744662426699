"""Safe file I/O for every reader and writer of the kit: regular files only, atomic, locked.

Why one module: the same three mistakes kept coming back wherever a path was opened or written.
An output written with a bare ``os.replace`` replaced whatever sat at the path (a device, a FIFO,
a symlink); a reader that ``open()``-ed a FIFO blocked forever; two read-modify-write writers of
one file (``kit finetune`` twice at once) lost one update. Every command now calls
:func:`check_output_path` on each output before any work starts, every reader opens through
:func:`open_regular` / :func:`require_regular_file`, and every write goes through
:func:`atomic_write_files`, which re-checks the target, renames under a lock and fsyncs the folder.

Rules (also in docs/ARCHITECTURE.md, "Files"):

- An existing output must be a regular file. Directories, FIFOs, sockets and devices are refused.
- A symlink is written *through*: the link stays and the regular file it points to is replaced
  atomically (in the target's folder). A dangling link, or one to anything but a regular file, is
  refused.
- Missing parent folders are created, but only when the output is written (after the work): the
  check only proves that the nearest existing ancestor is a folder in which a file can be created
  (this is what refuses ``/proc/...`` and read-only places before a long run).
- Writers of one file serialise on ``fcntl.flock`` of a hidden sidecar ``.NAME.lock`` in the same
  folder (kept, never deleted: deleting a lock file races with its next user). Read-modify-write
  callers hold it from reading the input to the final rename (:func:`file_lock`).

Only the standard library is used: this module is part of the numpy-only device runtime.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

from .errors import KitError

try:  # POSIX only; the device targets (Linux, Android) all have it
    import fcntl
except ImportError:  # pragma: no cover - Windows: no cross-process lock, writes stay atomic
    fcntl = None  # type: ignore[assignment]

LOCK_SUFFIX = ".lock"


def _what(mode: int) -> str:
    """A word for a non-regular file type, for the one-line error."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISREG(mode):
        return "a regular file"
    return "an unknown kind of file"


def _noun(what: str) -> str:
    return "file" if what == "file" else f"{what} file"


def _label(path: Path, option: str | None) -> str:
    return f"{option} {path}" if option else str(path)


# Readers -----------------------------------------------------------------------------------------
def require_regular_file(path: str | os.PathLike, what: str = "file", option: str | None = None) -> Path:
    """Raise a one-line KitError unless ``path`` (symlinks followed) is an existing regular file.

    ``stat`` never blocks, so a FIFO, socket, device or directory is refused before a library
    (soundfile, onnxruntime, zipfile) would open it and hang or fail with a traceback.
    """
    if str(path) == "":  # before Path(): Path("") is "."
        raise KitError(f"{option or what}: empty path")
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise KitError(f"{_label(path, option)}: no such {_noun(what)}") from None
    except OSError as exc:
        raise KitError(f"{_label(path, option)}: cannot read this {what} ({exc.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise KitError(f"{_label(path, option)}: is {_what(info.st_mode)}, not a regular file")
    return path


def open_regular(path: str | os.PathLike, what: str = "file", option: str | None = None) -> BinaryIO:
    """Open ``path`` for binary reading if and only if it is a regular file (never blocks).

    ``O_NONBLOCK`` makes ``open`` of a FIFO return at once instead of waiting for a writer; the
    ``fstat`` of the descriptor (not of the name, so no race) then decides, and blocking mode is
    restored for the actual reads.
    """
    if str(path) == "":  # before Path(): Path("") is "."
        raise KitError(f"{option or what}: empty path")
    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise KitError(f"{_label(path, option)}: no such {_noun(what)}") from None
    except IsADirectoryError:
        raise KitError(f"{_label(path, option)}: is a directory, not a regular file") from None
    except OSError as exc:
        raise KitError(f"{_label(path, option)}: cannot open this {what} ({exc.strerror})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise KitError(f"{_label(path, option)}: is {_what(mode)}, not a regular file")
        if fcntl is not None:
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular_bytes(
    path: str | os.PathLike, what: str = "file", limit: int | None = None, option: str | None = None
) -> bytes:
    """The bytes of a regular file; with ``limit``, refuse a file larger than ``limit`` bytes."""
    with open_regular(path, what, option) as handle:
        data = handle.read() if limit is None else handle.read(limit + 1)
    if limit is not None and len(data) > limit:
        raise KitError(f"{_label(Path(path), option)}: larger than {limit} bytes; refusing to read this {what}")
    return data


# Writers -----------------------------------------------------------------------------------------
def _nearest_existing(path: Path) -> Path:
    """The closest ancestor of ``path`` that exists (symlinks followed), as given."""
    parent = path.parent
    while not parent.exists():
        if parent.is_symlink():
            raise KitError(f"{parent}: is a dangling symlink")
        if parent.parent == parent:
            break
        parent = parent.parent
    return parent


def _probe_create(folder: Path, label: str) -> None:
    """Prove that a file can be created in ``folder`` (refuses /proc, read-only mounts...)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".kit-probe-", dir=folder)
    except OSError as exc:
        raise KitError(f"{label}: cannot create files in {folder} ({exc.strerror})") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def resolve_output(path: str | os.PathLike, option: str | None = "--out") -> Path:
    """Where a write to ``path`` really lands: the path itself, or a symlink's regular-file target."""
    if str(path) == "":  # before Path(): Path("") is "."
        raise KitError(f"{option or 'output'}: empty path")
    path = Path(path)
    label = _label(path, option)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return path
    except NotADirectoryError:
        raise KitError(f"{label}: a parent of this path is not a directory") from None
    except OSError as exc:
        raise KitError(f"{label}: cannot use this output path ({exc.strerror})") from None
    if stat.S_ISLNK(info.st_mode):
        try:
            target = os.stat(path)
        except OSError:
            raise KitError(f"{label}: is a dangling symlink; refusing to write through it") from None
        if not stat.S_ISREG(target.st_mode):
            raise KitError(f"{label}: is a symlink to {_what(target.st_mode)}; refusing to replace it")
        return Path(os.path.realpath(path))
    if not stat.S_ISREG(info.st_mode):
        raise KitError(f"{label}: exists and is {_what(info.st_mode)}; refusing to replace it")
    return path


def check_output_path(
    path: str | os.PathLike, option: str | None = "--out", *, inputs: tuple[str | os.PathLike, ...] = ()
) -> Path:
    """Refuse, before any work, an output the final write would fail on or should not touch.

    Checks: not empty; an existing target is a regular file (or a symlink to one); no parent
    component is a non-directory; a file can be created in the nearest existing folder; the output
    is none of ``inputs`` (e.g. ``kit train c.kit --out c.kit``). Creates nothing; returns the path.
    """
    real = resolve_output(path, option)
    path = Path(path)
    label = _label(path, option)
    for source in inputs:
        if _same_file(real, Path(source)):
            raise KitError(f"{label}: is also an input ({source}); choose another output")
    ancestor = _nearest_existing(real)
    if not ancestor.is_dir():
        raise KitError(f"{label}: {ancestor} is not a directory")
    _probe_create(ancestor, label)
    return path


def check_output_dir(
    path: str | os.PathLike,
    option: str | None = "--out",
    files: tuple[str, ...] = (),
    *,
    inputs: tuple[str | os.PathLike, ...] = (),
) -> Path:
    """Like :func:`check_output_path` for an output *folder* and the ``files`` that will be written in it."""
    if str(path) == "":  # before Path(): Path("") is "."
        raise KitError(f"{option or 'output'}: empty path")
    path = Path(path)
    label = _label(path, option)
    for source in inputs:
        if _same_file(path, Path(source)):
            raise KitError(f"{label}: is also an input ({source}); choose another output")
    if path.exists() or path.is_symlink():
        try:
            mode = os.stat(path).st_mode
        except OSError:
            raise KitError(f"{label}: is a dangling symlink") from None
        if not stat.S_ISDIR(mode):
            raise KitError(f"{label}: exists and is {_what(mode)}, not a directory")
        _probe_create(path, label)
        for name in files:
            check_output_path(path / name, option, inputs=inputs)
        return path
    ancestor = _nearest_existing(path)
    if not ancestor.is_dir():
        raise KitError(f"{label}: {ancestor} is not a directory")
    _probe_create(ancestor, label)
    return path


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a crash after the rename keeps the new name)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on folders; the rename itself is still atomic
        pass
    finally:
        os.close(fd)


def lock_path(path: str | os.PathLike) -> Path:
    """The hidden sidecar whose ``flock`` serialises writers of ``path``."""
    path = Path(path)
    return path.with_name(f".{path.name}{LOCK_SUFFIX}")


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, option: str | None = "--out") -> Iterator[None]:
    """Hold an exclusive lock on writers of ``path`` (waits for the current holder to finish).

    Re-entrant within a process is *not* provided: take it once around the whole read-modify-write.
    """
    real = resolve_output(path, option)
    if fcntl is None:  # pragma: no cover
        yield
        return
    real.parent.mkdir(parents=True, exist_ok=True)
    sidecar = lock_path(real)
    try:
        fd = os.open(sidecar, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK, 0o644)
    except OSError as exc:
        label = _label(Path(path), option)
        raise KitError(f"{label}: cannot create its lock file {sidecar} ({exc.strerror})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise KitError(f"{sidecar}: lock file is not a regular file")
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def atomic_write_files(
    files: Mapping[str | os.PathLike, bytes],
    *,
    lock: bool = True,
    option: str | None = "--out",
    held: tuple[str | os.PathLike, ...] = (),
) -> list[Path]:
    """Write several files as one unit: every temp file first, then all renames under the locks.

    A crash before the renames leaves every old file; the renames happen back to back while the
    targets' locks are held, so two runs writing the same files never interleave (the coreset of
    one beside the ``.config.json`` of the other). ``held`` names targets whose lock the caller
    already holds (:func:`file_lock` is not re-entrant). Returns the paths as given.
    """
    plan: list[tuple[Path, Path, bytes]] = []
    for given, data in files.items():
        real = resolve_output(given, option)
        real.parent.mkdir(parents=True, exist_ok=True)
        plan.append((Path(given), real, bytes(data)))
    temps: list[str] = []
    try:
        for _, real, data in plan:
            fd, tmp = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".tmp", dir=real.parent)
            temps.append(tmp)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        held_real = {os.path.realpath(p) for p in held}
        with contextlib.ExitStack() as stack:
            if lock:
                for _, real, _ in sorted(plan, key=lambda item: str(item[1])):
                    if os.path.realpath(real) not in held_real:
                        stack.enter_context(file_lock(real, option))
            for (_, real, _), tmp in zip(plan, temps):
                resolve_output(real, option)  # re-check: something may have appeared at the path meanwhile
                os.replace(tmp, real)
            for folder in dict.fromkeys(real.parent for _, real, _ in plan):
                _fsync_dir(folder)
    except BaseException:
        for tmp in temps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise
    return [given for given, _, _ in plan]
