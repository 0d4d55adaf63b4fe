"""What the trainer samples from (``training_source``): clips, rendered scenes (``framefill.train.synth``), or both
mixed per triplet (``MixedTriplets``). Kept apart from both sources, which it assembles.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from framefill.train.data import ClipDraw, DataConfig, Samples, TripletDataset
from framefill.train.synth import SceneDraw, SynthConfig, SyntheticTriplets


class MixedTriplets(Samples):
    """Clip triplets and synthetic ones: each ``sample`` is synthetic with probability ``ratio``.

    The choice uses the caller's generator, so a run is as deterministic and resumable as with clips alone.
    """

    def __init__(self, clips: TripletDataset | None, photos: SyntheticTriplets, ratio: float) -> None:
        if clips is None and ratio < 1:
            raise ValueError(f"a synthetic ratio of {ratio} leaves {1 - ratio:.0%} of triplets to clips; give clips")
        self.clips, self.photos, self.ratio = clips, photos, ratio

    def draw(self, rng: np.random.Generator) -> SceneDraw | ClipDraw:
        """The chosen source's draw (its type says which source builds it)."""
        if self.clips is None or rng.random() < self.ratio:
            return self.photos.draw(rng)
        return self.clips.draw(rng)

    def build(self, d: SceneDraw | ClipDraw) -> tuple[torch.Tensor, float]:
        return self.photos.build(d) if isinstance(d, SceneDraw) else self.clips.build(d)  # type: ignore[union-attr]

    def motion(self, d: SceneDraw | ClipDraw) -> torch.Tensor | None:
        return self.photos.motion(d) if isinstance(d, SceneDraw) else None

    def summary(self) -> dict[str, int | float]:
        clips = self.clips.summary() if self.clips else {"clips": 0, "triplets": 0}
        return clips | self.photos.summary() | {"synthetic": self.ratio}


def training_source(data: Path | None, photos: Path | None, cfg: DataConfig, synth: SynthConfig,
                    cache_dir: Path | None = None, context: int = 2) -> TripletDataset | MixedTriplets:
    """What the trainer samples from: the clips under ``data`` alone (exactly as before) unless ``photos`` is given
    and ``synth.ratio > 0``; then clips and photos mixed (photos alone when the ratio is 1 or there are no clips).
    Four-frame models (``context=4``) train on clips only: synthetic scenes are rendered as triplets.
    """
    if photos is None or synth.ratio <= 0:
        if data is None:
            raise ValueError("nothing to train on: give a folder of clips, or photos with a synthetic ratio above 0")
        return TripletDataset(Path(data), cfg, cache_dir, context)
    if context != 2:
        raise ValueError("synthetic training data (--photos) is made as triplets, for film; train convlstm on "
                         "clips (--data) alone")
    clips = TripletDataset(Path(data), cfg, cache_dir) if data is not None and synth.ratio < 1 else None
    return MixedTriplets(clips, SyntheticTriplets(Path(photos), cfg, synth), synth.ratio)
