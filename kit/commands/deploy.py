"""``kit deploy BUNDLE --target rpi|android|dir --to PATH|user@host:PATH``: ship a bundle to a device.

The work is in ``deploy.package`` (building the folder) and ``deploy.remote`` (ssh/rsync/scp); this
module only maps options and prints what happened and what to do next on the device.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from deploy.package import RUNTIMES, TARGETS, deploy
from deploy.runtime.errors import KitError


def deploy_command(
    bundle: Path = typer.Argument(..., metavar="BUNDLE", help="Bundle file (.kit) written by kit bundle."),
    target: str = typer.Option(
        ...,
        "--target",
        "-t",
        help="rpi (adds a systemd unit), android (adds model.tflite, frontend.json, labels.txt) or dir.",
    ),
    to: str = typer.Option(..., "--to", help="Destination folder: a local PATH or user@host:PATH (copied over ssh)."),
    runtime: str | None = typer.Option(
        None, "--runtime", "-r", help="onnx or tflite (default: the bundle's default model; android: tflite)."
    ),
    port: int | None = typer.Option(
        None, "--port", "-p", help="ssh port of the remote host (default: 22 or ~/.ssh/config)."
    ),
    identity: Path | None = typer.Option(
        None, "--identity", "-i", help="ssh private key file (default: ssh-agent and ~/.ssh keys)."
    ),
    ssh_option: list[str] = typer.Option(
        [],
        "--ssh-option",
        "-o",
        help="Extra ssh -o option, repeatable. First connection to a host: -o StrictHostKeyChecking=accept-new "
        "(and -o UserKnownHostsFile=FILE to keep its key elsewhere).",
    ),
    transfer: str = typer.Option(
        "auto", "--transfer", help="auto (rsync when both ends have it, else scp), rsync or scp."
    ),
    service_user: str | None = typer.Option(
        None, "--service-user", help="User= of the rpi systemd unit (default: the ssh user, or you)."
    ),
) -> None:
    """Build a self-contained folder (runtime, bundle, pinned requirements, run.sh) and copy it.

    Remote copies use your ssh (keys only, no password prompts) and are atomic: the folder is verified on the
    host before it replaces an earlier deployment, whose .venv is kept. A folder that is not a kit deployment is
    never overwritten.
    """
    if target not in TARGETS:
        raise KitError(f"--target: '{target}' is not one of {', '.join(TARGETS)}")
    if runtime is not None and runtime not in RUNTIMES:
        raise KitError(f"--runtime: '{runtime}' is not one of {', '.join(RUNTIMES)}")
    # A transient spinner on terminals only, so stderr of a script holds nothing but a possible error line.
    console = Console(stderr=True, highlight=False)
    with console.status("deploying…") as status:
        result = deploy(
            bundle,
            target,
            to,
            runtime=runtime,
            port=port,
            identity=identity,
            ssh_options=tuple(ssh_option),
            transfer=transfer,
            service_user=service_user,
            log=lambda message: status.update(f"{message}…"),
        )
    files = result.manifest["files"]
    print(
        f"deployed {bundle} to {result.destination} ({result.target}, {result.runtime} model {result.model}, "
        f"{len(files)} files, {result.total_bytes / 1024:.0f} KiB, via {result.method})"
    )
    where = result.manifest.get("install_dir") or result.destination
    print(f"on the device: cd {where} && ./run.sh --setup && ./run.sh --input mic")
    if result.target == "rpi":
        print(
            f"start at boot: sudo cp {where}/kit-kws.service /etc/systemd/system/ && "
            "sudo systemctl daemon-reload && sudo systemctl enable --now kit-kws"
        )
    if result.target == "android":
        print("for an app: model.tflite, frontend.json (front-end, quantisation, head) and labels.txt")


def register(app: typer.Typer) -> None:
    app.command("deploy")(deploy_command)
