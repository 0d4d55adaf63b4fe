"""Weights on disk: safetensors files with metadata, and training state.

Shipped weights are ``weights/<model>.safetensors`` (package data: ``framefill.weights`` once installed). Files
are read and written with the ``safetensors`` package, so loading weights never unpickles anything. The
``__metadata__`` entry carries string fields: ``architecture`` (a registry name), ``config`` (the model config as
JSON), ``version``, and free-form training and quality notes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from framefill.frames import publish_mode


class WeightsError(Exception):
    """A weights file that cannot be read: its message is one line for the user."""


def save_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` (and string ``metadata``) to ``path`` atomically."""
    state = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    meta = {str(k): str(v) for k, v in metadata.items()} if metadata else None
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        save_file(state, tmp, metadata=meta)
        publish_mode(tmp)  # safetensors writes through a private temp file (0600): the mode a plain write gives
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _open(path: Path, read: Any) -> Any:
    """``read(handle)`` on ``path`` opened with ``safe_open``; every way the file can be unreadable is a
    ``WeightsError`` of one line (safetensors checks the header, the dtypes and every tensor's byte range)."""
    if path.is_dir():
        raise WeightsError(f"cannot read weights {path}: it is a folder; give a .safetensors file")
    try:
        with safe_open(path, framework="pt") as fh:
            return read(fh)
    except OSError as e:
        raise WeightsError(f"cannot read weights {path}: {e.strerror or e}") from None
    except SafetensorError as e:
        why = str(e).removeprefix("Error while deserializing header: ")
        raise WeightsError(f"{path} is not a safetensors file or is damaged ({why}); check it or export it "
                           "again") from None


def _metadata(fh: Any) -> dict[str, str]:
    """The file's metadata in key order (safetensors returns it in no fixed order; ``info`` shows it in this one)."""
    return dict(sorted((fh.metadata() or {}).items()))


def load_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file: ``(tensors, metadata)``. Raises ``WeightsError`` on a malformed file."""
    return _open(Path(path), lambda fh: ({name: fh.get_tensor(name) for name in fh.keys()}, _metadata(fh)))


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
    return _open(Path(path), _metadata)
