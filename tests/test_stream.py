"""Streaming recognition: the RecognizeCommands rules on crafted posterior sequences, the ring
buffer, streaming-vs-offline feature parity on real clips, and detection of real Speech Commands
keywords pasted at known times into real background noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streaming_helpers import SAMPLE_RATE, background, held_out_clips, keyword_stream, kws_bundle

from deploy.runtime.bundle import Bundle, BundleClassifier
from deploy.runtime.errors import KitError
from deploy.runtime.features import resample
from deploy.runtime.recognizer import Detection, DetectorSettings, RecognizeCommands
from deploy.runtime.stream import AudioRing, StreamRecognizer, detect_stream, detections_from_scores, score_stream
from deploy.runtime.wavio import read_wav

CLASSES = ["_silence_", "_unknown_", "no", "yes"]
HOP = 0.1


def _posteriors(**columns: float) -> np.ndarray:
    """A probability vector over CLASSES with the given values, the rest spread on _silence_."""
    p = np.zeros(len(CLASSES))
    for name, value in columns.items():
        p[CLASSES.index(name)] = value
    p[0] += 1.0 - p.sum()
    return p


def _run(settings: DetectorSettings, sequence: list[np.ndarray], hop: float = HOP) -> list[Detection]:
    recognizer = RecognizeCommands(CLASSES, settings)
    found = [recognizer.process(p, round((i + 1) * hop, 6)) for i, p in enumerate(sequence)]
    return [d for d in found if d is not None]


# RecognizeCommands on crafted sequences -----------------------------------------------------------
def test_minimum_count_delays_the_first_detection() -> None:
    settings = DetectorSettings(average_window_s=0.5, threshold=0.6, minimum_count=3, suppression_s=10)
    found = _run(settings, [_posteriors(yes=0.9)] * 5)
    assert [(d.label, d.time_s) for d in found] == [("yes", 0.3)]  # the third result, not the first
    assert _run(settings.with_(minimum_count=6), [_posteriors(yes=0.9)] * 5) == []  # never enough results


def test_smoothing_ignores_a_single_spike_but_not_a_sustained_word() -> None:
    settings = DetectorSettings(average_window_s=0.5, threshold=0.6, minimum_count=3, suppression_s=1.0)
    quiet, spike = _posteriors(), _posteriors(yes=1.0)
    assert _run(settings, [quiet] * 5 + [spike] + [quiet] * 5) == []  # averaged over 6 results: 1/6
    sustained = _run(settings, [quiet] * 5 + [spike] * 4 + [quiet] * 5)
    assert [d.label for d in sustained] == ["yes"]
    # mean of the last 6 results reaches 0.6 only with the 4th spike (4/6 >= 0.6 > 3/6)
    assert sustained[0].time_s == pytest.approx(0.9) and sustained[0].score == pytest.approx(4 / 6)


def test_threshold_is_inclusive_and_applies_to_the_smoothed_score() -> None:
    at = DetectorSettings(average_window_s=0.3, threshold=0.7, minimum_count=1)
    assert [d.score for d in _run(at, [_posteriors(yes=0.7)])] == [pytest.approx(0.7)]
    assert _run(at.with_(threshold=0.71), [_posteriors(yes=0.7)] * 10) == []
    # alternating 0.9 / 0.4 averages to 0.65: below 0.7 although half the results exceed it
    alternating = [_posteriors(yes=0.9 if i % 2 else 0.4) for i in range(20)]
    assert _run(at.with_(average_window_s=1.0, minimum_count=2), alternating) == []


def test_suppression_period_after_a_detection_covers_every_label() -> None:
    settings = DetectorSettings(average_window_s=0.0, threshold=0.5, minimum_count=1, suppression_s=1.0)
    found = _run(settings, [_posteriors(yes=0.9)] * 35)  # 3.5 s of a held keyword
    assert [d.time_s for d in found] == pytest.approx([0.1, 1.1, 2.1, 3.1])
    switching = [_posteriors(yes=0.9)] * 3 + [_posteriors(no=0.9)] * 12
    found = _run(settings, switching)
    assert [(d.label, round(d.time_s, 6)) for d in found] == [("yes", 0.1), ("no", 1.1)]
    assert len(_run(settings.with_(suppression_s=0.0), switching)) == 15


def test_ignored_labels_are_never_reported_and_can_win_the_average() -> None:
    settings = DetectorSettings(average_window_s=0.5, threshold=0.3, minimum_count=1)
    assert _run(settings, [_posteriors(_unknown_=0.95)] * 20) == []
    assert _run(settings, [_posteriors(_silence_=0.0, yes=0.0, no=0.0, _unknown_=1.0)] * 5) == []
    # yes passes the threshold but _unknown_ is on top: no keyword is reported
    assert _run(settings, [_posteriors(_unknown_=0.55, yes=0.4)] * 10) == []
    custom = settings.with_(ignore=["no"])
    assert _run(custom, [_posteriors(no=0.9)] * 5) == []
    assert [d.label for d in _run(custom, [_posteriors(_unknown_=0.9)] * 5)] == ["_unknown_"]


def test_recognizer_rejects_bad_input_with_one_line_errors() -> None:
    recognizer = RecognizeCommands(CLASSES, DetectorSettings())
    recognizer.process(_posteriors(), 1.0)
    for call, needle in [
        (lambda: recognizer.process(_posteriors(), 0.5), "time order"),
        (lambda: recognizer.process(np.ones(3) / 3, 1.1), "3 scores for 4 classes"),
        (lambda: DetectorSettings(threshold=1.5), "threshold"),
        (lambda: DetectorSettings(hop_s=2.0), "hop_s"),
        (lambda: DetectorSettings(minimum_count=0), "minimum_count"),
        (lambda: DetectorSettings.from_dict({"threshold": 0.5, "colour": "red"}), "unknown fields ['colour']"),
    ]:
        with pytest.raises(KitError) as exc:
            call()
        assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_detector_options_are_declared_once_for_every_command_line() -> None:
    """The device's ``listen`` (argparse), ``kit live`` and ``kit bundle`` (typer) offer exactly the
    declared detector options, with the declared types; values go through one bounds check."""
    import typer

    from deploy.runtime.live import build_parser
    from deploy.runtime.recognizer import DETECTOR_OPTIONS
    from kit.cli import app

    declared = {option.flag: option for option in DETECTOR_OPTIONS}
    device = {a.option_strings[0]: a for a in build_parser()._actions if a.dest in {o.field for o in DETECTOR_OPTIONS}}
    assert set(device) == set(declared) and all(device[f].type is declared[f].type for f in declared)
    commands = {c.name: c for c in typer.main.get_command(app).commands.values()}
    for name in ("live", "bundle"):
        offered = {p.opts[0]: p for p in commands[name].params if p.name in {o.field for o in DETECTOR_OPTIONS}}
        assert set(offered) == set(declared), name
        assert all(declared[f].help[1:] in offered[f].help and declared[f].bounds in offered[f].help for f in declared)
    settings = DetectorSettings().with_options({"threshold": 0.8, "hop_s": None, "minimum_count": 2})
    assert settings.threshold == 0.8 and settings.hop_s == 0.1 and settings.minimum_count == 2
    for values, needle in [
        ({"threshold": 1.5}, "--threshold must be in [0, 1], got 1.5"),
        ({"minimum_count": 0}, "--minimum-count must be >= 1"),
        ({"hop_s": 0.0}, "--hop must be > 0"),
        ({"hop_s": 2.0}, "must not exceed window_s"),
        ({"average_window_s": float("nan")}, "--average-window must be a finite number"),
        ({"colour": 1}, "unknown detector options ['colour']"),
    ]:
        with pytest.raises(KitError) as exc:
            DetectorSettings().with_options(values)
        assert needle in str(exc.value) and "\n" not in str(exc.value), str(exc.value)


def test_detector_settings_round_trip() -> None:
    settings = DetectorSettings(
        hop_s=0.05, average_window_s=0.4, threshold=0.55, suppression_s=1.5, minimum_count=4, ignore=("_silence_",)
    )
    assert DetectorSettings.from_dict(settings.to_dict()) == settings
    assert settings.with_(threshold=None, hop_s=0.2) == DetectorSettings.from_dict({**settings.to_dict(), "hop_s": 0.2})


# Ring buffer ---------------------------------------------------------------------------------------
def test_ring_buffer_keeps_the_last_window_across_arbitrary_chunks() -> None:
    rng = np.random.default_rng(0)
    ring = AudioRing(1000)
    fed = np.zeros(0, np.float32)
    for size in [1, 999, 0, 1000, 1001, 7, 2500, 333, 1]:
        chunk = rng.standard_normal(size).astype(np.float32)
        ring.write(chunk)
        fed = np.concatenate([fed, chunk])
        expected = np.concatenate([np.zeros(max(0, 1000 - len(fed)), np.float32), fed[-1000:]])
        assert np.array_equal(ring.latest(), expected)
    assert ring.total == len(fed)


# Real-data fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def kws(tmp_path_factory, data_dir: Path) -> dict:
    return kws_bundle(tmp_path_factory, data_dir)


@pytest.fixture(scope="module")
def classifier(kws) -> BundleClassifier:
    return BundleClassifier(Bundle.load(kws["bundle"]))


def _chunks(y: np.ndarray, seed: int) -> list[np.ndarray]:
    """Split ``y`` into chunks of random sizes 1..3000 samples (microphone reads are irregular)."""
    rng = np.random.default_rng(seed)
    cuts = np.cumsum(rng.integers(1, 3000, size=len(y) // 500 + 10))
    return np.split(y, cuts[cuts < len(y)])


def test_streaming_window_features_equal_the_offline_training_features(classifier, data_dir: Path) -> None:
    """Three real 1-s clips back to back, fed in random chunks: the windows ending exactly at each clip
    boundary must give the training front-end's feature map of that clip (soundfile + kit.features)."""
    from kit.data import Clip
    from kit.features import clip_features

    paths = [
        p
        for word in ("yes", "stop", "yes")
        for p in held_out_clips(data_dir, word)[:12]
        if len(read_wav(p)[0]) == SAMPLE_RATE
    ][::4][:3]
    assert len(paths) == 3
    audio = [read_wav(p)[0] for p in paths]
    offline = classifier.normalizer.transform(
        np.stack([clip_features(Clip(p, "x", "test", "g"), classifier.feature_config) for p in paths])
    )
    stream = StreamRecognizer(classifier, DetectorSettings(hop_s=HOP), keep_features=True)
    results = [r for chunk in _chunks(np.concatenate(audio), seed=1) for r in stream.feed(chunk)]
    by_time = {round(r.time_s, 6): r for r in results}
    assert sorted(by_time)[0] == 1.0 and len(results) == 21  # hops at 1.0, 1.1, ..., 3.0
    for k in range(3):
        streamed = by_time[float(k + 1)].features
        assert float(np.abs(streamed - offline[k]).max()) <= 1e-5, f"window {k} differs from the offline features"
        assert np.allclose(
            by_time[float(k + 1)].probabilities, classifier.probabilities(audio[k], SAMPLE_RATE), atol=1e-6
        )

    # an 8 kHz stream: each window is resampled as a whole, like an 8 kHz clip classified offline
    low = [resample(y, SAMPLE_RATE, 8000) for y in audio]
    stream8 = StreamRecognizer(classifier, DetectorSettings(hop_s=HOP), rate=8000, keep_features=True)
    results8 = {round(r.time_s, 6): r for chunk in _chunks(np.concatenate(low), seed=2) for r in stream8.feed(chunk)}
    for k in range(3):
        assert np.abs(results8[float(k + 1)].features - classifier.features(low[k], 8000)).max() <= 1e-5


def test_live_stream_and_offline_detect_stream_agree(classifier, data_dir: Path) -> None:
    stream, _ = keyword_stream(
        classifier, data_dir, noise="running_tap", placements=((1.5, "stop"), (4.0, "yes")), seconds=6.0
    )
    settings = classifier.bundle.detector
    detections, scores = detect_stream(classifier, stream, SAMPLE_RATE, settings, return_scores=True)
    live = StreamRecognizer(classifier, settings)
    results = [r for chunk in _chunks(stream, seed=3) for r in live.feed(chunk)]
    assert np.allclose([r.time_s for r in results], scores.times)
    assert np.abs(np.stack([r.probabilities for r in results]) - scores.probabilities).max() <= 1e-5
    live_detections = [r.detection for r in results if r.detection is not None]
    assert [(d.label, round(d.time_s, 6)) for d in live_detections] == [
        (d.label, round(d.time_s, 6)) for d in detections
    ]
    assert detections_from_scores(scores, settings) == detections
    assert [d.label for d in detections] == ["stop", "yes"]


@pytest.mark.parametrize("noise", ["doing_the_dishes", "exercise_bike"])
def test_detects_real_keywords_pasted_into_real_noise_at_the_right_times(
    classifier, data_dir: Path, noise: str
) -> None:
    """Held-out speakers' "yes"/"stop" clips pasted at 2.0, 5.5 and 9.0 s into the held-out part of a
    real background recording: exactly these three detections, each reported while its window
    still covers the word (window end between 0.5 s and 1.6 s after the clip's start)."""
    stream, truth = keyword_stream(classifier, data_dir, noise=noise)
    detections = detect_stream(classifier, stream, SAMPLE_RATE, classifier.bundle.detector)
    assert [d.label for d in detections] == [word for _, word in truth], detections
    for detection, (start, _) in zip(detections, truth):
        assert start + 0.5 <= detection.time_s <= start + 1.6, (detection, start)
        assert detection.score >= classifier.bundle.detector.threshold
    # the same noise without keywords: nothing is reported
    assert detect_stream(classifier, background(data_dir, noise, 5.0), SAMPLE_RATE, classifier.bundle.detector) == []


def test_stream_rejects_a_window_that_is_not_the_model_clip_length(classifier) -> None:
    with pytest.raises(KitError, match="window_s"):
        StreamRecognizer(classifier, DetectorSettings(window_s=0.5, hop_s=0.1))
    with pytest.raises(KitError, match="window_s"):
        score_stream(classifier, np.zeros(SAMPLE_RATE * 2, np.float32), SAMPLE_RATE, DetectorSettings(window_s=2.0))
