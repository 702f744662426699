"""Copy a deployed folder to ``user@host:PATH`` with the system's ssh, rsync and scp.

Why subprocesses and not paramiko: the user's ``~/.ssh/config``, agent, jump hosts and known
hosts then work exactly as they do in their shell, and nothing needs installing on either end
beyond OpenSSH (rsync is used when both ends have it, because a re-deploy then sends only what
changed). Every ssh call runs with ``BatchMode=yes``, so a missing key fails at once with a clear
message instead of hanging on a password prompt.

The copy is atomic on the remote side too: the folder goes to a hidden sibling of ``PATH``, its
checksums are verified there (``sha256sum -c``), and only then is it renamed over ``PATH``. An
existing ``PATH`` is replaced only when it is itself a kit deployment (its ``manifest.json`` says
so); the previous folder's ``.venv`` (made by ``./run.sh --setup``) is carried over, so a
re-deploy does not cost a fresh ``pip install`` on a Raspberry Pi.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import secrets
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from deploy.runtime.errors import KitError

#: the ``format`` field of a deployed folder's manifest.json; what marks a folder as ours
DEPLOYMENT_FORMAT = "kit-deployment"
TRANSFERS = ("auto", "rsync", "scp")
CONNECT_TIMEOUT_S = 10
COMMAND_TIMEOUT_S = 600

# ``user@host:path`` or ``host:path`` (scp's rule: a colon before any slash means remote).
_REMOTE = re.compile(r"^(?:(?P<user>[^@/:\s]+)@)?(?P<host>\[[^\]]+\]|[^@/:\s]+):(?P<path>.*)$")


@dataclass(frozen=True)
class RemoteSpec:
    """Where to copy to and how to reach it; ``path`` may be relative to the remote home."""

    host: str
    path: str
    user: str | None = None
    port: int | None = None
    identity: Path | None = None
    ssh_options: tuple[str, ...] = field(default_factory=tuple)
    control_path: str | None = None  # set by ssh_session: one connection shared by every step

    @property
    def login(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    @property
    def copy_login(self) -> str:
        """The login as scp and rsync want it (an IPv6 address in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}" if self.user else host

    def display(self, path: str | None = None) -> str:
        return f"{self.login}:{self.path if path is None else path}"


def parse_destination(to: str) -> tuple[str | None, str | None, str]:
    """Split ``--to`` into (user, host, path); host is None for a local path.

    Like scp: ``host:path`` is remote when the colon comes before any slash, so a local folder
    whose name holds a colon must be written ``./name:x``.
    """
    match = _REMOTE.match(to)
    if not match:
        head = to.split("/", 1)[0]
        if "@" in head or ":" in head:  # "user@host" without ":PATH", "@:": almost surely a mistyped remote
            raise KitError(
                f"--to {to}: neither user@host:PATH nor a plain local path; for a local folder whose "
                f"name holds '@' or ':' write ./{to}"
            )
        return None, None, to
    host = match.group("host").strip("[]")
    path = match.group("path")
    if not path:
        raise KitError(f"--to {to}: give a folder after the colon (user@host:PATH)")
    return match.group("user"), host, path


def _ssh_binary(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise KitError(
            f"'{name}' is not installed on this machine; install OpenSSH client tools (apt-get install openssh-client)"
        )
    return found


def ssh_options(spec: RemoteSpec) -> list[str]:
    """Options shared by ssh, scp and rsync's ssh: port, key, batch mode, user ``-o`` options."""
    opts = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}", "-o", "LogLevel=ERROR"]
    if spec.identity is not None:
        opts += ["-i", str(spec.identity), "-o", "IdentitiesOnly=yes"]
    for option in spec.ssh_options:
        opts += ["-o", option]
    if spec.control_path is not None:
        opts += ["-o", "ControlMaster=auto", "-o", f"ControlPath={spec.control_path}", "-o", "ControlPersist=120"]
    return opts


def ssh_command(spec: RemoteSpec) -> list[str]:
    command = [_ssh_binary("ssh"), *ssh_options(spec)]
    if spec.port is not None:
        command += ["-p", str(spec.port)]
    return command


def explain_ssh_failure(spec: RemoteSpec, stderr: str) -> str:
    """One line saying why ssh failed, from its stderr (OpenSSH's messages are stable)."""
    text = " ".join(stderr.split())
    where = f"{spec.login}" + (f" port {spec.port}" if spec.port is not None else "")
    lowered = text.lower()
    if "permission denied" in lowered or "too many authentication failures" in lowered:
        key = (
            f" with key {spec.identity}" if spec.identity else " (no --identity given; ssh-agent and ~/.ssh keys tried)"
        )
        return f"{where}: authentication failed{key}; password logins are not supported, install a key (ssh-copy-id)"
    if "host key verification failed" in lowered or "remote host identification has changed" in lowered:
        return (
            f"{where}: host key not trusted (first connection or key changed); check it, or pass "
            "--ssh-option StrictHostKeyChecking=accept-new for a first connection"
        )
    unreachable = (
        "connection refused",
        "no route to host",
        "could not resolve hostname",
        "timed out",
        "network is unreachable",
        "connection closed",
        "connection reset",
        "name or service not known",
    )
    if any(marker in lowered for marker in unreachable):
        reason = text.split(": ")[-1] if ": " in text else text
        return f"{where}: host unreachable ({reason[:120]})"
    return f"{where}: ssh failed ({text[:200] or 'no message'})"


def _ssh(
    spec: RemoteSpec, script: str, *, stdin: str | None = None, timeout: float = COMMAND_TIMEOUT_S
) -> subprocess.CompletedProcess:
    """Run a POSIX ``sh`` script on the remote host; ssh's own failures become one-line KitErrors."""
    command = [*ssh_command(spec), spec.login, "sh -c " + shlex.quote(script)]
    try:
        result = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise KitError(f"{spec.login}: ssh command timed out after {timeout:.0f} s") from None
    if result.returncode == 255:
        raise KitError(explain_ssh_failure(spec, result.stderr))
    return result


def run_ssh(spec: RemoteSpec, script: str, *, stdin: str | None = None, timeout: float = COMMAND_TIMEOUT_S) -> str:
    """Run a POSIX ``sh`` script on the remote host; its stdout, or a one-line KitError."""
    result = _ssh(spec, script, stdin=stdin, timeout=timeout)
    if result.returncode != 0:
        message = " ".join(result.stderr.split())[:200] or f"exit status {result.returncode}"
        raise KitError(f"{spec.display()}: remote command failed ({message})")
    return result.stdout


@contextlib.contextmanager
def ssh_session(spec: RemoteSpec) -> Iterator[RemoteSpec]:
    """``spec`` with ssh connection sharing: one handshake (and one key prompt) for every step.

    A deploy makes several round trips (probe, copy, verify, rename); over Wi-Fi to a Pi each
    new handshake costs about a second. The master connection is closed on exit.
    """
    folder = tempfile.mkdtemp(prefix="kit-ssh-")
    shared = dataclasses.replace(spec, control_path=f"{folder}/control")
    try:
        yield shared
    finally:
        if Path(shared.control_path).exists():
            subprocess.run([*ssh_command(shared), "-O", "exit", spec.login], capture_output=True, timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True)
class RemoteState:
    """What a first ssh round trip learns: the absolute destination, rsync, the folder's state."""

    path: str  # absolute
    user: str  # the login's user name on the remote host
    has_rsync: bool
    existing: str  # "none", "empty", "kit" or "foreign"


def probe(spec: RemoteSpec) -> RemoteState:
    """One ssh call: log in, resolve ``path`` against $HOME, look at what is there, make its parent."""
    path = spec.path
    if path == "~" or path.startswith("~/"):
        path = path[2:] or "."
    quoted = shlex.quote(path)
    script = (
        'cd "$HOME" 2>/dev/null || cd /; id -un; '
        f'p={quoted}; case $p in /*) ;; *) p="$(pwd)/$p" ;; esac; echo "$p"; '
        'mkdir -p "$(dirname "$p")"; '
        "if command -v rsync >/dev/null 2>&1; then echo rsync; else echo no-rsync; fi; "
        'if [ ! -e "$p" ]; then echo none; '
        'elif [ -d "$p" ] && [ -z "$(ls -A "$p")" ]; then echo empty; '
        f'elif [ -f "$p/manifest.json" ] && grep -q \'"{DEPLOYMENT_FORMAT}"\' "$p/manifest.json"; then echo kit; '
        "else echo foreign; fi"
    )
    lines = run_ssh(spec, script).strip().splitlines()
    if len(lines) < 4 or lines[-1] not in ("none", "empty", "kit", "foreign"):
        raise KitError(f"{spec.display()}: unexpected answer from the remote shell ({' | '.join(lines)[:120]})")
    user, absolute, rsync, existing = lines[-4:]
    return RemoteState(path=str(PurePosixPath(absolute)), user=user, has_rsync=rsync == "rsync", existing=existing)


def _checksum_lines(files: dict[str, dict]) -> str:
    return "".join(f"{info['sha256']}  {name}\n" for name, info in sorted(files.items()))


def copy_folder(
    local: str | Path,
    spec: RemoteSpec,
    files: dict[str, dict],
    *,
    transfer: str = "auto",
    state: RemoteState | None = None,
) -> tuple[str, str]:
    """Copy ``local`` to the remote destination atomically; returns (absolute remote path, method).

    ``files`` maps relative paths to ``{"sha256": ...}`` (the deployed manifest's entries), used
    to verify the copy on the remote side before it replaces anything.
    """
    local = Path(local)
    if transfer not in TRANSFERS:
        raise KitError(f"--transfer: '{transfer}' is not one of {', '.join(TRANSFERS)}")
    state = state or probe(spec)
    if state.existing == "foreign":
        raise KitError(
            f"{spec.display(state.path)}: exists and is not a kit deployment; refusing to overwrite it "
            "(choose another --to)"
        )
    local_rsync = shutil.which("rsync") is not None
    if transfer == "rsync" and not local_rsync:
        raise KitError("--transfer rsync: rsync is missing on this machine (apt-get install rsync)")
    if transfer == "rsync" and not state.has_rsync:
        raise KitError(f"{spec.login}: rsync is missing on the remote host (install it there, or use --transfer scp)")
    method = "rsync" if transfer == "rsync" or (transfer == "auto" and local_rsync and state.has_rsync) else "scp"

    dest = PurePosixPath(state.path)
    staging = str(dest.parent / f".{dest.name}.deploy-{secrets.token_hex(4)}")
    previous = str(dest.parent / f".{dest.name}.old-{secrets.token_hex(4)}")
    try:
        if method == "rsync":
            _rsync(local, spec, staging, link_dest=str(dest) if state.existing == "kit" else None)
        else:
            _scp(local, spec, staging)
        _verify_and_swap(spec, staging, str(dest), previous, files)
    except BaseException:
        try:
            run_ssh(spec, f"rm -rf {shlex.quote(staging)}", timeout=60)
        except KitError:
            pass
        raise
    return str(dest), method


def _transfer_error(spec: RemoteSpec, tool: str, result: subprocess.CompletedProcess) -> KitError:
    text = " ".join((result.stderr or "").split())
    lowered = text.lower()
    if tool == "rsync" and ("rsync: command not found" in lowered or "rsync: not found" in lowered):
        return KitError(f"{spec.login}: rsync is missing on the remote host (install it there, or use --transfer scp)")
    if result.returncode == 255 or any(
        m in lowered for m in ("permission denied (publickey", "connection refused", "host key")
    ):
        return KitError(explain_ssh_failure(spec, text))
    return KitError(f"{spec.login}: {tool} failed with status {result.returncode} ({text[:200] or 'no message'})")


def _rsync(local: Path, spec: RemoteSpec, staging: str, link_dest: str | None) -> None:
    """rsync the folder into ``staging``; unchanged files hard-link to the current deployment."""
    remote_shell = shlex.join(ssh_command(spec))
    command = [_ssh_binary("rsync"), "-a", "--delete", "-e", remote_shell]
    if link_dest:
        command.append(f"--link-dest={link_dest}")
    command += [f"{local}/", f"{spec.copy_login}:{staging}/"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    if result.returncode != 0:
        raise _transfer_error(spec, "rsync", result)


def _scp(local: Path, spec: RemoteSpec, staging: str) -> None:
    """scp -r into a not-yet-existing ``staging`` folder (scp then names it after the target)."""
    command = [_ssh_binary("scp"), "-r", "-p", "-q", *ssh_options(spec)]
    if spec.port is not None:
        command += ["-P", str(spec.port)]
    command += [str(local), f"{spec.copy_login}:{staging}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    if result.returncode != 0:
        raise _transfer_error(spec, "scp", result)


def _verify_and_swap(spec: RemoteSpec, staging: str, dest: str, previous: str, files: dict[str, dict]) -> None:
    """On the host: ``sha256sum -c`` every file (coreutils and busybox have it), then rename the
    staging folder over ``dest``, moving the old folder's ``.venv`` into the new one first."""
    s, d, p = (shlex.quote(v) for v in (staging, dest, previous))
    script = (
        f"cd {s} && sha256sum -c - || exit 3; cd /; "
        f"if [ -e {d} ] && ! grep -q '\"{DEPLOYMENT_FORMAT}\"' {d}/manifest.json 2>/dev/null "
        f"&& [ -n \"$(ls -A {d})\" ]; then echo 'destination is not a kit deployment' >&2; exit 4; fi; "
        f"if [ -d {d}/.venv ] && [ ! -e {s}/.venv ]; then mv {d}/.venv {s}/.venv; fi; "
        f"if [ -e {d} ]; then mv {d} {p}; fi; "
        f"mv {s} {d} && rm -rf {p}"
    )
    result = _ssh(spec, script, stdin=_checksum_lines(files))
    if result.returncode == 3:
        failed = [line.rsplit(":", 1)[0] for line in result.stdout.splitlines() if "FAILED" in line]
        detail = ", ".join(failed[:5]) or " ".join(result.stderr.split())[:160]
        raise KitError(f"{spec.display(staging)}: the copied folder fails its checksums ({detail})")
    if result.returncode == 4:
        raise KitError(
            f"{spec.display(dest)}: exists and is not a kit deployment; refusing to overwrite it (choose another --to)"
        )
    if result.returncode != 0:
        raise KitError(
            f"{spec.display(dest)}: could not move the new folder into place ({' '.join(result.stderr.split())[:200]})"
        )
