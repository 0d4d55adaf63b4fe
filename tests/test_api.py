"""The Python API (``import framefill``): the README's example as written, and what its entry points promise."""

from __future__ import annotations

import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from conftest import make_clip, moving_square, psnr, save_tiny_film

import framefill
from framefill.models import build_model
from framefill.video import probe, write_image

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained film-tiny (its output is about the blend): enough to test the plumbing quickly."""
    return save_tiny_film(tmp_path_factory.mktemp("weights") / "film-tiny.safetensors")


def readme_example() -> str:
    """The first Python code block of the README's "Python API" section."""
    section = (ROOT / "README.md").read_text().split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README's Python API section has no python code block"
    return match.group(1)


def test_readme_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    make_clip(tmp_path / "clip.mp4", n=4, audio=False)
    frames = list(moving_square(n=3))  # the square moves 4 px from a to b; frames[1] is the true middle
    write_image(tmp_path / "a.png", frames[0])
    write_image(tmp_path / "b.png", frames[2])
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(readme_example(), "README.md (Python API)", "exec"), namespace)
    out = capsys.readouterr().out
    assert probe(tmp_path / "smooth.mp4").n_frames == 7  # (4 - 1) * 2 + 1
    assert "4 -> 7 frames at 60000/1001 fps" in out
    assert "7/7 frames" in out and "0/7 frames" in out  # the progress callback, from its first call to its last
    mid = namespace["mid"]
    assert mid.shape == (48, 64, 3) and mid.dtype == np.uint8
    # An in-between frame, not a copy of an input: nearer the true middle than either input is.
    assert psnr(mid, frames[1]) > max(psnr(frames[0], frames[1]), psnr(frames[2], frames[1])) + 3


def test_import_does_not_load_torch():
    """The command line imports framefill before it checks its arguments: usage errors must stay instant."""
    code = "import sys, framefill; assert 'torch' not in sys.modules; assert callable(framefill.load_model)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_load_model_from_a_file_or_a_name(tmp_path: Path, tiny_weights: Path):
    model = framefill.load_model(tiny_weights, device="cpu", precision="fp32")
    assert type(model).__name__ == "Film" and not model.training
    assert model.config == build_model("film", "film-tiny").config
    with pytest.raises(framefill.WeightsError, match="weights not found"):
        framefill.load_model(tmp_path / "missing.safetensors")
    (tmp_path / "notes.txt").write_text("not weights\n")
    with pytest.raises(framefill.WeightsError, match="not a safetensors file"):
        framefill.load_model(tmp_path / "notes.txt")
    with pytest.raises(framefill.WeightsError, match="weights not found"):
        framefill.load_model("flim")  # neither a shipped model nor a file
    with pytest.raises(ValueError, match="unknown device"):
        framefill.load_model(tiny_weights, device="tpu")


def test_interpolate_pair_times_and_inputs(tmp_path: Path, tiny_weights: Path):
    a, b = list(moving_square(n=3))[::2]
    model = framefill.load_model(tiny_weights, device="cpu", precision="fp32")
    assert np.array_equal(framefill.interpolate_pair(a, b, 0, model=model), a)
    assert np.array_equal(framefill.interpolate_pair(a, b, 1, model=model), b)
    mid = framefill.interpolate_pair(a, b, model=tiny_weights, device="cpu", precision="fp32")  # a path works too
    write_image(tmp_path / "a.png", a)
    from_files = framefill.interpolate_pair(tmp_path / "a.png", str(tmp_path / "a.png"), model=model)
    assert mid.shape == a.shape and not np.array_equal(mid, a) and not np.array_equal(mid, b)
    assert np.array_equal(from_files, a)  # the pair of one image gives that image
    with pytest.raises(ValueError, match="pass them to framefill.load_model"):
        framefill.interpolate_pair(a, b, model=model, device="cpu")
    with pytest.raises(ValueError):
        framefill.interpolate_pair(a, b[:-2], model=model)  # not the same size
    with pytest.raises(framefill.VideoError, match="no such file"):
        framefill.interpolate_pair(tmp_path / "missing.png", b, model=model)


@pytest.mark.parametrize(("options", "count", "fps_out", "fps_play"), [
    ({}, 7, Fraction(48), None),  # factor 2 by default
    ({"fps": "60"}, 8, Fraction(60), None),  # 24 -> 60: frames at k/60 s up to the last input's 0.125 s
    ({"slowmo": 2}, 7, Fraction(48), Fraction(24)),  # twice the frames, played at the input's rate
    ({"slowmo": 2, "fps": 30}, 8, Fraction(60), Fraction(30)),  # 60 frames a second of footage, played at 30
])
def test_interpolate_video_rates_and_progress(tmp_path: Path, tiny_weights: Path, options: dict, count: int,
                                              fps_out: Fraction, fps_play: Fraction | None):
    src = make_clip(tmp_path / "in.mp4", n=4, fps=Fraction(24), audio=False)
    calls: list[tuple[int, int | None]] = []
    report = framefill.interpolate_video(src, tmp_path / "out.mp4", model=tiny_weights, device="cpu",
                                         precision="fp32", progress=lambda done, total: calls.append((done, total)),
                                         **options)
    assert (report.frames_out, report.fps_out, report.fps_play) == (count, fps_out, fps_play)
    assert probe(tmp_path / "out.mp4").n_frames == count
    assert calls == [(i, count) for i in range(count + 1)]
    with pytest.raises(framefill.VideoError, match="exists"):
        framefill.interpolate_video(src, tmp_path / "out.mp4", model=tiny_weights, device="cpu")
