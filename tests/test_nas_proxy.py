"""NAS proxy: the ConvNet search space, the rank statistics, and ``kit nas --quick`` on real FSDD."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from deploy.runtime.errors import KitError
from kit.cli import app, main
from kit.experiments.nas_proxy import TRUTH, spearman_rho, top_k_overlap
from kit.models import build_model
from kit.models.convnet_space import search_space, variant_name

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
SHAPE = (3, 13, 64)


def test_spearman_matches_a_hand_computed_case_with_ties() -> None:
    # ranks of a = [1, 2.5, 2.5, 4] (tie averaged), of b = [1, 3, 2, 4]; centred: [-1.5, 0, 0, 1.5] and
    # [-1.5, .5, -.5, 1.5]; rho = 4.5 / sqrt(4.5 * 5) = 3 / sqrt(10)
    assert spearman_rho([1, 2, 2, 4], [10, 30, 20, 40]) == pytest.approx(3 / math.sqrt(10), abs=1e-12)
    assert spearman_rho([0.1, 0.5, 0.3], [3, 1, 2]) == pytest.approx(-1.0)
    assert spearman_rho([0.9, 0.8, 0.7, 0.6], [0.1, 0.2, 0.3, 0.4]) == pytest.approx(-1.0)
    assert math.isnan(spearman_rho([0.5, 0.5, 0.5], [1, 2, 3]))  # a constant proxy ranks nothing
    assert math.isnan(spearman_rho([1, 2], [1, 2]))
    with pytest.raises(ValueError):
        spearman_rho([1, 2, 3], [1, 2])


def test_top_k_overlap() -> None:
    truth = [0.9, 0.8, 0.7, 0.6, 0.5]
    assert top_k_overlap([0.1, 0.2, 0.3, 0.4, 0.5], truth, 2) == 0.0
    assert top_k_overlap([0.9, 0.1, 0.8, 0.2, 0.3], truth, 2) == 0.5  # picks variants 0 and 2; truth 0 and 1
    assert top_k_overlap(truth, truth, 5) == 1.0
    assert top_k_overlap([1, 1, 1, 0, 0], truth, 2) == 1.0  # ties broken by grid order: variants 0 and 1


def test_grid_has_48_plus_distinct_variants_that_all_build_and_run() -> None:
    full, medium = search_space("full"), search_space("medium")
    assert len({variant_name(v) for v in full}) == len(full) == 72
    assert len({variant_name(v) for v in medium}) == len(medium) == 48
    for axis in ("depth", "width", "norm", "pooling", "activation"):
        assert len({v[axis] for v in full}) >= 2, axis
    x = torch.randn(2, *SHAPE)
    outputs = set()
    everything = {variant_name(v): v for v in full + search_space("quick")}.values()
    for variant in everything:
        torch.manual_seed(0)
        model = build_model("convnet-nas", SHAPE, 10, **variant).eval()
        with torch.no_grad():
            logits, embedding = model.forward_with_embedding(x)
        assert logits.shape == (2, 10) and embedding.shape == (2, model.embedding_dim)
        assert torch.isfinite(logits).all()
        assert model.spec["arch_kwargs"] == variant
        outputs.add(tuple(logits.flatten().tolist()))
    assert len(outputs) == len(everything)  # the variants really are different networks


def test_avg_relu_variant_is_the_papers_convnet() -> None:
    kwargs = {"width": 16, "depth": 3, "norm": "instance"}
    reference = build_model("convnet", SHAPE, 10, **kwargs).eval()
    variant = build_model("convnet-nas", SHAPE, 10, **kwargs, pooling="avg", activation="relu").eval()
    variant.load_state_dict(reference.state_dict())
    x = torch.randn(3, *SHAPE)
    torch.testing.assert_close(variant(x), reference(x))
    maxpool = build_model("convnet-nas", SHAPE, 10, **kwargs, pooling="max", activation="relu").eval()
    maxpool.load_state_dict(reference.state_dict())
    assert not torch.allclose(maxpool(x), reference(x))


def test_a_nas_variant_survives_the_model_artifact(tmp_path: Path) -> None:
    from deploy.runtime.coreset import Normalizer
    from deploy.runtime.features import FeatureConfig
    from kit.models import load_model, save_model

    torch.manual_seed(0)
    variant = {"depth": 3, "width": 8, "norm": "batch", "pooling": "max", "activation": "gelu"}
    model = build_model("convnet-nas", SHAPE, 4, **variant)
    x = torch.randn(6, *SHAPE)
    model.train()
    model(x).logsumexp(1).mean().backward()  # move BatchNorm statistics off their defaults
    model.eval()
    meta = {
        "classes": ["a", "b", "c", "d"],
        "feature_config": FeatureConfig(sample_rate=8000),
        "normalizer": Normalizer(np.zeros((3, 13), np.float32), np.ones((3, 13), np.float32)),
    }
    loaded, saved_meta = load_model(save_model(tmp_path / "m.kit", model, meta))
    assert saved_meta["arch"] == "convnet-nas" and saved_meta["arch_kwargs"] == variant
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_bad_variant_arguments_are_user_errors() -> None:
    with pytest.raises(KitError, match="pooling"):
        build_model("convnet-nas", SHAPE, 10, pooling="median")
    with pytest.raises(KitError, match="activation"):
        build_model("convnet-nas", SHAPE, 10, activation="softplus")
    with pytest.raises(ValueError, match="grid"):
        search_space("huge")


def _nas(out: Path, data_dir: Path, *extra: str):
    return runner.invoke(
        app, ["nas", "fsdd", "--quick", "--out", str(out), "--data-dir", str(data_dir), "--no-progress", *extra]
    )


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """One real ``kit nas fsdd --quick`` run folder, shared by the tests below."""
    out = tmp_path_factory.mktemp("nas") / "run"
    result = _nas(out, data_dir)
    assert result.exit_code == 0, result.output
    return out


def test_quick_nas_on_real_fsdd_writes_table_and_scatter_and_resumes(quick_run: Path, data_dir: Path) -> None:
    out = quick_run
    results = json.loads((out / "results.json").read_text())
    agreement, per_variant = results["tables"]
    proxies = [row[0] for row in agreement["rows"]]
    assert proxies == ["distilled (dm)", "random", "herding", "early-stopped full data", TRUTH]
    rho_column = agreement["columns"].index("Spearman rho")
    for row in agreement["rows"]:
        rho = float(row[rho_column])
        assert -1.0 <= rho <= 1.0
    variants = [variant_name(v) for v in search_space("quick")]
    assert sorted(row[0] for row in per_variant["rows"]) == sorted(variants)
    truth = [row[-1] for row in per_variant["rows"]]
    assert truth == sorted(truth, reverse=True) and max(truth) > 20.0  # sorted best first; the models learn
    figure = out / results["figures"][0]["file"]
    assert figure.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert results["headline"]["variants"] == len(variants)
    assert (out / "distilled-dm.kit").exists() and not (out / "distilled-dm.kit.ckpt").exists()
    config = json.loads((out / "config.json").read_text())
    assert config["experiment"] == "nas_proxy" and config["config"]["settings"]["seed"] == 0

    # resume: forget one cell; a re-run trains only that one and reproduces it exactly (same seed)
    cells = json.loads((out / "cells.json").read_text())
    assert len(cells) == 1 + 5 * len(variants)
    key = f"random/{variants[1]}"
    dropped = cells.pop(key)
    (out / "cells.json").write_text(json.dumps(cells))
    result = _nas(out, data_dir)
    assert result.exit_code == 0, result.output
    again = json.loads((out / "cells.json").read_text())
    assert again[key]["accuracy"] == pytest.approx(dropped["accuracy"])
    assert {k: v for k, v in again.items() if k != key} == cells

    # other settings in the same folder are refused, one line
    result = _nas(out, data_dir, "--ipc", "3")
    assert isinstance(result.exception, KitError) and "different run" in str(result.exception)


def test_nas_option_errors_exit_2_with_one_line(tmp_path: Path, data_dir: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "nas",
                "fsdd",
                "--quick",
                "--out",
                str(tmp_path / "n"),
                "--data-dir",
                str(data_dir),
                "--coreset",
                f"distill={tmp_path / 'missing.kit'}",
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "missing.kit" in err and "Traceback" not in err
    result = _nas(tmp_path / "m", data_dir, "--coreset", "nonsense")
    assert isinstance(result.exception, KitError) and "NAME=FILE" in str(result.exception)
    result = _nas(tmp_path / "r", data_dir, "--coreset", f"random={REPO / 'README.md'}")
    assert isinstance(result.exception, KitError) and "built-in proxy" in str(result.exception)
    result = _nas(tmp_path / "g", data_dir, "--grid", "enormous")
    assert isinstance(result.exception, KitError) and "--grid" in str(result.exception)


def test_bench_summarises_the_same_run_folder(quick_run: Path, data_dir: Path, tmp_path: Path) -> None:
    """``bench.nas_proxy --quick`` opens the folder ``kit nas --quick`` wrote (same config): no cell is retrained,
    and it writes the JSON, Markdown and PNG results files."""
    import shutil

    from bench.nas_proxy import main as bench_main

    run_dir = tmp_path / "run"
    shutil.copytree(quick_run, run_dir)
    before = json.loads((run_dir / "cells.json").read_text())
    out = tmp_path / "results" / "nas_proxy.json"
    assert (
        bench_main(
            ["--quick", "--data-dir", str(data_dir), "--run-dir", str(run_dir), "--out", str(out), "--no-progress"]
        )
        == 0
    )
    after = json.loads((run_dir / "cells.json").read_text())
    assert {k: v for k, v in after.items() if k != "bench_start"} == before
    record = json.loads(out.read_text())
    results = json.loads((run_dir / "results.json").read_text())
    assert record["settings"]["grid"] == "quick" and record["machine"]["cores"] >= 1
    rows = {row[0]: row for row in results["tables"][0]["rows"]}
    for proxy, agreement in record["agreement"].items():
        shown = rows[proxy][results["tables"][0]["columns"].index("Spearman rho")]
        assert shown == f"{agreement['spearman']:.3f}"
    markdown = out.with_suffix(".md").read_text()
    assert markdown.count("\n| ") == len(record["agreement"]) + 2  # header + one row per proxy + ground truth
    assert out.with_suffix(".png").read_bytes() == (run_dir / "nas_scatter.png").read_bytes()
