"""Score and time framefill on the pairs of a run_peers list: array in -> array out, one warm-up, median of repeats.

    python tools/time_pairs.py LIST [--repeat 3] [--json OUT.json] [--weights W] [--init] [--device cpu]
        [--precision auto] [--peer NAME]
The same quantities as run_peers' rows for the in-process peers: ``sec_core`` (model loading excluded), and PSNR /
SSIM against the list's third column (the true middle frame) as run_peers computes them (8-bit RGB; SSIM with an
11x11 Gaussian window per channel). ``--init`` scores a freshly initialised model of the weights' own config
(seeded) instead of the weights: the "does training help" column of ``make compare``. Rows are written in
run_peers' format (peer ``framefill``; ``framefill_STEM`` for ``--weights STEM.safetensors`` other than the shipped
file; ``framefill_init`` with ``--init``), so tools/peer_table.py merges them.

    python tools/time_pairs.py --adapt-items ITEM [ITEM ...] [--adapt-seconds 60] [--strides 1,2] [--limit 4]
        [--json OUT.json]
``make compare``'s adapt column instead (``framefill.adapt_score``): for each item (video or frame folder) and
stride s, ``interp --adapt``'s adaptation on the item's every (2s)-th frame alone, then the same weights with and
without it scored on up to ``--limit`` frames halfway between kept frames; prints a table, one row per item-stride.

    python tools/time_pairs.py LIST --sharpen-gains S0,S1,B0,B1 [--weights W] [--repeat 0] [--json OUT.json]
The same scores of the weights with a sharpener (``framefill.models.sharpen``) whose gains are fixed everywhere:
toward the bicubic read of frame 0 and of frame 1 (``1,1,0,0``: both warped frames sampled bicubic instead of
bilinearly), toward their 3x3 blurs (``0,0,1,1``); peer ``framefill_gains_S0_S1_B0_B1``. What a learned sharpener
could take, per triplet, from a fixed choice.

    python tools/time_pairs.py LIST --oracle [--weights W] [--block 8] [--crop 512]
How much of film's choice headroom its selector takes instead: per triplet (centre-cropped to at most ``--crop``
pixels a side), the model's PSNR next to an oracle that picks, per ``--block`` square of pixels, whichever
candidate is closest to the true middle frame: of warped frame 0, warped frame 1 and the blend (``oracle3``: what
the rule and a three-way selector choose from), and of those and the two inputs as they are (``oracle5``: what
``train --unwarped`` lets it choose). Prints mean PSNR per stride (names ending ``_s<stride>``): the rule (the
selector's offsets at zero), the model, the oracles, and the share of each oracle's gain the model takes. Run it
on triplets of the training clips (``clip_triplets.py`` on ``train/videos``) to choose candidates, on val to
score a run.

    python tools/time_pairs.py LIST --reach [--weights W] [--crop 512]
How much of the motion's headroom film's refiner (``train --refiner``) takes: per triplet, film's frame with no
correction of where it reads each input (``film``), with the weights' own refiner (``model``), and with the reads
moved toward the privileged motion (``refiner.privileged_motion``: film's flow from the true middle frame to each
input) by at most R pixels of the refiner's level per axis (``R0.5`` ... ``R2``, and ``Rall`` without a limit);
``taken`` is the model's share of ``R2``'s gain.

    python tools/time_pairs.py LIST --trust [--weights W] [--block 8] [--crop 512]
The headroom of the trust in the matching at time t (``time_flow``): film's frame with the flows' trust (``rule``),
with FILM's approximation everywhere (``t0``) and the symmetric motion everywhere (``t1``), the per-block oracle
over those three and over the rule and each alone, per stride.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F

from framefill.checkpoint import save_model
from framefill.evaluate import psnr, ssim
from framefill.frames import read_image
from framefill.interpolate import interpolate_pair
from framefill.models import build_model, default_weights, load_model, refiner
from framefill.pipeline import load_interpolator, resolve_device, resolve_dtype


def fresh_model(weights: Path, model: str, device: torch.device, dtype: torch.dtype, seed: int) -> torch.nn.Module:
    """A freshly initialised model of the config stored in ``weights``, prepared as ``load_interpolator`` does
    (through a weights file of its own, so that nothing but the weights differs)."""
    _, meta = load_model(weights, expect=model)
    torch.manual_seed(seed)
    fresh = build_model(meta["architecture"], config=json.loads(meta["config"]))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "init.safetensors"
        save_model(path, fresh, architecture=meta["architecture"])
        return load_interpolator(model, path, device, dtype)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("list", nargs="?")
    ap.add_argument("--adapt-items", nargs="+", type=Path, help="score interp --adapt on these items instead")
    ap.add_argument("--adapt-seconds", type=float, default=60.0)
    ap.add_argument("--adapt-stage", default="selector", help="what --adapt fine-tunes: selector or refiner")
    ap.add_argument("--strides", default="1,2")
    ap.add_argument("--limit", type=int, default=4, help="scored frames per item and stride (--adapt-items)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json")
    ap.add_argument("--weights", type=Path)
    ap.add_argument("--init", action="store_true", help="a freshly initialised model of the weights' config")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default="film")
    ap.add_argument("--peer", help="the rows' peer name (default framefill for the shipped weights, framefill_STEM "
                    "for other --weights, framefill_init with --init)")
    ap.add_argument("--precision", default="auto", help="auto (as framefill interp), fp32, bf16, fp16")
    ap.add_argument("--oracle", action="store_true", help="the selector's share of the choice headroom instead")
    ap.add_argument("--block", type=int, default=8, help="pixels a side of an oracle choice (--oracle, --trust)")
    ap.add_argument("--crop", type=int, default=512, help="largest side scored (--oracle, --reach, --trust)")
    ap.add_argument("--reach", action="store_true", help="the refiner's share of the motion's headroom instead")
    ap.add_argument("--trust", action="store_true", help="the headroom of the trust in the matching at t instead")
    ap.add_argument("--sharpen-gains", help="S0,S1,B0,B1: the weights with a sharpener fixed at these gains")
    args = ap.parse_args()
    if args.oracle:
        return oracle_table(args)
    if args.trust:
        return trust_table(args)
    if args.reach:
        return reach_table(args)
    dev = resolve_device(args.device)
    dtype = resolve_dtype(args.precision, dev)
    if args.adapt_items:
        return adapt_table(args, dev, dtype)
    peer = peer_name(args)
    if args.sharpen_gains:
        gains = [float(x) for x in args.sharpen_gains.split(",")]
        args.weights = fixed_gains(args.weights or default_weights(args.model), gains, Path(tempfile.mkdtemp()))
        peer = args.peer or "framefill_gains_" + "_".join(f"{g:g}" for g in gains).replace("-", "m")
    if args.init:
        net = fresh_model(args.weights or default_weights(args.model), args.model, dev, dtype, args.seed)
    else:
        net = load_interpolator(args.model, args.weights, dev, dtype)
    rows = []
    for parts, name in list_rows(args.list):
        a, b = read_image(Path(parts[0])), read_image(Path(parts[1]))
        mid = interpolate_pair(a, b, net, device=dev, dtype=dtype)  # warm-up (and the scored frame)
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            interpolate_pair(a, b, net, device=dev, dtype=dtype)
            times.append(time.perf_counter() - t0)
        row = {"peer": peer, "pair": name, "width": a.shape[1], "height": a.shape[0],
               "sec_core": statistics.median(times) if times else None, "sec_core_min": min(times, default=None),
               "threads": torch.get_num_threads(), "precision": str(dtype).removeprefix("torch.")}
        if len(parts) > 2 and parts[2] != "-":
            truth = read_image(Path(parts[2]))
            row.update(psnr=psnr(mid, truth), ssim=ssim(mid, truth))
        rows.append(row)
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


def fixed_gains(weights: Path, gains: list[float], folder: Path) -> Path:
    """``weights`` (film with a selector) with a sharpener whose gains are ``gains`` everywhere (toward bicubic for
    frame 0 and 1, within +-SHARP_REACH; toward the blur for each, in [0, 1)), written to ``folder``."""
    from framefill.models.sharpen import SHARP_REACH

    if len(gains) != 4 or any(abs(g) >= SHARP_REACH for g in gains[:2]) or any(not 0 <= g < 1 for g in gains[2:]):
        raise SystemExit(f"--sharpen-gains needs S0,S1 within +-{SHARP_REACH} and B0,B1 in [0, 1); got {gains}")
    model, _ = load_model(weights, expect="film")
    model = model.with_sharpener()
    g = torch.tensor(gains)
    bias = torch.cat([torch.atanh(g[:2] / SHARP_REACH), torch.log((1 + g[2:]) / (1 - g[2:]))])  # the head's inverse
    with torch.no_grad():
        model.sharpener.head.weight.zero_()
        model.sharpener.head.bias.copy_(bias)
    path = folder / "gains.safetensors"
    save_model(path, model.eval(), architecture="film")
    return path


def adapt_table(args: argparse.Namespace, dev: torch.device, dtype: torch.dtype) -> None:
    from framefill.adapt import AdaptConfig
    from framefill.adapt_score import score_item

    weights = args.weights or default_weights(args.model)
    rows = []
    print("| item | stride | n | without | --adapt | gain | adapt s | kept |\n|---|---|---|---|---|---|---|---|")
    for item in args.adapt_items:
        for s in (int(x) for x in args.strides.split(",")):
            r = score_item(item, s, weights, device=dev, dtype=dtype, cfg=AdaptConfig(seconds=args.adapt_seconds,
                                                                                stage=args.adapt_stage),
                           limit=args.limit)
            rows.append(r)
            print(f"| {r['item']} | {s} | {r['n']} | {r['psnr_base']:.2f} | {r['psnr_adapt']:.2f} | "
                  f"{r['psnr_adapt'] - r['psnr_base']:+.2f} | {r['adapt_seconds']:.0f} | "
                  f"{'yes' if r['kept'] else 'no'} |", flush=True)
    n = sum(r["n"] for r in rows)
    mean = {k: sum(r[k] * r["n"] for r in rows) / max(1, n) for k in ("psnr_base", "psnr_adapt")}
    print(f"| all | | {n} | {mean['psnr_base']:.2f} | {mean['psnr_adapt']:.2f} | "
          f"{mean['psnr_adapt'] - mean['psnr_base']:+.2f} | | |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


def peer_name(args: argparse.Namespace) -> str:
    """The rows' peer name: ``--peer``, else ``framefill_init`` with ``--init``, ``framefill`` for the shipped
    weights and ``framefill_STEM`` for other ``--weights`` (so that two weights files' rows do not merge in
    ``peer_table.py``)."""
    if args.peer:
        return args.peer
    if args.init:
        return "framefill_init"
    if args.weights is None or args.weights.resolve() == default_weights(args.model).resolve():
        return "framefill"
    return "framefill_" + (re.sub(r"[^A-Za-z0-9]+", "_", args.weights.stem).strip("_") or "weights")


def list_rows(path: str) -> list[tuple[list[str], str]]:
    """A run_peers list's rows: the paths (frame 0, frame 1, and the truth or ``-``) and the pair's name (the fourth
    column, else frame 0's folder)."""
    rows = []
    for line in Path(path).read_text().splitlines():
        parts = line.split("#")[0].split()
        if parts:
            rows.append((parts, parts[3] if len(parts) > 3 else Path(parts[0]).parent.name))
    return rows


def centred_triplets(path: str, crop: int, divisor: int):
    """The list's triplets that have a truth, as ``(name, (input 0, input 1, truth))``, each ``(1, 3, h, w)`` float in
    [0, 1], centre-cropped to at most ``crop`` pixels a side and to multiples of ``divisor``."""
    for parts, name in list_rows(path):
        if len(parts) < 3 or parts[2] == "-":
            continue
        frames = [torch.from_numpy(read_image(Path(p))).permute(2, 0, 1)[None].float() / 255 for p in parts[:3]]
        h, w = frames[0].shape[-2:]
        ch, cw = min(h, crop) // divisor * divisor, min(w, crop) // divisor * divisor
        y, x = (h - ch) // 2, (w - cw) // 2
        yield name, tuple(f[..., y:y + ch, x:x + cw] for f in frames)


def block_oracle(candidates: list[torch.Tensor], truth: torch.Tensor, block: int) -> float:
    """PSNR of the per-block best of ``candidates`` (each ``(1, 3, H, W)`` in [0, 1])."""
    mse = torch.stack([F.avg_pool2d((c - truth).square().mean(1, keepdim=True), block) for c in candidates])
    return float(-10 * torch.log10(mse.min(0).values.mean()))


def oracle_table(args: argparse.Namespace) -> None:
    model, _ = load_model(args.weights or default_weights("film"), expect="film")
    model.eval()
    if model.selector is None:
        raise SystemExit("time_pairs --oracle: the weights have no selector (train --selector)")
    rows: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for name, (i0, i1, truth) in centred_triplets(args.list, args.crop, model.divisor):
        with torch.no_grad():
            ev = model.selector_evidence(i0, i1, torch.full((1, 1, 1, 1), 0.5))
            offset = model.selector.offset(ev)
            out = model.compose(ev, offset)[0]
            rule = model.compose(ev, torch.zeros_like(offset))[0]
        row = rows[name.rsplit("_s", 1)[-1]]
        for key, x in (("rule", rule), ("model", out)):
            row[key].append(float(-10 * torch.log10((x - truth).square().mean())))
        row["oracle3"].append(block_oracle(list(ev["candidates"][:3]), truth, args.block))
        row["oracle5"].append(block_oracle([*ev["candidates"][:3], i0, i1], truth, args.block))
    print(f"{'stride':>6} {'n':>4} {'rule':>7} {'model':>7} {'oracle3':>8} {'oracle5':>8} {'taken3':>7} {'taken5':>7}")
    for stride in sorted(rows):
        m = {k: statistics.fmean(v) for k, v in rows[stride].items()}
        taken = [(m["model"] - m["rule"]) / max(m[k] - m["rule"], 1e-9) for k in ("oracle3", "oracle5")]
        print(f"{stride:>6} {len(rows[stride]['rule']):>4} {m['rule']:7.2f} {m['model']:7.2f} {m['oracle3']:8.2f} "
              f"{m['oracle5']:8.2f} {taken[0]:7.0%} {taken[1]:7.0%}")


def trust_table(args: argparse.Namespace) -> None:
    model, _ = load_model(args.weights or default_weights("film"), expect="film")
    model.eval()
    keys = ("rule", "t0", "t1", "oracle", "rule|t0", "rule|t1")
    rows: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for name, (i0, i1, truth) in centred_triplets(args.list, args.crop, model.divisor):
        frames = {}
        for key, fixed in (("rule", None), ("t0", 0.0), ("t1", 1.0)):
            model.trust_fixed = fixed
            with torch.no_grad():
                frames[key] = model(i0, i1, 0.5)
        row = rows[name.rsplit("_s", 1)[-1]]
        for key, x in frames.items():
            row[key].append(float(-10 * torch.log10((x - truth).square().mean())))
        row["oracle"].append(block_oracle(list(frames.values()), truth, args.block))
        for other in ("t0", "t1"):
            row[f"rule|{other}"].append(block_oracle([frames["rule"], frames[other]], truth, args.block))
    print(f"{'stride':>6} {'n':>4}" + "".join(f"{k:>9}" for k in keys))
    for stride in sorted(rows):
        print(f"{stride:>6} {len(rows[stride]['rule']):>4}"
              + "".join(f"{statistics.fmean(rows[stride][k]):9.2f}" for k in keys))


class ReachOracle(torch.nn.Module):
    """Stands for film's refiner: moves the reads toward ``target`` (``refiner.privileged_motion``) by at most
    ``reach`` pixels per axis. It reads the motions from the refiner's input (channels 5-8: the motions / 4)."""

    def __init__(self, target: torch.Tensor, reach: float) -> None:
        super().__init__()
        self.head = torch.nn.Conv2d(1, 1, 1)  # (its weight gives corrections() the input's dtype)
        self.target, self.reach = target, reach

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.target - 4 * x[:, 5:9]).clamp(-self.reach, self.reach)


def reach_table(args: argparse.Namespace) -> None:
    loaded, _ = load_model(args.weights or default_weights("film"), expect="film")
    loaded.eval()
    probe = copy.deepcopy(loaded).with_refiner(16).eval()  # (a model with a refiner returns itself)
    own = loaded.refiner
    reaches = {"film": 0.0, "R0.5": 0.5, "R1": 1.0, "R2": 2.0, "Rall": float("inf")}
    rows: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for name, (i0, i1, truth) in centred_triplets(args.list, args.crop, probe.divisor):
        row = rows[name.rsplit("_s", 1)[-1]]
        with torch.no_grad():
            target = refiner.privileged_motion(probe, i0, i1, truth)
            for key, reach in reaches.items():
                probe.refiner = ReachOracle(target, reach)
                row[key].append(float(-10 * torch.log10((probe(i0, i1) - truth).square().mean())))
            if own is not None:
                row["model"].append(float(-10 * torch.log10((loaded(i0, i1) - truth).square().mean())))
    keys = [*reaches][:1] + (["model"] if own is not None else []) + [*reaches][1:]
    print(f"{'stride':>6} {'n':>4} " + " ".join(f"{k:>7}" for k in keys) + (f" {'taken':>6}" if own else ""))
    for stride in sorted(rows):
        m = {k: statistics.fmean(v) for k, v in rows[stride].items()}
        taken = f" {(m['model'] - m['film']) / max(m['R2'] - m['film'], 1e-9):6.0%}" if own is not None else ""
        print(f"{stride:>6} {len(rows[stride]['film']):>4} " + " ".join(f"{m[k]:7.2f}" for k in keys) + taken)


if __name__ == "__main__":
    main()
