"""The command line end to end: help, jobs through CliRunner, and bad input that must end in one error line.

Everything is tiny (64x48 clips of at most 12 frames, an untrained film-tiny whose in-betweens are blends):
these tests are about the pipeline and the error policy, not picture quality. Each test works in a fresh
folder holding copies of the session's inputs, so "nothing changed" is a snapshot comparison of that folder.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import (
    NTSC,
    assert_one_error,
    child_processes,
    make_clip,
    moving_square,
    plain,
    psnr,
    ramp_clip,
    retime_unevenly,
    run_ffmpeg,
    save_tiny_film,
    work_in,
)
from typer.testing import CliRunner, Result

import framefill.pipeline
from framefill.checkpoint import save_model
from framefill.cli import app
from framefill.ffmpeg_banner import Colour
from framefill.frames import transparency_note
from framefill.interpolate import output_count
from framefill.models import build_model
from framefill.video import FrameSource, VideoError, probe, read_image, write_image

runner = CliRunner()
MKV_CLUSTER = b"\x1f\x43\xb6\x75"  # EBML id of a Matroska Cluster: the frames start with the first one


@pytest.fixture(scope="session")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained film-tiny: its output is a blend, enough for pipeline tests (no shipped weights needed)."""
    return save_tiny_film(tmp_path_factory.mktemp("weights") / "film-tiny.safetensors")


@pytest.fixture(scope="session")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every input file the tests use, made once; ``work`` copies them into each test's folder."""
    d = tmp_path_factory.mktemp("inputs")
    make_clip(d / "in.mp4")  # 12 frames, 30000/1001 fps, with audio
    make_clip(d / "in24.mp4", fps=Fraction(24), audio=False)
    make_clip(d / "odd.mp4", w=33, h=25, n=6, audio=False)
    make_clip(d / "one.mp4", n=1, audio=False)
    make_clip(d / "two.mp4", n=2, audio=False)
    full = make_clip(tmp_path_factory.mktemp("full") / "full.mkv").read_bytes()
    (d / "trunc.mkv").write_bytes(full[: len(full) // 2])
    # Zero frames: an .mkv cut just after the start of its first cluster keeps the video track, but no frame.
    header = make_clip(tmp_path_factory.mktemp("zero") / "z.mkv", audio=False).read_bytes()
    (d / "zero.mkv").write_bytes(header[: header.index(MKV_CLUSTER) + len(MKV_CLUSTER)])
    try:
        probe(d / "zero.mkv")
    except VideoError as e:
        if "no video frames" not in str(e):
            (d / "zero.mkv").unlink()  # this ffmpeg reads the cut file differently: the test skips
    (d / "notvideo.mp4").write_text("this is not a video\n")
    (d / "notes.txt").write_text("neither a video nor weights\n")
    (d / "taken.mp4").write_bytes(b"somebody else's file")
    a, b = list(moving_square(w=33, h=25, n=3))[::2]
    write_image(d / "a.png", a)
    write_image(d / "b.png", b)
    frames = d / "frames"
    frames.mkdir()
    for i, frame in enumerate(moving_square(n=10), start=1):
        write_image(frames / f"f{i}.png", frame)  # f1..f10: natural order puts f10 last, not after f1
    return d


@pytest.fixture
def work(tmp_path: Path, inputs: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with copies of the inputs, made the current directory (short paths, short messages)."""
    return work_in(tmp_path, inputs, monkeypatch)


@pytest.fixture(autouse=True)
def no_hang() -> Iterator[None]:
    """A test still running after 60 s fails with a TimeoutError wherever it waits, instead of hanging."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError("the test ran for more than 60 s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(60)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def interp(*args: str, weights: Path) -> Result:
    """``framefill interp ARGS`` in this process, with the test weights unless ARGS name others."""
    extra = [] if "--weights" in args else ["--weights", str(weights)]
    return runner.invoke(app, ["interp", *args, *extra])


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file and folder below ``folder``, hidden ones included, with its mtime and bytes."""
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else b"")
        for p in sorted(folder.rglob("*"))
    }



def assert_refused(result: Result, code: int = 2) -> None:
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # handled, not an escaped exception
    assert_one_error(result.stderr, result.stdout)


# --- help ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ([], ["interp", "train", "info", "--version", "Smooth video"]),
        (["interp"], ["interp [OPTIONS] PATHS...", "--factor", "--fps", "--weights", "--device", "--no-audio",
                      "--max-memory", "--tile", "--force", "framefill interp a.png b.png mid.png"]),
        (["train"], ["--data", "--steps", "--out", "--resume", "--export", "Checkpoints go to"]),
        (["info"], ["weights", "architecture"]),
    ],
    ids=["app", "interp", "train", "info"],
)
def test_help_reads_well(command: list[str], expected: list[str]) -> None:
    for flag in ("--help", "-h"):
        result = runner.invoke(app, [*command, flag], env={"COLUMNS": "120"})
        assert result.exit_code == 0, result.output
        text = plain(result.stdout)
        for words in expected:
            assert words in text
        assert "{paths}" not in text and "{PATHS" not in text
        assert all("<bool>" not in line for line in text.splitlines() if "--version" in line or "--force" in line)


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.startswith("framefill ")


def test_info_shows_the_architecture(weights: Path) -> None:
    result = runner.invoke(app, ["info", str(weights)])
    assert result.exit_code == 0, result.output
    assert "architecture: film" in result.stdout


def test_info_on_a_training_checkpoint_says_to_export_it(work: Path) -> None:
    torch.save({"step": 1}, work / "last.pt")
    result = runner.invoke(app, ["info", "last.pt"])
    assert result.exit_code == 2
    assert_one_error(result.stderr, result.stdout, "last.pt is a training checkpoint, not a weights file")


def test_info_describes_a_video_as_interp_reads_it(work: Path) -> None:
    result = runner.invoke(app, ["info", "in.mp4"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:3] == ["in.mp4", "  picture: 64x48 (h264)", "  frames: 12 at 30000/1001 fps (29.970), 0.40 s"]
    assert "  timing: constant frame rate" in lines and "  scan: progressive; 8 bits" in lines
    assert "  audio: yes; subtitles: no" in lines
    result = runner.invoke(app, ["info", _vfr_clip()])
    assert "timing: variable frame rate: frames stray up to" in result.stdout
    result = runner.invoke(app, ["info", "missing.mp4"])
    assert result.exit_code == 2


# --- jobs that work -----------------------------------------------------------------------------------------


def test_a_two_frame_clip_makes_one_frame_and_says_so_in_the_singular(work: Path, weights: Path) -> None:
    result = interp("two.mp4", "out.mp4", "--factor", "2", weights=weights)
    assert result.exit_code == 0, result.output
    assert "2 -> 3 frames" in plain(result.stderr)
    said = plain(result.stderr)  # its one pair is interpolated, or found a duplicate (the clip's first frames)
    assert any(f"({counts}, 0 scene cuts)" in said
               for counts in ("1 pair interpolated, 0 duplicates", "0 pairs interpolated, 1 duplicate"))
    assert probe(work / "out.mp4").n_frames == 3


def test_factor_2_keeps_exact_ntsc_rate_size_and_audio(work: Path, weights: Path) -> None:
    result = interp("in.mp4", "out.mp4", "--factor", "2", weights=weights)
    assert result.exit_code == 0, result.output
    assert "wrote out.mp4: 12 -> 23 frames" in plain(result.stderr)
    info = probe(work / "out.mp4")
    assert info.n_frames == (12 - 1) * 2 + 1
    assert info.fps == 2 * NTSC == Fraction(60000, 1001)
    assert (info.width, info.height) == (64, 48)
    assert info.has_audio
    assert sorted(p.name for p in work.iterdir() if p.name.startswith(".")) == []  # no temp files left


@pytest.mark.parametrize(
    ("option", "fps", "count"),
    [
        (["--factor", "3"], Fraction(72), output_count(12, 24, factor=3)),
        (["--fps", "60"], Fraction(60), output_count(12, 24, fps=Fraction(60))),
    ],
    ids=["factor 3", "fps 60"],
)
def test_from_24_fps(work: Path, weights: Path, option: list[str], fps: Fraction, count: int) -> None:
    result = interp("in24.mp4", "out.mp4", *option, weights=weights)
    assert result.exit_code == 0, result.output
    info = probe(work / "out.mp4")
    assert (info.n_frames, info.fps, info.width, info.height) == (count, fps, 64, 48)


@pytest.mark.parametrize(("src", "option", "count", "fps"), [
    ("in24.mp4", [], output_count(12, 24, factor=4), Fraction(24)),  # the clip's own rate, 4x the frames
    ("in24.mp4", ["--fps", "60"], output_count(12, 24, fps=Fraction(240)), Fraction(60)),
    ("in.mp4", ["--factor", "2"], output_count(12, NTSC, factor=8), 2 * NTSC),
], ids=["own rate", "at 60 fps", "at twice the rate"])
def test_slow_motion(work: Path, weights: Path, src: str, option: list[str], count: int, fps: Fraction) -> None:
    result = interp(src, "slow.mp4", "--slowmo", "4", *option, weights=weights)
    assert result.exit_code == 0, result.output
    assert f"frames at {fps} fps, 4x slow motion" in plain(result.stderr)
    info = probe(work / "slow.mp4")
    assert (info.n_frames, info.fps, info.has_audio) == (count, fps, False)
    assert ("audio and subtitles left out: the 4x slow-motion video" in plain(result.stderr)) == (src == "in.mp4")


def test_odd_size_is_kept(work: Path, weights: Path) -> None:
    result = interp("odd.mp4", "out.mkv", weights=weights)  # --factor 2 by default
    assert result.exit_code == 0, result.output
    info = probe(work / "out.mkv")
    assert (info.width, info.height, info.n_frames) == (33, 25, 11)


@pytest.mark.parametrize(("rotate", "size", "sar"),
                         [(False, (64, 48), Fraction(4, 3)), (True, (48, 64), Fraction(3, 4))],
                         ids=["anamorphic", "anamorphic and rotated"])
def test_pixel_aspect_ratio_is_kept(work: Path, weights: Path, rotate: bool, size: tuple[int, int],
                                    sar: Fraction) -> None:
    run_ffmpeg("-i", "in.mp4", "-aspect", "16:9", "-c:v", "libx264", "-c:a", "copy", "wide.mp4")  # 64x48 pixels at 4:3
    if rotate:
        run_ffmpeg("-display_rotation", "90", "-i", "wide.mp4", "-c", "copy", "wide_rot.mp4")
    src = "wide_rot.mp4" if rotate else "wide.mp4"
    assert probe(work / src).sar == sar
    result = interp(src, "out.mp4", weights=weights)
    assert result.exit_code == 0, result.output
    info = probe(work / "out.mp4")
    assert ((info.width, info.height), info.sar) == (size, sar)  # players show it as wide as the input


def test_hdr_input_keeps_its_colour_description(work: Path, weights: Path) -> None:
    run_ffmpeg("-i", "in.mp4", "-vf", "scale=out_color_matrix=bt2020:out_range=tv,format=yuv420p10le,setparams="
               "colorspace=bt2020nc:color_primaries=bt2020:color_trc=arib-std-b67", "-c:v", "libx264", "hlg.mp4")
    result = interp("hlg.mp4", "out.mp4", weights=weights)
    assert result.exit_code == 0, result.output
    assert probe(work / "out.mp4").colour == probe(work / "hlg.mp4").colour == Colour("bt2020nc", "bt2020",
                                                                                      "arib-std-b67")


@pytest.mark.parametrize(("codec", "bits"), [([], 8), (["--codec", "libx265"], 10)], ids=["h264 8-bit", "hevc 10-bit"])
def test_10_bit_video_stays_10_bit_where_the_output_plays_it(work: Path, weights: Path, codec: list[str],
                                                             bits: int) -> None:
    ramp_clip(work / "ramp10.mp4")
    result = interp("ramp10.mp4", "out.mp4", *codec, weights=weights)
    assert result.exit_code == 0, result.output
    assert probe(work / "out.mp4").bits == bits
    frames = list(FrameSource(work / "out.mp4", deep=True))
    levels = len(np.unique(frames[1][48, :, 1]))  # an interpolated frame
    assert levels > 120 if bits == 10 else levels <= 52  # a 10-bit ramp, or 8 bits' 51 steps


def _vfr_clip() -> str:
    retime_unevenly(Path("in.mp4"), Path("vfr.mp4"))
    return "vfr.mp4"


def test_variable_frame_rate_input_keeps_its_timing(work: Path, weights: Path) -> None:
    src = probe(work / _vfr_clip())
    span = src.frame_times[-1]
    assert src.drift > 0.1 and float(span) == pytest.approx(23 / 30, abs=1e-3)
    result = interp("vfr.mp4", "out.mp4", weights=weights)
    assert result.exit_code == 0, result.output
    assert "warning" not in plain(result.stderr)
    out = probe(work / "out.mp4")
    assert out.fps == 2 * src.fps and out.drift == pytest.approx(0, abs=1e-3)  # a constant rate out
    assert out.n_frames == int(span * out.fps) + 1  # spanning the input's own 23/30 s, not 11 frame intervals
    assert out.n_frames != 23  # (which treating the input as evenly spaced gives)


def test_variable_frame_rate_warns_for_four_frame_models(work: Path, convlstm_weights: Path) -> None:
    result = interp(_vfr_clip(), "out.mp4", "--model", "convlstm", weights=convlstm_weights)
    assert result.exit_code == 0, result.output
    warning = plain(result.stderr).split("warning: ", 1)[1]
    assert warning.startswith("vfr.mp4 has a variable frame rate") and "ffmpeg -i vfr.mp4 -fps_mode cfr" in warning
    assert probe(work / "out.mp4").n_frames == 23  # evenly spaced: every input and one between each pair
    result = interp("in.mp4", "out2.mp4", "--model", "convlstm", weights=convlstm_weights)
    assert result.exit_code == 0 and "warning" not in plain(result.stderr)


def test_transparent_frames_are_interpolated_opaque_with_a_warning(work: Path, weights: Path) -> None:
    (work / "rgba").mkdir()
    for i, frame in enumerate(moving_square(n=3)):
        alpha = np.full(frame.shape[:2] + (1,), 255, np.uint8)
        alpha[:4, :4] = 0  # a transparent corner
        cv2.imwrite(str(work / "rgba" / f"f{i}.png"), np.concatenate([frame[..., ::-1], alpha], axis=2))
    result = interp("rgba", "out", weights=weights)
    assert result.exit_code == 0, result.output
    assert "warning: f0.png has transparent pixels; framefill interpolates the colour only" in plain(result.stderr)
    assert len(list((work / "out").iterdir())) == 5
    assert transparency_note(work / "rgba" / "f1.png") and transparency_note(work / "a.png") is None
    frame = cv2.imread(str(work / "rgba" / "f1.png"), cv2.IMREAD_UNCHANGED)
    for value, transparent in ((102, True), (0, True), (255, False)):  # alike everywhere: see-through or opaque
        frame[..., 3] = value
        cv2.imwrite(str(work / "even.png"), frame)
        assert (transparency_note(work / "even.png") is not None) == transparent
    late = work / "late"  # opaque first frames, a see-through last one (a fade out): the warning names it
    late.mkdir()
    for i, frame in enumerate(moving_square(n=4)):
        alpha = np.full(frame.shape[:2] + (1,), 255 if i < 3 else 128, np.uint8)
        cv2.imwrite(str(late / f"f{i}.png"), np.concatenate([frame[..., ::-1], alpha], axis=2))
    result = interp("late", "late_out", weights=weights)
    assert result.exit_code == 0 and "warning: f3.png has transparent pixels" in plain(result.stderr), result.output
    floats = np.ones((4, 4, 4), np.float32)  # a float TIFF: opaque at 1.0
    cv2.imwrite(str(work / "float.tiff"), floats)
    assert transparency_note(work / "float.tiff") is None
    deep = np.full((4, 4, 4), 65535, np.uint16)  # 16 bits a channel: opaque at 65535
    cv2.imwrite(str(work / "deep.png"), deep)
    assert transparency_note(work / "deep.png") is None


def test_folder_of_frames_to_folder(work: Path, weights: Path) -> None:
    frames = list(moving_square(n=10))
    result = interp("frames", "out", "--factor", "2", weights=weights)
    assert result.exit_code == 0, result.output
    out = work / "out"
    assert sorted(p.name for p in out.iterdir()) == [f"frame_{i:06d}.png" for i in range(1, 20)]
    # Inputs come through as themselves (PNG is lossless), in natural order: f2 second, f10 last.
    assert np.array_equal(read_image(out / "frame_000001.png"), frames[0])
    assert np.array_equal(read_image(out / "frame_000003.png"), frames[1])
    assert np.array_equal(read_image(out / "frame_000019.png"), frames[9])
    assert read_image(out / "frame_000002.png").shape == (48, 64, 3)


def test_pair_of_images_makes_one_in_between(work: Path, weights: Path) -> None:
    result = interp("a.png", "b.png", "mid.png", weights=weights)
    assert result.exit_code == 0, result.output
    assert read_image(work / "mid.png").shape == read_image(work / "a.png").shape == (25, 33, 3)


def test_gif_output(work: Path, weights: Path) -> None:
    result = interp("in.mp4", "out.gif", "--fps", "50", weights=weights)  # 29.97 fps with audio in
    assert result.exit_code == 0, result.output
    assert "audio stream 1 cannot be stored in .gif; left out" in plain(result.stderr)
    info = probe(work / "out.gif")
    assert (info.codec, info.width, info.height, info.has_audio) == ("gif", 64, 48, False)
    assert info.n_frames == output_count(12, NTSC, fps=Fraction(50))
    frames = list(FrameSource(work / "out.gif"))
    assert len(frames) == info.n_frames and psnr(frames[0], list(FrameSource(work / "in.mp4"))[0]) > 25


def test_no_audio_drops_audio(work: Path, weights: Path) -> None:
    result = interp("in.mp4", "out.mp4", "--no-audio", weights=weights)
    assert result.exit_code == 0, result.output
    assert not probe(work / "out.mp4").has_audio


def test_force_replaces_an_existing_output(work: Path, weights: Path) -> None:
    result = interp("in.mp4", "taken.mp4", "--force", weights=weights)
    assert result.exit_code == 0, result.output
    assert probe(work / "taken.mp4").n_frames == 23


# --- bad input: one line, exit code 2, nothing touched ------------------------------------------------------

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")

BAD_INPUT = [
    pytest.param(["missing.mp4", "out.mp4"], "missing.mp4 does not exist", id="missing input"),
    pytest.param(["notvideo.mp4", "out.mp4"], "not a readable video", id="text file named .mp4"),
    pytest.param(["one.mp4", "out.mp4"], "has 1 frame", id="one frame"),
    pytest.param(["zero.mkv", "out.mp4"], "no video frames", id="zero frames"),
    pytest.param(["in.mp4", "taken.mp4"], "exists; use --force", id="output exists"),
    pytest.param(["in.mp4", "in.mp4"], "is the input", id="output is the input"),
    pytest.param(["in.mp4", "./in.mp4", "--force"], "is the input", id="output is the input with force"),
    pytest.param(["a.png", "b.png", "a.png", "--force"], "is an input", id="pair output is an input"),
    pytest.param(["in.mp4", "nodir/out.mp4"], "does not exist", id="output folder missing"),
    pytest.param(["in.mp4", "notes.txt/out.mp4"], "not a folder", id="output folder is a file"),
    pytest.param(["in.mp4", "out.mp4", "--factor", "1"], "'--factor'", id="factor 1"),
    pytest.param(["in.mp4", "out.mp4", "--factor", "2", "--fps", "60"], "not both", id="factor and fps"),
    pytest.param(["in.mp4", "out.mp4", "--fps", "20"], "above the input fps", id="fps below the input"),
    pytest.param(["in.mp4", "out.mp4", "--fps", "fast"], "not a frame rate", id="fps not a rate"),
    pytest.param(["in.mp4", "out.mp4", "--fps", "100000"], "more than framefill makes (at most 1024 frames",
                 id="fps too high"),
    pytest.param(["in.mp4", "out.mp4", "--model", "foo"], "'foo' is not a model; choose film or convlstm",
                 id="unknown model"),
    pytest.param(["a.png", "b.png", "mid.png", "--factor", "4"], "do not apply", id="pair with factor"),
    pytest.param(["in.mp4", "out.mp4", "--device", "cuda"], "no CUDA device", id="cuda without cuda", marks=no_cuda),
    pytest.param(["in.mp4", "out.mp4", "--weights", "gone.safetensors"], "weights not found", id="weights missing"),
    pytest.param(["in.mp4", "out.mp4", "--weights", "notes.txt"], "not a safetensors file", id="weights not weights"),
    pytest.param(["in.mp4", "out.mp4", "--bogus"], "No such option", id="unknown option"),
    pytest.param(["in.mp4", "out.gif"], "a GIF shows at most 50 frames per second", id="gif above 50 fps"),
    pytest.param(["in.mp4", "out.mp4", "--slowmo", "1"], "'--slowmo'", id="slowmo 1"),
    pytest.param(["a.png", "b.png", "mid.png", "--slowmo", "2"], "do not apply", id="pair with slowmo"),
    pytest.param(["in24.mp4", "out.gif", "--codec", "libx264"], "libx264 cannot be stored in .gif", id="gif codec"),
]


def test_the_model_names_the_cli_knows_are_the_architectures() -> None:
    from framefill.cli_app import MODELS
    from framefill.models import architectures

    assert sorted(MODELS) == architectures()


@pytest.mark.parametrize(("args", "message"), BAD_INPUT)
def test_bad_input_is_one_error_line_and_touches_nothing(work: Path, weights: Path, args: list[str],
                                                         message: str) -> None:
    if args[0] == "zero.mkv" and not (work / "zero.mkv").exists():
        pytest.skip("could not make a video of zero frames with this ffmpeg")
    before = snapshot(work)
    result = interp(*args, weights=weights)
    assert_refused(result)
    assert message in plain(result.stderr)
    assert snapshot(work) == before  # inputs untouched, no output, no temp files


def test_unwritable_output_folder(work: Path, weights: Path) -> None:
    locked = work / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root writes anyway; "output folder is a file" covers everyone
            pytest.skip("running as root: a 0o500 folder is still writable")
        before = snapshot(work)
        result = interp("in.mp4", "locked/out.mp4", weights=weights)
        assert_refused(result)
        assert "cannot write to folder" in result.stderr
        assert snapshot(work) == before
    finally:
        locked.chmod(0o700)


def test_truncated_stream_decodes_what_it_can_or_fails_cleanly(work: Path, weights: Path) -> None:
    result = interp("trunc.mkv", "out.mp4", weights=weights)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    if result.exit_code == 0:
        assert probe(work / "out.mp4").n_frames >= 3
    else:
        assert_refused(result)
        assert not (work / "out.mp4").exists()
    assert sorted(p.name for p in work.iterdir() if p.name.startswith(".")) == []


def test_a_cut_video_says_in_a_warning_line_that_frames_were_lost(work: Path, weights: Path) -> None:
    """Warnings from inside the pipeline (logging) read as the commands' own: ``warning: ...``, and a file that
    decodes short says how many of its frames were lost."""
    env = {k: v for k, v in os.environ.items() if k not in ("FRAMEFILL_DEBUG", "FRAMEFILL_LOG")}
    full = make_clip(work / "full.mkv", n=20)
    (work / "cut.mkv").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    done = subprocess.run([sys.executable, "-m", "framefill", "interp", "cut.mkv", "out.mp4", "--weights", str(weights),
                           "--device", "cpu", "-q"], cwd=work, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = plain(done.stderr).strip().splitlines()
    assert lines and all(line.startswith("warning: ") for line in lines), done.stderr
    assert any(re.search(r"only \d+ frames could be decoded where the file states about 2[01] ", line)
               for line in lines), done.stderr


@pytest.mark.parametrize(("error", "code"), [(KeyboardInterrupt, 130), (RuntimeError("the model broke"), 1)],
                         ids=["ctrl-c", "failure"])
def test_interrupted_or_failed_job_leaves_nothing(work: Path, weights: Path, monkeypatch: pytest.MonkeyPatch,
                                                  error: BaseException, code: int) -> None:
    real = framefill.pipeline.interpolate_frames

    def breaks_after_a_few_frames(*args: object, **kwargs: object) -> Iterator[np.ndarray]:
        for i, frame in enumerate(real(*args, **kwargs)):  # type: ignore[arg-type]
            if i == 5:
                raise error
            yield frame

    monkeypatch.setattr(framefill.pipeline, "interpolate_frames", breaks_after_a_few_frames)
    before = snapshot(work)
    result = interp("in.mp4", "out.mp4", weights=weights)
    assert_refused(result, code)
    assert snapshot(work) == before
    assert child_processes() == []  # both ffmpegs stopped and reaped


# --- the real process: exit codes and stderr as a shell sees them -------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["missing.mp4", "out.mp4"], id="missing input"),
        pytest.param(["in.mp4", "out.mp4", "--factor", "1"], id="factor 1"),
        pytest.param(["notvideo.mp4", "out.mp4"], id="text file named .mp4"),
        pytest.param(["in.mp4", "taken.mp4"], id="output exists"),
    ],
)
def test_process_exits_2_with_one_error_line(work: Path, weights: Path, args: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("FRAMEFILL_DEBUG", "FRAMEFILL_LOG")}
    before = snapshot(work)
    done = subprocess.run([sys.executable, "-m", "framefill", "interp", *args, "--weights", str(weights)],
                          cwd=work, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert_one_error(done.stderr, done.stdout)
    assert snapshot(work) == before


SIGNAL_SCRIPT = """
import sys, time
import framefill.pipeline, framefill.resume
from framefill.cli import main

def waits_for_a_signal(real):
    def frames(*args, **kwargs):
        for i, frame in enumerate(real(*args, **kwargs)):
            if i == 3:  # mid-run: ffmpeg decoding and encoding, the output half-written beside its path
                print("ready", flush=True)
                time.sleep(50)
            yield frame
    return frames

framefill.pipeline.interpolate_frames = waits_for_a_signal(framefill.pipeline.interpolate_frames)
framefill.resume.segment_frames = waits_for_a_signal(framefill.resume.segment_frames)
sys.argv = ["framefill", *sys.argv[1:]]
main()
"""


@pytest.mark.skipif(os.name != "posix", reason="sends signals")
@pytest.mark.parametrize(("sig", "code", "message"), [(signal.SIGTERM, 143, "terminated"),
                                                      (signal.SIGINT, 130, "interrupted"),
                                                      (getattr(signal, "SIGHUP", 1), 129, "hung up")],
                         ids=["SIGTERM", "SIGINT", "SIGHUP"])
@pytest.mark.parametrize("resume", [False, True], ids=["single run", "resume"])
def test_a_signal_mid_run_exits_with_its_code_and_leaves_nothing(work: Path, weights: Path, sig: int, code: int,
                                                                 message: str, resume: bool) -> None:
    """SIGTERM (kill, timeout, SLURM, systemd) ends in 143, Ctrl-C in 130 and SIGHUP (the terminal closed) in 129, as
    schedulers and shells read them; all clean up: nothing at the output path, no hidden partial file, ffmpeg
    stopped (with --resume the work folder is kept on purpose, and the same command then finishes the job)."""
    env = {k: v for k, v in os.environ.items() if k not in ("FRAMEFILL_DEBUG", "FRAMEFILL_LOG")}
    args = ["interp", "in.mp4", "out.mp4", "--weights", str(weights), "--device", "cpu", "-q",
            *(["--resume", "--segment-length", "6"] if resume else [])]
    before = snapshot(work)
    # (a run that inherits an ignored SIGHUP, as under nohup, rightly goes on: start it as a terminal would)
    hangup = (lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL)) if sig == getattr(signal, "SIGHUP", None) else None
    proc = subprocess.Popen([sys.executable, "-c", SIGNAL_SCRIPT, *args], cwd=work, env=env, preexec_fn=hangup,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.communicate(timeout=5)  # type: ignore[union-attr]
        ffmpegs = [line.split()[0] for line in child_processes(proc.pid)]
        assert ffmpegs
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, err
    assert_one_error(err, "", message)
    assert not any(Path(f"/proc/{pid}").exists() for pid in ffmpegs)  # stopped and reaped, not orphaned
    folder = work / "out.mp4.framefill-work"
    if not resume:
        assert snapshot(work) == before
        return
    assert not (work / "out.mp4").exists()
    assert sorted(p.name for p in work.iterdir() if p.name.startswith(".")) == []
    assert (folder / "manifest.json").exists() and not [p for p in folder.iterdir() if p.name.startswith(".")]
    result = interp(*args[1:], weights=weights)
    assert result.exit_code == 0, result.output
    assert probe(work / "out.mp4").n_frames == 23 and not folder.exists()


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX signals")
@pytest.mark.parametrize("before", [signal.SIG_DFL, signal.SIG_IGN], ids=["terminal", "nohup"])
def test_a_hang_up_stops_a_run_unless_it_runs_under_nohup(before: object) -> None:
    """The terminal closing (SIGHUP) stops a run as SIGTERM does (the test above); a run started with nohup, which
    ignores SIGHUP, keeps running."""
    from framefill.cli_app import stop_on_signal, stop_on_signals

    saved = signal.getsignal(signal.SIGHUP), signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGHUP, before)
        stop_on_signals()
        assert signal.getsignal(signal.SIGTERM) is stop_on_signal
        assert signal.getsignal(signal.SIGHUP) is (stop_on_signal if before is signal.SIG_DFL else signal.SIG_IGN)
    finally:
        signal.signal(signal.SIGHUP, saved[0])
        signal.signal(signal.SIGTERM, saved[1])


# --- the four-frame model --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def convlstm_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained convlstm-tiny (its output is its film-tiny part's): enough for pipeline tests."""
    path = tmp_path_factory.mktemp("weights") / "convlstm-tiny.safetensors"
    save_model(path, build_model("convlstm", "convlstm-tiny"), architecture="convlstm")
    return path


def test_convlstm_factor_4_keeps_rate_size_and_audio(work: Path, convlstm_weights: Path) -> None:
    result = interp("in.mp4", "out.mp4", "--model", "convlstm", "--factor", "4", weights=convlstm_weights)
    assert result.exit_code == 0, result.output
    assert "wrote out.mp4: 12 -> 45 frames" in plain(result.stderr)
    info = probe(work / "out.mp4")
    assert (info.n_frames, info.fps, info.width, info.height) == (45, 4 * NTSC, 64, 48)
    assert info.has_audio


def test_convlstm_fps_60_from_24_and_odd_sizes(work: Path, convlstm_weights: Path) -> None:
    result = interp("in24.mp4", "out.mp4", "--model", "convlstm", "--fps", "60", weights=convlstm_weights)
    assert result.exit_code == 0, result.output
    info = probe(work / "out.mp4")
    assert (info.n_frames, info.fps) == (output_count(12, 24, fps=Fraction(60)), Fraction(60))
    result = interp("odd.mp4", "out.mkv", "--model", "convlstm", weights=convlstm_weights)
    assert result.exit_code == 0, result.output
    assert (probe(work / "out.mkv").width, probe(work / "out.mkv").height) == (33, 25)


@pytest.mark.parametrize(("args", "message"), [
    (["--tile", "64"], "film only"),
    (["--weights", "FILM"], "holds a 'film' model, not 'convlstm'"),
], ids=["tiles", "film weights"])
def test_convlstm_refusals(work: Path, convlstm_weights: Path, weights: Path, args: list[str],
                           message: str) -> None:
    args = [str(weights) if a == "FILM" else a for a in args]
    result = interp("in.mp4", "out.mp4", "--model", "convlstm", *args, weights=convlstm_weights)
    assert_refused(result)
    assert message in plain(result.stderr)
    assert not (work / "out.mp4").exists()


def test_convlstm_runs_on_its_shipped_weights(work: Path) -> None:
    result = runner.invoke(app, ["interp", "in.mp4", "out.mp4", "--model", "convlstm", "--quiet"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert probe(work / "out.mp4").n_frames == output_count(12, NTSC, factor=2)


def test_an_architecture_without_shipped_weights_refuses_in_one_line(work: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Where no weights are shipped for a model, interp and info say so, in words a user can act on."""
    import framefill.models as models

    film_only = tmp_path / "film-only"
    film_only.mkdir()
    shutil.copy(models.default_weights("film"), film_only)
    monkeypatch.setattr(models, "WEIGHTS_DIR", film_only)
    monkeypatch.setitem(models.NOT_SHIPPED, "convlstm", "framefill ships no convlstm weights; give --weights FILE")
    result = runner.invoke(app, ["interp", "in.mp4", "out.mp4", "--model", "convlstm"])
    assert_refused(result)
    assert "framefill ships no convlstm weights" in plain(result.stderr) and "--weights FILE" in plain(result.stderr)
    assert not (work / "out.mp4").exists()
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0 and "convlstm: framefill ships no convlstm weights" in result.stdout


def test_auto_precision_follows_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import framefill.pipeline as pipeline

    cpu = torch.device("cpu")
    monkeypatch.setattr(pipeline, "cpu_has_native_bf16", lambda: True)
    assert pipeline.resolve_dtype("auto", cpu) == torch.bfloat16
    monkeypatch.setattr(pipeline, "cpu_has_native_bf16", lambda: False)
    assert pipeline.resolve_dtype("auto", cpu) == torch.float32
    assert pipeline.resolve_dtype("auto", torch.device("cuda")) == torch.float16
    assert pipeline.resolve_dtype("bf16", cpu) == torch.bfloat16
    with pytest.raises(ValueError, match="fp16 is not supported on the CPU"):
        pipeline.resolve_dtype("fp16", cpu)
