"""``FilmConfig``: the settings of the ``film`` model, in a module of its own.

``film.py`` (the assembly) and the stages it configures (``film_parts.py``, ``time_flow.py``) all read it; kept
here, below all three, it is imported by each without an import circle. ``framefill.models.film`` re-exports it,
so ``from framefill.models.film import FilmConfig`` keeps working.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

REFINER_LEVEL = 2  # the pyramid level the motion refiner works at (a quarter of the resolution)


@dataclass(frozen=True)
class FilmConfig:
    pyramid_levels: int = 6  # image pyramid depth at inference; coarsest level is 1/2**(levels-1)
    sub_levels: int = 3  # depth of the cascaded feature extractor
    filters: int = 16  # feature channels at depth 0, doubling per depth
    specialized_levels: int = 2  # finest levels with their own flow estimator (>= sub_levels - 1)
    flow_filters: int = 32  # channels of the flow estimators' conv stacks
    flow_convs: int = 3  # 3x3 convs per flow estimator (before the 1x1 output)
    lk_iters: int = 8  # Lucas-Kanade updates per feature level before the learned residual (0: FILM's alone)
    lk_fine_iters: int = 1  # Lucas-Kanade updates on each featureless fine level down to lk_finest
    lk_finest: int = 1  # finest pyramid level Lucas-Kanade refines (finer levels only upsample the flow)
    lk_window: int = 9  # Lucas-Kanade window (pixels of its level)
    lk_smooth: int = 7  # window of the confidence-weighted mean over the flow after each update (1: none)
    lk_damping: float = 1e-3  # Tikhonov damping of the Lucas-Kanade normal equations (grey levels in [0, 1])
    lk_sigma: float = 0.03  # grey-level residual at which a pixel's confidence halves (0: plain box mean)
    lk_weight_filters: int = 0  # learned per-pixel weights inside every Lucas-Kanade update (``film_parts.LKWeights``;
    # 0: none, the parameter-free updates)
    search_radius: int = 0  # before the Lucas-Kanade steps of each level from the coarsest down to search_finest, a
    # brute-force search of whole-pixel steps within this radius around the flow (``layers.search_flow``; 0: none)
    search_finest: int = 2
    search_ratio: float = 0.8  # a pixel takes the best step where its box difference is below this times the flow's
    search_window: int = 7  # the box (pixels of its level) over which each step's difference is averaged
    skip_levels: int = 2  # finest levels with no features and no flow refinement: flow is upsampled there,
    # and fusion sees only the warped images (full-resolution features cost most of the time on a CPU)
    fusion_levels: int = 4  # pyramid levels the U-Net fusion decodes (finest first)
    fusion_filters: int = 16  # fusion channels at the finest level, doubling per level
    fusion_max_filters: int = 64  # cap on fusion channels
    fallback_window: int = 15  # window comparing warped and unwarped disagreement for the blend fallback (0: off)
    fallback_temp: float = 0.03  # softness of that comparison (grey levels)
    fusion_cues: bool = False  # fusion also sees parameter-free occlusion cues (warp disagreement, the fallback
    # weight, forward-backward consistency of the flows) and its head adds a learned offset to the fallback's logit
    vis_sigma: float = 1.0  # forward-backward flow mismatch (pixels) at which the consistency cue falls to 1/e
    time_levels: int = 2  # the motion at time t is matched symmetrically on the pyramid levels below this
    # (``framefill.models.time_flow``; 0: off, FILM's approximation alone), down to ``time_finest``
    time_finest: int = 1  # (finer levels upsample it)
    time_iters: int = 4  # Lucas-Kanade updates per level of that matching
    selector_filters: int = 0  # a learned choice between warped frame 0, warped frame 1 and the blend, on top of
    # the fixed rule (``film_parts.Selector``, half resolution; 0: the rule alone)
    selector_unwarped: bool = False  # the selector may also choose either input as it is (no warp): held drawings,
    # static detail that a sub-pixel warp blurs, a flow that went astray where nothing moved
    refiner_filters: int = 0  # a learned correction of where each input is read for the frame at t, after the last
    # parameter-free step of the motion (``film_parts.MotionRefiner``, quarter resolution; 0: none)
    sharpen_filters: int = 0  # a learned choice per pixel of how the two warped frames are resampled (bilinear,
    # toward bicubic, toward a blur; ``framefill.models.sharpen``, half resolution; 0: bilinear alone)
    arbitrary_time: bool = False  # trained at any t (``framefill train --arbitrary-time``): the scheduler then
    # asks for every output time directly instead of bisecting at t = 0.5

    def __post_init__(self) -> None:
        if self.specialized_levels < self.sub_levels - 1:
            raise ValueError(f"specialized_levels ({self.specialized_levels}) must be >= sub_levels - 1 "
                             f"({self.sub_levels - 1}) so the shared flow estimator sees one channel count")
        if not 1 <= self.fusion_levels <= self.pyramid_levels:
            raise ValueError(f"fusion_levels must be in 1..pyramid_levels, got {self.fusion_levels}")
        if not 0 <= self.skip_levels < self.pyramid_levels - 1:
            raise ValueError(f"skip_levels must be in 0..pyramid_levels-2, got {self.skip_levels}")
        if self.time_levels and not 0 <= self.time_finest < self.time_levels <= self.pyramid_levels:
            raise ValueError(f"time_levels ({self.time_levels}) must be in 0..pyramid_levels and time_finest "
                             f"({self.time_finest}) below it")
        if self.selector_filters and not self.fallback_window:
            raise ValueError("selector_filters needs the blend fallback (fallback_window > 0): it refines that rule")
        if self.selector_unwarped and not self.selector_filters:
            raise ValueError("selector_unwarped needs a selector (selector_filters > 0)")
        if self.sharpen_filters and not (self.selector_filters and self.time_levels):
            raise ValueError("sharpen_filters needs a selector (selector_filters > 0) and the matching at time t "
                             "(time_levels > 0)")
        if self.refiner_filters and not (self.time_levels and self.pyramid_levels > REFINER_LEVEL):
            raise ValueError("refiner_filters needs the matching at time t (time_levels > 0) and more than "
                             f"{REFINER_LEVEL} pyramid levels")
        if self.search_radius < 0 or not 0 < self.search_ratio <= 1 or self.search_window % 2 == 0:
            raise ValueError("search_radius must be >= 0, search_ratio in (0, 1] and search_window odd, got "
                             f"{self.search_radius}, {self.search_ratio} and {self.search_window}")
        if self.lk_window % 2 == 0 or self.lk_smooth % 2 == 0 or (self.fallback_window and
                                                                  self.fallback_window % 2 == 0):
            raise ValueError("lk_window, lk_smooth and fallback_window must be odd, got "
                             f"{self.lk_window}, {self.lk_smooth} and {self.fallback_window}")

    @property
    def divisor(self) -> int:
        """Input height and width must be multiples of this (the scheduler pads to it)."""
        return 2 ** (self.pyramid_levels - 1)

    @property
    def flow_radius(self) -> int:
        """Pixels of its own level one flow estimator searches around the upsampled flow."""
        return self.lk_window // 2 if self.lk_iters else self.flow_convs

    @property
    def max_motion(self) -> int:
        """Approximate largest motion (pixels between the two inputs) the pyramid resolves."""
        return self.flow_radius * (2**self.pyramid_levels - 1)

    def to_dict(self) -> dict:
        return asdict(self)
