"""convlstm's window motion: the acceleration the outer frames measure, the gate that applies it (closed when
untrained, so convlstm is film), film's reads moved by it, and the gate's own training (``train --gate``).

CPU only and tiny (``convlstm-tiny``, 32-64 px).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import cached_stage_run, moving_square, write_clip
from typer.testing import CliRunner

from framefill.cli import app
from framefill.models import load_model
from framefill.models.convlstm import PRESETS, ConvLSTMNet
from framefill.models.film import build_film
from framefill.models.window_motion import WindowGate, path_errors, read_shift, window_evidence
from framefill.train.window_gate import (
    GateConfig,
    build_cache,
    gate_example,
    gate_loss,
    gated,
    openings,
    run_gate,
    train_gate,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _flows(f12: tuple[float, float], f10: tuple[float, float], f23: tuple[float, float], size=(8, 8)):
    """Uniform flows of a window at the gate's level (``window_flows``' order), each backward flow the exact
    reverse."""
    def field(v):
        return torch.tensor(v, dtype=torch.float32).view(1, 2, 1, 1).expand(1, 2, *size).clone()
    f21 = field((-f12[0], -f12[1]))
    return f21, field(f12), field(f10), field((-f10[0], -f10[1])), field(f23), field((-f23[0], -f23[1]))


def test_the_correction_is_an_eighth_of_the_measured_acceleration():
    frames = torch.rand(1, 4, 3, 32, 32)
    # Positions along x at I0, I1, I2, I3: 0, 1, 4, 9 pixels of the gate's level (a = 2 per interval squared, from
    # both sides): a / 8 is a quarter of a pixel there, a pixel of the full frame.
    flows = _flows(f12=(3.0, 0.0), f10=(-1.0, 0.0), f23=(5.0, 0.0))
    x, a = window_evidence(frames, flows, torch.ones(1, 2, 1, 1))
    assert x.shape == (1, WindowGate.INPUTS, 8, 8)
    assert torch.allclose(a[:, 0], torch.full((1, 32, 32), 1.0), atol=1e-4)
    assert torch.allclose(a[:, 1], torch.zeros(1, 32, 32), atol=1e-4)
    # Constant velocity: nothing to correct.
    _, a = window_evidence(frames, _flows(f12=(3.0, 0.0), f10=(-3.0, 0.0), f23=(3.0, 0.0)), torch.ones(1, 2, 1, 1))
    assert a.abs().max() < 1e-4


def test_an_outer_frame_that_is_a_copy_measures_nothing():
    frames = torch.rand(1, 4, 3, 32, 32)
    flows = _flows(f12=(3.0, 0.0), f10=(0.0, 0.0), f23=(5.0, 0.0))  # I0 a copy of I1: no flow into it
    _, a = window_evidence(frames, flows, torch.tensor([0.0, 1.0]).view(1, 2, 1, 1))
    assert torch.allclose(a[:, 0], torch.full((1, 32, 32), 1.0), atol=1e-4)  # I2's side alone
    _, a = window_evidence(frames, flows, torch.zeros(1, 2, 1, 1))
    assert a.abs().max() == 0


def _accelerating_window(positions: tuple[int, ...], level: int = 32) -> torch.Tensor:
    """A window ``(1, 4, 3, 4 level, 4 level)`` of one texture at ``positions`` (pixels of the gate's level, along
    x): a texture of the gate's level blown up 4 times, so that the gate's pooled frames are it, shifted."""
    texture = torch.rand(1, 3, level, level, generator=torch.Generator().manual_seed(0))
    big = torch.nn.functional.interpolate(texture, scale_factor=4, mode="nearest")
    return torch.stack([torch.roll(big, 4 * p, dims=-1) for p in positions], dim=1)


def test_the_curved_path_explains_the_outer_frames_where_the_motion_accelerates():
    frames = _accelerating_window((0, 1, 4, 9))  # as in the first test: a / 8 a quarter of a pixel of the level
    v, a = torch.full((1, 2, 32, 32), 3.0), torch.full((1, 2, 32, 32), 0.25)
    v[:, 1] = a[:, 1] = 0
    e = path_errors(frames, v, a, torch.ones(1, 2, 1, 1))[..., 12:20, 12:20]  # away from the wrapped edges
    straight0, curved0, straight3, curved3 = (float(e[0, k].mean()) for k in range(4))
    assert curved0 < 0.1 * straight0 and curved3 < 0.1 * straight3, (straight0, curved0, straight3, curved3)
    # At constant velocity the straight path is the right one.
    e = path_errors(_accelerating_window((0, 3, 6, 9)), v, a, torch.ones(1, 2, 1, 1))[..., 12:20, 12:20]
    assert float(e[0, 0].mean()) < 0.1 * float(e[0, 1].mean())
    # An outer frame that is a copy checks nothing.
    e = path_errors(frames, v, a, torch.tensor([0.0, 1.0]).view(1, 2, 1, 1))
    assert float(e[:, :2].abs().max()) == 0 and float(e[:, 2:].abs().max()) > 0


def test_a_gate_with_trajectory_reads_four_more_inputs_and_starts_closed(tmp_path: Path):
    flows = _flows(f12=(3.0, 0.0), f10=(-1.0, 0.0), f23=(5.0, 0.0), size=(32, 32))
    frames = _accelerating_window((0, 1, 4, 9))
    x, a = window_evidence(frames, flows, torch.ones(1, 2, 1, 1), trajectory=True)
    plain, a_plain = window_evidence(frames, flows, torch.ones(1, 2, 1, 1))
    assert x.shape[1] == WindowGate.INPUTS + WindowGate.TRAJECTORY_INPUTS
    assert torch.equal(x[:, :WindowGate.INPUTS], plain)
    assert torch.equal(a, a_plain)
    torch.manual_seed(0)
    model = ConvLSTMNet(replace(PRESETS["convlstm-tiny"], window_trajectory=True)).eval()
    assert model.gate.inputs == x.shape[1]
    window = torch.rand(1, 4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(window), model.film(window[:, 1], window[:, 2]).clamp(0, 1))
    ex = gate_example(model, torch.rand(5, 3, 32, 32))
    assert ex["inputs"].shape[0] == model.gate.inputs
    # A cache of the plain evidence is not this gate's: it is built anew, not read.
    torch.save({"inputs": torch.rand(3, WindowGate.INPUTS, 8, 8).half(), "frames": torch.rand(3, 3, 3, 32, 32).half(),
                "truth": torch.rand(3, 3, 32, 32).half()}, tmp_path / "gate_cache.pt")

    class Windows:
        def sample(self, rng):
            return torch.rand(5, 3, 32, 32)

    cache = build_cache(model, Windows(), 3, np.random.default_rng(0), tmp_path / "gate_cache.pt")
    assert cache["inputs"].shape[1] == model.gate.inputs


def test_untrained_gate_is_closed_and_convlstm_is_film():
    torch.manual_seed(0)
    model = ConvLSTMNet(PRESETS["convlstm-tiny"]).eval()
    frames = torch.rand(2, 4, 3, 32, 32)
    keep: dict = {}
    with torch.no_grad():
        assert model.window_shift(frames, keep) is None  # a closed gate moves nothing
        assert float(model.gate(keep["inputs"]).abs().max()) == 0
        assert torch.equal(model(frames), model.film(frames[:, 1], frames[:, 2]).clamp(0, 1))


def test_film_reads_move_by_the_shift():
    torch.manual_seed(0)
    film = build_film("film-tiny").eval()
    a, b = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        plain = film(a, b)
        assert torch.allclose(film(a, b, read_shift=torch.zeros(1, 4, 32, 32)), plain, atol=1e-6)
        moved = film(a, b, read_shift=torch.full((1, 4, 32, 32), 1.5))
    assert (moved - plain).abs().mean() > 0.01


def test_read_shift_moves_both_reads_by_the_gated_correction():
    gate = torch.zeros(1, 1, 4, 4)
    gate[..., :, 2:] = 1.0  # open on the right half
    a = torch.ones(1, 2, 16, 16)
    shift = read_shift(gate, a)
    assert shift.shape == (1, 4, 16, 16)
    assert torch.equal(shift[:, :2], shift[:, 2:])
    assert float(shift[0, 0, 8, 15]) == 1.0 and float(shift[0, 0, 8, 0]) == 0.0


def test_gate_steps_open_it_where_the_moved_frame_is_right_and_leave_it_shut_elsewhere():
    torch.manual_seed(0)
    model = ConvLSTMNet(PRESETS["convlstm-tiny"])
    n, size = 8, (32, 32)
    truth = torch.rand(n, 3, *size)
    inputs = torch.rand(n, WindowGate.INPUTS, 8, 8)
    wrong = (truth + 0.3).clamp(0, 1)
    right_moved = {"inputs": inputs, "frames": torch.stack([wrong, (wrong + truth) / 2, truth], 1), "truth": truth}
    with torch.no_grad():
        before = float(gate_loss(model.gate, right_moved))
    losses = train_gate(model, right_moved, GateConfig(steps=60, batch=8, lr=1e-2))
    assert losses[-1] < before - 1, (before, losses[-5:])  # the log of the error: down by more than e times
    shut = ConvLSTMNet(PRESETS["convlstm-tiny"])
    train_gate(shut, {"inputs": inputs, "frames": torch.stack([truth, (wrong + truth) / 2, wrong], 1), "truth": truth},
               GateConfig(steps=60, batch=8, lr=1e-2))
    with torch.no_grad():
        assert float(shut.gate(inputs).max()) < 0.05  # film was right: the gate stays (nearly) shut


def test_a_gate_with_a_longer_reach_opens_past_the_measured_correction_where_that_is_right():
    torch.manual_seed(0)
    model = ConvLSTMNet(replace(PRESETS["convlstm-tiny"], window_reach=2.0))
    assert model.gate.reach == 2.0 and openings(2.0) == [0, 0.5, 1.0, 1.5, 2.0]
    n, size = 8, (32, 32)
    truth = torch.rand(n, 3, *size)
    wrong = [(truth + d).clamp(0, 1) for d in (0.3, 0.2, 0.1, 0.0, -0.1)]  # the frame at 1.5 is the truth
    b = {"inputs": torch.rand(n, WindowGate.INPUTS, 8, 8), "frames": torch.stack(wrong, 1), "truth": truth}
    train_gate(model, b, GateConfig(steps=150, batch=8, lr=1e-2))
    with torch.no_grad():
        g = model.gate(b["inputs"])
    assert 1.2 < float(g.mean()) < 1.8, float(g.mean())  # a gate of reach 1 could not open past 1
    assert torch.allclose(gated(torch.full((n, 1, 8, 8), 1.5), b["frames"]), truth)
    assert torch.allclose(gated(torch.full((n, 1, 8, 8), 0.75), b["frames"]), (wrong[1] + wrong[2]) / 2)


def test_gate_example_holds_films_frame_and_the_moved_one():
    torch.manual_seed(0)
    model = ConvLSTMNet(PRESETS["convlstm-tiny"]).eval()
    window = torch.rand(5, 3, 32, 32)
    ex = gate_example(model, window)
    with torch.no_grad():
        film = model.film(window[None, 1], window[None, 2])[0]
    assert torch.allclose(ex["frames"][0].float(), film, atol=2e-3)
    assert set(ex) == {"inputs", "frames", "truth"} and ex["frames"].shape == (3, 3, 32, 32)  # openings 0, 0.5, 1
    assert ex["inputs"].shape == (WindowGate.INPUTS, 8, 8) and torch.equal(ex["truth"], window[4].half())


def test_cli_gate_run_trains_exports_and_refuses_film(tmp_path: Path):
    data_dir, out, weights = cached_stage_run(tmp_path, ["--model", "convlstm", "--preset", "convlstm-tiny",
                                                         "--gate", "10"], steps=20)
    assert (out / "gate_cache.pt").exists() and (out / "last.pt").exists()
    model, _ = load_model(weights, expect="convlstm")
    assert any(float(p.detach().abs().max()) > 0 for p in model.gate.head.parameters())  # the head moved from zero
    cache = torch.load(out / "gate_cache.pt")
    assert len(cache["truth"]) == 10 and np.isfinite(cache["inputs"].float().numpy()).all()
    held = json.loads((out / "gate_held_out.json").read_text())  # one window of ten, never trained on
    assert held["windows"] == 1 and {"film", "gated", "moved", "gate"} <= set(held)
    # window_scores.py held-out scores an exported gate on a run's held-out windows as the run scored its own
    tool = Path(__file__).resolve().parents[1] / "tools" / "window_scores.py"
    done = subprocess.run([sys.executable, str(tool), "held-out", str(out / "gate_cache.pt"), str(weights)],
                          capture_output=True, text=True, check=True)
    row = json.loads(done.stdout)
    assert row["windows"] == 1 and all(row[k] == pytest.approx(held[k], abs=2e-3) for k in ("film", "gated", "gate"))
    bad = CliRunner().invoke(app, ["train", "--data", str(data_dir), "--gate", "6", "--out", str(tmp_path / "f")])
    assert bad.exit_code != 0 and "convlstm" in bad.output and "Traceback" not in bad.output


def _short_gate_run(tmp_path: Path) -> list[str]:
    """``framefill train`` arguments of a three-step gate run of convlstm-tiny on a 12-frame clip (no ``--out``)."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    write_clip(data_dir / "square", list(moving_square(n=12)))
    return ["train", "--data", str(data_dir), "--model", "convlstm", "--preset", "convlstm-tiny", "--crop", "32",
            "--max-frames", "12", "--gate", "4", "--steps", "3", "--batch", "2"]


def test_cli_gate_reach_is_kept_in_the_weights_and_checked(tmp_path: Path):
    base = _short_gate_run(tmp_path)
    weights = tmp_path / "w.safetensors"
    args = [*base, "--gate-reach", "2", "--out", str(tmp_path / "r"), "--export", str(weights)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    assert torch.load(tmp_path / "r" / "gate_cache.pt")["frames"].shape[1] == 5  # openings 0, 0.5, ..., 2
    model, _ = load_model(weights, expect="convlstm")
    assert model.config.window_reach == 2.0 and model.gate.reach == 2.0
    for reach in ("0.5", "1.2"):
        bad = CliRunner().invoke(app, [*base, "--gate-reach", reach, "--out", str(tmp_path / "b")])
        assert bad.exit_code != 0 and "--gate-reach" in bad.output and "Traceback" not in bad.output


def test_cli_gate_level_is_kept_in_the_weights_and_checked(tmp_path: Path):
    base = _short_gate_run(tmp_path)
    weights = tmp_path / "w.safetensors"
    result = CliRunner().invoke(app, [*base, "--gate-level", "1", "--out", str(tmp_path / "r"), "--export",
                                      str(weights)])
    assert result.exit_code == 0, (result.output, result.exception)
    assert torch.load(tmp_path / "r" / "gate_cache.pt")["inputs"].shape[-1] == 16  # half of the 32 px crop
    model, _ = load_model(weights, expect="convlstm")
    assert model.config.window_level == 1
    bad = CliRunner().invoke(app, [*base, "--gate-level", "3", "--out", str(tmp_path / "b")])
    assert bad.exit_code != 0 and "--gate-level" in bad.output and "Traceback" not in bad.output


def test_residual_stages_with_zero_heads_are_skipped_outside_training_and_change_nothing():
    torch.manual_seed(0)
    model = ConvLSTMNet(PRESETS["convlstm-tiny"]).eval()
    frames = torch.rand(1, 4, 3, 32, 32)
    calls = []
    model.synthesis.register_forward_hook(lambda *args: calls.append("synthesis"))
    with torch.no_grad():
        fast = model(frames)
    assert calls == []
    with torch.enable_grad():
        full = model(frames).detach()
    assert calls == ["synthesis"] and torch.equal(fast, full)
    with torch.no_grad():
        model.refinement.head.bias.fill_(0.01)  # a trained refinement runs
        moved = model(frames)
    assert calls == ["synthesis"] and not torch.equal(moved, fast)  # (the synthesis still adds nothing)


def test_window_scores_init_keeps_the_film_part_and_starts_the_gate_closed(tmp_path: Path):
    import subprocess
    import sys

    from framefill.checkpoint import save_model
    from framefill.frames import write_image

    frames = list(moving_square(n=10))
    clip = tmp_path / "sq"
    clip.mkdir()
    for k, f in enumerate(frames):
        write_image(clip / f"{k:03d}.png", f)
    trip = tmp_path / "trip" / "sq_0002_s1"
    trip.mkdir(parents=True)
    for name, k in (("frame0", 2), ("gt", 3), ("frame1", 4)):
        write_image(trip / f"{name}.png", frames[k])
    listing = tmp_path / "list.txt"
    listing.write_text(" ".join(str(trip / f"{n}.png") for n in ("frame0", "frame1", "gt")) + " sq_0002_s1\n")
    torch.manual_seed(0)
    model = ConvLSTMNet(PRESETS["convlstm-tiny"])
    closed = tmp_path / "closed.safetensors"
    save_model(closed, model, architecture="convlstm")
    with torch.no_grad():
        model.gate.head.bias.fill_(3.0)  # open everywhere
    opened = tmp_path / "open.safetensors"
    save_model(opened, model, architecture="convlstm")
    tool = Path(__file__).resolve().parents[1] / "tools" / "window_scores.py"

    def rows(weights: Path, *extra: str) -> list[dict]:
        out = tmp_path / f"{weights.stem}{len(extra)}.json"
        subprocess.run([sys.executable, str(tool), str(listing), str(clip), "--weights", str(weights), "--repeat", "0",
                        "--precision", "fp32", "--json", str(out), *extra], check=True, capture_output=True)
        return json.loads(out.read_text())

    init, shut = rows(opened, "--init"), rows(closed)
    assert rows(opened)[0]["psnr"] != shut[0]["psnr"]  # the open gate moves this frame: --init must close it
    assert init[0]["peer"] == "framefill_convlstm_init" and shut[0]["peer"] == "framefill_convlstm"
    assert init[0]["psnr"] == shut[0]["psnr"]


def test_a_cache_written_before_frames_is_read_as_the_openings_of_reach_one(tmp_path: Path):
    model = ConvLSTMNet(PRESETS["convlstm-tiny"])
    old = {k: torch.rand(3, 3, 16, 16).half() for k in ("base", "half", "moved", "truth")}
    old["inputs"] = torch.rand(3, WindowGate.INPUTS, 4, 4).half()
    torch.save(old, tmp_path / "gate_cache.pt")
    cache = build_cache(model, None, 3, np.random.default_rng(0), tmp_path / "gate_cache.pt")  # no dataset needed
    assert set(cache) == {"inputs", "frames", "truth"}
    assert torch.equal(cache["frames"][:, 0], old["base"]) and torch.equal(cache["frames"][:, 2], old["moved"])


def test_a_cache_of_other_evidence_lends_its_film_frames_for_the_same_windows(tmp_path: Path):
    class Windows:
        def sample(self, rng):
            return torch.from_numpy(rng.random((5, 3, 32, 32))).float()

    torch.manual_seed(0)
    plain = ConvLSTMNet(PRESETS["convlstm-tiny"]).eval()
    torch.manual_seed(1)  # another film: frames worked out anew would differ from the lent ones
    traj = ConvLSTMNet(replace(PRESETS["convlstm-tiny"], window_trajectory=True)).eval()
    path = tmp_path / "gate_cache.pt"
    first = build_cache(plain, Windows(), 4, np.random.default_rng(0), path)
    lent = build_cache(traj, Windows(), 4, np.random.default_rng(0), path)
    assert torch.equal(lent["frames"], first["frames"]) and torch.equal(lent["truth"], first["truth"])
    assert lent["inputs"].shape[1] == traj.gate.inputs and torch.load(path)["inputs"].shape[1] == traj.gate.inputs
    other = tmp_path / "other.pt"
    torch.save(first, other)
    fresh = build_cache(traj, Windows(), 4, np.random.default_rng(5), other)  # other windows: nothing to lend
    assert not torch.equal(fresh["truth"], first["truth"]) and not torch.equal(fresh["frames"], first["frames"])
    level1 = ConvLSTMNet(replace(PRESETS["convlstm-tiny"], window_trajectory=True, window_level=1)).eval()
    finer = build_cache(level1, Windows(), 4, np.random.default_rng(0), path)  # another level: another correction
    assert finer["inputs"].shape[-1] == 16 and not torch.equal(finer["frames"], first["frames"])


def test_a_gate_run_resumed_after_its_last_step_neither_caches_nor_trains(tmp_path: Path):
    class Windows:
        drawn = 0

        def sample(self, rng):
            Windows.drawn += 1
            return torch.rand(5, 3, 32, 32)

    class Finished:  # what run_gate uses of train.loop.Trainer, resumed from a checkpoint at its last step
        model = ConvLSTMNet(PRESETS["convlstm-tiny"]).eval()
        ema, dataset, rng, out, step = None, Windows(), np.random.default_rng(0), tmp_path, 5

        def save(self) -> None:
            raise AssertionError("nothing was trained: no checkpoint to write")

    assert run_gate(Finished(), GateConfig(samples=4, steps=5)) == []
    assert Windows.drawn == 0 and not (tmp_path / "gate_cache.pt").exists() and not (tmp_path / "log.jsonl").exists()
