"""``python -m bench.seed_tables``: our cells beside the papers' rows, absent datasets as "not run here"."""

from __future__ import annotations

import json

from bench.seed_tables import main


def test_seed_tables_from_benchmark_json(tmp_path):
    results = tmp_path / "distill.json"
    results.write_text(json.dumps({"cells": {"fsdd/mtt/10": {"accuracy_mean": 97.25, "accuracy_std": 0.5}}}))
    out = tmp_path / "seed_tables.md"
    assert main(["--results", str(results), "--out", str(out)]) == 0
    text = out.read_text()
    assert "| ddfad | fsdd | mtt | 10/class | not transcribed | 97.2 ± 0.5 | paper: FD-MFCC" in text
    assert "| ddfad | ravdess | mtt | 10/class | not transcribed | not run here |" in text
    assert "arXiv:2407.10446" in text


def test_seed_tables_state_a_cross_validation_cells_own_budget(tmp_path):
    cell = {
        "accuracy_mean": 41.04,
        "accuracy_std": 6.5,
        "method": "mtt",
        "folds": [{"fold": k} for k in range(1, 6)],
        "settings": {"time_budget_s": 2.0, "seeds": [0]},
        "train_config": {"max_samples": 500, "batch_size": 10},
    }
    results = tmp_path / "distill_esc10_folds.json"
    results.write_text(json.dumps({"cells": {"esc10-cv/mtt/5": cell}}))
    out = tmp_path / "seed_tables.md"
    assert main(["--results", str(results), "--out", str(out)]) == 0
    row = next(line for line in out.read_text().splitlines() if "| esc10 | mtt | 5/class |" in line)
    assert "| none | esc10 | mtt | 5/class | not transcribed | 41.0 ± 6.5 |" in row
    assert "this cell: 5 folds, mean ± std over folds, distillation cut to 2 s per fold" in row
    assert "500 training samples per model at batch 10, 1 seed(s) per fold" in row
    assert "| none | esc10 | mtt | 1/class | not transcribed | not run here |" in out.read_text()
