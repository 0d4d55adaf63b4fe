"""Export the (EMA) weights of a training checkpoint, wherever the run stopped.

    python tools/export_checkpoint.py RUN/last.pt OUT.safetensors [--note TEXT] [--raw]

``framefill train --export`` writes the weights wherever the run stops; this exports a checkpoint without running
the trainer (no data loaded), for a run that was killed or whose command is not at hand. The model is rebuilt from
the checkpoint's config (``framefill.train.loop.initial_model``: its ``--finetune`` weights or its preset, with the
fusion cues or the selector if the run added them), given the EMA weights (the model's where the run kept no EMA)
and saved with the step count, batch, crop and ``--note`` in its metadata. ``--raw`` exports the weights as they
were trained instead of their average: what a short run has learned shows there first (its EMA still holds much of
the start), so its "trained vs start" check reads them.

    python tools/export_checkpoint.py CONVLSTM.safetensors OUT.safetensors --film FILM.safetensors
convlstm weights with another (frozen) film part instead: when film's weights gain a stage that changes only film's
frame (the sharpener: ``framefill.models.sharpen``), the convlstm file takes the new film as it is: its config's film
part becomes FILM's, its own tensors (the window motion's gate, the ConvLSTM and refinement stages) are kept bit for
bit, and the film's are FILM's. The training metadata is kept, with a line that says so; the measured quality is
dropped (score it again: ``tools/window_scores.py``, then ``tools/stamp_weights.py``).

    python tools/export_checkpoint.py FILM.safetensors OUT.safetensors --set search_radius=2 [--set FIELD=VALUE]
film weights with other settings of their parameter-free parts (``FilmConfig`` fields that no tensor depends on,
such as the search before the Lucas-Kanade steps): the tensors are kept bit for bit (a field that would change them
is refused), and so is the metadata but the measured quality, which is dropped (score it again:
``tools/time_pairs.py``, then ``tools/stamp_weights.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from framefill.checkpoint import read_metadata, save_model
from framefill.models import load_model
from framefill.models.convlstm import ConvLSTMNet
from framefill.train.loop import TrainConfig, initial_model


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--note", default="", help="a line for the metadata: where and on what it was trained")
    ap.add_argument("--raw", action="store_true", help="the trained weights, not their EMA")
    ap.add_argument("--film", type=Path, help="with convlstm weights in: put this film in them instead")
    ap.add_argument("--set", dest="settings", action="append", default=[], metavar="FIELD=VALUE",
                    help="with film weights in: these parameter-free settings instead (repeatable)")
    args = ap.parse_args()
    if args.film:
        return swap_film(args.checkpoint, args.film, args.out)
    if args.settings:
        return set_fields(args.checkpoint, dict(kv.split("=", 1) for kv in args.settings), args.out)
    state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)  # plain types only
    cfg = state["config"]
    known = {f.name for f in dataclasses.fields(TrainConfig)} - {"data", "synth", "gan"}
    model = initial_model(TrainConfig(**{k: v for k, v in cfg.items() if k in known}))
    averaged = bool(state["ema"]) and not args.raw
    model.load_state_dict(state["ema"] if averaged else state["model"])
    training = {"steps": state["step"], "batch": cfg["batch"], "crop": cfg["data"]["crop"], "lr": cfg["lr"],
                "finetune": cfg.get("finetune"), "precision": cfg.get("precision"), "ema": averaged}
    if args.note:
        training["note"] = args.note
    save_model(args.out, model, architecture=cfg["model"], extra={"training": training})
    print(f"exported step {state['step']} of {args.checkpoint} to {args.out}")
    return 0


def swap_film(convlstm: Path, film_path: Path, out: Path) -> int:
    """``convlstm``'s weights with ``film_path``'s film part, written to ``out`` (the module docstring)."""
    old, _ = load_model(convlstm, expect="convlstm")
    film, _ = load_model(film_path, expect="film")
    model = ConvLSTMNet(dataclasses.replace(old.config, film=film.config))
    own = {k: v for k, v in old.state_dict().items() if not k.startswith("film.")}
    missing, unexpected = model.load_state_dict(own, strict=False)
    assert not unexpected and all(k.startswith("film.") for k in missing)
    model.load_film(film_path)
    meta = read_metadata(convlstm)
    extra = {k: meta[k] for k in ("training", "training_data") if k in meta}
    if "training_data" in extra and "was swapped afterwards" not in extra["training_data"]:
        extra["training_data"] += (". Its frozen film part was swapped afterwards for a newer film's (the film it "
                                   "names in its config), its own stages kept")
    save_model(out, model.eval(), architecture="convlstm", extra=extra)
    print(f"{out}: {convlstm.name}'s own stages with {film_path.name}'s film")
    return 0


def set_fields(film_path: Path, settings: dict[str, str], out: Path) -> int:
    """``film_path``'s weights with these ``FilmConfig`` settings, written to ``out`` (the module docstring)."""
    old, _ = load_model(film_path, expect="film")
    unknown = sorted(set(settings) - {f.name for f in dataclasses.fields(old.config)})
    if unknown:
        print(f"error: not a film setting: {', '.join(unknown)}")
        return 2
    current = old.config.to_dict()
    values = {k: type(current[k])(json.loads(v.lower()) if isinstance(current[k], bool) else v)
              for k, v in settings.items()}
    model = type(old)(dataclasses.replace(old.config, **values))
    state, fresh = old.state_dict(), model.state_dict()
    if set(fresh) != set(state) or any(fresh[k].shape != v.shape for k, v in state.items()):
        print(f"error: {', '.join(settings)} would change the weights' tensors; train with them instead")
        return 2
    model.load_state_dict(state)
    meta = read_metadata(film_path)
    extra = {k: meta[k] for k in ("training", "training_data") if k in meta}
    save_model(out, model.eval(), architecture="film", extra=extra)
    print(f"{out}: {film_path.name}'s weights with " + ", ".join(f"{k}={v}" for k, v in values.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
