"""The figures of a tools/gpu_run.sh run in a few lines: per preset, size and precision, the model's time at batch 1,
the best batch and its frames per second, and torch.compile's gain where it was measured.

    python tools/gpu_report.py bench.json [compile.json] [e2e.json]
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path


def bench_lines(rows: list[dict]) -> list[str]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["preset"], r["size"], r["dtype"])].append(r)
    lines = ["preset size dtype: batch 1 eager | best batch (frames/s) | compiled/eager at that batch"]
    for (preset, size, dtype), rs in groups.items():
        ok = [r for r in rs if r["status"] == "ok"]
        eager = [r for r in ok if not r["compiled"]]
        one = next((r for r in eager if r["batch"] == 1), None)
        best = max(ok, key=lambda r: r["fps"], default=None)
        text = f"{preset} {size} {dtype}: "
        text += f"{one['ms_median']:.2f} ms ({one['fps']:.1f} fps)" if one else "batch 1 not measured"
        if best:
            text += f" | best: batch {best['batch']}{' compiled' if best['compiled'] else ''} {best['fps']:.1f} fps"
            same = {r["compiled"]: r for r in ok if r["batch"] == best["batch"]}
            if True in same and False in same:
                text += f" | compiled {same[False]['ms_median'] / same[True]['ms_median']:.2f}x"
        failed = sorted({r["status"] for r in rs if r["status"] != "ok"})
        lines.append(text + (f" | not ok: {', '.join(failed)}" if failed else ""))
    return lines


def main(paths: list[str]) -> int:
    for path in paths:
        data = json.loads(Path(path).read_text())
        if "model" in data:  # framefill bench --json
            dev = data.get("device", {})
            print(f"{Path(path).name}: {dev.get('name') or dev.get('cpu', '')}, torch {data['versions']['torch']}")
            print("\n".join("  " + line for line in bench_lines(data["model"])))
            for e in data.get("e2e", []):
                shares = ", ".join(f"{k} {v:.0%}" for k, v in e.get("shares", {}).items())
                fps = f"{e['fps_out']:.1f} output frames/s" if e.get("fps_out") else e["status"]
                print(f"  e2e {e['preset']} {e['size']} {e['dtype']} batch {e['batch']}: {fps} ({shares})")
        elif "runs" in data:  # tools/gpu_e2e.py --json
            for r in data["runs"]:
                mem = f" --max-memory {r['max_memory']}" if r.get("max_memory") else ""
                result = f"{r['frames_in']} -> {r['frames_out']} frames in {r['seconds']:.1f} s"
                if r["returncode"] != 0:
                    result = f"failed (exit {r['returncode']})"
                print(f"interp {r['size']}{mem}: {result}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
