"""Data-parallel training under torchrun: two gloo processes on the CPU train as one process on the same global
batch, resume alike, and refuse a batch they cannot split.

The main test runs torchrun itself (``python -m torch.distributed.run``, two processes, a film-tiny on 32-px crops
of a 12-frame clip): about 30 s on two busy cores. Deselect it with ``-m "not distributed"``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import moving_square, write_clip
from typer.testing import CliRunner

from framefill.checkpoint import load_safetensors
from framefill.cli import app
from framefill.models import build_model
from framefill.train.distributed import Launch, device_for, launch_from_env, share

REPO = Path(__file__).resolve().parents[1]
N = 12  # frames in the test clip
# Three steps of the CLI's schedule: its 300-step warm-up would move the weights by ~1e-5 a step at the default
# peak, too little to tell a wrong split from a right one; --lr 0.3 makes the steps 1e-3, 2e-3 and 3e-3.
ARGS = ["--preset", "film-tiny", "--steps", "3", "--batch", "4", "--crop", "32", "--max-frames", str(N),
        "--device", "cpu", "--lr", "0.3"]
# Two ranks sum their halves of the batch in another order than one process sums the whole (the loss means and
# DDP's gradient average): float rounding, ~1e-7 after three steps here. A wrong split of the data moves some
# weights the other way by up to 2 * 6e-3.
TOL = 1e-4
TORCH_ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture(autouse=True)
def _one_process(monkeypatch: pytest.MonkeyPatch):
    """This process is not a torchrun rank (even if pytest itself was started by one), and uses one thread."""
    for name in TORCH_ENV:
        monkeypatch.delenv(name, raising=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    write_clip(root / "square", list(moving_square(n=N)))  # PNG frames: lossless
    return root


def torchrun(*args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node NPROC -m framefill ARGS`` (``--standalone``: a free port)."""
    env = {k: v for k, v in os.environ.items() if k not in TORCH_ENV and k != "FRAMEFILL_DEBUG"}
    env |= {"PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "framefill", *args]
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


@pytest.mark.distributed
def test_two_processes_train_as_one_on_the_same_global_batch(data_dir: Path, tmp_path: Path):
    one, ddp = tmp_path / "one", tmp_path / "ddp"
    result = CliRunner().invoke(app, ["train", "--data", str(data_dir), "--out", str(one), *ARGS,
                                      "--export", str(tmp_path / "one.safetensors")])
    assert result.exit_code == 0, (result.output, result.exception)

    # Two processes, first stopped by the time limit after one step (rank 0's clock stops both), then resumed.
    first = torchrun("train", "--data", str(data_dir), "--out", str(ddp), *ARGS, "--max-minutes", "1e-9")
    assert first.returncode == 0, first.stderr
    assert torch.load(ddp / "last.pt", weights_only=True)["step"] == 1
    second = torchrun("train", "--data", str(data_dir), "--out", str(ddp), *ARGS,
                      "--export", str(tmp_path / "ddp.safetensors"))
    assert second.returncode == 0, second.stderr
    assert second.stderr.count("resumed from") == 1 and second.stderr.count("exported") == 1  # rank 0 reports
    assert "2 processes (cpu), 2 each" in second.stderr

    a = torch.load(one / "last.pt", weights_only=True)
    b = torch.load(ddp / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 3
    assert a["np_rng"] == b["np_rng"]  # the ranks drew the global batches one process drew, no more, no fewer
    assert max_diff(a["model"], b["model"]) < TOL
    assert max_diff(a["ema"], b["ema"]) < TOL
    torch.manual_seed(0)
    start = build_model("film", "film-tiny").state_dict()
    assert max_diff(a["model"], start) > 10 * TOL  # the steps moved the weights far more than the tolerance
    w_one, _ = load_safetensors(tmp_path / "one.safetensors")
    w_ddp, meta = load_safetensors(tmp_path / "ddp.safetensors")
    assert max_diff(w_one, w_ddp) < TOL
    assert json.loads(meta["training"])["processes"] == 2

    log_one = [json.loads(line) for line in (one / "log.jsonl").read_text().splitlines()]
    log_ddp = [json.loads(line) for line in (ddp / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log_ddp] == [1, 2, 3]  # rank 0 alone writes the log
    for r1, r2 in zip(log_one, log_ddp, strict=True):  # the logged loss is the whole batch's, as one process's
        assert r2["total"] == pytest.approx(r1["total"], rel=1e-4)
        assert r2["gnorm"] == pytest.approx(r1["gnorm"], rel=1e-4)
    assert sorted(p.name for p in ddp.iterdir()) == ["cache", "config.json", "last.pt", "log.jsonl"]


@pytest.mark.distributed
def test_two_processes_train_the_gan_stage_as_one(data_dir: Path, tmp_path: Path):
    """--gan: the critics train under DDP too; model and critics end as one process's (critics' Adam steps on
    near-zero gradients can flip with float rounding, so their tolerance is looser)."""
    gan = [*ARGS, "--gan", "--gan-weight", "0.5"]
    one, ddp = tmp_path / "one", tmp_path / "ddp"
    result = CliRunner().invoke(app, ["train", "--data", str(data_dir), "--out", str(one), *gan])
    assert result.exit_code == 0, (result.output, result.exception)
    run = torchrun("train", "--data", str(data_dir), "--out", str(ddp), *gan)
    assert run.returncode == 0, run.stderr
    a = torch.load(one / "last.pt", weights_only=True)
    b = torch.load(ddp / "last.pt", weights_only=True)
    assert max_diff(a["model"], b["model"]) < TOL
    assert max_diff(a["gan"]["critics"], b["gan"]["critics"]) < 1e-3  # lr 2e-4 x 3 steps moves them 6e-4


@pytest.mark.parametrize("rank", [0, 1])
def test_a_batch_the_processes_cannot_split_is_refused_in_one_line(data_dir: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch, rank: int):
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun --nproc_per_node 2 sets it; refused before joining
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("LOCAL_RANK", str(rank))
    monkeypatch.setattr("framefill.cli_train.time.sleep", lambda seconds: None)  # rank 1's wait for rank 0 to speak
    result = CliRunner().invoke(app, ["train", "--data", str(data_dir), "--out", str(tmp_path / "run"),
                                      "--batch", "3", "--device", "cpu"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    if rank == 0:
        assert lines == ["error: --batch 3 is the global batch and does not split evenly over 2 processes; "
                         "give a multiple of 2"]
    else:
        assert lines == []  # rank 0 says it for all
    assert not (tmp_path / "run").exists()


def test_a_rank_draws_the_whole_global_batch_and_builds_only_its_share(data_dir: Path, tmp_path: Path):
    from framefill.train.data import DataConfig
    from framefill.train.loop import TrainConfig, Trainer

    cfg = TrainConfig(preset="film-tiny", batch=4, data=DataConfig(crop=32, max_frames=N))
    one = Trainer(cfg, data_dir, tmp_path / "one", cache_dir=tmp_path / "cache")
    whole, _ = one.next_batch()
    rank1 = Trainer(cfg, data_dir, tmp_path / "rank1", cache_dir=tmp_path / "cache")
    rank1.share = share(4, 1, 2)  # as rank 1 of 2 holds it
    built = []
    build = rank1.dataset.build
    rank1.dataset.build = lambda d: built.append(d) or build(d)  # type: ignore[method-assign]
    frames, _ = rank1.next_batch()
    assert len(built) == 2  # its two samples, not the four of the global batch
    assert torch.equal(frames, whole[2:])  # the ones one process puts there
    assert rank1.rng.bit_generator.state == one.rng.bit_generator.state  # the generator in step with one process's


def test_shares_partition_the_global_batch():
    slices = [share(8, r, 4) for r in range(4)]
    assert [list(range(8))[s] for s in slices] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert share(5, 0, 1) == slice(0, 5)
    with pytest.raises(ValueError, match="multiple of 2"):
        share(5, 0, 2)


def test_launch_from_env(monkeypatch: pytest.MonkeyPatch):
    assert launch_from_env() == Launch(rank=0, local_rank=0, world=1)  # no torchrun: one process
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    launch = launch_from_env()
    assert launch == Launch(rank=3, local_rank=1, world=4) and launch.distributed and not launch.main
    assert device_for("cpu", launch) == torch.device("cpu")
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ValueError, match="RANK 4"):
        launch_from_env()


def test_one_process_draws_the_batch_it_always_drew(data_dir: Path, tmp_path: Path):
    """Without torchrun the sharing is a no-op: the batch is the samples drawn in order from the seeded RNG."""
    from framefill.train.data import DataConfig
    from framefill.train.loop import TrainConfig, Trainer

    cfg = TrainConfig(preset="film-tiny", batch=3, data=DataConfig(crop=32, max_frames=N))
    trainer = Trainer(cfg, data_dir, tmp_path / "run", cache_dir=tmp_path / "cache")
    assert trainer.net is trainer.model
    rng = np.random.default_rng(cfg.seed)
    want = torch.stack([trainer.dataset.sample(rng) for _ in range(3)])
    frames, times = trainer.next_batch()
    assert torch.equal(frames, want) and times.tolist() == [0.5] * 3
    assert trainer.rng.bit_generator.state == rng.bit_generator.state
