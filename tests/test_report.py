"""``kit report``: one self-contained, well-formed HTML page over real runs, a real coreset, a RunDir and a
benchmark."""

from __future__ import annotations

import base64
import io
import json
import wave
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from deploy.runtime.errors import KitError
from kit.cli import app, main
from kit.experiments import RunDir
from kit.report import read_input, write_report
from kit.report.plots import confusion_figure, save_figure

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
BENCH_JSON = REPO / "bench" / "results" / "distill.json"
HOSTILE = "<script>alert('x')</script> & co"


class PageParser(HTMLParser):
    """Collects what the checks need: every src/href, images, audio, and the row count of every table."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.images: list[str] = []
        self.audio: list[str] = []
        self.table_rows: list[int] = []
        self.tags: list[str] = []
        self._in_tbody = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append(tag)
        for name in ("src", "href"):
            if attributes.get(name) is not None:
                self.links.append(attributes[name] or "")
        if tag == "img":
            self.images.append(attributes.get("src") or "")
        if tag == "audio":
            self.audio.append(attributes.get("src") or "")
        if tag == "tbody":
            self._in_tbody = True
            self.table_rows.append(0)
        if tag == "tr" and self._in_tbody:
            self.table_rows[-1] += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_tbody = False


def _decode(uri: str, mime: str) -> bytes:
    prefix = f"data:{mime};base64,"
    assert uri.startswith(prefix), uri[:40]
    return base64.b64decode(uri[len(prefix) :], validate=True)


def _write_wav(path: Path, rate: int = 8000) -> None:
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(rate // 4) / rate) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(tone.tobytes())


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> dict[str, Path]:
    """A real coreset and a real quick ``kit train`` run on FSDD, plus a RunDir with a table, a PNG and a WAV."""
    root = tmp_path_factory.mktemp("report-inputs")
    coreset = root / "random2.kit"
    result = runner.invoke(
        app,
        [
            "distill",
            "fsdd",
            "--method",
            "random",
            "--ipc",
            "2",
            "--out",
            str(coreset),
            "--data-dir",
            str(data_dir),
            "--limit-per-class",
            "8",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    train_run = root / "train-run"
    result = runner.invoke(
        app,
        [
            "train",
            str(coreset),
            "--out",
            str(train_run),
            "--seeds",
            "0,1",
            "--max-samples",
            "200",
            "--test-limit",
            "5",
            "--data-dir",
            str(data_dir),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output

    experiment = root / "experiment"
    run = RunDir(experiment, "demo_experiment", {"seed": 0}, title=f"Demo {HOSTILE}")
    run.add_table("three rows", ["name", "value"], [["a", 1], ["b", 2.5], [HOSTILE, None]])
    save_figure(confusion_figure(np.array([[3, 1], [0, 4]]), ["yes", "no"], "toy"), experiment / "toy.png")
    run.add_figure(experiment / "toy.png", f"a toy confusion matrix {HOSTILE}")
    _write_wav(experiment / "tone.wav")
    run.add_audio(experiment / "tone.wav", "a 440 Hz tone")
    run.summary = "a summary"
    run.headline = {"rho": 0.5}
    run.save()
    return {"coreset": coreset, "train": train_run, "experiment": experiment}


def test_report_page_and_its_images_are_well_formed(inputs: dict[str, Path], data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "page" / "report.html"
    result = runner.invoke(
        app,
        [
            "report",
            str(inputs["train"]),
            str(inputs["coreset"]),
            str(inputs["experiment"]),
            str(BENCH_JSON),
            "--out",
            str(out),
            "--title",
            "Test report",
            "--data-dir",
            str(data_dir),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    page = out.read_text()
    parser = PageParser()
    parser.feed(page)
    parser.close()
    assert page.startswith("<!DOCTYPE html>") and parser.tags.count("section") == 4

    # self-contained: every link is an in-page anchor or a data URI
    assert parser.links and all(link.startswith(("data:", "#")) for link in parser.links), parser.links
    assert "http://" not in page and "https://" not in page

    # 4 images: confusion matrix (train run), coreset channels, the RunDir's PNG, accuracy vs samples per class
    assert len(parser.images) == 4
    from PIL import Image

    sizes = []
    for uri in parser.images:
        png = _decode(uri, "image/png")
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        with Image.open(io.BytesIO(png)) as image:
            image.load()
            sizes.append(image.size)
            assert image.size[0] > 100 and image.size[1] > 100
    assert len(set(sizes)) == 4  # four different plots, not one image repeated

    assert len(parser.audio) == 1
    wav = _decode(parser.audio[0], "audio/wav")
    assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE"
    assert wav == (inputs["experiment"] / "tone.wav").read_bytes()

    # tables: per-seed (2 seeds), the RunDir table (3 rows), one row per benchmark cell
    n_cells = len(json.loads(BENCH_JSON.read_text())["cells"])
    assert parser.table_rows == [2, 3, n_cells]

    # text from files is escaped, never markup
    assert "<script" not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; co" in page
    metrics = json.loads((inputs["train"] / "metrics.json").read_text())
    assert f"{100 * metrics['mean']:.2f} ± {100 * metrics['std']:.2f}" in page
    assert "Confusion matrix of model.kit" in page  # metrics.json has no confusion: the model was evaluated


def test_train_run_confusion_matrix_counts_the_limited_test_split(inputs: dict[str, Path], data_dir: Path) -> None:
    section = read_input(inputs["train"], data_dir=data_dir)
    assert len(section.images) == 1 and section.images[0][0].startswith(b"\x89PNG")
    metrics = json.loads((inputs["train"] / "metrics.json").read_text())
    assert f"on {metrics['n_test']} test clips" in section.images[0][1]


def test_bad_inputs_are_one_line_errors(inputs: dict[str, Path], tmp_path: Path, capsys) -> None:
    out = tmp_path / "r.html"
    cases: dict[str, Path] = {"no such file": tmp_path / "missing"}
    empty = tmp_path / "empty"
    empty.mkdir()
    cases["neither an experiment"] = empty

    broken = tmp_path / "broken"
    run = RunDir(broken, "x", {})
    (broken / "fig.png").write_bytes(b"GIF89a not a png")
    run.add_figure(broken / "fig.png", "bad")
    run.save()
    cases["fig.png: not a PNG"] = broken

    garbled = tmp_path / "garbled"
    garbled.mkdir()
    (garbled / "results.json").write_text("{not json")
    cases["unreadable results"] = garbled

    other_json = tmp_path / "latency.json"
    other_json.write_text(json.dumps({"rows": []}))
    cases["not a distillation benchmark"] = other_json
    cases["'model' artifact"] = inputs["train"] / "model.kit"

    for expected, path in cases.items():
        with pytest.raises(KitError) as info:
            write_report([path], out)
        message = str(info.value)
        assert expected in message and "\n" not in message, message
        assert str(path.name) in message or str(path) in message
    assert not out.exists()

    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(broken), "--out", str(out)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "fig.png" in err and "Traceback" not in err
