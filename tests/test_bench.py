"""framefill bench: parsing, the memory probe, the pipeline's stage times, and the command end to end.

Tiny everything (film-tiny, 64x48 frames, one or two timed calls): these tests check that every figure is there
and means what it says, not how fast anything is.
"""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import LOSSLESS, assert_one_error, help_text, moving_square, no_cuda, plain, save_tiny_film, write_clip
from typer.testing import CliRunner

import framefill.bench
from framefill.bench import default_sizes, model_presets, parse_size
from framefill.bench_e2e import synthetic_frames
from framefill.bench_model import ModelRow, PeakMemory, measure_model
from framefill.cli import app
from framefill.interpolate import ScheduleConfig
from framefill.models import REGISTRY, build_model
from framefill.pipeline import StageTimes, interpolate_video
from framefill.video import read_image

runner = CliRunner()
CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")



# --- parsing and choices ------------------------------------------------------------------------------------------


def test_parse_size() -> None:
    assert parse_size("1280x720") == (1280, 720)
    assert parse_size(" 64X48 ") == (64, 48)
    for bad in ("1280", "x720", "1280x", "0x10", "-5x10", "axb", "12.5x10"):
        with pytest.raises(ValueError, match="is not WIDTHxHEIGHT"):
            parse_size(bad)


def test_default_sizes_add_4k_on_cuda_only() -> None:
    assert default_sizes(CPU) == ((960, 540), (1280, 720), (1920, 1080))
    assert default_sizes(torch.device("cuda"))[-1] == (3840, 2160)


def test_every_registered_preset_is_benched_by_default() -> None:
    pairs = model_presets()
    assert pairs == [(a, p) for a in sorted(REGISTRY) for p in REGISTRY[a][2]]
    assert model_presets("film", ["film-tiny"]) == [("film", "film-tiny")]
    with pytest.raises(ValueError, match="unknown preset 'film-xl'"):
        model_presets(None, ["film-xl"])
    with pytest.raises(ValueError, match="unknown model 'rife'"):
        model_presets("rife")


# --- measurements ---------------------------------------------------------------------------------------------


def test_cpu_peak_memory_sees_a_short_lived_allocation() -> None:
    with PeakMemory(CPU) as mem:
        block = np.ones(64 * 2**20, dtype=np.uint8)  # 64 MB, touched
        del block
    assert mem.peak is not None and mem.kind.startswith("cpu")
    if "reset per measurement" in mem.kind:  # Linux: the peak of this block alone, although it is gone again
        assert mem.rise is not None and 48 <= mem.rise < 200  # (part of the block may reuse pages already held)


def test_measure_model_fills_every_figure() -> None:
    net = build_model("film", "film-tiny").eval()
    row = measure_model(net, ModelRow("film", "film-tiny", "random", "30x20", "", "fp32", 2, False), CPU,
                        torch.float32, repeat=3, warmup=1)
    assert row.status == "ok", row.status
    assert row.padded == "32x20"  # up to film-tiny's multiple of 4
    assert len(row.times) == 3 and row.ms_median == pytest.approx(1000 * float(np.median(row.times)))
    assert row.fps == pytest.approx(2 / np.median(row.times))
    assert row.peak_mb and row.peak_mb > 0 and row.memory_kind


class Spy(torch.nn.Module):
    """A model taking times: records how each call arrives (shape, layout, dtype and value of t)."""

    divisor, times = 8, (0.25, 0.5, 0.75)

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple] = []

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls.append((tuple(img0.shape), img0.is_contiguous(memory_format=torch.channels_last), img0.dtype,
                           t.dtype, t.tolist()))
        return (img0 + img1) / 2


def test_bench_calls_the_model_as_the_scheduler_does() -> None:
    from framefill.interpolate import interpolate_pair

    spy = Spy()
    frame = np.zeros((20, 30, 3), np.uint8)
    interpolate_pair(frame, frame, spy, 0.5)
    scheduled = spy.calls[-1]
    spy.calls.clear()
    row = measure_model(spy, ModelRow("spy", "spy", "random", "30x20", "", "fp32", 1, False), CPU, torch.float32,
                        repeat=1, warmup=0)
    assert row.status == "ok" and row.padded == "32x24"
    assert spy.calls[0] == scheduled == ((1, 3, 24, 32), True, torch.float32, torch.float32, [0.5])


def test_a_failing_compile_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_compiler(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no C++ compiler found\nmore detail")

    monkeypatch.setattr(torch, "compile", no_compiler)
    net = build_model("film", "film-tiny").eval()
    row = measure_model(net, ModelRow("film", "film-tiny", "random", "32x24", "", "fp32", 1, True), CPU,
                        torch.float32, repeat=1, warmup=0)
    assert row.status == "unavailable: RuntimeError: no C++ compiler found"
    assert row.ms_median is None and row.times == []


def test_stage_times_leave_the_job_unchanged(tmp_path: Path) -> None:
    src = write_clip(tmp_path / "in.mkv", list(moving_square(n=4)), options=LOSSLESS)
    net = build_model("film", "film-tiny").eval()
    timings = StageTimes()
    for out, t in ((tmp_path / "plain", None), (tmp_path / "timed", timings)):
        interpolate_video(src, out, net, ScheduleConfig(factor=2, batch_size=2), device=CPU, dtype=torch.float32,
                          timings=t)
    names = sorted(p.name for p in (tmp_path / "plain").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "timed").iterdir()) and len(names) == 7
    for name in names:
        assert np.array_equal(read_image(tmp_path / "plain" / name), read_image(tmp_path / "timed" / name))
    assert timings.wall > 0 and timings.decode > 0 and timings.model > 0 and timings.encode > 0
    assert timings.model + timings.wait_decode + timings.wait_encode + timings.finish <= timings.wall


def test_synthetic_clip_moves() -> None:
    frames = synthetic_frames(40, 30, 3)
    assert [f.shape for f in frames] == [(30, 40, 3)] * 3 and all(f.dtype == np.uint8 for f in frames)
    assert np.array_equal(frames[0][20:, 3:], frames[1][20:, :-3])  # below the square: a 3 px pan


# --- the command ------------------------------------------------------------------------------------------------


def test_bench_command_writes_complete_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = runner.invoke(app, ["bench", "--device", "cpu", "--preset", "film-tiny", "--size", "64x48",
                                 "--size", "40x30", "--batch", "1,2", "--repeat", "2", "--warmup", "1",
                                 "--e2e-frames", "3", "--json", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = plain(result.stdout)
    for words in ("model alone on cpu", "ms/call", "frames/s", "peak MB", "est B/px", "film-tiny", "random",
                  "end to end", "3 -> 5", "decode", "encode", "peak RSS"):
        assert words in text

    report = json.loads(out.read_text())
    assert report["config"]["models"] == [["film", "film-tiny"]]
    assert report["config"]["sizes"] == [[64, 48], [40, 30]] and report["config"]["batches"] == [1, 2]
    assert report["device"]["type"] == "cpu" and report["device"]["torch_threads"] == 1
    assert {"framefill", "torch", "numpy", "opencv", "ffmpeg", "python"} <= report["versions"].keys()
    rows = report["model"]
    dtypes = framefill.bench.default_dtypes(CPU)  # fp32, and bf16 on a CPU with bf16 instructions
    assert report["config"]["dtypes"] == list(dtypes)
    sizes = ("64x48", "40x30")
    assert [(r["dtype"], r["size"], r["batch"]) for r in rows] == [(d, s, b) for d in dtypes for s in sizes
                                                                  for b in (1, 2)]
    for r in rows:
        assert r["status"] == "ok" and r["weights"].startswith("random") and not r["compiled"]
        assert len(r["times"]) == 2 and r["ms_median"] > 0 and r["fps"] > 0
        assert r["peak_mb"] > 0 and r["rise_mb"] is not None and "RSS" in r["memory_kind"]
        assert r["rise_bytes_per_px"] is not None and r["est_bytes_per_px"] > 100  # film-tiny: about 1,000
    assert {r["size"]: r["padded"] for r in rows} == {"64x48": "64x48", "40x30": "40x32"}
    e2e = report["e2e"]
    assert [(r["dtype"], r["size"], r["frames_in"], r["frames_out"], r["batch"]) for r in e2e] == [
        (d, s, 3, 5, 2) for d in dtypes for s in sizes]
    for r in e2e:
        assert r["status"] == "ok" and r["fps_out"] > 0
        assert {"wall", "decode", "model", "encode", "wait_decode", "wait_encode", "finish"} == r["stages"].keys()
        assert {"decode", "model", "encode"} == r["shares"].keys()


def test_bench_uses_shipped_weights_only_for_their_preset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:

    shipped = tmp_path / "film.safetensors"
    save_tiny_film(shipped)
    monkeypatch.setattr(framefill.bench, "default_weights", lambda arch: shipped)
    assert framefill.bench.load_for_bench("film", "film-tiny", CPU, torch.float32)[1] == "shipped (film.safetensors)"
    assert framefill.bench.load_for_bench("film", "film-s", CPU, torch.float32)[1] == "random"


@pytest.mark.parametrize(("args", "message"), [
    pytest.param(["--size", "1280"], "--size '1280' is not WIDTHxHEIGHT", id="size without height"),
    pytest.param(["--size", "64x48,big"], "--size 'big' is not WIDTHxHEIGHT", id="size in a list"),
    pytest.param(["--batch", "0"], "--batch '0' is not a list", id="batch 0"),
    pytest.param(["--dtype", "fp64"], "unknown dtype 'fp64'", id="unknown dtype"),
    pytest.param(["--device", "cpu", "--dtype", "fp16"], "fp16 is not supported on the CPU", id="fp16 on cpu"),
    pytest.param(["--device", "cuda"], "no CUDA device", id="cuda without cuda", marks=no_cuda),
    pytest.param(["--device", "tpu"], "unknown device", id="unknown device"),
    pytest.param(["--preset", "film-xl"], "unknown preset 'film-xl'", id="unknown preset"),
    pytest.param(["--model", "rife"], "unknown model 'rife'", id="unknown model"),
    pytest.param(["--json", "nodir/b.json"], "does not exist", id="json folder missing"),
    pytest.param(["--repeat", "0"], "'--repeat'", id="repeat 0"),
])
def test_bench_bad_input_is_one_error_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str],
                                           message: str) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["bench", "--preset", "film-tiny", "--size", "32x32", *args])
    assert result.exit_code == 2, result.output
    assert_one_error(result.stderr, result.stdout, message)


def test_bench_help_reads_well() -> None:
    text = help_text("bench")
    for words in ("--device", "--preset", "--size", "--dtype", "--batch", "--compile", "--repeat", "--json",
                  "random", "framefill bench --preset film-s"):
        assert words in text
    assert all("<bool>" not in line for line in text.splitlines() if re.search(r"--(compile|e2e|quiet)", line))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bench_on_cuda(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = runner.invoke(app, ["bench", "--device", "cuda", "--preset", "film-tiny", "--size", "64x48",
                                 "--dtype", "fp32,fp16", "--repeat", "2", "--e2e-frames", "3", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert [r["dtype"] for r in report["model"]] == ["fp32", "fp16"]
    assert all(r["status"] == "ok" and r["memory_kind"] == "cuda max_memory_allocated" for r in report["model"])
    assert all(r["status"] == "ok" for r in report["e2e"])


_FAULTS_SCRIPT = """
import resource, torch
from framefill.allocator import held_free_bytes, keep_freed_memory
kept = keep_freed_memory()
for _ in range(20):  # warm-up: the heap grows to its working size (here 8 blocks) and then stops growing
    torch.ones(1 << 24)  # 64 MiB: above glibc's largest default mmap threshold (32 MiB)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    torch.ones(1 << 24)
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, held_free_bytes())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="tunes glibc's malloc")
def test_keeping_freed_memory_stops_large_tensors_faulting_their_pages_in_again():
    def run(setting: str) -> tuple[bool, int, int]:
        env = {**os.environ, "FRAMEFILL_MALLOC_TUNING": setting}
        out = subprocess.run([sys.executable, "-c", _FAULTS_SCRIPT], env=env, capture_output=True, text=True,
                             check=True).stdout.split()
        return out[0] == "True", int(out[1]), int(out[2])

    pages = (1 << 26) // resource.getpagesize()  # pages of one 64 MiB tensor
    kept, faults, held = run("1")
    off, faults_off, held_off = run("0")
    assert kept and not off
    assert faults_off >= 9 * pages  # every tensor maps fresh pages and faults them in
    assert faults <= pages  # the heap's pages are reused
    assert held >= 1 << 26 and held_off == 0  # and counted as room for the next call (memory.device_headroom)
