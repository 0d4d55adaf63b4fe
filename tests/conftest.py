"""Shared test helpers: tiny clips and frame folders made with the bundled ffmpeg, and a child-process check.

Keep clips tiny (64x48, a dozen frames): the test machine has two cores.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
import pytest
import torch

from framefill.checkpoint import save_model
from framefill.models import build_model
from framefill.video import EncodeOptions, FrameSink, write_image

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
NTSC = Fraction(30000, 1001)


def run_ffmpeg(*args: str) -> None:
    """Run the bundled ffmpeg quietly (overwriting outputs); fail the test with its stderr if it fails."""
    done = subprocess.run([FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args], capture_output=True)
    assert done.returncode == 0, done.stderr.decode(errors="replace")


def make_clip(
    path: Path,
    w: int = 64,
    h: int = 48,
    n: int = 12,
    fps: Fraction = NTSC,
    audio: bool = True,
    subtitles: bool = False,
) -> Path:
    """Write ``n`` frames of ffmpeg's testsrc2 pattern at exactly ``w`` x ``h`` and ``fps`` to ``path``.

    The container follows the extension (.mp4/.mkv/.mov/.ts: H.264, .webm: VP9); ``audio`` adds a 440 Hz tone
    as long as the video, ``subtitles`` a one-line SubRip subtitle (.mkv/.mp4 only).
    """
    path = Path(path)
    rate, ext = f"{fps.numerator}/{fps.denominator}", path.suffix.lower()
    seconds = f"{float(n / fps):.6f}"
    args = ["-f", "lavfi", "-i", f"testsrc2=size=64x48:rate={rate}"]  # testsrc2 rounds odd sizes: scale after
    maps = ["-map", "0:v"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=22050:duration={seconds}"]
        maps += ["-map", "1:a"]
    if subtitles:
        srt = path.with_suffix(".srt")
        srt.write_text("1\n00:00:00,000 --> 00:00:00,200\nhello\n\n")
        args += ["-i", str(srt)]
        maps += ["-map", f"{len(maps) // 2}:s"]
    odd = w % 2 or h % 2
    if ext == ".webm":
        video = ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-c:a", "libopus"]
    else:
        video = ["-c:v", "libx264", "-pix_fmt", "yuv444p" if odd else "yuv420p", "-c:a", "aac"]
    subs = ["-c:s", "mov_text" if ext in (".mp4", ".mov") else "srt"] if subtitles else []
    run_ffmpeg(*args, *maps, "-frames:v", str(n), "-vf", f"scale={w}:{h}", *video, *subs, str(path))
    return path


def moving_square(w: int = 64, h: int = 48, n: int = 12, size: int = 10) -> Iterator[np.ndarray]:
    """A smooth colour gradient with a white square moving right by 2 px a frame; (h, w, 3) uint8 RGB."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), np.full_like(xx, 96)], axis=-1)
    for i in range(n):
        frame = base.astype(np.uint8)  # (h, w, 3)
        x0 = (2 * i) % max(w - size, 1)
        frame[h // 4 : h // 4 + size, x0 : x0 + size] = 255
        yield frame


def time_pairs_rows(tmp_path: Path, weights: Path, *extra: str, check: bool = True) -> list[dict] | str:
    """``tools/time_pairs.py`` on one drop-frame triplet of a moving square (its list written to ``tmp_path``) with
    ``weights`` and ``extra`` options, fp32, no timing: its rows; with ``check`` False, its stderr once it failed."""
    import json
    import sys

    frames = list(moving_square(n=3))
    for name, k in (("frame0", 0), ("gt", 1), ("frame1", 2)):
        write_image(tmp_path / f"{name}.png", frames[k])
    listing, out = tmp_path / "list.txt", tmp_path / "rows.json"
    listing.write_text(" ".join(str(tmp_path / f"{n}.png") for n in ("frame0", "frame1", "gt")) + " sq_0000_s1\n")
    tool = Path(__file__).resolve().parents[1] / "tools" / "time_pairs.py"
    done = subprocess.run([sys.executable, str(tool), str(listing), "--weights", str(weights), "--repeat", "0",
                           "--precision", "fp32", "--json", str(out), *extra], capture_output=True, text=True)
    if not check:
        assert done.returncode != 0
        return done.stderr
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text())


def write_clip(path: Path, frames: list[np.ndarray], fps: Fraction = NTSC, **kwargs: object) -> Path:
    """Write ``frames`` through FrameSink (extra keyword arguments go to FrameSink) and return the path."""
    h, w = frames[0].shape[:2]
    with FrameSink(path, width=w, height=h, fps=fps, **kwargs) as sink:  # type: ignore[arg-type]
        for frame in frames:
            sink.write(frame)
    return Path(path)


def make_frame_folder(folder: Path, names: list[str], w: int = 16, h: int = 12) -> list[np.ndarray]:
    """Write one flat-coloured image per name into ``folder``; image ``i`` has value ``10 * i + 5``."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = [np.full((h, w, 3), 10 * i + 5, dtype=np.uint8) for i in range(len(names))]
    for name, frame in zip(names, frames, strict=True):
        write_image(folder / name, frame)
    return frames


def child_processes(parent: int | None = None) -> list[str]:
    """``"pid state name"`` of every live or zombie child of ``parent`` (default: this process).

    Uses psutil if installed, else /proc.
    """
    parent = os.getpid() if parent is None else parent
    try:
        import psutil
    except ImportError:
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                pid, rest = stat.read_text().split(" ", 1)
            except OSError:
                continue
            name, _, fields = rest.rpartition(") ")
            state, ppid = fields.split()[:2]
            if int(ppid) == parent:
                found.append(f"{pid} {state} {name.lstrip('(')}")
        return found
    return [f"{p.pid} {p.status()} {p.name()}" for p in psutil.Process(parent).children()]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 images in dB (inf if equal)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255**2 / mse))


LOSSLESS = EncodeOptions(codec="ffv1")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


def save_tiny_film(path: Path) -> Path:
    """An untrained film-tiny weights file at ``path`` (its output is about the blend): enough to test the plumbing
    quickly."""
    save_model(path, build_model("film", "film-tiny"), architecture="film")
    return path


def cached_stage_run(tmp_path: Path, args: list[str], steps: int) -> tuple[Path, Path, Path]:
    """``framefill train`` of a stage trained alone from a cache (``args``: the model's and the stage's options),
    ``steps`` steps of 4 crops of 32 px of a 12-frame clip: the data folder, the run folder and the exported weights,
    once it succeeded and logged every step."""
    import json

    from typer.testing import CliRunner

    from framefill.cli import app

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    write_clip(data_dir / "square", list(moving_square(n=12)))
    out, weights = tmp_path / "run", tmp_path / "stage.safetensors"
    result = CliRunner().invoke(app, ["train", "--data", str(data_dir), *args, "--crop", "32", "--max-frames", "12",
                                      "--steps", str(steps), "--batch", "4", "--out", str(out),
                                      "--export", str(weights)])
    assert result.exit_code == 0, (result.output, result.exception)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, steps + 1)) and all(np.isfinite(r["total"]) for r in log)
    return data_dir, out, weights


def work_in(tmp_path: Path, inputs: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``tmp_path`` with copies of the files in ``inputs``, made the current directory (short paths, short
    messages), with ``FRAMEFILL_DEBUG`` unset (one-line errors, no tracebacks)."""
    shutil.copytree(inputs, tmp_path, dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FRAMEFILL_DEBUG", raising=False)
    return tmp_path


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    """A 64x48, 12-frame, 30000/1001 fps H.264 .mp4 with an AAC tone."""
    return make_clip(tmp_path / "clip.mp4")


def plain(text: str) -> str:
    """``text`` without ANSI colours (rich adds them where the environment forces a terminal)."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def help_text(*command: str) -> str:
    """``framefill COMMAND -h`` as a user reads it at 120 columns (colours stripped); the help must exit 0."""
    from typer.testing import CliRunner

    from framefill.cli import app

    result = CliRunner().invoke(app, [*command, "-h"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    return plain(result.stdout)


def assert_one_error(stderr: str, stdout: str = "", message: str = "") -> None:
    """A refusal as users see it: exactly one ``error:`` line (containing ``message``), no traceback."""
    lines = plain(stderr).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert message in lines[0], lines[0]
    assert "Traceback" not in stderr + stdout


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--device", default="cpu", help="where the model and scheduler tests that follow it run: cpu "
                     "(default), cuda or cuda:N (the GPU run, tools/gpu_run.sh, passes --device cuda)")


def pytest_configure(config: pytest.Config) -> None:
    name = config.getoption("--device", "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise pytest.UsageError(f"--device {name!r}: {e}") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError(f"--device {name}: this machine has no CUDA device")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks ``device`` the tests that run on ``--device``: ``pytest -m "cuda or device" --device cuda`` runs them
    and the CUDA tests on a GPU."""
    for item in items:
        if "device" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.device)


@pytest.fixture(scope="session")
def device(pytestconfig: pytest.Config) -> torch.device:
    """The device of ``--device`` (cpu unless asked)."""
    return torch.device(pytestconfig.getoption("--device"))


@pytest.fixture
def on_device(device: torch.device) -> Iterator[torch.device]:
    """Makes ``--device`` torch's default device for the test: its tensors and models are made there."""
    with device:
        yield device


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One torch thread for a module: on two busy cores a tiny model runs far faster than with two spinning
    OpenMP threads. Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def ramp_clip(path: Path, codec: str = "libx264", pix_fmt: str = "yuv420p10le") -> Path:
    """A 10-bit clip of a gentle grey ramp (0.3 to 0.5 over 640 px): about 200 levels in 10 bits, 51 in 8."""
    ramp = np.linspace(0.3, 0.5, 640)[None, :, None] * np.ones((96, 1, 3))
    for i in range(4):
        cv2.imwrite(str(path.parent / f"ramp{i}.png"), ((ramp + 0.01 * i) * 65535).astype(np.uint16))
    run_ffmpeg("-framerate", "24", "-i", str(path.parent / "ramp%d.png"), "-c:v", codec, "-pix_fmt", pix_fmt,
               "-crf", "0", str(path))
    return path


def retime_unevenly(src: Path, dst: Path, *options: str) -> Path:
    """Copy ``src`` to ``dst`` with a variable frame rate: frames 0-5 a 30th of a second apart, then a 10th."""
    run_ffmpeg("-i", str(src), "-vf", "setpts='(N+if(gte(N,6),2*(N-5),0))/(30*TB)'", "-fps_mode", "passthrough",
               *options, str(dst))
    return Path(dst)


GREEN = (32, 192, 64)  # the RGB colour of untagged_hd_clip


def untagged_hd_clip(path: Path) -> Path:
    """Three 1280x720 frames of ``GREEN`` in BT.709 YUV without colour tags, as HD cameras often write them."""
    png = path.parent / f"{path.stem}.png"
    write_image(png, np.full((720, 1280, 3), GREEN, np.uint8))
    run_ffmpeg("-loop", "1", "-i", str(png), "-frames:v", "3", "-vf", "scale=out_color_matrix=bt709:out_range=tv,"
               "format=yuv420p,setparams=colorspace=unknown:color_primaries=unknown:color_trc=unknown",
               "-c:v", "libx264", "-crf", "0", str(path))
    return path
