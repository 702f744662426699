"""The streaming benchmark's own parts: stream construction, scoring, and a tiny real run end to end.

The figures of ``bench/streaming.py`` are only as good as its ground truth and its counting, so
both are checked on crafted examples with exact answers, and the whole path (held-out real
recordings -> stream -> bundle -> ``detect_stream`` -> threshold sweep) runs on a few seconds of
audio so the benchmark cannot rot.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.stream_builder import Event, Material, Sound, StreamSpec, build_stream, load_material
from bench.streaming import (
    FeatureMemo,
    floor_row,
    operating_point,
    pooled_row,
    score_detections,
    stream_scores,
    sweep_thresholds,
)
from deploy.runtime.recognizer import Detection

RATE = 8000


@pytest.fixture(scope="module", autouse=True)
def _one_blas_thread():
    """The front-end's small matrix products on one BLAS thread (pytest loads numpy before the
    benchmark can set OMP_NUM_THREADS; spinning BLAS threads made a busy 2-core machine 10x slower)."""
    from deploy.runtime.threads import one_blas_thread

    with one_blas_thread():
        yield


def _event(kind: str, label: str, start: float, end: float) -> Event:
    return Event(kind, label, start, end, f"{label}.wav", 0.0, 20.0)


# Scoring on crafted detections -------------------------------------------------------------------
def test_score_detections_counts_every_case_exactly() -> None:
    events = [
        _event("keyword", "yes", 10.0, 11.0),
        _event("keyword", "no", 20.0, 21.0),
        _event("keyword", "up", 30.0, 31.0),
        _event("fsdd", "digit 3", 40.0, 40.5),
        _event("keyword", "off", 60.0, 61.0),
    ]
    detections = [
        Detection("yes", 0.9, 11.3),  # correct
        Detection("yes", 0.9, 11.8),  # second event for the same word: false accept
        Detection("go", 0.8, 20.6),  # wrong word: false accept, and "no" is missed
        Detection("up", 0.9, 32.5),  # later than end + 1 s: false accept (noise), "up" missed
        Detection("left", 0.7, 40.2),  # on a digit: false accept
        Detection("stop", 0.7, 50.0),  # on background noise: false accept
        Detection("off", 0.9, 62.0),  # exactly end + tolerance: still correct
    ]
    score = score_detections(list(reversed(detections)), events, duration_s=1800.0, tolerance_s=1.0)
    assert (score.keywords, score.correct, score.false_rejects, score.false_accepts) == (4, 2, 2, 5)
    assert score.fa_by_kind == {"keyword (same word, repeat)": 1, "keyword (other word)": 1, "noise": 2, "fsdd": 1}
    assert score.missed == [1, 2]  # "no" and "up"
    assert (score.substitutions, score.substituted) == (1, 1)  # "go" fired during "no"
    assert score.frr == pytest.approx(0.5)
    assert score.fa_per_hour == pytest.approx(10.0)

    early = score_detections([Detection("yes", 0.9, 9.99)], events, 3600.0)  # before the word started
    assert (early.correct, early.false_accepts) == (0, 1)


def test_pooled_row_and_operating_point() -> None:
    events = [_event("keyword", "yes", 1.0, 2.0), _event("keyword", "no", 5.0, 6.0)]
    a = score_detections([Detection("yes", 0.9, 2.2)], events, 1800.0)
    b = score_detections([Detection("no", 0.9, 100.0)], [], 1800.0)
    row = pooled_row(0.7, {"keywords": a, "negatives": b})
    assert row["hours"] == pytest.approx(1.0)
    assert (row["false_accepts"], row["fa_per_hour"], row["keywords"], row["false_rejects"], row["frr"]) == (
        1,
        1.0,
        2,
        1,
        0.5,
    )
    assert row["per_stream"]["negatives"]["fa_per_hour"] == pytest.approx(2.0)

    rows = [
        {"threshold": 0.5, "fa_per_hour": 6.0, "frr": 0.05},
        {"threshold": 0.7, "fa_per_hour": 2.0, "frr": 0.12},
        {"threshold": 0.8, "fa_per_hour": 1.0, "frr": 0.12},
        {"threshold": 0.9, "fa_per_hour": 0.0, "frr": 0.30},
    ]
    assert operating_point(rows)["threshold"] == 0.8  # equal FRR: the quieter one
    assert operating_point(rows, max_fa_per_hour=0.5)["threshold"] == 0.9
    assert operating_point(rows[:1]) is None
    for row_, quiet in zip(rows, (3.0, 0.2, 0.5, 0.0)):
        row_["fa_per_hour_without_substitutions"] = quiet
    assert (
        operating_point(rows, fa_key="fa_per_hour_without_substitutions")["threshold"] == 0.7
    )  # lowest FRR, then quieter


def test_pooled_row_counts_confusions_both_ways() -> None:
    events = [
        _event("keyword", "yes", 10.0, 11.0),
        _event("keyword", "no", 20.0, 21.0),
        _event("unknown", "bed", 30.0, 31.0),
    ]
    detections = [Detection("go", 0.8, 20.5), Detection("up", 0.8, 30.5)]  # a confusion, a trigger on a negative
    row = pooled_row(0.5, {"keywords": score_detections(detections, events, 3600.0)})
    assert (row["false_accepts"], row["frr"], row["fa_per_hour"]) == (2, 1.0, 2.0)
    assert row["substituted_rate"] == 0.5 and row["fa_per_hour_without_substitutions"] == 1.0


def test_floor_is_the_fewest_misses_at_any_threshold() -> None:
    rows = [
        {"threshold": 0.3, "fa_per_hour": 150.0, "frr": 0.16, "substituted_rate": 0.12},
        {"threshold": 0.5, "fa_per_hour": 90.0, "frr": 0.14, "substituted_rate": 0.10},
        {"threshold": 0.9, "fa_per_hour": 2.0, "frr": 0.55, "substituted_rate": 0.01},
    ]
    assert floor_row({"name": "m", "rows": rows}) == ["m", "14.0 %", "0.5", "90.0", "10.0 %"]
    assert floor_row({"name": "m", "rows": [{**rows[0], "frr": None}]}) == ["m", "–", "–", "–", "–"]


# Stream construction on generated sounds ---------------------------------------------------------
def _tone(freq: float, seconds: float, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="module")
def tone_material() -> Material:
    rng = np.random.default_rng(0)
    keywords = [Sound(_tone(300 + 50 * i, 1.0), "keyword", f"kw{i}", f"kw{i}.wav") for i in range(4)]
    negatives = [Sound(_tone(2000, 0.5), "fsdd", "digit 1", "d1.wav"), Sound(_tone(2500, 2.0), "esc", "rain", "r.ogg")]
    noise = [Sound((0.1 * rng.standard_normal(RATE * 6)).astype(np.float32), "noise", "white", "white.wav")]
    return Material(RATE, keywords, negatives, noise)


def test_build_stream_places_events_at_their_recorded_times(tone_material: Material) -> None:
    spec = StreamSpec(
        minutes=1.0,
        negative_rate=0.3,
        gap_s=(1.2, 2.0),
        keyword_gain_db=(-6.0, 0.0),
        noise_dbfs=(-40.0, -30.0),
        noise_segment_s=(1.0, 3.0),
    )
    stream = build_stream(tone_material, spec, seed=3, keep_noise_bed=True)
    assert stream.audio.dtype == np.float32 and len(stream.audio) == 60 * RATE
    assert stream.clipped_samples == 0
    events = stream.events
    kinds = {e.kind for e in events}
    assert kinds == {"keyword", "fsdd", "esc"}
    starts = np.array([e.start_s for e in events])
    ends = np.array([e.end_s for e in events])
    gaps = starts[1:] - ends[:-1]
    assert gaps.min() >= 1.2 - 1e-9 and gaps.max() <= 2.0 + 1e-9 and ends[-1] <= 60.0
    sources = {s.source: s for s in tone_material.keywords + tone_material.negatives}
    placed = stream.audio - stream.noise_bed
    covered = np.zeros(len(placed), dtype=bool)
    for event in events:
        a, b = int(round(event.start_s * RATE)), int(round(event.end_s * RATE))
        expected = sources[event.source].audio * 10 ** (event.gain_db / 20)
        np.testing.assert_allclose(placed[a:b], expected, atol=2e-4)  # gain is recorded rounded to 1e-3 dB
        covered[a:b] = True
    assert np.abs(placed[~covered]).max() < 1e-6  # nothing else was pasted
    counts = np.bincount([int(e.label[2:]) for e in stream.keywords], minlength=4)
    assert counts.max() - counts.min() <= 1  # every keyword is used once before any is used twice
    noise_dbfs = 20 * np.log10(np.sqrt(np.mean(stream.noise_bed[: RATE // 2] ** 2)))
    assert -41.0 < noise_dbfs < -29.0
    for event in stream.keywords:
        assert -6.0 <= event.gain_db <= 0.0

    again = build_stream(tone_material, spec, seed=3)
    other = build_stream(tone_material, spec, seed=4)
    assert np.array_equal(again.audio, stream.audio) and again.events == stream.events
    assert not np.array_equal(other.audio, stream.audio)

    quiet = build_stream(tone_material, StreamSpec(minutes=0.5, with_keywords=False, negative_rate=0.5), seed=1)
    assert quiet.keywords == [] and len(quiet.events) > 0 and quiet.duration_s == pytest.approx(30.0)


def test_stream_like_training_copy_shifts_scales_and_adds_noise() -> None:
    from bench.stream_builder import stream_like_copy

    rng = np.random.default_rng(5)
    ramp = np.linspace(0.01, 0.5, RATE).astype(np.float32)  # every sample distinct and non-zero
    silent_noise = [np.zeros(2 * RATE, dtype=np.float32)]
    for _ in range(20):
        out = stream_like_copy(ramp, RATE, silent_noise, StreamSpec(), rng, max_shift_s=0.25)
        assert out.shape == (RATE,)
        nonzero = np.flatnonzero(out)
        if nonzero[0] > 0:  # shifted right: zeros first, then the start of the clip
            shift = nonzero[0]
            ratio = out[shift:] / ramp[: RATE - shift]
        else:  # shifted left (or not at all): the end of the clip is cut, zeros after it
            shift = -(RATE - 1 - nonzero[-1])
            ratio = out[: RATE + shift] / ramp[-shift:]
        assert abs(shift) <= 0.25 * RATE
        assert np.ptp(ratio) < 1e-5 and -6.0 - 1e-4 <= 20 * np.log10(ratio[0]) <= 1e-4
    white = [np.random.default_rng(0).standard_normal(3 * RATE).astype(np.float32)]
    levels = [
        20 * np.log10(np.sqrt(np.mean(stream_like_copy(np.zeros(RATE), RATE, white, StreamSpec(), rng) ** 2)))
        for _ in range(20)
    ]
    assert -50.5 < min(levels) and max(levels) < -34.5  # the spec's noise_dbfs range


# A tiny real run, end to end ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_material(data_dir: Path) -> Material:
    return load_material(data_dir, 16000, keywords_per_class=1, unknown=2, fsdd=3, esc=1, seed=0)


def test_real_material_is_held_out(real_material: Material, data_dir: Path) -> None:
    from kit.audio import audio_info
    from kit.data.splits import hash_percent, speech_commands_speaker

    assert real_material.counts() == {"keyword": 10, "unknown": 2, "fsdd": 3, "esc": 1, "noise": 6}
    for sound in real_material.keywords + [s for s in real_material.negatives if s.kind == "unknown"]:
        assert hash_percent(speech_commands_speaker(Path(sound.source).name)) < 20  # a test speaker
    for sound in real_material.negatives:
        if sound.kind == "fsdd":
            assert int(Path(sound.source).stem.rsplit("_", 1)[1]) <= 4  # official test takes
        if sound.kind == "esc":
            assert Path(sound.source).name.startswith("5-")  # fold 5
    for sound in real_material.noise:
        path, span = sound.source.split("@")
        begin = float(span.split("-")[0])
        total = audio_info(data_dir / path).duration_s
        assert begin >= 0.8 * total - 1e-3 and len(sound.audio) / 16000 <= 0.2 * total + 1e-6


@pytest.fixture(scope="module")
def tiny_bundle(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from deploy.bundle_builder import build_bundle
    from kit.models import save_model
    from kit.pipeline import distill_coreset, load_training_set
    from kit.training import TrainConfig, train_model

    torch.set_num_threads(1)
    work = tmp_path_factory.mktemp("bench-stream")
    fs, loader = load_training_set("speech_commands", data_dir, task="kws12", limit_per_class=12, progress=False)
    config = TrainConfig(arch_kwargs={"width": 8}, epochs=3, batch_size=64, threads=1)
    model = train_model(fs.x_train, fs.y_train, len(fs.classes), config, progress=False)
    save_model(
        work / "model.kit",
        model,
        {
            "classes": fs.classes,
            "feature_config": fs.config,
            "normalizer": fs.normalizer,
            "train_config": config.to_dict(),
        },
    )
    coreset, _, _ = distill_coreset(fs, loader, "random", 1)
    coreset.save(work / "coreset.kit")
    return build_bundle(work / "model.kit", work / "coreset.kit", work / "bundle.kit", formats=("onnx",))


def test_tiny_real_stream_end_to_end(real_material: Material, tiny_bundle: Path) -> None:
    from deploy.runtime.bundle import Bundle, BundleClassifier
    from deploy.runtime.stream import detections_from_scores, window_ends

    streams = {
        "keywords": build_stream(real_material, StreamSpec(minutes=0.3, negative_rate=0.2, gap_s=(1.2, 2.0)), seed=0),
        "negatives": build_stream(
            real_material, StreamSpec(minutes=0.15, with_keywords=False, negative_rate=0.6), seed=1
        ),
    }
    assert len(streams["keywords"].keywords) >= 5
    bundle = Bundle.load(tiny_bundle)
    classifier = BundleClassifier(bundle, "model.fp32.onnx")
    settings = bundle.detector
    memo = FeatureMemo(classifier)
    scores, _ = stream_scores(memo, streams, settings)
    plain, _ = stream_scores(classifier, {"negatives": streams["negatives"]}, settings)
    np.testing.assert_array_equal(scores["negatives"].probabilities, plain["negatives"].probabilities)
    assert memo.misses == sum(len(s.times) for s in scores.values())  # one feature map per window, no false hits
    for name, stream in streams.items():
        hops = window_ends(len(stream.audio), stream.rate, settings, classifier)
        assert scores[name].probabilities.shape == (len(hops), len(bundle.classes))
        np.testing.assert_allclose(scores[name].probabilities.sum(axis=1), 1.0, atol=1e-6)
        np.testing.assert_allclose(scores[name].times, hops / stream.rate)

    thresholds = (0.0, 0.5, 1.0)
    rows = sweep_thresholds(scores, streams, settings, thresholds)
    assert [r["threshold"] for r in rows] == list(thresholds)
    for row, threshold in zip(rows, thresholds):
        found = {n: detections_from_scores(scores[n], settings.with_(threshold=threshold)) for n in streams}
        correct = row["keywords"] - row["false_rejects"]
        assert correct + row["false_accepts"] == sum(len(f) for f in found.values())
        assert row["keywords"] == len(streams["keywords"].keywords)
        assert row["fa_per_hour"] == pytest.approx(row["false_accepts"] / row["hours"], rel=1e-3)
        assert all(d.label not in settings.ignore for f in found.values() for d in f)


def test_latency_device_process_streams_with_runtime_only(
    real_material: Material, tiny_bundle: Path, tmp_path: Path
) -> None:
    """The real-time-factor child of bench/latency.py: device imports only, every hop counted."""
    from bench.latency import _write_wav, run_child

    stream = build_stream(real_material, StreamSpec(minutes=10 / 60, negative_rate=0.2, gap_s=(1.2, 2.0)), seed=2)
    wav = tmp_path / "stream.wav"
    _write_wav(wav, stream.audio, stream.rate)
    result = run_child(tiny_bundle, "model.fp32.onnx", wav, 100.0)
    assert "error" not in result, result
    assert result["non_device_modules_loaded"] == [] and result["runtime_modules"] == ["onnxruntime"]
    assert result["audio_s"] == pytest.approx(10.0) and result["hops"] == 91  # 1-s window, 0.1-s hop, 10 s
    assert result["rtf_wall"] == pytest.approx(result["processing_wall_s"] / 10.0, rel=1e-2)
    assert result["per_hop"]["n"] == 91 and 0 < result["per_hop"]["median_ms"] <= result["per_hop"]["p90_ms"]
    assert 10 < result["peak_rss_mb"] < result["ru_maxrss_mb"] + 1  # VmHWM: this process only


# Stream training material (training splits only) -----------------------------------------------
def test_stream_training_material_comes_from_training_splits_only(data_dir: Path) -> None:
    """The hard negatives must never include a clip the streams use: FSDD test takes 0-4 or ESC-10 fold 5."""
    from kit.training.negatives import hard_negative_clips, hard_negatives

    digits, sounds, notes = hard_negative_clips(data_dir, 40, True, np.random.default_rng(0))
    assert notes == []
    assert len(digits) == 40 and len({c.path for c in digits}) == 40
    assert all(int(c.path.stem.rsplit("_", 1)[1]) >= 5 for c in digits)  # official training takes
    assert sounds and all(not c.path.name.startswith("5-") for c in sounds)  # not the test fold
    waves, _ = hard_negatives(data_dir, 16000, 3, 2, np.random.default_rng(1))
    esc_cuts = waves[3:]
    assert len(esc_cuts) == 2 * len(sounds)
    assert all(len(w) == 16000 and np.sqrt(np.mean(w**2)) > 0 for w in esc_cuts)


def test_quiet_silence_windows_hit_their_levels() -> None:
    from kit.training.waveaug import at_level, noise_window

    rng = np.random.default_rng(0)
    noise = [rng.standard_normal(3 * RATE).astype(np.float32) * 0.3, rng.standard_normal(RATE // 2).astype(np.float32)]
    draw = np.random.default_rng(2)
    windows = [at_level(noise_window(noise, RATE, draw), float(draw.uniform(-60.0, -40.0))) for _ in range(50)]
    levels = [20 * np.log10(np.sqrt(np.mean(np.square(w, dtype=np.float64)))) for w in windows]
    assert len(windows) == 50 and all(len(w) == RATE for w in windows)
    assert min(levels) >= -60.01 and max(levels) <= -39.99 and np.ptp(levels) > 10  # spread over the range
