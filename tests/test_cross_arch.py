"""Cross-architecture matrix (``kit xarch``) and distilling *with* a chosen architecture.

Real data: FSDD, 30 clips per digit (the ``--quick`` setting). The matrix must be complete, its
plot written, every cell resumable, and a bad architecture a one-line error before any work.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from deploy.runtime.coreset import Coreset
from kit.cli import app, main
from kit.experiments import load_results

runner = CliRunner()


@pytest.fixture(scope="module")
def fsdd(data_dir: Path):
    from kit.pipeline import load_training_set

    torch.set_num_threads(1)
    return load_training_set("fsdd", data_dir, limit_per_class=30, progress=False)


def _xarch(out: Path, data_dir: Path, *extra: str):
    return runner.invoke(
        app,
        [
            "xarch",
            "fsdd",
            "--quick",
            "--archs",
            "convnet,dscnn",
            "--out",
            str(out),
            "--data-dir",
            str(data_dir),
            "--no-progress",
            *extra,
        ],
    )


def test_quick_matrix_is_complete_plotted_and_resumes(data_dir: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "xarch"
    result = _xarch(out, data_dir)
    assert result.exit_code == 0, result.output
    data = load_results(out)
    assert data["experiment"] == "cross_arch"
    matrix = data["tables"][0]
    assert matrix["columns"] == ["coreset", "train convnet", "train dscnn"]
    assert [row[0] for row in matrix["rows"]] == ["distilled with convnet", "distilled with dscnn", "random real clips"]
    cells = json.loads((out / "cells.json").read_text())
    for row in ("convnet", "dscnn", "random"):
        for arch in ("convnet", "dscnn"):
            cell = cells[f"eval/{row}/{arch}"]
            assert 0.0 <= cell["mean"] <= 1.0 and len(cell["accuracies"]) == 1
        coreset = Coreset.load(out / f"coreset_{row}.kit")
        assert coreset.features.shape == (20, 3, 13, 64)  # 2 per class, FD-MFCC
    # each row really is distilled with its own network
    convnet, dscnn = Coreset.load(out / "coreset_convnet.kit"), Coreset.load(out / "coreset_dscnn.kit")
    assert convnet.params["arch"] == "convnet" and dscnn.params["arch"] == "dscnn"
    assert dscnn.params["arch_kwargs"] == {"size": "small"}
    assert not np.allclose(convnet.features, dscnn.features)
    # the trained ConvNet beats chance on its own coreset's row (2 clips per digit)
    assert cells["eval/convnet/convnet"]["mean"] > 0.15
    png = out / data["figures"][0]["file"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {"diagonal_mean_pct", "best_transfer", "transfer_drop_pct", "gain_over_random_pct"} <= set(data["headline"])
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["settings"]["archs"] == ["convnet", "dscnn"] and config["config"]["quick"] is True

    # resume: a finished run computes nothing again ...
    import kit.experiments.cross_arch
    import kit.training

    def forbidden(*args, **kwargs):
        raise AssertionError("a finished cell was recomputed")

    # cross_arch imports distill_coreset at module top: patch the name where it is looked up
    monkeypatch.setattr(kit.experiments.cross_arch, "distill_coreset", forbidden)
    real_train = kit.training.train_eval_seeds
    monkeypatch.setattr(kit.training, "train_eval_seeds", forbidden)
    again = _xarch(out, data_dir)
    assert again.exit_code == 0, again.output
    assert load_results(out)["tables"][0]["rows"] == matrix["rows"]

    # ... and an interrupted one computes only the missing cell
    del cells["eval/random/dscnn"]
    (out / "cells.json").write_text(json.dumps(cells))
    calls = []

    def counted(*args, **kwargs):
        calls.append(kwargs.get("config"))
        return real_train(*args, **kwargs)

    monkeypatch.setattr(kit.training, "train_eval_seeds", counted)
    resumed = _xarch(out, data_dir)
    assert resumed.exit_code == 0, resumed.output
    assert len(calls) == 1
    assert "eval/random/dscnn" in json.loads((out / "cells.json").read_text())

    # other settings in the same folder are refused rather than mixed
    other = _xarch(out, data_dir, "--seed", "1")
    assert other.exit_code != 0 and "holds a different run" in str(other.exception)


def test_unknown_arch_is_a_one_line_error(data_dir: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "xarch",
                "fsdd",
                "--quick",
                "--archs",
                "convnet,alexnet",
                "--out",
                str(tmp_path / "x"),
                "--data-dir",
                str(data_dir),
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "unknown architecture 'alexnet'" in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()  # checked before any folder or data is touched
    for args, message in (
        (["--method", "random"], "does not distil with a network"),
        (["--arch-param", "vgg11.width=8"], "'vgg11' is not one of --archs"),
        (["--arch-param", "dscnn.size=huge"], "unknown dscnn size"),
        (["-p", "arch=vgg11"], "set by the experiment"),
    ):
        result = runner.invoke(
            app, ["xarch", "fsdd", "--quick", "--archs", "convnet,dscnn", "--out", str(tmp_path / "y"), *args]
        )
        assert result.exit_code != 0 and message in str(result.exception), (args, result.exception)


@pytest.mark.parametrize("method", ["dc", "dm"])
def test_distillers_match_with_another_architecture(fsdd, method: str) -> None:
    from distill import make_distiller

    fs, _ = fsdd
    common = {"steps": 2, "time_budget_s": None, "batch_size": 4, "threads": 1, "device": "cpu"}
    if method == "dc":
        common.update(outer_loop=2, inner_loop=1)
    d = make_distiller(method, 1, seed=0, arch="resnet18", arch_kwargs={"width": 4}, **common)
    d.fit(fs.x_train, fs.y_train, n_classes=10)
    start = fs.x_train[d.init_indices_]
    assert d.features_.shape == (10, 3, 13, 64) and np.isfinite(d.features_).all()
    assert not np.allclose(d.features_, start)  # the ResNet's signal moved the coreset
    assert all(np.isfinite(h["loss"]) for h in d.history_)
    # the matrix's "random real clips" row holds exactly the clips the distillers start from
    random = make_distiller("random", 1, seed=0).fit(fs.x_train, fs.y_train, n_classes=10)
    assert sorted(random.indices_.tolist()) == sorted(d.init_indices_.tolist())
    with pytest.raises(Exception, match="unknown architecture 'lenet'"):
        make_distiller(method, 1, arch="lenet", **common).fit(fs.x_train, fs.y_train, n_classes=10)


def test_mtt_experts_and_student_use_the_chosen_architecture(fsdd, tmp_path: Path) -> None:
    from distill import make_distiller
    from distill.experts import ExpertConfig

    # the default ConvNet key (and so the cached buffer folder) is unchanged by the new fields
    assert ExpertConfig().architecture() == {"arch": "convnet", "width": 32, "depth": 3, "norm": "instance"}
    fs, _ = fsdd
    mtt = make_distiller(
        "mtt",
        1,
        seed=0,
        arch="dscnn",
        arch_kwargs={"channels": 8, "blocks": 1},
        steps=2,
        time_budget_s=None,
        n_experts=1,
        buffer_epochs=2,
        max_start_epoch=0,
        expert_epochs=1,
        syn_steps=2,
        buffer=str(tmp_path / "experts"),
        threads=1,
        device="cpu",
    )
    mtt.fit(fs.x_train, fs.y_train, n_classes=10)
    assert mtt.buffer_.key["architecture"] == {"arch": "dscnn", "norm": "instance", "blocks": 1, "channels": 8}
    assert type(mtt.net_).__name__ == "DSCNN" and mtt.features_.shape == (10, 3, 13, 64)
    # a buffer of one architecture is refused for another
    other = make_distiller(
        "mtt",
        1,
        seed=0,
        arch="dscnn",
        arch_kwargs={"channels": 16, "blocks": 1},
        steps=1,
        time_budget_s=None,
        n_experts=1,
        buffer_epochs=2,
        max_start_epoch=0,
        expert_epochs=1,
        syn_steps=2,
        buffer=str(tmp_path / "experts"),
        threads=1,
        device="cpu",
    )
    with pytest.raises(Exception, match="architecture.channels"):
        other.fit(fs.x_train, fs.y_train, n_classes=10)
