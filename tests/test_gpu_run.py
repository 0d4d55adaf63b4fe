"""tools/gpu_run.sh rehearsed on the CPU: every stage passes on tiny sizes and everything lands in OUT, within the
limits of what comes back from the GPU machine (at most 8 files, 16 MiB each)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import write_clip

from framefill.bench_e2e import synthetic_frames
from framefill.checkpoint import read_metadata

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("env", "install", "tests", "bench", "compile", "e2e", "profile", "train")


def tiny_wheel(folder: Path) -> Path:
    """A wheel of one module, ``gpu_run_probe``, as pip builds them: what the install stage puts on the path."""
    folder.mkdir()
    path = folder / "gpu_run_probe-1.0-py3-none-any.whl"
    info = "gpu_run_probe-1.0.dist-info"
    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr("gpu_run_probe.py", "OK = True\n")
        whl.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: gpu_run_probe\nVersion: 1.0\n")
        whl.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        whl.writestr(f"{info}/RECORD", "")
    return path


@pytest.mark.slow
def test_rehearsal_runs_every_stage_and_brings_everything_back(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "videos").mkdir(parents=True)
    (data / "photos").mkdir()
    write_clip(data / "videos" / "pan.mp4", synthetic_frames(128, 96, 12))  # a panning texture, a moving square
    cv2.imwrite(str(data / "photos" / "noise.jpg"), np.random.default_rng(0).integers(0, 256, (96, 128, 3), np.uint8))
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "DATA": str(data), "WHEELS": str(tiny_wheel(tmp_path / "wheels").parent),
           "PYTHON": sys.executable, "TMPDIR": str(tmp_path)}
    done = subprocess.run(["bash", str(ROOT / "tools" / "gpu_run.sh"), "--rehearse"], env=env, capture_output=True,
                          text=True, timeout=600)
    summary = (out / "summary.txt").read_text()
    assert done.returncode == 0, summary + done.stderr
    assert "REHEARSAL" in summary
    for name in STAGES:
        assert any(line.split()[:1] == [name] and line.endswith("passed") for line in summary.splitlines()), summary
    files = sorted(p.name for p in out.iterdir())
    assert files == ["bench_film-tiny.json", "compile.json", "film_gpu.safetensors", "last.pt", "logs.tgz",
                     "summary.txt"]
    assert all(p.stat().st_size < 16 * 2**20 for p in out.iterdir())
    bench = json.loads((out / "bench_film-tiny.json").read_text())
    assert {(r["size"], r["dtype"], r["batch"]) for r in bench["model"] if r["status"] == "ok"} == {
        (s, d, b) for s in ("64x48", "96x64") for d in ("fp32", "bf16") for b in (1, 2)}
    compiled = json.loads((out / "compile.json").read_text())
    assert {r["compiled"] for r in compiled["model"] if r["status"] == "ok"} == {False, True}
    assert [e["status"] for e in compiled["e2e"]] == ["ok"]
    assert "film-tiny 96x64 fp32: " in summary and "interp 128x72 --max-memory 16M: 6 -> 11 frames" in summary
    training = json.loads(read_metadata(out / "film_gpu.safetensors")["training"])
    assert training["steps"] >= 1 and training["finetune"] == "weights/film.safetensors"
    with tarfile.open(out / "logs.tgz") as tar:
        names = set(tar.getnames())
        install = tar.extractfile("logs/install.log").read().decode()  # type: ignore[union-attr]
    assert {f"logs/{n}.log" for n in STAGES} <= names
    assert {"logs/e2e.json", "logs/profile.json", "logs/tests.xml", "logs/log.jsonl", "logs/summary.txt"} <= names
    assert "installed into " in install and "gpu_run_probe-1.0-py3-none-any.whl" in install
