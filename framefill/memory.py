"""How much memory a model call may use, and how much it needs: the budget and the estimate the ``Tiler``
(``framefill.tiling``) plans its calls with.

The budget. ``TileConfig.max_memory`` bytes (``--max-memory``) of *working* memory per model call: what the
forward pass allocates (activations, its output) plus the tile crops and the blending buffers; the weights and
the few full frames the scheduler holds come on top. It is lowered, at every call, to what the device has free
less a margin (``device_headroom``: CUDA ``mem_get_info`` plus the caching allocator's unused reserve, less 5% of
the card and at least 512 MiB; CPU ``MemAvailable`` less 10% and 256 MiB), which is also the budget when none is
given.

The estimate: ``bytes_per_pixel(...)`` times the pixels in flight. It is *measured* once per model, device and
dtype (``measure_bytes_per_pixel``), on a probe call at ``PROBE_SIDE`` px square:
- CUDA: ``torch.cuda.max_memory_allocated()`` over the call, less what was allocated before it: every tensor,
  cuDNN workspaces included (they come from the same allocator).
- CPU: the peak of the bytes held by tensors created during the call (``TensorBytes``, a ``TorchFunctionMode``
  that follows each new tensor storage until it is freed), times ``CPU_OVERHEAD = 2``. The process's resident
  memory rises more than the tensors it holds (oneDNN's reorders and scratchpads, allocator slack); measured as
  the peak RSS rise of the first call in a fresh process over the tracked peak, fp32, one thread: 1.32 for
  ``film-s`` at 1024x1024 (657 vs 498 B/px), 1.21 for ``film-m`` at 512x512 (2,878 vs 2,370), 1.81 for
  ``film-tiny`` at 512x512 (931 vs 514). The tracked figure is the same at 128, 256 and 512 px (``film-s``:
  498 B/px), so a small probe suffices. RSS is not used directly: after a first call the allocator keeps freed
  memory, so later rises read low.
``framefill bench`` shows this estimate (``est B/px``) next to the measured rise per pixel (``B/px``). Frames
that would fit even at ``SKIP_PROBE_BYTES_PER_PIXEL`` (64 KiB, over 10x any registered model) need no probe.
"""

from __future__ import annotations

import logging
import math
import weakref
from collections.abc import Callable

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

from framefill.allocator import held_free_bytes

log = logging.getLogger(__name__)

MIB = 2**20
PROBE_SIDE = 128  # probe call size (rounded up to the divisor): the per-pixel figure does not depend on it
CPU_OVERHEAD = 2.0  # resident memory per byte of tensors on the CPU (see the module docstring)
SKIP_PROBE_BYTES_PER_PIXEL = 64 * 2**10  # frames that fit at this rate need no measurement


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


# --- the budget -------------------------------------------------------------------------------------------------


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def device_headroom(device: torch.device) -> int:
    """Bytes a model call may still allocate on ``device`` now: its free memory less a margin.

    CUDA: free memory plus what torch's caching allocator holds unused, less 5% of the card (at least 512 MiB:
    fragmentation, the CUDA context's growth). CPU: ``MemAvailable`` plus what malloc holds free for this
    process (``allocator.held_free_bytes``: earlier frames' tensors, kept for reuse), less 10% and 256 MiB; where
    ``MemAvailable`` is not readable (not Linux), effectively unlimited.
    """
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return max(0, free - max(512 * MIB, total // 20))
    available = _meminfo_available()
    if available is None:
        return 2**62
    return max(0, int((available + held_free_bytes()) * 0.9) - 256 * MIB)


# --- the estimate -----------------------------------------------------------------------------------------------


def _storage_key(value: object) -> int | None:
    return value.untyped_storage().data_ptr() if isinstance(value, torch.Tensor) else None


class TensorBytes(TorchFunctionMode):
    """Within the ``with`` block: ``peak``, the most bytes held at once by tensor storages created in it.

    Each new storage a torch function returns is counted once until it is freed; views (of tensors made inside
    or outside the block) and in-place results are not new.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._sizes: dict[int, int] = {}

    def _free(self, key: int) -> None:
        self.live -= self._sizes.pop(key, 0)

    def __torch_function__(self, func: Callable, types: object, args: tuple = (), kwargs: dict | None = None
                           ) -> object:
        out = func(*args, **(kwargs or {}))
        given = {_storage_key(v) for v in tree_leaves((args, kwargs))}  # views and in-place results allocate nothing
        for value in out if isinstance(out, tuple | list) else (out,):
            if isinstance(value, torch.Tensor):
                storage = value.untyped_storage()
                key = storage.data_ptr()
                if key and key not in self._sizes and key not in given:
                    self._sizes[key] = storage.nbytes()
                    self.live += storage.nbytes()
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(storage, self._free, key)
        return out


def measure_bytes_per_pixel(call: Callable[[torch.Tensor, torch.Tensor], object], device: torch.device,
                            divisor: int) -> float:
    """Working memory of ``call(x0, x1)`` (one pair) per pixel, measured on a probe (see the module docstring)."""
    side = math.ceil(max(PROBE_SIDE, 2 * divisor) / divisor) * divisor
    gen = torch.Generator(device=device).manual_seed(0)  # random frames: no shortcut a constant one might take
    x0 = torch.rand(1, 3, side, side, device=device, generator=gen)  # (1, 3, S, S) float32, as the runners give
    x1 = torch.rand(1, 3, side, side, device=device, generator=gen)
    with torch.inference_mode():
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            before = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            call(x0, x1)
            torch.cuda.synchronize(device)
            used = torch.cuda.max_memory_allocated(device) - before
        else:
            with TensorBytes() as tracked:
                call(x0, x1)
            used = tracked.peak * CPU_OVERHEAD
    return used / side**2


_measured: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {(device, dtype): bytes per pixel}


def bytes_per_pixel(model: torch.nn.Module, call: Callable[[torch.Tensor, torch.Tensor], object],
                    device: torch.device, dtype: torch.dtype, divisor: int) -> float:
    """``measure_bytes_per_pixel``, once per model, device and dtype."""
    per_model = _measured.setdefault(model, {})
    key = (str(device), dtype)
    if key not in per_model:
        per_model[key] = measure_bytes_per_pixel(call, device, divisor)
        log.debug("%s on %s in %s: %.0f bytes per pixel", type(model).__name__, device, dtype, per_model[key])
    return per_model[key]
