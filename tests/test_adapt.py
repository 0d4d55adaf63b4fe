"""``interp --adapt``: the selector fine-tuned on the input's own triplets, the guard that keeps the loaded weights
when that does not pay, the adapted weights reused by resumed runs and segments, the measurement that never shows
the adaptation what it is scored on, and one error line for a bad budget."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import LOSSLESS, assert_one_error, help_text, save_tiny_film, work_in, write_clip
from typer.testing import CliRunner

import framefill.adapt
import framefill.adapt_score
import framefill.resume
from framefill.adapt import AdaptConfig, AdaptReport, adapt_model
from framefill.adapt_data import Triplet, split_holdout
from framefill.adapt_score import protocol_frames, score_item
from framefill.cli import app
from framefill.frames import read_image, write_image
from framefill.models import load_model

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()
COMMON = ["--precision", "fp32", "--device", "cpu", "-q", "--weights", "w.safetensors"]


def pan(n: int = 24, w: int = 64, h: int = 48) -> list[np.ndarray]:
    """A smooth random texture panning 3 px a frame: every frame distinct, every triplet a true one."""
    rng = np.random.default_rng(0)
    tex = cv2.resize(rng.integers(0, 255, (h, 120, 3)).astype(np.uint8), (3 * n + w, h + 8),
                     interpolation=cv2.INTER_CUBIC)
    return [tex[4:4 + h, 3 * i:3 * i + w].copy() for i in range(n)]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("adapt")
    torch.manual_seed(0)
    save_tiny_film(d / "w.safetensors")
    frames = pan(80)  # enough triplets to adapt on (AdaptConfig.min_triplets, min_held_out)
    write_clip(d / "pan.mkv", frames, options=LOSSLESS)
    (d / "frames").mkdir()
    for i, f in enumerate(frames):
        write_image(d / "frames" / f"{i:03d}.png", f)
    return d


@pytest.fixture
def work(tmp_path: Path, inputs: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return work_in(tmp_path, inputs, monkeypatch)


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def count_adaptations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = framefill.adapt.adapt_model

    def counted(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(framefill.adapt, "adapt_model", counted)
    return calls


def assert_steps_lower_the_loss(model: torch.nn.Module, stage: str, loss_of: Callable[[], torch.Tensor],
                                steps: int) -> None:
    """``steps`` AdamW steps on ``model``'s ``stage`` (its attribute) lower ``loss_of()`` by 3% at least, and no other
    parameter gets a gradient."""
    opt = torch.optim.AdamW(getattr(model, stage).parameters(), lr=3e-3)
    losses = []
    for _ in range(steps):
        loss = loss_of()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.97 * losses[0], losses
    assert all(p.grad is None for name, p in model.named_parameters() if not name.startswith(f"{stage}."))


def test_held_out_truths_are_never_trained_on() -> None:
    triplets = [Triplet(0, i, s) for i in range(20) for s in (1, 2)]
    train, held = split_holdout(triplets, 5)
    assert held and train and not set(train) & set(held)
    held_truths = {t.indices()[2] for t in held}
    assert not any(t.indices()[2] in held_truths for t in train)
    assert split_holdout(triplets, 5) == (train, held)  # deterministic


def test_the_protocol_never_gives_the_adaptation_the_scored_frames(work: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    assert protocol_frames(13, 2) == ([0, 4, 8, 12], [2, 6, 10])
    assert protocol_frames(24, 1, limit=3) == ([0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22], [1, 11, 21])
    seen: list[np.ndarray] = []

    def spy(src: Path, base: torch.nn.Module, **kwargs: object) -> tuple[torch.nn.Module, AdaptReport]:
        seen.extend(read_image(p) for p in sorted(Path(src).iterdir()))
        return base, AdaptReport(False, None, 0, 0, 0, 0.0, "spy")

    monkeypatch.setattr(framefill.adapt_score, "adapt_model", spy)
    frames = pan(80)  # enough triplets to adapt on (AdaptConfig.min_triplets, min_held_out)
    for stride in (1, 2):
        seen.clear()
        row = score_item(Path("frames"), stride, Path("w.safetensors"), device=torch.device("cpu"),
                         dtype=torch.float32, limit=None)  # type: ignore[arg-type]
        kept, scored = protocol_frames(len(frames), stride)
        assert row["n"] == len(scored) and row["kept_frames"] == len(kept)
        assert len(seen) == len(kept) and all(np.array_equal(a, frames[k]) for a, k in zip(seen, kept, strict=True))
        assert not any(np.array_equal(a, frames[m]) for a in seen for m in scored)


def test_the_guard_keeps_the_loaded_weights_when_adaptation_hurts(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = framefill.adapt.selector_terms
    monkeypatch.setattr(framefill.adapt, "selector_terms",  # gradient ascent, at a large rate: a harmful update
                        lambda model, ev, gt, cfg: {"total": -real(model, ev, gt, cfg)["total"]})
    base, _ = load_model(Path("w.safetensors"))
    before = {k: v.clone() for k, v in base.state_dict().items()}
    chosen, report = adapt_model(Path("pan.mkv"), base, device=torch.device("cpu"), dtype=torch.float32,
                                 cfg=AdaptConfig(seconds=6, lr=0.5, crop=32, batch=2, steps=3))
    assert report.steps == 3 and report.gain_db is not None and report.gain_db < 0, report
    assert chosen is base and not report.kept
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())  # the loaded model is untouched
    assert report.summary().startswith("adapted: not kept (-")


def test_interp_adapts_saves_and_leaves_the_weights_file_alone(work: Path) -> None:
    shipped = digest(Path("w.safetensors"))
    result = runner.invoke(app, ["interp", "pan.mkv", "out.mkv", *COMMON, "--adapt-seconds", "4",
                                 "--save-adapted", "a.safetensors"])
    assert result.exit_code == 0, result.output
    assert digest(Path("w.safetensors")) == shipped
    model, meta = load_model(Path("a.safetensors"))
    adaptation = json.loads(meta["adaptation"])
    assert adaptation["held_out"] > 0  # (steps: as many as the busy test machine allowed in 4 s)
    assert (model.selector is not None) == adaptation["kept"]
    assert runner.invoke(app, ["interp", "pan.mkv", "again.mkv", "--precision", "fp32", "--device", "cpu", "-q",
                               "--weights", "a.safetensors"]).exit_code == 0
    loud = runner.invoke(app, ["interp", "frames", "out_frames", *COMMON[:-3], "--weights", "w.safetensors",
                               "--adapt-seconds", "3"])
    assert loud.exit_code == 0 and "; adapted: " in loud.output, loud.output


def test_resume_reuses_the_adapted_weights(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_adaptations(monkeypatch)
    job = ["interp", "pan.mkv", "out.mkv", *COMMON, "--adapt-seconds", "3", "--segment-length", "10", "--resume"]

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    real_join = framefill.resume.join
    monkeypatch.setattr(framefill.resume, "join", interrupted)
    assert runner.invoke(app, job).exit_code == 130
    work_dir = Path("out.mkv.framefill-work")
    adapted = digest(work_dir / framefill.adapt.ADAPTED)
    manifest = json.loads((work_dir / "manifest.json").read_text())
    # the job is named by the weights it adapted from and its budget (the adapted file, made anew by each
    # adaptation, would make a finished job's rerun another job)
    assert manifest["weights"] == f"adapted from {digest(Path('w.safetensors'))} for 3 s"
    assert (work_dir / framefill.adapt.ADAPTED).is_file() and adapted
    monkeypatch.setattr(framefill.resume, "join", real_join)
    plain = runner.invoke(app, ["interp", "pan.mkv", "out.mkv", *COMMON, "--resume"])
    assert plain.exit_code == 2 and "--adapt" in plain.output  # another job: refused, nothing adapted
    assert runner.invoke(app, job).exit_code == 0
    assert len(calls) == 1 and Path("out.mkv").is_file() and not work_dir.exists()
    made = digest(Path("out.mkv"))
    again = runner.invoke(app, [a for a in job if a != "-q"])  # the finished job run again, as a scheduler retries
    assert again.exit_code == 0 and "already complete" in again.stderr, again.output
    assert len(calls) == 1 and digest(Path("out.mkv")) == made  # nothing adapted, computed or written again


def test_segments_share_one_adaptation(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_adaptations(monkeypatch)
    for k in (1, 2):
        result = runner.invoke(app, ["interp", "pan.mkv", "--segments", "2", "--segment", str(k), "--work", "parts",
                                     *COMMON, "--adapt-seconds", "3"])
        assert result.exit_code == 0, result.output
    assert len(calls) == 1 and (Path("parts") / framefill.adapt.ADAPTED).is_file()
    assert runner.invoke(app, ["join", "parts", "joined.mkv", "-q"]).exit_code == 0


@pytest.mark.parametrize("options, message", [
    (["--adapt-seconds", "0"], "more than 0 seconds"),
    (["--adapt-seconds", "-5"], "more than 0 seconds"),
    (["--adapt-seconds", "inf"], "more than 0 seconds"),
    (["--adapt-seconds", "nan"], "more than 0 seconds"),
    (["--adapt-seconds", "soon"], "takes a number of seconds"),
    (["--save-adapted", "a.safetensors"], "add --adapt"),
    (["--adapt", "--save-adapted", "nodir/a.safetensors"], "the folder nodir does not exist"),
    (["--adapt", "--model", "convlstm"], "not for --model convlstm"),
])
def test_bad_budgets_get_one_error_line(work: Path, options: list[str], message: str) -> None:
    result = runner.invoke(app, ["interp", "pan.mkv", "out.mkv", *options])
    assert result.exit_code == 2
    assert_one_error(result.stderr, result.stdout, message)
    pair = runner.invoke(app, ["interp", "frames/000.png", "frames/001.png", "mid.png", "--adapt"])
    assert pair.exit_code == 2 and "a pair has none" in pair.stderr
    valued = runner.invoke(app, ["interp", "pan.mkv", "out.mkv", "--adapt", "90"])  # as if --adapt took seconds
    assert valued.exit_code == 2
    assert_one_error(valued.stderr, valued.stdout, "--adapt takes no value; give its budget as --adapt-seconds 90")
    assert not Path("out.mkv").exists()


def test_help_shows_adapt_and_its_default_budget() -> None:
    text = help_text("interp")
    assert "--adapt" in text and "--save-adapted" in text
    assert "60 by default" in " ".join(text.split()) and framefill.adapt.DEFAULT_SECONDS == 60


def test_the_python_api_adapts(work: Path) -> None:
    import framefill

    report = framefill.interpolate_video("pan.mkv", "api.mkv", model="w.safetensors", device="cpu", precision="fp32",
                                         adapt=3, save_adapted="api.safetensors")
    assert report.adaptation is not None and report.adaptation.summary().startswith("adapted: ")
    assert report.frames_out == 159 and load_model(Path("api.safetensors"))[0] is not None


@pytest.mark.parametrize("unwarped", [False, True])
def test_selector_steps_on_cached_evidence_lower_the_loss(work: Path, unwarped: bool) -> None:
    """Also for a selector that may choose the inputs as they are (five cached candidates)."""
    from framefill.adapt import _trainable, evidence, stack
    from framefill.train.loop import TrainConfig, selector_terms

    base, _ = load_model(Path("w.safetensors"))
    if unwarped:
        base = base.with_selector(4, unwarped=True)
    model = _trainable(base, AdaptConfig(), torch.device("cpu"))
    frames = np.stack(pan())
    cached = evidence(model, [frames[[i, i + 2, i + 1], :32, :32] for i in range(0, 12, 2)], torch.device("cpu"))
    ev, gt = stack(cached, torch.device("cpu"))
    assert len(ev["candidates"]) == (5 if unwarped else 3)
    cfg = TrainConfig(selector=4, w_choice=0.05)
    assert_steps_lower_the_loss(model, "selector", lambda: selector_terms(model, ev, gt, cfg)["total"], 40)


def test_too_short_an_input_is_not_adapted(work: Path) -> None:
    """24 frames give too few triplets to learn from and to check on: the loaded weights, and the reason why."""
    write_clip(Path("short.mkv"), pan(24), options=LOSSLESS)
    base, _ = load_model(Path("w.safetensors"))
    chosen, report = adapt_model(Path("short.mkv"), base, device=torch.device("cpu"), dtype=torch.float32,
                                 cfg=AdaptConfig(seconds=5, crop=32))
    assert chosen is base and not report.kept and report.steps == 0
    assert "too few to adapt on" in report.summary()


def test_refiner_steps_lower_the_loss_and_train_the_refiner_alone(work: Path) -> None:
    """``--adapt`` with the refiner: weights without one get a fresh one (the loaded model's output until trained),
    and steps on the input's own triplets lower its loss, with no gradient anywhere else."""
    from framefill.adapt_refiner import as_batch, trainable_refiner
    from framefill.train.loop import TrainConfig, refiner_terms

    base, _ = load_model(Path("w.safetensors"))
    model = trainable_refiner(base, 4, torch.device("cpu"))
    assert base.refiner is None and model.refiner is not None
    frames = np.stack(pan())
    x = as_batch([frames[[i, i + 2, i + 1], :32, :32] for i in range(0, 12, 2)], torch.device("cpu"))
    with torch.no_grad():
        assert torch.equal(model.eval()(x[:, 0], x[:, 1]), base.eval()(x[:, 0], x[:, 1]))
    model.train()
    assert_steps_lower_the_loss(model, "refiner", lambda: refiner_terms(model, x, TrainConfig(refiner=4))["total"], 60)


def test_the_refiner_guard_keeps_the_loaded_weights_when_adaptation_hurts(work: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import framefill.adapt_refiner

    real = framefill.adapt_refiner.refiner_terms
    monkeypatch.setattr(framefill.adapt_refiner, "refiner_terms",  # gradient ascent, at a large rate: harmful
                        lambda model, x, cfg: {"total": -real(model, x, cfg)["total"]})
    base, _ = load_model(Path("w.safetensors"))
    before = {k: v.clone() for k, v in base.state_dict().items()}
    cfg = AdaptConfig(seconds=6, lr=0.5, crop=32, batch=2, steps=3, stage="refiner", refiner_filters=4)
    chosen, report = adapt_model(Path("pan.mkv"), base, device=torch.device("cpu"), dtype=torch.float32, cfg=cfg)
    assert report.steps == 3 and report.gain_db is not None and report.gain_db < 0, report
    assert chosen is base and not report.kept
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())


def test_an_unknown_stage_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown adaptation stage 'fusion'"):
        AdaptConfig(stage="fusion")

