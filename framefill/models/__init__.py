"""Model registry: build a model by architecture and preset, or rebuild one from a weights file.

Each architecture registers its config class, model class and named presets. A weights file carries
its architecture and config in its metadata, so ``load_model(path)`` needs nothing else.
"""

from __future__ import annotations

import json
import os
from dataclasses import fields
from importlib import resources
from pathlib import Path

import torch

from framefill.checkpoint import WeightsError, load_safetensors
from framefill.models.convlstm import PRESETS as CONVLSTM_PRESETS
from framefill.models.convlstm import ConvLSTMConfig, ConvLSTMNet
from framefill.models.film import PRESETS as FILM_PRESETS
from framefill.models.film import Film, FilmConfig

REGISTRY: dict[str, tuple[type, type, dict]] = {
    "film": (FilmConfig, Film, FILM_PRESETS),
    "convlstm": (ConvLSTMConfig, ConvLSTMNet, CONVLSTM_PRESETS),
}
DEFAULT_PRESET = {"film": "film-s", "convlstm": "convlstm-s"}
# Architectures without shipped weights, and the one line that says so when they are asked for without --weights.
NOT_SHIPPED: dict[str, str] = {}  # (every architecture has shipped weights now; convlstm's were the last)


def shipped_weights_dir() -> Path:
    """The folder of the shipped weights: ``FRAMEFILL_WEIGHTS`` when set, else the package data ``framefill.weights``.

    In a source checkout (an editable install, or the checkout on ``PYTHONPATH``) that is the checkout's own
    ``weights/`` folder, taken directly: importlib could resolve ``framefill.weights`` through another checkout's
    editable install when this one is only on ``PYTHONPATH``. Installed from a wheel or an sdist, it is the folder
    importlib.resources finds (pip installs packages unzipped, so it is a real folder).
    """
    if env := os.environ.get("FRAMEFILL_WEIGHTS"):
        return Path(env)
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "weights" / "__init__.py").is_file():
        return checkout / "weights"
    try:
        return Path(str(resources.files("framefill.weights")))
    except ModuleNotFoundError:  # an install without its package data: interp says the weights are not found
        return checkout / "weights"


WEIGHTS_DIR = shipped_weights_dir()


def architectures() -> list[str]:
    return sorted(REGISTRY)


def build_model(architecture: str, preset: str | None = None, config: dict | None = None) -> torch.nn.Module:
    """A freshly initialised model from a preset name or a config dict (unknown keys are an error)."""
    if architecture not in REGISTRY:
        raise ValueError(f"unknown model {architecture!r}; choose one of {architectures()}")
    cfg_cls, model_cls, presets = REGISTRY[architecture]
    if config is not None:
        known = {f.name for f in fields(cfg_cls)}
        unknown = set(config) - known
        if unknown:
            raise ValueError(f"config for {architecture} has unknown fields {sorted(unknown)}")
        return model_cls(cfg_cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}))
    preset = preset or DEFAULT_PRESET[architecture]
    if preset not in presets:
        raise ValueError(f"unknown preset {preset!r} for {architecture}; choose one of {sorted(presets)}")
    return model_cls(presets[preset])


def default_weights(architecture: str) -> Path:
    return WEIGHTS_DIR / f"{architecture}.safetensors"


def load_model(path: Path, *, expect: str | None = None) -> tuple[torch.nn.Module, dict[str, str]]:
    """Rebuild a model from a framefill safetensors file. Returns ``(model in eval mode, metadata)``."""
    tensors, meta = load_safetensors(path)
    arch = meta.get("architecture")
    if arch not in REGISTRY:
        raise WeightsError(f"{path} does not name a known architecture (got {arch!r}); is it a framefill file?")
    if expect is not None and arch != expect:
        raise WeightsError(f"{path} holds a {arch!r} model, not {expect!r}")
    config = json.loads(meta.get("config", "{}"))
    refuse = getattr(REGISTRY[arch][1], "refuse_config", None)  # a file of an older design of the architecture
    if refuse is not None and (reason := refuse(config)):
        raise WeightsError(f"{path} {reason}")
    try:
        model = build_model(arch, config=config)
    except (ValueError, TypeError) as e:
        raise WeightsError(f"{path}: bad config in metadata: {e}") from None
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise WeightsError(f"{path} does not match the {arch} architecture (missing {missing[:3]}, "
                           f"unexpected {unexpected[:3]})")
    for k, v in tensors.items():
        if v.shape != own[k].shape:
            raise WeightsError(f"{path}: tensor {k} has shape {tuple(v.shape)}, the model wants {tuple(own[k].shape)}")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in tensors.items()})
    return model.eval(), meta
