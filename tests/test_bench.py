"""The distillation benchmark harness: one real cell, the resumable grid, the table and the plot.

The full grid takes hours (its figures live in bench/results/); this keeps the code that produces
them from rotting: a real FSDD cell runs through the same path, and the report is rebuilt from it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from bench.distill import DATASETS, QUICK_IPC, build_specs, cell_key, load_cell_data, markdown, plot, run_cell


def test_a_real_cell_and_its_report(data_dir: Path, tmp_path: Path) -> None:
    spec = {
        "key": cell_key("fsdd", "herding", 1),
        "dataset": "fsdd",
        "method": "herding",
        "ipc": 1,
        "seed": 0,
        "seeds": [0, 1],
        "max_samples": 300,
        "full_max_samples": 300,
        "time_budget_s": None,
        "params": {},
        "data_dir": str(data_dir),
    }
    cell = run_cell(spec)
    assert cell["dataset"] == "fsdd" and cell["ipc"] == 1 and len(cell["accuracies"]) == 2
    assert 0 <= cell["accuracy_mean"] <= 100 and cell["n_test"] == 300 and cell["peak_rss_mb"] > 0
    cells = {spec["key"]: cell, cell_key("fsdd", "random", 1): {**cell, "method": "random", "accuracy_mean": -1.0}}
    table = markdown(cells, {"cpu": "test", "cores": 2})
    assert "## FSDD, official split" in table
    herding_row = next(line for line in table.splitlines() if line.startswith("| herding"))
    assert f"**{cell['accuracy_mean']:.1f}" in herding_row  # the best method at that size is bold
    png = tmp_path / "r.png"
    plot(cells, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_log_mel_kws10_rows_load_log_mel_features_of_the_same_split(data_dir: Path) -> None:
    spec = {"dataset": "kws10-logmel", "data_dir": str(data_dir), "limit_per_class": 2}
    fs, loader = load_cell_data(spec)
    assert loader["feature"] == "log_mel" and fs.config.kind == "log_mel"
    assert fs.x_train.shape[1:] == (1, fs.config.n_mels, fs.x_train.shape[-1])
    mfcc, _ = load_cell_data({**spec, "dataset": "kws10"})
    assert mfcc.config.kind == "fd_mfcc" and mfcc.classes == fs.classes
    assert (mfcc.y_train == fs.y_train).all() and (mfcc.y_test == fs.y_test).all()


def test_grid_skips_finished_cells_and_quick_mode(tmp_path: Path) -> None:
    args = argparse.Namespace(
        methods="random,rfad",
        datasets="fsdd,esc10",
        quick=False,
        ipcs=None,
        no_full=False,
        force=False,
        distill_seed=0,
        seeds="0,1,2",
        max_samples=100,
        full_max_samples=100,
        time_budget=None,
        params=json.dumps({"rfad": {"n_models": 2}}),
        data_dir=str(tmp_path),
        train_batch=None,
    )
    specs = build_specs(args, {cell_key("fsdd", "random", 1): {}})
    keys = {s["key"] for s in specs}
    assert cell_key("fsdd", "random", 1) not in keys and cell_key("fsdd", "rfad", 50) in keys
    assert cell_key("esc10", "rfad", 5) in keys and cell_key("esc10", "rfad", 50) not in keys
    assert cell_key("esc10", "full", None) in keys
    assert len(specs) == 2 * 2 * 3 + 2 - 1
    assert all(s["params"] == {"rfad": {"n_models": 2}} for s in specs)
    args.quick = True
    quick = build_specs(args, {})
    assert {s["ipc"] for s in quick if s["dataset"] == "esc10"} == {QUICK_IPC["esc10"], None}
    assert set(QUICK_IPC) == set(DATASETS)


def test_large_coresets_train_in_minibatches_and_old_cells_are_marked() -> None:
    """Up to 256 clips a coreset trains in one batch; larger ones in minibatches of 64, so a 500-clip
    coreset gets 250 steps of a 16 000-sample budget instead of 63. Cells measured before are flagged."""
    from kit.training import TrainConfig

    assert [TrainConfig().effective_batch(n) for n in (10, 100, 256, 257, 500)] == [10, 100, 256, 64, 64]
    old = {
        "dataset": "kws10",
        "method": "herding",
        "ipc": 50,
        "accuracy_mean": 61.1,
        "accuracy_std": 0.3,
        "distill_s": 3.0,
        "peak_rss_mb": 500.0,
        "train_config": {"batch_size": 256},
    }
    new = {**old, "method": "random", "n_coreset": 500, "train_config": {"batch_size": None}}
    also_new = {**old, "method": "dm", "train_config": {"batch_size": 64}}  # measured with the rule applied by hand
    small = {**old, "method": "kcenter", "ipc": 10}
    # batch 256 by choice, with a budget that gives it 585 steps: not the old rule
    long_budget = {**old, "method": "rfad", "train_config": {"batch_size": 256, "max_samples": 150000}}
    table = markdown({"a": old, "b": new, "c": small, "d": also_new, "e": long_budget}, {"cpu": "test", "cores": 2})
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    assert "61.1 ± 0.3†" in rows["herding"] and "†" not in rows["random"] and "†" not in rows["kcenter"]
    assert "†" not in rows["dm"] and "†" not in rows["rfad"]
    assert "before the batch rule" in table


def test_two_commands_on_one_results_file_keep_each_others_cells(tmp_path: Path) -> None:
    """Each finished cell is merged into what is on disk now, not into what the command read at start-up."""
    from bench.distill import merge_cell

    out = tmp_path / "distill.json"
    first = merge_cell(out, "fsdd/random/1", {"accuracy_mean": 40.0}, {"cpu": "a"})
    merge_cell(out, "esc10/dm/5", {"accuracy_mean": 60.0}, {"cpu": "a"})  # the other command
    merged = merge_cell(out, "fsdd/herding/1", {"accuracy_mean": 60.0}, first["machine"])
    assert set(merged["cells"]) == {"fsdd/random/1", "esc10/dm/5", "fsdd/herding/1"}
    assert json.loads(out.read_text()) == merged


@pytest.mark.parametrize("option", ["--train-batch", "--max-samples"])
def test_a_budget_that_is_not_a_positive_number_is_a_one_line_usage_error(
    option: str, capsys: pytest.CaptureFixture
) -> None:
    from bench.distill import main

    for bad in ("0", "-5", "many"):
        with pytest.raises(SystemExit) as exit_info:
            main([option, bad, "--report-only"])
        assert exit_info.value.code == 2
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert error.startswith("python -m bench: error: argument " + option) and "Traceback" not in error


def test_the_table_states_each_columns_training_budget_and_names_mixed_ones() -> None:
    from bench.distill import budget_note

    cell = {
        "dataset": "kws10",
        "ipc": 50,
        "n_coreset": 500,
        "method": "random",
        "train_config": {"max_samples": 150000, "batch_size": 256},
    }
    assert budget_note([cell], [50]) == "Evaluation training per model: 50/class 150 000 samples at batch 256."
    older = {**cell, "method": "herding", "train_config": {"max_samples": 16000, "batch_size": None}}
    small = {**cell, "ipc": 1, "n_coreset": 10, "train_config": {"max_samples": 16000, "batch_size": None}}
    note = budget_note([cell, older, small], [1, 50])
    assert "1/class 16 000 samples at batch 10" in note
    assert "150 000 samples at batch 256 (random)" in note and "16 000 samples at batch 64 (herding)" in note


BENCH_MODULES = (
    "distill",
    "streaming",
    "latency",
    "finetune",
    "quantization",
    "tflite_runtime_compat",
    "cross_arch",
    "active_learning",
    "feature_ablation",
    "render",
    "noise_robustness",
    "continual",
    "nas_proxy",
    "firmware",
)


@pytest.mark.parametrize("name", BENCH_MODULES)
def test_every_benchmark_explains_its_options(name: str, capsys: pytest.CaptureFixture) -> None:
    """``python -m bench.<name> --help`` must work (argparse formats every help string: a stray '%' breaks it)."""
    import importlib

    module = importlib.import_module(f"bench.{name}")
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0 and "usage:" in capsys.readouterr().out


def test_render_and_noise_benchmarks_keep_one_folder_and_results_file_per_dataset() -> None:
    """kws10 runs must not resume the FSDD run folder nor overwrite FSDD's results files."""
    from bench.distill import results_stem
    from bench.render import DEFAULT_WORK, build_parser, work_folder

    fsdd = build_parser().parse_args([])
    kws = build_parser().parse_args(["--dataset", "kws10"])
    quick_kws = build_parser().parse_args(["--dataset", "kws10", "--quick"])
    assert work_folder(fsdd) == DEFAULT_WORK and results_stem("render", fsdd.dataset) == "render"
    assert (
        work_folder(kws).name == "bench_render_kws10"
        and results_stem("noise_robustness", kws.dataset) == "noise_robustness_kws10"
    )
    assert work_folder(quick_kws).name == "bench_render_kws10-quick"
    assert results_stem("render", quick_kws.dataset, quick_kws.quick) == "render_kws10_quick"
    assert results_stem("active_learning", "fsdd", True) == "active_learning_quick"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--dataset", "esc50"])


#: stored results that cannot be rebuilt from their JSON: quantization_* were dumped with sorted keys (the
#: exports' order is lost); render.json predates the resume fields its Markdown now prints
def test_a_cross_validation_table_states_the_protocol_and_its_cut_budgets() -> None:
    from bench.distill import markdown

    cell = {
        "dataset": "esc10-cv",
        "method": "dm",
        "ipc": 5,
        "accuracy_mean": 50.0,
        "accuracy_std": 4.0,
        "distill_s": 10.0,
        "peak_rss_mb": 700.0,
        "n_coreset": 50,
        "train_config": {"max_samples": 500, "batch_size": 10},
        "protocol": "5-fold cross-validation, folds [1, 2, 3, 4, 5]; mean ± std over folds of the seed means",
        "settings": {"time_budget_s": 2.0, "seeds": [0]},
    }
    table = markdown({"esc10-cv/dm/5": cell}, {"cpu": "test", "cores": 2})
    assert "## ESC-10, 5-fold cross-validation (mean ± std over folds)" in table
    assert "5-fold cross-validation, folds [1, 2, 3, 4, 5]" in table and "rfad) 2 s per fold" in table
    assert "1 training seed(s) per fold" in table and "5/class 500 samples at batch 10" in table
    single = markdown({"esc10/dm/5": {**cell, "dataset": "esc10"}}, {"cpu": "test", "cores": 2})
    assert "Cross-validation" not in single  # one split: no fold note


NOT_REBUILDABLE = {"quantization_fsdd", "quantization_speech_commands_kws10", "render"}


def test_every_stored_markdown_is_its_json_rendered_by_todays_table_code() -> None:
    """``python -m bench.remarkdown``: each module's markdown() on its stored JSON gives the committed .md
    byte for byte, so the tables' rendering (``kit.report.tables``) can change only on purpose."""
    from bench.paths import RESULTS_DIR
    from bench.remarkdown import regenerate

    stems = sorted(p.stem for p in RESULTS_DIR.glob("*.json") if p.with_suffix(".md").exists())
    checked = [s for s in stems if s not in NOT_REBUILDABLE]
    assert len(checked) >= 17 and {"distill", "streaming", "latency", "finetune", "nas_proxy"} <= set(checked)
    assert "distill_esc10_folds" in checked  # the ESC-10 5-fold grid rebuilds like the rest
    for stem in checked:
        assert regenerate(RESULTS_DIR / f"{stem}.json") == (RESULTS_DIR / f"{stem}.md").read_text(), stem


def test_recorded_bench_command_pastes_back_into_a_shell():
    """A results file's command must run as printed: JSON options need their quotes kept."""
    import shlex

    from bench.machine import command_line

    argv = ["--arch-kwargs", '{"size": "small"}', "--out", "runs/a b.json"]
    command = command_line("bench.finetune", argv)
    assert shlex.split(command) == ["python", "-m", "bench.finetune", *argv]
