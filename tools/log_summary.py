"""Mean training losses over the first and last N steps of a run's log.jsonl, its periodic validations, and its
wall time (summed over the stretches of a resumed run; time a paused process stood still counts too).

    python tools/log_summary.py runs/film-s/log.jsonl [--window 100]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("log", type=Path)
    ap.add_argument("--window", type=int, default=100)
    args = ap.parse_args()
    rows = [json.loads(line) for line in args.log.read_text().splitlines() if line.strip()]
    keys = [k for k in ("l1", "synth", "census", "lap", "warp", "adv", "critic", "total") if k in rows[0]]
    for name, part in (("first", rows[: args.window]), ("last", rows[-args.window :])):
        means = ", ".join(f"{k} {statistics.mean(r[k] for r in part):.4f}" for k in keys)
        print(f"{name} {len(part)} steps ({part[0]['step']}-{part[-1]['step']}): {means}")
    for r in rows:
        if "val_psnr" in r:
            print(f"validation at step {r['step']}: {r['val_psnr']:.2f} dB, SSIM {r['val_ssim']:.4f} "
                  f"({r['val_items']} items)")
    # Each resumed stretch of a run logs its own clock from zero: the run's time is the sum of the stretches'.
    stretches, total, last = 1, 0.0, 0.0
    for r in rows:
        if r["time"] < last:
            stretches, total = stretches + 1, total + last
        last = r["time"]
    print(f"{rows[-1]['step']} steps in {total + last:.0f} s ({stretches} stretch{'es' if stretches > 1 else ''})")


if __name__ == "__main__":
    main()
