"""Weights on disk: safetensors files with metadata, and training state.

Shipped weights are ``weights/<model>.safetensors``. The format is the public safetensors layout (an
8-byte little-endian header length, a JSON header naming each tensor's dtype, shape and byte range,
then the raw little-endian bytes), read and written here directly so that loading weights never
unpickles anything and needs no extra package. The ``__metadata__`` entry carries string fields:
``architecture`` (a registry name), ``config`` (the model config as JSON), ``version``, and free-form
training and quality notes.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch

_DTYPES = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
_FROM_NAME = {v: k for k, v in _DTYPES.items()}
_MAX_HEADER = 100 * 1024 * 1024


class WeightsError(Exception):
    """A weights file that cannot be read: its message is one line for the user."""


def save_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` (and string ``metadata``) to ``path`` atomically."""
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        if t.dtype not in _DTYPES:
            raise ValueError(f"cannot store tensor {name!r} of dtype {t.dtype}")
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""  # reshape: 0-dim too
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        with open(tmp, "wb") as fh:
            fh.write(struct.pack("<Q", len(head)))
            fh.write(head)
            for raw in blobs:
                fh.write(raw)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file: ``(tensors, metadata)``. Raises ``WeightsError`` on a malformed file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise WeightsError(f"cannot read weights {path}: {e.strerror or e}") from None
    if len(data) < 8:
        raise WeightsError(f"{path} is not a safetensors file (too short)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > min(_MAX_HEADER, len(data) - 8):
        raise WeightsError(f"{path} is not a safetensors file (bad header length)")
    try:
        header = json.loads(data[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise WeightsError(f"{path} is not a safetensors file (unreadable header)") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{path} is not a safetensors file (the header is not a JSON object)")
    meta = header.pop("__metadata__", {}) or {}
    body = memoryview(data)[8 + n :]
    tensors = {}
    for name, spec in header.items():
        try:
            dtype = _FROM_NAME[spec["dtype"]]
            begin, end = (int(o) for o in spec["data_offsets"])
            shape = [int(s) for s in spec["shape"]]
        except (KeyError, TypeError, ValueError):
            raise WeightsError(f"{path}: malformed entry for tensor {name!r}") from None
        if not 0 <= begin <= end <= len(body):
            raise WeightsError(f"{path}: tensor {name!r} lies outside the file (truncated?)")
        # Checked before the view: a byte count that is not a whole number of elements would make it raise.
        itemsize = torch.empty((), dtype=dtype).element_size()
        if end - begin != int(np.prod(shape)) * itemsize:
            raise WeightsError(f"{path}: tensor {name!r} has {end - begin} bytes for shape {shape} of {spec['dtype']}")
        if begin == end:  # an empty tensor: numpy's empty buffer has a stride torch cannot view
            tensors[name] = torch.empty(shape, dtype=dtype)
            continue
        buf = np.frombuffer(body[begin:end], dtype=np.uint8).copy()
        tensors[name] = torch.from_numpy(buf).view(dtype).reshape(shape)
    return tensors, dict(meta)


def save_model(path: Path, model: torch.nn.Module, *, architecture: str, extra: dict[str, Any] | None = None,
               dtype: torch.dtype = torch.float32) -> None:
    """Save a model's weights with the metadata that rebuilds it (architecture + config JSON)."""
    config = model.config.to_dict() if hasattr(model, "config") else {}
    meta = {"architecture": architecture, "config": json.dumps(config), "format": "framefill-1"}
    for k, v in (extra or {}).items():
        meta[k] = v if isinstance(v, str) else json.dumps(v)
    state = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    save_safetensors(path, state, meta)


def read_metadata(path: Path) -> dict[str, str]:
    """Only the metadata of a safetensors file (reads the header, not the tensors)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(8)
            if len(raw) < 8:
                raise WeightsError(f"{path} is not a safetensors file (too short)")
            (n,) = struct.unpack("<Q", raw)
            if n > _MAX_HEADER:
                raise WeightsError(f"{path} is not a safetensors file (bad header length)")
            header = json.loads(fh.read(n))
    except OSError as e:
        raise WeightsError(f"cannot read weights {path}: {e.strerror or e}") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise WeightsError(f"{path} is not a safetensors file (unreadable header)") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{path} is not a safetensors file (the header is not a JSON object)")
    return dict(header.get("__metadata__", {}) or {})
