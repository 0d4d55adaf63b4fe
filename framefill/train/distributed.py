"""Data-parallel training over several processes: ``torchrun`` and ``DistributedDataParallel``.

Launch one process per GPU (or several on a CPU) with torchrun; on several nodes add torchrun's
``--nnodes``, ``--node_rank`` and ``--rdzv_endpoint``/``--master_addr`` as it documents::

    torchrun --nproc_per_node 4 -m framefill train --data clips/ --batch 32

torchrun sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` (and ``MASTER_ADDR``/``MASTER_PORT``) in each
process; without them, or with a world of one, training is the plain single-process loop, bit for bit.
Each process uses ``cuda:LOCAL_RANK`` and NCCL on a CUDA machine, the CPU and gloo otherwise.

How the work is split, and why the result is the one process's on the same global batch:

- ``batch`` is the global batch ``B``; each of the ``W`` ranks trains on ``B / W`` triplets a step (W must
  divide B). ``--lr`` and every other setting keep their single-process meaning.
- Every rank holds the whole dataset and the same seeded RNGs, and draws the whole global batch from them in
  the order one process would; rank ``r`` keeps triplets ``r B/W`` to ``(r + 1) B/W - 1`` (``share``). The
  ranks' shares are exactly the batch one process would train on at that step, and the RNG states after it
  (which checkpoints save) are the same on every rank and the same as one process's. Drawing is cheap: a
  dataset's ``draw`` makes every random choice of a sample (clip, frames, crop places, augmentation; for a
  synthetic one the scene's description) and its ``build`` does the pixel work (cropping, rendering,
  augmenting), so each rank builds only its own B / W samples.
- Every loss term is a mean over its batch and the shares are equal in size, so the mean of the ranks' losses
  is the whole batch's loss. DDP averages the gradients over the ranks during ``backward``, so each rank
  holds the gradient of the whole batch (up to the order of float additions); clipping (after backward),
  AdamW and the EMA then act on identical gradients and weights, and every rank's model and EMA stay equal
  without being sent around.
- Rank 0 alone writes (``config.json``, ``log.jsonl``, checkpoints, exports), validates and reports
  progress; the others never wait for it explicitly: the next step's gradient all-reduce holds them. The
  logged loss terms are the mean over the ranks, as one process would log them. A time limit is decided on
  rank 0 and broadcast, so all ranks stop after the same step.
- Resume: rank 0 decides whether ``OUT/last.pt`` exists and every rank loads it, so weights, optimiser, EMA,
  step and RNG states are restored alike everywhere (the run folder must be on storage every node sees).
- Decoded-clip caches are written by rank 0 first (the others wait at a barrier, then read them).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NoReturn

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Launch:
    """Where this process sits in a torchrun launch (one process, no torchrun: rank 0 of 1)."""

    rank: int = 0  # global rank, 0 .. world - 1
    local_rank: int = 0  # rank on this node: picks the GPU
    world: int = 1  # processes in all

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def launch_from_env() -> Launch:
    """Read torchrun's ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; missing ones mean a single process."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ValueError("WORLD_SIZE, RANK and LOCAL_RANK must be whole numbers (torchrun sets them)") from None
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK {rank} is not within WORLD_SIZE {world}; launch with torchrun")
    return Launch(rank=rank, local_rank=local_rank, world=world)


def device_for(spec: str, launch: Launch) -> torch.device:
    """The device of this process: ``spec`` as ``--device`` gives it, ``cuda:LOCAL_RANK`` under torchrun."""
    from framefill.pipeline import resolve_device

    dev = resolve_device(spec)
    if not launch.distributed or dev.type == "cpu":
        return dev
    if spec.strip().lower() not in ("auto", "cuda"):
        raise ValueError(f"--device {spec} under torchrun: each process uses cuda:LOCAL_RANK; give --device cuda")
    if launch.local_rank >= torch.cuda.device_count():
        raise ValueError(f"LOCAL_RANK {launch.local_rank} but this node has {torch.cuda.device_count()} CUDA "
                         "devices; start at most that many processes per node")
    return torch.device("cuda", launch.local_rank)


@contextmanager
def process_group(launch: Launch, device: torch.device) -> Iterator[None]:
    """Join the launch's process group (NCCL on CUDA, gloo on the CPU) and leave it on exit, errors and Ctrl-C
    included. Nothing to do for a single process."""
    if not launch.distributed:
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", rank=launch.rank, world_size=launch.world, device_id=device)
    else:
        dist.init_process_group("gloo", rank=launch.rank, world_size=launch.world)
    try:
        yield
    finally:
        dist.destroy_process_group()


def exit_now(code: int = 0) -> NoReturn:
    """End this process at once, output flushed, without the interpreter's shutdown; for a torchrun rank that
    has left its process group.

    Why: once a DistributedDataParallel wrapper has existed, PyTorch keeps the gloo process group and its worker
    threads alive past ``destroy_process_group``. A worker that drops the last reference to a finished collective
    frees its tensors, which takes the GIL for tensors made in Python; if that falls in the interpreter's shutdown,
    the worker is killed inside the GIL wait and the process aborts ("terminate called without an active
    exception", SIGABRT, about one run in twenty of the two-process test; a core dump showed the worker in
    ``~AsyncBroadcastWork`` under ``take_gil``). The worker is only late when the OS schedules it late, so no
    ordering on our side prevents it; skipping the shutdown does. Files are closed by then (checkpoints, log).
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes in the current group (0 and 1 without one)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def share(batch: int, rank: int, world: int) -> slice:
    """Rank ``rank``'s slice of a global batch of ``batch`` triplets (``world`` must divide ``batch``)."""
    if batch % world:
        raise ValueError(f"batch {batch} (the global batch) does not split evenly over {world} processes; "
                         f"give a multiple of {world}")
    per = batch // world
    return slice(rank * per, (rank + 1) * per)


def from_main(flag: bool, device: torch.device) -> bool:
    """Rank 0's ``flag``, on every rank (a collective: all ranks must call it). Unchanged for one process."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def mean_over_ranks(values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The mean over the ranks of each scalar in ``values`` (a collective). Unchanged for one process."""
    if not (dist.is_available() and dist.is_initialized()):
        return values
    keys = list(values)
    t = torch.stack([values[k].detach().float() for k in keys])
    dist.all_reduce(t)  # a sum: gloo has no average
    t /= dist.get_world_size()
    return dict(zip(keys, t.unbind(), strict=True))


@contextmanager
def main_first() -> Iterator[None]:
    """Run the block on rank 0 first, then on the others together (they read what rank 0 wrote)."""
    rank, world = rank_and_world()
    if world > 1 and rank != 0:
        dist.barrier()
    yield
    if world > 1 and rank == 0:
        dist.barrier()
