"""Put another film into convlstm weights: its trained stages kept, its (frozen) film part replaced.

    python tools/swap_film.py CONVLSTM.safetensors FILM.safetensors OUT.safetensors

convlstm's film part is frozen while its own stages train (``framefill train --model convlstm --film-weights``), so
when film's weights gain a stage that changes only film's frame (the sharpener: ``framefill.models.sharpen``), the
convlstm file can take the new film as it is: its config's film part becomes FILM's, its other tensors (the window
motion's gate, the ConvLSTM and refinement stages) are kept bit for bit, and the film's are FILM's. The training
metadata is kept, with a line that says which film it now holds; the measured quality is dropped (score it again:
``tools/window_scores.py``, then ``tools/stamp_weights.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from framefill.checkpoint import read_metadata, save_model
from framefill.models import load_model
from framefill.models.convlstm import ConvLSTMNet


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("convlstm", type=Path)
    ap.add_argument("film", type=Path)
    ap.add_argument("out", type=Path)
    args = ap.parse_args()
    old, _ = load_model(args.convlstm, expect="convlstm")
    film, _ = load_model(args.film, expect="film")
    model = ConvLSTMNet(dataclasses.replace(old.config, film=film.config))
    own = {k: v for k, v in old.state_dict().items() if not k.startswith("film.")}
    missing, unexpected = model.load_state_dict(own, strict=False)
    assert not unexpected and all(k.startswith("film.") for k in missing)
    model.load_film(args.film)
    meta = read_metadata(args.convlstm)
    extra = {k: meta[k] for k in ("training", "training_data") if k in meta}
    if "training_data" in extra:
        extra["training_data"] += (". Its frozen film part was swapped afterwards for a newer film's (the film it "
                                   "names in its config), its own stages kept")
    save_model(args.out, model.eval(), architecture="convlstm", extra=extra)
    print(f"{args.out}: {args.convlstm.name}'s own stages with {args.film.name}'s film")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
