"""Write measured quality and what the training data was into a weights file's metadata, in words for the people
who read it with `framefill info`: what the data is and where it came from, never a folder of this machine.

    python tools/stamp_weights.py WEIGHTS [RESULTS_JSON] [--peer framefill] [--data TEXT]

RESULTS_JSON is run_peers' results.json from `make compare`: the per-stride mean PSNR/SSIM of PEER go into the
``quality`` field (JSON), next to the protocol (``PROTOCOL``) and the date. Without it, the figures already in the
file are kept and only the protocol's wording is written again. ``--data`` sets ``training_data`` (what the weights
were trained on: collections, sources, licences; weights/README.md has the shipped weights' command). Before
anything is written, every field is checked: one that names an issue number or a development path (``../shared``,
``/tmp/...``) is refused with the field named, and the file is left as it was. The tensors are never changed.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from pathlib import Path

from framefill.checkpoint import load_safetensors, save_safetensors

PROTOCOL = ("make compare: drop-frame triplets (strides 1 and 2, up to 4 per item and stride; static, duplicated and "
            "cut-spanning ones skipped) of the 13 items of framefill's validation set, never trained on: open movies "
            "of the Blender Foundation (Tears of Steel, Caminandes, Sintel, Big Buck Bunny; CC BY 3.0), DAVIS, "
            "Kubric MOVi renders, a Pexels clip, SAM 2 demo clips, a night street and a market crowd "
            "(weights/README.md, 'Data'); PSNR and SSIM on 8-bit RGB against the dropped frame")
# What a reader of the metadata cannot see: an issue of the project's tracker, or a folder of the machine the
# weights were made on (the checkout's neighbours, temporary and home folders, the GPU run's packed data).
ISSUE = re.compile(r"\b(?:issue|pull request|PR)s?\s*#?\d+", re.I)
SHARED = re.compile(r"(?:\.\./)+shared\b|\bshared/(?:data|tools)\b")  # the data and tools beside a checkout
DEV_PATH = re.compile(SHARED.pattern + r"|(?<![\w.$~])/(?:tmp|work|root|home|Users|mnt)/|(?<![\w/])\.gpu/")


def unfit(text: str) -> str | None:
    """What in ``text`` a user cannot see (an issue number, a development path), or None."""
    found = ISSUE.search(text) or DEV_PATH.search(text)
    return found[0] if found else None


def quality_of(results: Path, peer: str) -> dict:
    rows = [r for r in json.loads(results.read_text()) if r["peer"] == peer and "psnr" in r]
    if not rows:
        raise SystemExit(f"no scored rows for {peer} in {results}")
    quality: dict = {"protocol": PROTOCOL, "measured": time.strftime("%Y-%m-%d")}
    for stride in sorted({re.search(r"_s(\d+)$", r["pair"])[1] for r in rows}):
        rs = [r for r in rows if r["pair"].endswith(f"_s{stride}")]
        quality[f"stride{stride}"] = {"psnr": round(statistics.mean(r["psnr"] for r in rs), 3),
                                      "ssim": round(statistics.mean(r["ssim"] for r in rs), 4), "pairs": len(rs)}
    return quality


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", type=Path)
    ap.add_argument("results", type=Path, nargs="?", help="run_peers' results.json (default: keep the figures)")
    ap.add_argument("--peer", default="framefill")
    ap.add_argument("--data", help="the 'training_data' field: what the weights were trained on, for a user")
    args = ap.parse_args()
    tensors, meta = load_safetensors(args.weights)
    if args.results is not None:
        quality = quality_of(args.results, args.peer)
    else:
        quality = {**json.loads(meta.get("quality", "{}")), "protocol": PROTOCOL}
    meta["quality"] = json.dumps(quality)
    if args.data:
        meta["training_data"] = args.data
    for key, value in meta.items():
        if what := unfit(value):
            hint = " (give --data TEXT)" if key == "training_data" else ""
            raise SystemExit(f"{args.weights}: its {key!r} field names {what!r}, which a user cannot see; "
                             f"describe it in words{hint}. Nothing was written.")
    save_safetensors(args.weights, tensors, meta)
    print(json.dumps(quality, indent=1))


if __name__ == "__main__":
    main()
