"""Summarise run_peers results per stride (pairs are named CLIP_INDEX_sSTRIDE by clip_triplets.py).

    python tools/peer_table.py RESULTS.json [FRAMEFILL_CORE.json]
Prints a markdown table: mean PSNR / SSIM per peer and stride, and median seconds per frame (core: array
in -> array out; e2e: files in -> file out, including a command's start-up for command peers).
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from collections import defaultdict


def stride_of(pair: str) -> str:
    m = re.search(r"_s(\d+)$", pair)
    return m[1] if m else "?"


def main() -> None:
    rows = json.load(open(sys.argv[1]))
    core = {r["pair"]: r for r in json.load(open(sys.argv[2]))} if len(sys.argv) > 2 else {}
    for r in rows:
        if r["peer"] == "framefill" and r["pair"] in core:
            r["sec_core"] = core[r["pair"]]["sec_core"]
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    peers: list[str] = []
    for r in rows:
        if "psnr" not in r:
            continue
        groups[(r["peer"], stride_of(r["pair"]))].append(r)
        if r["peer"] not in peers:
            peers.append(r["peer"])
    strides = sorted({s for _, s in groups}, key=lambda s: (len(s), s))
    head = " | ".join(f"stride {s} PSNR / SSIM" for s in strides)
    print(f"| method | {head} | s/frame core (median) | s/frame e2e (median) |")
    print("|---" * (len(strides) + 3) + "|")
    for p in peers:
        cells = []
        for s in strides:
            g = groups.get((p, s), [])
            cells.append(f"{statistics.mean(r['psnr'] for r in g):.2f} / {statistics.mean(r['ssim'] for r in g):.4f}"
                         f" (n={len(g)})" if g else "")
        all_rows = [r for s in strides for r in groups.get((p, s), [])]
        sc = [r["sec_core"] for r in all_rows if r.get("sec_core") not in (None, "")]
        se = [r["sec_e2e"] for r in all_rows if r.get("sec_e2e") not in (None, "")]
        core_s = f"{statistics.median(sc):.3f}" if sc else "n/a"
        e2e_s = f"{statistics.median(se):.3f}" if se else "n/a"
        print(f"| {p} | {' | '.join(cells)} | {core_s} | {e2e_s} |")


if __name__ == "__main__":
    main()
