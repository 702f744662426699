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
