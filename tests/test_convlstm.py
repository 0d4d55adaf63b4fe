"""The convlstm model and its four-frame scheduler: cell and state shapes, the zero-state start, window assembly
at the ends and across cuts, output timing through the passes, a seeded golden output, training on four-frame
windows, and export then ``interp --model convlstm``.

CPU only and tiny (the ``convlstm-tiny`` preset, 64x48 clips).
"""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import moving_square, write_clip
from typer.testing import CliRunner

from framefill.cli import app
from framefill.frames import read_image, write_image
from framefill.interpolate import InterpolationStats, ScheduleConfig, interpolate_frames, interpolate_pair, output_count
from framefill.models import build_model, load_model
from framefill.models.convlstm import (
    PRESETS,
    ConvLSTMCell,
    ConvLSTMConfig,
    ConvLSTMNet,
    Refinement,
    Synthesis,
    align_window,
)
from framefill.tiling import TileConfig
from framefill.train.data import DataConfig, TripletDataset, sample_indices, valid_triplets
from framefill.train.loop import TrainConfig, Trainer, load_val, validate
from framefill.windows import CUT, DUPLICATE, MOTION, passes_for, window

pytestmark = pytest.mark.usefixtures("one_thread")
N = 12
NO_AUG = {"flip_prob": 0.0, "rot90_prob": 0.0, "reverse_prob": 0.0, "jitter": 0.0}


# --- the model -------------------------------------------------------------------------------------------------


def test_cell_state_shapes_and_zero_state_start():
    cell = ConvLSTMCell(in_channels=3, hidden=5)
    x = torch.rand(2, 3, 8, 12)
    h, c = cell.zero_state(x)
    assert h.shape == c.shape == (2, 5, 8, 12) and not h.any() and not c.any()
    h1, c1 = cell(x, (h, c))
    assert h1.shape == c1.shape == (2, 5, 8, 12)
    # From the zero state the forget gate has nothing to keep: c = sigmoid(i) * tanh(g), h = sigmoid(o) * tanh(c).
    i, _, o, g = cell.gates(torch.cat([x, h], dim=1)).chunk(4, dim=1)
    want_c = torch.sigmoid(i) * torch.tanh(g)
    assert torch.allclose(c1, want_c, atol=1e-6)
    assert torch.allclose(h1, torch.sigmoid(o) * torch.tanh(want_c), atol=1e-6)
    h2, c2 = cell(x, (h1, c1))  # the state carries: a second step differs from the first
    assert not torch.allclose(c2, c1)
    with pytest.raises(ValueError, match="state"):
        cell(x, (torch.zeros(2, 4, 8, 12), torch.zeros(2, 4, 8, 12)))


def _with_live_heads(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """The model with both residual heads drawn at random (seeded): trained ones are not zero."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for head in (model.synthesis.head, model.refinement.head):
            head.weight.copy_(0.3 * torch.randn(head.weight.shape, generator=gen))
            head.bias.copy_(0.01 * torch.randn(head.bias.shape, generator=gen))
    return model


def test_model_shapes_divisor_and_untrained_output_is_films():
    torch.manual_seed(0)
    model = build_model("convlstm", "convlstm-tiny").eval()
    assert model.context == 4 and model.times == (0.5,) and model.divisor == 4
    frames = torch.rand(2, 4, 3, 16, 24)
    with torch.no_grad():
        out, aux = model(frames, return_aux=True)
        film = model.film(frames[:, 1], frames[:, 2])
    assert out.shape == (2, 3, 16, 24) and aux["synth"].shape == (2, 3, 16, 24)
    assert aux["aligned"].shape == (2, 4, 3, 16, 24) and aux["flow_10"].shape == aux["flow_01"].shape == (2, 2, 16, 24)
    assert torch.equal(out, film) and torch.equal(aux["film"], film)  # zero heads: exactly film's frame
    with pytest.raises(ValueError, match="multiple of 4"):
        model(torch.rand(1, 4, 3, 18, 24))
    with pytest.raises(ValueError, match=r"\(N, 4, 3, H, W\)"):
        model(torch.rand(1, 3, 3, 16, 24))
    with pytest.raises(ValueError, match="space_to_depth"):
        ConvLSTMConfig(space_to_depth=0)
    assert ConvLSTMConfig(space_to_depth=4, filters=(4, 8, 8)).divisor == 32  # film-s's 32 and 4 * 2**2 = 16


def test_film_part_is_frozen_and_self_contained_in_the_weights_file(tmp_path: Path):
    from framefill.checkpoint import WeightsError, save_model

    model = build_model("convlstm", "convlstm-tiny")
    assert not any(p.requires_grad for p in model.film.parameters())
    assert all(p.requires_grad for p in model.synthesis.parameters())
    film = build_model("film", "film-tiny")
    with torch.no_grad():
        film.fusion.head.bias.fill_(0.25)  # film weights that differ from the convlstm's own film part
    save_model(tmp_path / "film.safetensors", film, architecture="film")
    model.load_film(tmp_path / "film.safetensors")
    assert torch.equal(model.film.fusion.head.bias, film.fusion.head.bias)
    save_model(tmp_path / "convlstm.safetensors", model, architecture="convlstm")
    loaded, _ = load_model(tmp_path / "convlstm.safetensors", expect="convlstm")
    assert loaded.config == model.config and torch.equal(loaded.film.fusion.head.bias, film.fusion.head.bias)
    save_model(tmp_path / "film-s.safetensors", build_model("film", "film-s"), architecture="film")
    with pytest.raises(WeightsError, match="another config"):
        model.load_film(tmp_path / "film-s.safetensors")


def test_weights_of_the_old_flow_free_design_are_refused_in_one_line(tmp_path: Path):
    from framefill.checkpoint import WeightsError, save_file

    old = {"filters": [4, 8], "decoder_convs": 1, "refine_filters": 4, "refine_blocks": 1, "reduction": 4,
           "spatial_kernel": 7, "head_init": 0.01, "space_to_depth": 2}  # the first design's config
    path = tmp_path / "old.safetensors"
    save_file({"synthesis.head.bias": torch.zeros(12)}, str(path),
              metadata={"architecture": "convlstm", "config": json.dumps(old), "format": "pt"})
    with pytest.raises(WeightsError, match="first, flow-free design") as e:
        load_model(path)
    assert "\n" not in str(e.value)


def test_align_window_moves_every_frame_to_the_middle_time():
    """A texture panning 2 px a frame: film's flows are -2 (I2 into I1) and +2 (I1 into I2) in x; warped by them,
    all four frames show the texture where it is at t = 1.5. Copies (the scheduler's stand-ins) stay aligned."""
    texture = torch.rand(1, 3, 16, 48)
    frames = torch.stack([torch.roll(texture, 2 * k, dims=-1) for k in range(4)], dim=1)  # (1, 4, 3, 16, 48)
    truth = torch.roll(texture, 3, dims=-1)  # t = 1.5: moved 3 px
    flow_10 = torch.zeros(1, 2, 16, 48)
    flow_10[:, 0] = -2.0
    aligned = align_window(frames, flow_10, -flow_10)
    inner = (..., slice(None), slice(4, -4))  # away from the borders, which warping clamps
    for k in range(4):
        assert torch.allclose(aligned[:, k][inner], truth[inner], atol=1e-5), k
    ends = frames.clone()
    ends[:, 0], ends[:, 3] = frames[:, 1], frames[:, 2]  # the start and the end of a clip
    aligned = align_window(ends, flow_10, -flow_10)
    assert torch.equal(aligned[:, 0], aligned[:, 1]) and torch.equal(aligned[:, 3], aligned[:, 2])


def test_zero_state_start_of_the_synthesis():
    """The ConvLSTM starts from zeros at I0: the skip after one step is the cell's step from the zero state."""
    torch.manual_seed(0)
    synthesis = build_model("convlstm", "convlstm-tiny").synthesis
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    cell = synthesis.cells[0]
    cell.register_forward_hook(lambda mod, args, out: seen.append(args[1]))
    with torch.no_grad():
        synthesis(torch.rand(1, 4, 3, 8, 8), torch.rand(1, 3, 8, 8))
    assert len(seen) == 4 and not seen[0][0].any() and not seen[0][1].any() and seen[1][0].any()


def test_golden_output_of_the_seeded_tiny_preset():
    """The ConvLSTM and refinement stages on a seeded window (film's own golden test pins film, which changes
    apart; these stages are fed fixed aligned frames so that a change there does not move these numbers)."""
    cfg = PRESETS["convlstm-tiny"]
    torch.manual_seed(0)  # the stages alone: their initialisation does not depend on film's parameter count
    model = torch.nn.Module()
    model.synthesis, model.refinement = Synthesis(cfg), Refinement(cfg)
    model = _with_live_heads(model.eval())
    gen = torch.Generator().manual_seed(1)
    aligned, base = torch.rand(1, 4, 3, 16, 16, generator=gen), torch.rand(1, 3, 16, 16, generator=gen)
    with torch.no_grad():
        residual = model.synthesis(aligned, base)
        refined = model.refinement(base + residual, aligned[:, 1], aligned[:, 2])
    assert float(residual.mean()) == pytest.approx(GOLDEN[0], abs=1e-5)
    assert float(residual.abs().sum()) == pytest.approx(GOLDEN[1], rel=2e-4)
    assert float((refined - base - residual).sum()) == pytest.approx(GOLDEN[2], rel=2e-4)


GOLDEN = (0.0248334, 43.72743, 114.01406)  # residual mean, its absolute sum, the refinement's sum


def test_bf16_weights_keep_film_and_output_in_float32():
    """Converted to bf16, the convolutions run in bf16; film's geometry, the residual sums and the output float32."""
    torch.manual_seed(0)
    model = _with_live_heads(build_model("convlstm", "convlstm-tiny").eval())
    frames = torch.rand(1, 4, 3, 16, 16)
    with torch.no_grad():
        ref, ref_aux = model(frames, return_aux=True)
        out, aux = model.to(torch.bfloat16)(frames, return_aux=True)
    assert out.dtype == torch.float32 and aux["synth"].dtype == torch.float32
    assert (out - ref).abs().mean().item() < 5e-3 and (out - ref).abs().max().item() < 0.05
    residual, ref_residual = aux["synth"] - aux["film"], ref_aux["synth"] - ref_aux["film"]
    assert residual.abs().max() > 0.01 and (residual - ref_residual).abs().max().item() < 0.05


def test_time_runs_forward_through_the_window():
    """The synthesis reads its frames in order: swapping I0 and I3 changes the output (an LSTM, not a mean)."""
    torch.manual_seed(0)
    model = _with_live_heads(build_model("convlstm", "convlstm-tiny").eval())
    frames = torch.rand(1, 4, 3, 16, 16)
    with torch.no_grad():
        a = model(frames)
        b = model(frames[:, [3, 1, 2, 0]])
    assert not torch.allclose(a, b, atol=1e-4)


# --- windows ---------------------------------------------------------------------------------------------------


def test_window_replaces_missing_and_cut_outer_frames():
    f = [np.full((2, 2, 3), v, np.uint8) for v in range(5)]
    ids = lambda w: [int(x[0, 0, 0]) for x in w]  # noqa: E731
    motion = [MOTION] * 4
    assert ids(window(f, motion, 0)) == [0, 0, 1, 2]  # the start: I0 := I1
    assert ids(window(f, motion, 1)) == [0, 1, 2, 3]
    assert ids(window(f, motion, 3)) == [2, 3, 4, 4]  # the end: I3 := I2
    assert ids(window(f, [MOTION, CUT, MOTION, MOTION], 2)) == [2, 2, 3, 4]  # a cut before the pair
    assert ids(window(f, [MOTION, CUT, MOTION, MOTION], 0)) == [0, 0, 1, 1]  # a cut after it
    assert ids(window(f, [DUPLICATE, MOTION, MOTION, MOTION], 1)) == [1, 1, 2, 3]


class Probe(torch.nn.Module):
    """A four-frame stand-in: ``(I1 + I2) / 2 + (I3 - I0) / 8``; records every window it sees."""

    context, times, divisor = 4, (0.5,), 1

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[list[float]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += [[round(float(v) * 255) for v in w[:, 0, 0, 0]] for w in x]
        return 0.5 * (x[:, 1] + x[:, 2]) + (x[:, 3] - x[:, 0]) / 8


def flat(values: list[int], size: tuple[int, int] = (12, 16)) -> list[np.ndarray]:
    return [np.full((*size, 3), v, np.uint8) for v in values]


def test_every_pair_sees_its_neighbours_and_the_ends_repeat():
    probe = Probe()
    frames = flat([40, 50, 60, 70, 80])  # steps of 10/255: motion, neither a cut nor a duplicate
    out = list(interpolate_frames(frames, 24, probe, ScheduleConfig(factor=2, batch_size=3)))
    assert sorted(probe.seen) == [[40, 40, 50, 60], [40, 50, 60, 70], [50, 60, 70, 80], [60, 70, 80, 80]]
    # inside: 55 + (70 - 40) / 8 = 58.75; at the start the outer frame is I1 itself: 45 + (60 - 40) / 8 = 47.5
    assert [int(o[0, 0, 0]) for o in out] == [40, 48, 50, 59, 60, 69, 70, 78, 80]


def test_scene_cut_frames_are_never_in_a_window():
    probe = Probe()
    rng = np.random.default_rng(0)
    shot_a = [np.clip(rng.normal(60 + 4 * k, 20, (24, 32, 3)), 0, 255).astype(np.uint8) for k in range(4)]
    shot_b = [np.clip(rng.normal(190 - 4 * k, 20, (24, 32, 3)), 0, 255).astype(np.uint8) // 2 * 2 for k in range(4)]
    stats = InterpolationStats()
    out = list(interpolate_frames(shot_a + shot_b, 24, probe, ScheduleConfig(factor=4, batch_size=2), stats=stats))
    assert stats.scene_cuts == 1 and len(out) == output_count(8, 24, factor=4)
    means = [int(w[0]) for w in probe.seen]  # (pixel (0, 0) is noise; use the frames' shot instead)
    assert len(means) == 6 * 3  # 6 motion pairs, 3 model frames each (4x: two passes)
    a_ids = {id(f) for f in shot_a}
    cut = out[3 * 4 + 1: 3 * 4 + 4]  # the in-betweens of the cut pair are copies of the second shot's first frame
    assert all(np.array_equal(c, shot_b[0]) for c in cut) and not any(id(c) in a_ids for c in cut)
    for w in probe.seen:  # each window is from one shot (shot b is darker than shot a everywhere but noise)
        assert max(w) < 150 or min(w) > 50


class Recording(ConvLSTMNet):
    """convlstm-tiny that keeps, per window, whether each outer aligned frame is its neighbour's (a stand-in)."""

    def __init__(self) -> None:
        super().__init__(build_model("convlstm", "convlstm-tiny").config)
        self.stand_ins: list[tuple[bool, bool]] = []

    def forward(self, frames: torch.Tensor, return_aux: bool = False):
        out, aux = super().forward(frames, return_aux=True)
        a = aux["aligned"]
        self.stand_ins += [(torch.equal(w[0], w[1]), torch.equal(w[3], w[2])) for w in a]
        return (out, aux) if return_aux else out


def test_aligned_windows_at_clip_ends_and_cuts_through_the_scheduler():
    """Through the four-frame scheduler: the first pair's I0 and the last pair's I3, and the outer frames across a
    scene cut, are stand-ins aligned as their neighbours; every other window has four distinct aligned frames."""
    torch.manual_seed(0)
    model = Recording().eval()
    rng = np.random.default_rng(0)
    shot_a = [np.clip(rng.normal(60 + 4 * k, 20, (16, 24, 3)), 0, 255).astype(np.uint8) for k in range(4)]
    shot_b = [np.clip(rng.normal(190 - 4 * k, 20, (16, 24, 3)), 0, 255).astype(np.uint8) for k in range(4)]
    stats = InterpolationStats()
    out = list(interpolate_frames(shot_a + shot_b, 24, model, ScheduleConfig(factor=2, batch_size=1), stats=stats))
    assert stats.scene_cuts == 1 and len(out) == 15
    # Pairs 0-2 in shot a, 3 the cut (copied, no model call), 4-6 in shot b; one window each, in order.
    assert model.stand_ins == [(True, False), (False, False), (False, True),
                               (True, False), (False, False), (False, True)]


@pytest.mark.parametrize("kw", [{"factor": 2}, {"factor": 4}, {"factor": 8}, {"factor": 3}, {"fps": Fraction(60)},
                                {"fps": Fraction(25)}])
def test_output_times_through_the_passes(kw):
    """Frames whose value is 20 + 8 x (time in frames): a blend model makes each output's exact time visible."""
    class Blend(Probe):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 0.5 * (x[:, 1] + x[:, 2])

    n, in_fps = 7, Fraction(24)
    frames = flat([20 + 8 * k for k in range(n)])
    stats = InterpolationStats()
    out = list(interpolate_frames(frames, in_fps, Blend(), ScheduleConfig(**kw), stats=stats))
    assert len(out) == output_count(n, in_fps, **kw) == stats.frames_out
    ratio = Fraction(kw["fps"]) / in_fps if "fps" in kw else Fraction(kw["factor"])
    depth = passes_for(ratio, 3)
    for k, o in enumerate(out):
        grid = round(k / ratio * 2**depth) / 2**depth  # the nearest grid time
        assert abs(int(o[0, 0, 0]) - (20 + 8 * grid)) <= 0.5 + 1e-9, (k, grid)
    assert stats.max_timing_error <= 1 / 2 ** (depth + 1)
    assert stats.model_frames == (n - 1) * (2**depth - 1)


def test_passes_for_powers_of_two_and_others():
    assert [passes_for(Fraction(r), 3) for r in (2, 4, 8, 16)] == [1, 2, 3, 4]
    assert passes_for(Fraction(3), 3) == 3 and passes_for(Fraction(5, 2), 3) == 3 and passes_for(Fraction(12), 3) == 4


def test_pair_and_refusals():
    probe = Probe()
    a, b = flat([40, 80])
    mid = interpolate_pair(a, b, probe, 0.5)
    assert probe.seen == [[40, 40, 80, 80]] and int(mid[0, 0, 0]) == 65  # 60 + (80 - 40) / 8
    probe.seen.clear()
    interpolate_pair(a, b, probe, 0.25)  # two passes: the middle, then the first quarter from (a, a, mid, b)
    assert [40, 40, 65, 80] in probe.seen and len(probe.seen) == 3
    with pytest.raises(ValueError, match="at least 2"):
        list(interpolate_frames(flat([40]), 24, probe, ScheduleConfig(factor=2)))
    with pytest.raises(ValueError, match="film only"):
        interpolate_frames(flat([40, 50]), 24, probe, ScheduleConfig(factor=2, tiling=TileConfig(tile=64)))
    with pytest.raises(ValueError, match="film only"):
        interpolate_pair(a, b, probe, 0.5, tiling=TileConfig(max_memory=2**30))


# --- training --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_clip(root / "square", list(moving_square(n=N)))
    return root


def test_window_samples_hold_the_frames_of_the_window(data_dir: Path):
    frames = np.stack(list(moving_square(n=N)))
    assert sample_indices(2, 1, 4) == [2, 4, 6, 8, 5]
    assert list(valid_triplets(frames, 1, DataConfig(), span=6)) == list(range(N - 6))
    assert len(valid_triplets(frames, 2, DataConfig(), span=6)) == 0  # 13 frames needed, 12 there
    c = 48
    ds = TripletDataset(data_dir, DataConfig(crop=c, strides=(1,), max_frames=N, half_scale_prob=0.0,
                                             edge_prob=0.0, **NO_AUG), context=4)
    rng = np.random.default_rng(0)
    for _ in range(4):
        x = (ds.sample(rng) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # (5, c, c, 3)
        assert x.shape == (5, c, c, 3)
        hits = [i for i in range(N - 6) for y in range(48 - c + 1) for xx in range(64 - c + 1)
                if all(np.array_equal(x[k], frames[j, y:y + c, xx:xx + c])
                       for k, j in enumerate(sample_indices(i, 1, 4)))]
        assert hits
    edges = TripletDataset(data_dir, DataConfig(crop=c, strides=(1,), max_frames=N, edge_prob=1.0, **NO_AUG),
                           context=4)
    x = edges.sample(rng)
    assert torch.equal(x[0], x[1]) and torch.equal(x[3], x[2]) and not torch.equal(x[1], x[2])


def tiny(**kw: object) -> TrainConfig:
    base = {"model": "convlstm", "preset": "convlstm-tiny", "steps": 30, "batch": 2, "lr": 3e-3, "warmup": 3,
            "ema": 0.9, "ckpt_every": 1000, "data": DataConfig(crop=32, max_frames=N)}
    return TrainConfig(**(base | kw))


def test_training_steps_lower_the_loss(data_dir: Path, tmp_path: Path):
    trainer = Trainer(tiny(), data_dir, tmp_path / "run", cache_dir=tmp_path / "cache")
    rng = np.random.default_rng(0)
    batch = torch.stack([trainer.dataset.sample(rng) for _ in range(2)])  # (2, 5, 3, 32, 32)
    assert batch.shape == (2, 5, 3, 32, 32)
    film = {k: v.clone() for k, v in trainer.model.film.state_dict().items()}
    records = [trainer.train_step(batch) for _ in range(30)]
    assert all(torch.equal(film[k], v) for k, v in trainer.model.film.state_dict().items())  # film stays frozen
    totals = [r["total"] for r in records]
    assert all(math.isfinite(t) for t in totals) and "synth" in records[0] and "warp" not in records[0]
    assert np.mean(totals[-5:]) < 0.95 * np.mean(totals[:5]), totals
    items = load_val(data_dir, DataConfig(max_frames=N), per_clip=1, stride_list=(1,), context=4)
    assert len(items) == 1 and items[0][1].shape == (5, 3, 48, 64)
    scores = validate(trainer.model, items)
    assert math.isfinite(scores["val_psnr"]) and 0 < scores["val_ssim"] <= 1


def test_resume_is_exact_and_export_runs_through_interp(data_dir: Path, tmp_path: Path):
    cfg = tiny(steps=4)
    whole = Trainer(cfg, data_dir, tmp_path / "whole", cache_dir=tmp_path / "cache")
    whole.run()
    first = Trainer(cfg, data_dir, tmp_path / "split", cache_dir=tmp_path / "cache")
    with pytest.raises(KeyboardInterrupt):
        first.run(on_step=_interrupt_at(2))  # the interrupt saves a checkpoint
    resumed = Trainer(cfg, data_dir, tmp_path / "split", cache_dir=tmp_path / "cache")
    resumed.load(tmp_path / "split" / "last.pt")
    assert resumed.step == 2
    resumed.run()
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name

    weights = tmp_path / "convlstm.safetensors"
    whole.export(weights)
    model, meta = load_model(weights, expect="convlstm")
    assert model.config == whole.ema.config and json.loads(meta["training"])["steps"] == 4
    frames = list(moving_square(n=5))
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    for k, f in enumerate(frames):
        write_image(folder / f"f{k:02d}.png", f[:30, :42])  # not a multiple of the divisor: padded, cropped back
    result = CliRunner().invoke(app, ["interp", str(folder), str(out), "--model", "convlstm", "--weights",
                                      str(weights), "--factor", "2", "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, (result.output, result.exception)
    written = sorted(out.iterdir())
    assert len(written) == 9
    assert np.array_equal(read_image(written[2]), frames[1][:30, :42])  # inputs pass through
    with torch.no_grad():  # the in-between of frames 1 and 2 is the model's frame for the window (0, 1, 2, 3)
        pad = torch.nn.functional.pad(torch.from_numpy(np.stack([f[:30, :42] for f in frames[:4]]))
                                      .permute(0, 3, 1, 2).float() / 255, (0, 2, 0, 2), mode="replicate")
        want = (model(pad[None])[0, :, :30, :42].permute(1, 2, 0) * 255).round().numpy()
    assert np.abs(read_image(written[3]).astype(float) - want).max() <= 1


def _interrupt_at(step: int):
    def on_step(s: int, rec: dict) -> None:
        if s == step:
            raise KeyboardInterrupt

    return on_step


def test_cli_train_convlstm_refuses_photos(data_dir: Path, tmp_path: Path):
    result = CliRunner().invoke(app, ["train", "--data", str(data_dir), "--photos", str(data_dir), "--model",
                                      "convlstm", "--preset", "convlstm-tiny", "--out", str(tmp_path / "r"),
                                      "--steps", "1"])
    assert result.exit_code != 0
    assert "film" in result.output and "Traceback" not in result.output


# --- eval and bench --------------------------------------------------------------------------------------------


def test_eval_gives_a_four_frame_model_the_outer_frames_of_the_clip(tmp_path: Path):
    from conftest import LOSSLESS

    from framefill.evaluate import EvalConfig, evaluate

    write_clip(tmp_path / "ramp.mkv", flat([20 + 4 * k for k in range(9)], (16, 16)), options=LOSSLESS)
    probe = Probe()
    report = evaluate(tmp_path, probe, EvalConfig(strides=(1, 2), max_triplets=2, baselines=("blend",)))
    assert sorted(t.frames for t in report.triplets) == [[0, 1, 2], [0, 2, 4], [4, 6, 8], [6, 7, 8]]
    value = lambda k: 20 + 4 * k  # noqa: E731  (steps of 4/255: motion, never a cut, even 4 frames apart)
    windows = [[value(k) for k in w] for w in ([0, 0, 2, 4], [0, 0, 4, 8], [4, 6, 8, 8], [0, 4, 8, 8])]
    assert all(w in probe.seen for w in windows), probe.seen  # i - 2s and i + 4s where the clip has them
    inside = next(t for t in report.triplets if t.frames == [0, 1, 2])
    assert inside.scores["framefill"]["psnr"] < inside.scores["blend"]["psnr"]  # the probe's (I3 - I0) / 8 term


def test_bench_times_a_four_frame_model():
    from framefill.bench_model import ModelRow, measure_model

    model = build_model("convlstm", "convlstm-tiny").eval()
    row = ModelRow(model="convlstm", preset="convlstm-tiny", weights="random", size="40x24", padded="",
                   dtype="fp32", batch=2, compiled=False)
    row = measure_model(model, row, torch.device("cpu"), torch.float32, repeat=2, warmup=1)
    assert row.status == "ok" and len(row.times) == 2 and row.fps > 0 and row.padded == "40x24"
    assert row.est_bytes_per_px and row.est_bytes_per_px > 0


def test_a_long_static_stretch_streams():
    """Duplicates need no model; the pass must still hand frames on instead of buffering the whole stretch."""
    from framefill.windows import double

    class Counting:
        def __init__(self) -> None:
            self.taken = 0

        def __call__(self, items):
            for item in items:
                self.taken += 1
                yield item

    still = flat([40] * 200)
    source = Counting()
    passes = double(source((f, None if k == 0 else DUPLICATE) for k, f in enumerate(still)), None, 2)
    first = [next(passes) for _ in range(3)]
    assert source.taken <= 12 and all(f is still[0] or np.array_equal(f, still[0]) for f, _ in first)
