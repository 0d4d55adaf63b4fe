"""Summarise a make compare run: per validation item and stride, and over all (pairs are CLIP_INDEX_sSTRIDE).

    python tools/peer_table.py RESULTS.json [MORE_RESULTS.json ...] [--ref dis_medium]
Every file holds run_peers-format rows (run_peers' results.json, tools/time_pairs.py --json, ...); rows of one
peer and pair in a later file replace earlier ones. Prints three markdown tables:
1. mean PSNR per item and stride, one column per method;
2. per method over all triplets: mean PSNR and SSIM, the mean of the per-item-and-stride means (every item
   counts once), how many item-strides are at least REF + 0.3 dB, the worst triplet against REF, and the median
   model-only (core) and end-to-end seconds per 1280x720 frame;
3. the same means per stride.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from collections import defaultdict

ORDER = ["framefill", "framefill_init", "framefill_convlstm", "dis_medium", "dis_ultrafast", "ffmpeg_mci",
         "ffmpeg_blend", "rife_v4", "rife_v3"]


def split_pair(pair: str) -> tuple[str, str]:
    m = re.match(r"(.*)_\d+_s(\d+)$", pair)
    return (m[1], m[2]) if m else (pair, "?")


def median_or_none(values: list) -> float | None:
    values = [v for v in values if v not in (None, "")]
    return statistics.median(values) if values else None


def fmt(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+")
    ap.add_argument("--ref", default="dis_medium", help="the method the worst-triplet and +0.3 dB columns compare to")
    args = ap.parse_args()
    rows: dict[tuple[str, str], dict] = {}
    for path in args.results:
        for r in json.load(open(path)):
            if "psnr" in r or "sec_core" in r:
                rows[(r["peer"], r["pair"])] = {**rows.get((r["peer"], r["pair"]), {}), **r}
    peers = sorted({p for p, _ in rows}, key=lambda p: (ORDER.index(p) if p in ORDER else len(ORDER), p))
    pairs = sorted({q for _, q in rows})
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for q in pairs:
        groups[split_pair(q)].append(q)
    keys = sorted(groups, key=lambda k: (k[0].lower(), k[1]))

    def scores(peer: str, qs: list[str], field: str = "psnr") -> list[float]:
        return [rows[(peer, q)][field] for q in qs if field in rows.get((peer, q), {})]

    print("| item | stride | n | " + " | ".join(peers) + " |")
    print("|---" * (len(peers) + 3) + "|")
    for item, stride in keys:
        qs = groups[(item, stride)]
        cells = [fmt(statistics.mean(v)) if (v := scores(p, qs)) else "" for p in peers]
        print(f"| {item} | {stride} | {len(qs)} | " + " | ".join(cells) + " |")
    print()
    print(f"| method | PSNR | SSIM | item mean PSNR | items >= {args.ref} + 0.3 | worst triplet vs {args.ref} (dB) | "
          "s/720p frame core | s/720p frame e2e |")
    print("|---" * 8 + "|")
    for p in peers:
        ps, ss = scores(p, pairs), scores(p, pairs, "ssim")
        if not ps:
            continue
        item_means = {k: statistics.mean(v) for k in keys if (v := scores(p, groups[k]))}
        ref_means = {k: statistics.mean(v) for k in keys if (v := scores(args.ref, groups[k]))}
        above = sum(item_means[k] >= ref_means[k] + 0.3 for k in item_means if k in ref_means)
        diffs = [(rows[(p, q)]["psnr"] - rows[(args.ref, q)]["psnr"], q) for q in pairs
                 if "psnr" in rows.get((p, q), {}) and "psnr" in rows.get((args.ref, q), {})]
        worst = min(diffs) if diffs and p != args.ref else None
        hd = [rows[(p, q)] for q in pairs if (p, q) in rows and rows[(p, q)].get("width") == 1280
              and rows[(p, q)].get("height") == 720]
        print(f"| {p} | {statistics.mean(ps):.2f} | {statistics.mean(ss):.4f} | "
              f"{statistics.mean(item_means.values()):.2f} | "
              f"{above}/{len([k for k in item_means if k in ref_means])} | "
              f"{'' if worst is None else f'{worst[0]:+.2f} ({worst[1]})'} | "
              f"{fmt(median_or_none([r.get('sec_core') for r in hd]), 3)} | "
              f"{fmt(median_or_none([r.get('sec_e2e') for r in hd]), 3)} |")
    print()
    strides = sorted({s for _, s in keys})
    print("| method | " + " | ".join(f"stride {s} PSNR / SSIM" for s in strides) + " |")
    print("|---" * (len(strides) + 1) + "|")
    for p in peers:
        cells = []
        for s in strides:
            qs = [q for k in keys if k[1] == s for q in groups[k]]
            ps, ss = scores(p, qs), scores(p, qs, "ssim")
            cells.append(f"{statistics.mean(ps):.2f} / {statistics.mean(ss):.4f} (n={len(ps)})" if ps else "")
        print(f"| {p} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
