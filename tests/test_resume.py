"""Resumable jobs and fan-out through the command line: killed runs resume to the uninterrupted output, changed
settings are refused, segments made apart and joined equal a single run (also VFR input, rates that do not divide).

Outputs are compared packet by packet (``ffmpeg -map 0 -c copy -f framecrc``: every stream's timestamps, sizes and
checksums) where they must be identical, frame by frame (decoded pixels, timestamps) where the encoder may differ.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    FFMPEG,
    assert_one_error,
    help_text,
    make_clip,
    plain,
    psnr,
    retime_unevenly,
    save_tiny_film,
    work_in,
)
from typer.testing import CliRunner, Result

import framefill
import framefill.resume
import framefill.segments
from framefill.cli import app
from framefill.video import FrameSource, probe

runner = CliRunner()
ROOT = Path(framefill.__file__).resolve().parent.parent
COMMON = ["--precision", "fp32", "--device", "cpu", "-q"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    torch.manual_seed(0)
    return save_tiny_film(tmp_path_factory.mktemp("weights") / "film-tiny.safetensors")


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("clips")
    make_clip(d / "in.mp4", n=24)  # 30000/1001 fps, with audio
    make_clip(d / "subs.mkv", n=12, subtitles=True)
    retime_unevenly(make_clip(d / "even.mp4", n=16, audio=False), d / "vfr.mp4")
    return d


@pytest.fixture
def work(tmp_path: Path, clips: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return work_in(tmp_path, clips, monkeypatch)


def cli(*args: str, weights: Path) -> Result:
    """``framefill interp ARGS`` with the test weights in fp32 on the CPU, unless ARGS name others."""
    extra = [*(["--weights", str(weights)] if "--weights" not in args else []),
             *(["--precision", "fp32"] if "--precision" not in args else []), "--device", "cpu", "-q"]
    return runner.invoke(app, [*args, *extra])


def packets(path: Path) -> list[str]:
    """Every packet of every stream: stream, dts, pts, duration, size, checksum."""
    done = subprocess.run([FFMPEG, "-v", "error", "-i", str(path), "-map", "0", "-c", "copy", "-f", "framecrc", "-"],
                          capture_output=True, text=True, check=True)
    return [line for line in done.stdout.splitlines() if not line.startswith("#software")]


def frames(path: Path) -> list[np.ndarray]:
    with FrameSource(path) as source:
        return list(source)


def assert_same_video(a: Path, b: Path, min_psnr: float | None = None) -> None:
    """Same frame count, rate, timestamps and audio; pixels equal (or, with ``min_psnr``, that close)."""
    ia, ib = probe(a), probe(b)
    assert (ia.n_frames, ia.fps, ia.has_audio, ia.has_subtitles) == (ib.n_frames, ib.fps, ib.has_audio,
                                                                     ib.has_subtitles)
    assert ia.frame_times == ib.frame_times
    fa, fb = frames(a), frames(b)
    assert len(fa) == len(fb) == ia.n_frames
    for k, (x, y) in enumerate(zip(fa, fb, strict=True)):
        if min_psnr is None:
            assert np.array_equal(x, y), f"frame {k} differs"
        else:
            assert psnr(x, y) >= min_psnr, f"frame {k}: {psnr(x, y):.1f} dB"


# --- resume ------------------------------------------------------------------------------------------------------


def test_killed_runs_resume_to_the_uninterrupted_output(work: Path, weights: Path) -> None:
    job = ["in.mp4", "--factor", "2", "--codec", "ffv1", "--segment-length", "6", "--weights", str(weights), *COMMON]
    reference = runner.invoke(app, ["interp", job[0], "whole.mkv", *job[1:], "--resume"])
    assert reference.exit_code == 0, reference.output
    assert not (work / "whole.mkv.framefill-work").exists()
    seed = int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    folder = work / "out.mkv.framefill-work"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    kills = 0
    for attempt in range(6):  # 8 segments: kill twice or more at random points, then let it finish
        proc = subprocess.Popen([sys.executable, "-m", "framefill", "interp", job[0], "out.mkv", *job[1:],
                                 "--resume"], env=env, stderr=subprocess.PIPE, text=True)
        if attempt < 2 or (attempt < 5 and rng.random() < 0.5):
            have = len(list(folder.glob("0*.mp4"))) if folder.exists() else 0
            target = min(have + rng.randint(0, 2), 5)  # kill once this many segments are finished, a moment later
            deadline = time.monotonic() + 60
            while proc.poll() is None and time.monotonic() < deadline and (
                    not (folder / "manifest.json").exists() or len(list(folder.glob("0*.mp4"))) < target):
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.05))  # short: the run must not finish first (8 segments)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
        proc.wait(timeout=120)
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, (seed, proc.stderr.read() if proc.stderr else "")
        assert not (work / "out.mkv").exists()
    assert proc.returncode == 0, (seed, proc.stderr.read() if proc.stderr else "")
    assert kills >= 2, seed
    assert not folder.exists()
    assert packets(work / "out.mkv") == packets(work / "whole.mkv"), seed  # every packet: frames, times, audio
    assert [p.name for p in work.iterdir() if p.name.startswith(".")] == []


def interrupt_after_segments(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    """Ctrl-C once ``count`` segments are finished."""
    real = framefill.resume.segment_frames
    made = []

    def segment_frames(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        if len(made) == count:
            raise KeyboardInterrupt
        made.append(1)
        yield from real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(framefill.resume, "segment_frames", segment_frames)


def test_changed_settings_are_refused_and_no_resume_starts_over(work: Path, weights: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    job = ["interp", "in.mp4", "out.mp4", "--segment-length", "10"]
    with monkeypatch.context() as m:
        interrupt_after_segments(m, 2)
        result = cli(*job, "--resume", weights=weights)
    assert result.exit_code == 130, result.output
    folder = work / "out.mp4.framefill-work"
    kept = sorted(p.name for p in folder.iterdir())
    assert kept == ["00000.mp4", "00001.mp4", "manifest.json"]
    other = work / "other.safetensors"
    import torch

    torch.manual_seed(1)
    save_tiny_film(other)
    for change, message in [(["--factor", "3"], "it was made with --factor 2, not --factor 3"),
                            (["--fps", "50"], "it was made with --factor 2, not --fps 50"),
                            (["--crf", "20"], "it was made with crf 18, not 20"),
                            (["--no-scene-detect"], "it was made with --scene-detect True, not False"),
                            (["--weights", str(other)], "it was made with other weights"),
                            (["--precision", "bf16"], "it was made with precision float32, not bfloat16")]:
        result = cli(*job, *change, weights=weights)  # no --resume: the folder is found and would be resumed
        assert result.exit_code == 2, (change, result.output)
        assert_one_error(result.stderr, result.stdout, "holds the work of another job")
        assert message in plain(result.stderr), plain(result.stderr)
        assert "--no-resume" in plain(result.stderr)
        assert sorted(p.name for p in folder.iterdir()) == kept
    shutil.copy(work / "in.mp4", work / "in_copy.mp4")
    make_clip(work / "in.mp4", n=24, fps=Fraction(25))  # the input itself changed
    result = cli(*job, weights=weights)
    assert_one_error(result.stderr, result.stdout, "it was made from another input")
    shutil.copy(work / "in_copy.mp4", work / "in.mp4")  # back as it was: resumes
    result = cli(*job, weights=weights)
    assert result.exit_code == 0, result.output
    assert probe(work / "out.mp4").n_frames == 47 and not folder.exists()
    with monkeypatch.context() as m:
        interrupt_after_segments(m, 1)
        assert cli(*job, "--force", "--resume", weights=weights).exit_code == 130
    result = cli(*job, "--force", "--factor", "3", "--no-resume", weights=weights)
    assert result.exit_code == 0, result.output
    assert probe(work / "out.mp4").n_frames == 70 and not folder.exists()


def test_a_kill_during_the_join_keeps_the_segments(work: Path, weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job = ["interp", "in.mp4", "out.mkv", "--codec", "ffv1", "--segment-length", "16", "--resume"]
    assert cli(*job[:2], "whole.mkv", *job[3:], weights=weights).exit_code == 0
    real = os.replace

    def killed_while_joining(a: str | Path, b: str | Path) -> None:
        if Path(b).name == "out.mkv":
            raise KeyboardInterrupt
        real(a, b)

    with monkeypatch.context() as m:
        m.setattr(framefill.resume.os, "replace", killed_while_joining)
        assert cli(*job, weights=weights).exit_code == 130
    folder = work / "out.mkv.framefill-work"
    assert sorted(p.name for p in folder.glob("0*.mp4")) == ["00000.mp4", "00001.mp4", "00002.mp4"]
    assert not (work / "out.mkv").exists()
    with monkeypatch.context() as m:  # the resumed run joins again and makes no segment
        m.setattr(framefill.resume, "segment_frames", None)
        result = cli(*job, weights=weights)
    assert result.exit_code == 0, result.output
    assert packets(work / "out.mkv") == packets(work / "whole.mkv")


def test_a_finished_job_run_again_is_complete_and_changes_nothing(work: Path, weights: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A retrying scheduler runs the same command again after it succeeded: exit 0, nothing recomputed or rewritten
    (the output's comment names its job). Another job's output, or a file framefill did not join, is refused."""
    job = ["interp", "in.mp4", "out.mp4", "--resume", "--segment-length", "10", "--weights", str(weights),
           "--precision", "fp32", "--device", "cpu"]
    real_rmtree = shutil.rmtree

    def killed_after_the_join(path: str | Path, *args: object, **kwargs: object) -> None:
        if Path(path).name == "out.mp4.framefill-work":
            raise KeyboardInterrupt
        real_rmtree(path, *args, **kwargs)  # type: ignore[arg-type]

    with monkeypatch.context() as m:  # the output is complete, the work folder still there
        m.setattr(framefill.resume.shutil, "rmtree", killed_after_the_join)
        assert runner.invoke(app, [*job, "-q"]).exit_code == 130
    folder = work / "out.mp4.framefill-work"
    assert folder.exists() and probe(work / "out.mp4").n_frames == 47
    before = (work / "out.mp4").stat().st_mtime_ns, (work / "out.mp4").read_bytes()
    for _ in range(2):
        with monkeypatch.context() as m:  # nothing may be made or joined again
            m.setattr(framefill.resume, "segment_frames", None)
            m.setattr(framefill.resume, "join", None)
            result = runner.invoke(app, job)
        assert result.exit_code == 0, result.output
        assert "out.mp4 is already complete (47 frames" in plain(result.stderr)
        assert ((work / "out.mp4").stat().st_mtime_ns, (work / "out.mp4").read_bytes()) == before
        assert not folder.exists()
    for other in (["--factor", "3"], ["--crf", "20"]):
        result = cli(*job, *other, weights=weights)
        assert result.exit_code == 2, result.output
        assert_one_error(result.stderr, result.stdout, "out.mp4 exists; use --force to overwrite")
    shutil.copy(work / "in.mp4", work / "taken.mp4")  # a video framefill did not write
    result = cli(*[a if a != "out.mp4" else "taken.mp4" for a in job], weights=weights)
    assert_one_error(result.stderr, result.stdout, "taken.mp4 exists; use --force to overwrite")
    assert ((work / "out.mp4").stat().st_mtime_ns, (work / "out.mp4").read_bytes()) == before


def test_a_finished_segment_run_again_changes_nothing(work: Path, weights: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    fan_out("in.mp4", 2, "parts", weights=weights)
    made = work / "parts" / "00000.mp4"
    before = made.stat().st_mtime_ns, made.read_bytes()
    monkeypatch.setattr(framefill.resume, "segment_frames", None)
    result = runner.invoke(app, ["interp", "in.mp4", "--segments", "2", "--segment", "1", "--work", "parts",
                                 "--weights", str(weights), "--precision", "fp32", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "segment 1 of 2 is already in parts; nothing to do" in plain(result.stderr)
    assert (made.stat().st_mtime_ns, made.read_bytes()) == before


def test_resume_refuses_what_it_cannot_join(work: Path, weights: Path) -> None:
    for out, message in [("out.gif", "segments join into video files"), ("frames/", "segments join into video")]:
        result = cli("interp", "in.mp4", out, "--resume", weights=weights)
        assert result.exit_code == 2
        assert_one_error(result.stderr, result.stdout, message)
    assert not list(work.glob("*framefill-work"))



def test_debug_and_montage_are_refused_with_segmented_runs(work: Path, weights: Path) -> None:
    for extra in (["--debug", "dbg"], ["--montage", "side.mp4"]):
        result = cli("interp", "in.mp4", "out.mp4", "--resume", *extra, weights=weights)
        assert result.exit_code == 2
        assert_one_error(result.stderr, result.stdout, "do not combine with --resume")
        result = cli("interp", "in.mp4", "--segments", "2", "--segment", "1", "--work", "parts", *extra,
                     weights=weights)
        assert result.exit_code == 2
    assert not list(work.glob("*framefill-work")) and not (work / "parts").exists() and not (work / "dbg").exists()

# --- fan-out ------------------------------------------------------------------------------------------------------


def fan_out(src: str, n: int, work_dir: str, *options: str, weights: Path, order: list[int] | None = None) -> None:
    for k in order or range(1, n + 1):
        result = cli("interp", src, "--segments", str(n), "--segment", str(k), "--work", work_dir, *options,
                     weights=weights)
        assert result.exit_code == 0, result.output


@pytest.mark.parametrize(("src", "options", "n"), [
    ("in.mp4", ["--factor", "2"], 3),
    ("in.mp4", ["--fps", "50"], 4),  # 30000/1001 -> 50: a ratio of 5005/3000
    ("vfr.mp4", ["--factor", "2"], 3),  # frames placed by their own timestamps
    ("subs.mkv", ["--fps", "60"], 2),
], ids=["factor 2", "ntsc to 50", "vfr", "subtitles"])
def test_segments_joined_equal_a_single_run(work: Path, weights: Path, src: str, options: list[str], n: int) -> None:
    lossless = ["--codec", "ffv1"]
    assert cli("interp", src, "single.mkv", *options, *lossless, weights=weights).exit_code == 0
    fan_out(src, n, "parts", *options, *lossless, weights=weights, order=list(range(n, 0, -1)))
    result = runner.invoke(app, ["join", "parts", "joined.mkv"])
    assert result.exit_code == 0, result.output
    assert f"from {n} segments" in plain(result.stderr)
    assert_same_video(work / "single.mkv", work / "joined.mkv")
    if src == "vfr.mp4":
        assert probe(work / "joined.mkv").n_frames == probe(work / "single.mkv").n_frames != 2 * 16 - 1


def test_h264_segments_joined_are_within_the_encoders_tolerance(work: Path, weights: Path) -> None:
    """H.264 segments start with their own keyframes, so pixels differ from the single run by encoder noise only:
    frames, timestamps and audio are the same, and every frame is above 30 dB (measured on this job: 36.0 dB at
    worst, 37.5 dB median, on the 64x48 test pattern at CRF 18)."""
    assert cli("interp", "in.mp4", "single.mp4", "--fps", "50", weights=weights).exit_code == 0
    fan_out("in.mp4", 3, "parts", "--fps", "50", weights=weights)
    assert runner.invoke(app, ["join", "parts", "joined.mp4"]).exit_code == 0
    assert_same_video(work / "single.mp4", work / "joined.mp4", min_psnr=30)
    single = [line for line in packets(work / "single.mp4") if line.startswith("1,")]
    assert single and single == [line for line in packets(work / "joined.mp4") if line.startswith("1,")]  # audio


def test_a_segment_of_another_size_is_not_joined(work: Path, weights: Path) -> None:
    from framefill.resume import segment_path

    fan_out("in.mp4", 2, "parts", weights=weights)
    make_clip(segment_path(work / "parts", 1), w=32, h=24, n=20)  # another video where segment 2 was
    result = runner.invoke(app, ["join", "parts", "out.mp4"])
    assert result.exit_code == 2
    assert_one_error(result.stderr, result.stdout, "00001.mp4 is 32x24")
    assert not (work / "out.mp4").exists()


def test_fan_out_refusals_and_missing_segments(work: Path, weights: Path) -> None:
    fan_out("in.mp4", 3, "parts", weights=weights, order=[1, 3])
    result = runner.invoke(app, ["join", "parts", "out.mp4"])
    assert result.exit_code == 2
    assert_one_error(result.stderr, result.stdout, "lacks 1 of its 3 segments (2)")
    assert not (work / "out.mp4").exists()
    result = cli("interp", "in.mp4", "--segments", "4", "--segment", "2", "--work", "parts", weights=weights)
    assert_one_error(result.stderr, result.stdout, "it is split into 3 segments, not 4")
    result = cli("interp", "in.mp4", "--segments", "3", "--segment", "2", "--work", "parts", "--factor", "4",
                 weights=weights)
    assert_one_error(result.stderr, result.stdout, "it was made with --factor 2, not --factor 4")
    for args, message in [(["--segments", "3", "--segment", "4", "--work", "p"], "not one of the 3 segments"),
                          (["--segments", "3", "--segment", "1"], "add --work"),
                          (["out.mp4", "--segments", "3", "--segment", "1", "--work", "p"], "give the INPUT only")]:
        result = cli("interp", "in.mp4", *args, weights=weights)
        assert result.exit_code == 2, result.output
        assert_one_error(result.stderr, result.stdout, message)
    fan_out("in.mp4", 3, "parts", weights=weights, order=[2])
    (work / "elsewhere").mkdir()
    shutil.move(work / "in.mp4", work / "elsewhere" / "in.mp4")
    result = runner.invoke(app, ["join", "parts", "out.mp4"])
    assert_one_error(result.stderr, result.stdout, "give --input PATH")
    result = runner.invoke(app, ["join", "parts", "out.mp4", "--input", "subs.mkv"])
    assert_one_error(result.stderr, result.stdout, "is not the video these segments were made from")
    result = runner.invoke(app, ["join", "parts", "out.mp4", "--input", "elsewhere/in.mp4"])
    assert result.exit_code == 0, result.output
    assert probe(work / "out.mp4").n_frames == 47 and probe(work / "out.mp4").has_audio


def test_help_shows_resume_fan_out_and_join() -> None:
    text = help_text("interp")
    for words in ("--resume", "--no-resume", "--segment-length", "--segments", "--segment", "--work"):
        assert words in text
    assert "join [OPTIONS] DIR OUTPUT" in help_text("join")
    assert "join" in plain(runner.invoke(app, ["-h"]).stdout)
