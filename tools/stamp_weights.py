"""Write measured quality (and where the training data came from) into a weights file's metadata.

    python tools/stamp_weights.py WEIGHTS RESULTS_JSON [--peer framefill] [--data TEXT]
RESULTS_JSON is run_peers' results.json from `make compare`; the per-stride mean PSNR/SSIM of PEER go into
the ``quality`` metadata field (JSON), next to the protocol. The tensors are left as they are.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from pathlib import Path

from framefill.checkpoint import load_safetensors, save_safetensors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", type=Path)
    ap.add_argument("results", type=Path)
    ap.add_argument("--peer", default="framefill")
    ap.add_argument("--data", help="training data description for the 'training_data' field")
    args = ap.parse_args()
    rows = [r for r in json.loads(args.results.read_text()) if r["peer"] == args.peer and "psnr" in r]
    if not rows:
        raise SystemExit(f"no scored rows for {args.peer} in {args.results}")
    quality = {"protocol": "drop-frame triplets of every item of ../shared/data/val (make compare), PSNR/SSIM on "
                           "8-bit RGB", "measured": time.strftime("%Y-%m-%d")}
    for stride in sorted({re.search(r"_s(\d+)$", r["pair"])[1] for r in rows}):
        rs = [r for r in rows if r["pair"].endswith(f"_s{stride}")]
        quality[f"stride{stride}"] = {"psnr": round(statistics.mean(r["psnr"] for r in rs), 3),
                                      "ssim": round(statistics.mean(r["ssim"] for r in rs), 4), "pairs": len(rs)}
    tensors, meta = load_safetensors(args.weights)
    meta["quality"] = json.dumps(quality)
    if args.data:
        meta["training_data"] = args.data
    save_safetensors(args.weights, tensors, meta)
    print(json.dumps(quality, indent=1))


if __name__ == "__main__":
    main()
