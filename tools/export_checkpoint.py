"""Export the (EMA) weights of a training checkpoint, wherever the run stopped.

    python tools/export_checkpoint.py RUN/last.pt OUT.safetensors [--note TEXT]

``framefill train --export`` writes weights only once ``--steps`` are reached; a chunk cut short by ``--max-minutes``
(tools/gpu_run.sh trains in such chunks) leaves a checkpoint only. The model is rebuilt from the checkpoint's config
(its ``--finetune`` weights' architecture and config, else its preset), given the EMA weights (the model's where the
run kept no EMA) and saved with the step count, batch, crop and ``--note`` in its metadata.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from framefill.checkpoint import save_model
from framefill.models import build_model, load_model


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--note", default="", help="a line for the metadata: where and on what it was trained")
    args = ap.parse_args()
    state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)  # plain types only
    cfg = state["config"]
    if cfg.get("finetune"):
        model, _ = load_model(Path(cfg["finetune"]), expect=cfg["model"])
    else:
        model = build_model(cfg["model"], cfg["preset"])
    model.load_state_dict(state["ema"] or state["model"])
    training = {"steps": state["step"], "batch": cfg["batch"], "crop": cfg["data"]["crop"], "lr": cfg["lr"],
                "finetune": cfg.get("finetune"), "precision": cfg.get("precision"), "ema": bool(state["ema"])}
    if args.note:
        training["note"] = args.note
    save_model(args.out, model, architecture=cfg["model"], extra={"training": training})
    print(f"exported step {state['step']} of {args.checkpoint} to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
