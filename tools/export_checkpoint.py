"""Export the (EMA) weights of a training checkpoint, wherever the run stopped.

    python tools/export_checkpoint.py RUN/last.pt OUT.safetensors [--note TEXT] [--raw]

``framefill train --export`` writes the weights wherever the run stops; this exports a checkpoint without running
the trainer (no data loaded), for a run that was killed or whose command is not at hand. The model is rebuilt from
the checkpoint's config (``framefill.train.loop.initial_model``: its ``--finetune`` weights or its preset, with the
fusion cues or the selector if the run added them), given the EMA weights (the model's where the run kept no EMA)
and saved with the step count, batch, crop and ``--note`` in its metadata. ``--raw`` exports the weights as they
were trained instead of their average: what a short run has learned shows there first (its EMA still holds much of
the start), so its "trained vs start" check reads them.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from framefill.checkpoint import save_model
from framefill.train.loop import TrainConfig, initial_model


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--note", default="", help="a line for the metadata: where and on what it was trained")
    ap.add_argument("--raw", action="store_true", help="the trained weights, not their EMA")
    args = ap.parse_args()
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


if __name__ == "__main__":
    raise SystemExit(main())
