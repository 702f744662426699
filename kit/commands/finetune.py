"""``kit finetune BUNDLE --add-keyword NAME CLIPS... | --personalize CLIPS...``: retrain a bundle's head.

The same code as the device sub-command (``deploy.runtime.finetune``): numpy plus the inference
runtime, no torch, so what is measured here is what a Raspberry Pi does. ``--add-keyword NAME``
takes the keyword's name and the positional arguments after BUNDLE are its clips;
``--personalize`` takes labelled clips of existing classes (label = parent folder name or a
``<class>_`` file-name prefix).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import typer

from deploy.runtime import finetune
from deploy.runtime.errors import KitError


def finetune_command(
    bundle: Path = typer.Argument(..., metavar="BUNDLE", help="Bundle file (.kit) written by kit bundle."),
    clips: list[Path] = typer.Argument(None, metavar="CLIPS...", help="WAV clips or folders of them."),
    add_keyword: str | None = typer.Option(
        None, "--add-keyword", metavar="NAME", help="Learn a new keyword NAME from CLIPS (5-10 suffice)."
    ),
    personalize: bool = typer.Option(
        False, "--personalize", help="Adapt to CLIPS of existing classes (label = folder or <class>_ prefix)."
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Write here and leave BUNDLE untouched (default: update BUNDLE in place, previous kept as BUNDLE.bak).",
    ),
    no_replay: bool = typer.Option(
        False, "--no-replay", help="Do not replay the bundle's coreset (old classes are then forgotten)."
    ),
    head: str = typer.Option(
        "softmax", "--head", help="Head to train: softmax (mlp is for measurement; the bundle stores a linear head)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed, recorded in the bundle history."),
    l2: float | None = typer.Option(
        None, "--l2", help="Pull of the old classes towards the current head (default: the runtime's)."
    ),
    l2_new: float | None = typer.Option(None, "--l2-new", help="Weight decay of a new class (default: the runtime's)."),
    new_weight: float | None = typer.Option(
        None,
        "--new-weight",
        help=(
            "Weight of a keyword learnt from your clips relative to an old class (default: 25 / its clips, at most "
            "replay per old class / 10, at least 1; lower it if old words get taken for the new one)."
        ),
    ),
    no_shift: bool = typer.Option(False, "--no-shift", help="Do not augment the clips with time shifts."),
    synthetic: int = typer.Option(
        0,
        "--synthetic",
        metavar="N",
        help=(
            "With --add-keyword: also train on N text-to-speech clips of the word in many voices (needs espeak-ng "
            "or flite; never stored in the replay memory)."
        ),
    ),
    spoken: str | None = typer.Option(
        None, "--spoken", metavar="TEXT", help="What the synthetic voices say (default: NAME, underscores as spaces)."
    ),
    remember: bool | None = typer.Option(
        None,
        "--remember/--no-remember",
        help="Add the clips to the replay memory (default: yes for a new keyword, no for personalisation).",
    ),
    model: str | None = typer.Option(None, "--model", help="Model file inside the bundle that embeds the clips."),
) -> None:
    """Add a keyword from a few clips, or personalise to a voice, keeping old classes via coreset replay."""
    if (add_keyword is None) == (not personalize):
        raise KitError("choose exactly one of --add-keyword NAME or --personalize")
    if not clips:
        raise KitError("no clips given: pass at least one WAV file (or a folder of them) after BUNDLE")

    names = [str(p) for p in clips]
    args = argparse.Namespace(
        bundle=bundle,
        add_keyword=[add_keyword, *names] if add_keyword is not None else None,
        personalize=names if personalize else None,
        out=out,
        no_replay=no_replay,
        head=head,
        seed=seed,
        l2=finetune.DEFAULT_L2 if l2 is None else l2,
        l2_new=finetune.DEFAULT_L2_NEW if l2_new is None else l2_new,
        new_weight=new_weight,
        no_shift=no_shift,
        synthetic=synthetic,
        spoken=spoken,
        remember=remember,
        model=model,
        threads=1,
    )
    print(finetune.describe(*finetune.run(args)))


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune_command)
