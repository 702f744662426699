"""Issue 17's fuzz suite: every case of ``bench/bad_inputs.py`` (>= 100 bad inputs, generated in
temporary folders) must end in a one-line error naming the file or option (exit 2), or in its
documented warning, with no traceback, no hang, nothing created and nothing earlier changed."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from bench.bad_inputs import CASES, Env, build_env, run_case


@pytest.fixture(scope="module")
def env(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Env:
    return build_env(tmp_path_factory.mktemp("bad-inputs"), data_dir)


def test_the_catalogue_covers_every_category_with_over_100_cases() -> None:
    assert len(CASES) >= 100
    assert len({case.name for case in CASES}) == len(CASES)
    by_category = Counter(case.category for case in CASES)
    assert set(by_category) >= {"traceback", "silent", "message", "integrity", "critical", "hang"}, by_category
    assert sum(case.outcome == "warning" for case in CASES) >= 1


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input(case, env: Env, tmp_path: Path) -> None:
    outcome = run_case(case, env, tmp_path / "case")
    assert outcome.result == case.outcome, f"{outcome.result} (exit {outcome.code}): {outcome.message}"


# What must keep working: the refusals above may not catch good input -------------------------------
def test_signed_bundle_verifies_with_its_key_and_fine_tuning_keeps_it_signed(env: Env, tmp_path: Path, capsys) -> None:
    import os

    from deploy.runtime.__main__ import main as runtime_main
    from kit.cli import main as kit_main

    key = tmp_path / "key"
    key.write_bytes(b"0123456789abcdef0123456789abcdef\n")
    signed = tmp_path / "s.kit"
    with pytest.raises(SystemExit) as done:
        kit_main(["bundle", str(env.model), "--coreset", str(env.coreset), "--out", str(signed), "--sign", str(key)])
    assert done.value.code in (0, None)
    try:
        assert runtime_main(["--key", str(key), "info", str(signed)]) == 0
        out = tmp_path / "ft.kit"  # the device fine-tunes with the key configured: the result is signed too
        assert (
            runtime_main(
                [
                    "--key",
                    str(key),
                    "finetune",
                    str(signed),
                    "--add-keyword",
                    "nine",
                    *map(str, env.clips),
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
        assert runtime_main(["--key", str(key), "info", str(out)]) == 0
    finally:
        os.environ.pop("KIT_BUNDLE_KEY", None)
    assert runtime_main(["info", str(signed)]) == 0  # no key configured: signatures are not required
    capsys.readouterr()


def test_version_1_artifacts_are_still_read(env: Env, tmp_path: Path) -> None:
    """Files written before format 2 (meta_sha256 over the meta alone) load as before."""
    import hashlib
    import json

    from bench.bad_inputs import rewrite
    from deploy.runtime.artifact import read_artifact
    from kit.coreset import Coreset

    def as_v1(m: dict) -> None:
        m["format_version"] = 1
        canonical = json.dumps(m["meta"], sort_keys=True, separators=(",", ":")).encode()
        m["meta_sha256"] = hashlib.sha256(canonical).hexdigest()

    old = rewrite(env.coreset, tmp_path / "v1.kit", as_v1, resign=False)
    assert read_artifact(old).format_version == 1
    assert len(Coreset.load(old).features) == len(Coreset.load(env.coreset).features)
    relabelled = rewrite(old, tmp_path / "v1b.kit", lambda m: m.__setitem__("kind", "zzz"), resign=False)
    with pytest.raises(Exception, match="unknown artifact kind"):
        read_artifact(relabelled)


def test_non_utf8_file_names_load_like_any_other(env: Env, tmp_path: Path) -> None:
    """One rule for names that are not UTF-8: they hash by their bytes (surrogateescape, as
    os.fsencode), so splitting, feature loading and error messages all handle them."""
    import os
    import shutil

    from kit.data import load_dataset

    root = tmp_path / "ds"
    shutil.copytree(env.tones, root)
    odd = os.fsdecode(b"s9_caf\xe9.wav")
    shutil.copy(root / "c0" / "s0_0.wav", root / "c0" / odd)
    dataset = load_dataset(str(root))
    assert any(clip.path.name == odd for clip in dataset.clips)
