"""interp --debug (pictures of the flows, blend mask and fallback of each model frame) and --montage (input and
output side by side): the colour coding, the scheduler's callback, and both options end to end on a video and on
a pair, with an untrained film-tiny (its flow is Lucas-Kanade's, which finds a plain translation)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import LOSSLESS, assert_one_error, help_text, make_clip, moving_square, plain, psnr, write_clip
from typer.testing import CliRunner

from framefill.checkpoint import save_model
from framefill.cli import app
from framefill.debug import AUX_CHANNELS, DebugWriter, ModelFrame, flow_to_rgb, pack_aux, picture_stems, pictures
from framefill.interpolate import InterpolationStats, ScheduleConfig, Timeline, interpolate_frames, interpolate_pair
from framefill.models import build_model
from framefill.montage import HeldInputs
from framefill.tiling import TileConfig
from framefill.video import FrameSource, probe, read_image, write_image

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()
SHIFT = 3  # px the textured patch of `translation` moves right
PATCH = (slice(16, 40), slice(20, 40))  # rows, columns inside the patch in both frames


@pytest.fixture(scope="module")
def film() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("film", "film-tiny").eval()


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory, film: torch.nn.Module) -> Path:
    path = tmp_path_factory.mktemp("weights") / "film-tiny.safetensors"
    save_model(path, film, architecture="film")
    return path


def translation(shift: int = SHIFT) -> tuple[np.ndarray, np.ndarray]:
    """Two 64x48 frames: a textured patch on grey, moved ``shift`` px to the right in the second."""
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.random((48, 64)).astype(np.float32), (0, 0), 2)
    texture = (texture - texture.min()) / (texture.max() - texture.min())

    def frame(dx: int) -> np.ndarray:
        grey = np.full((48, 64), 0.5, np.float32)
        grey[12:44, 16 + dx:44 + dx] = texture[12:44, 16:44]
        return np.repeat((grey * 255).astype(np.uint8)[..., None], 3, axis=2)

    return frame(0), frame(shift)


def hue(picture: np.ndarray) -> str:
    """The colour of a flow picture's region, by its mean: red (right), cyan (left) or white (still)."""
    r, g, b = picture.reshape(-1, 3).mean(axis=0)
    if min(r, g, b) > 230:
        return "white"
    if r > g + 60 and r > b + 60:
        return "red"
    if g > r + 60 and b > r + 60:
        return "cyan"
    return f"other {r:.0f},{g:.0f},{b:.0f}"


# --- the pictures ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("dx", "dy", "rgb"), [(1, 0, (255, 0, 0)), (-1, 0, (0, 209, 255)), (0, -1, (88, 0, 255)),
                                               (0, 1, (255, 230, 0)), (0, 0, (255, 255, 255))],
                         ids=["right-red", "left-cyan", "up-blue", "down-yellow", "still-white"])
def test_flow_colour_wheel(dx: int, dy: int, rgb: tuple[int, int, int]) -> None:
    flow = np.zeros((2, 2, 3), np.float32)
    flow[0, 0, 0], flow[1, 0, 0] = dx, dy
    flow[0, 1, 2] = 4  # a longer vector sets the scale: ours is then a quarter saturated
    full = flow_to_rgb(flow, scale=1.0)[0, 0]
    assert tuple(full) == rgb
    pale = flow_to_rgb(flow)[0, 0].astype(int)  # scale 4: a quarter of the way from white
    assert np.abs(pale - (255 - (255 - np.array(rgb)) / 4)).max() <= 1


def test_missing_maps_get_no_picture_and_coarse_flow_is_scaled() -> None:
    flows = [torch.stack([torch.full((2, 8, 8), -1.0), torch.full((2, 8, 8), 1.0)])]  # (2N, 2, 8, 8), N = 1
    maps = pack_aux({"flows": flows, "mask": torch.full((1, 1, 16, 16), 0.25), "fallback": None}, 1, (16, 16))
    assert maps.shape == (1, AUX_CHANNELS, 16, 16)
    assert torch.allclose(maps[0, 2:4], torch.full((2, 16, 16), 2.0))  # flow01 at twice the size: twice as long
    made = pictures(maps[0])
    assert sorted(made) == ["flow01", "flow10", "mask"]  # no fallback map: no picture
    assert made["mask"].shape == (16, 16, 3) and (made["mask"] == 64).all()
    assert pictures(pack_aux(None, 1, (4, 4))[0]) == {}


def test_names_say_output_frame_and_time() -> None:
    maps = torch.zeros(AUX_CHANNELS, 2, 2)
    assert picture_stems(ModelFrame(3, Fraction(1, 2), (6,), maps)) == ["out000006_at000003.5000"]
    assert picture_stems(ModelFrame(12, Fraction(1, 4), (), maps)) == ["step_at000012.2500"]
    assert picture_stems(ModelFrame(0, Fraction(1023, 1024), (1, 2), maps)) == ["out000001_at000000.9990",
                                                                               "out000002_at000000.9990"]


# --- the scheduler's callback ------------------------------------------------------------------------------------


def test_translation_flow_has_the_hue_of_its_direction(film: torch.nn.Module) -> None:
    a, b = translation()
    made: list[ModelFrame] = []
    interpolate_pair(a, b, film, on_debug=made.append)
    assert [(m.pair, m.t, m.outputs) for m in made] == [(0, Fraction(1, 2), (0,))]
    assert made[0].maps.shape == (AUX_CHANNELS, 48, 64)
    shown = pictures(made[0].maps)
    assert hue(shown["flow01"][PATCH]) == "red"  # frame 0's grid into frame 1: the way the patch moves
    assert hue(shown["flow10"][PATCH]) == "cyan"  # and back
    assert float(made[0].maps[2:4][(0, *PATCH)].mean()) == pytest.approx(SHIFT, abs=0.5)  # flow01's dx, px


def test_tiled_calls_give_whole_frame_maps(film: torch.nn.Module) -> None:
    a, b = translation()
    whole: list[ModelFrame] = []
    tiled: list[ModelFrame] = []
    out = interpolate_pair(a, b, film, on_debug=whole.append)
    assert np.array_equal(out, interpolate_pair(a, b, film))  # asking for the maps changes nothing
    stats = InterpolationStats()
    interpolate_pair(a, b, film, tiling=TileConfig(tile=32, overlap=8), on_debug=tiled.append, stats=stats)
    assert stats.tiles == 6  # 2 x 3 tiles of 32 px
    assert tiled[0].maps.shape == whole[0].maps.shape == (AUX_CHANNELS, 48, 64)
    assert hue(pictures(tiled[0].maps)["flow01"][PATCH]) == "red"


def test_recursion_steps_and_outputs_are_told_apart(film: torch.nn.Module) -> None:
    frames = list(moving_square(n=4))
    made: list[ModelFrame] = []
    out = list(interpolate_frames(frames, 30, film, ScheduleConfig(factor=3), on_debug=made.append))
    assert len(out) == 10
    # Times 1/3 and 2/3 snap to 3/8 and 5/8, bisected from 1/2, 1/4 and 3/4: those three are steps.
    by_node = {(m.pair, m.t): m.outputs for m in made}
    assert by_node == {(i, Fraction(n, 8)): ((3 * i + 1,) if n == 3 else (3 * i + 2,) if n == 5 else ())
                       for i in range(3) for n in (2, 3, 4, 5, 6)}


def test_four_frame_models_refuse_the_callback() -> None:
    net = build_model("convlstm", "convlstm-tiny").eval()
    with pytest.raises(ValueError, match="no flow"):
        interpolate_frames(list(moving_square(n=4)), 30, net, ScheduleConfig(factor=2), on_debug=print)


def test_held_inputs_follow_the_timeline() -> None:
    frames = [np.full((2, 2, 3), i, np.uint8) for i in range(4)]
    held = HeldInputs(Timeline(Fraction(5, 2)))  # 2.5 outputs per input: inputs at outputs 0, 2.5, 5, 7.5
    seen = list(held.watch(frames))
    assert [int(held.at(k)[0, 0, 0]) for k in range(8)] == [0, 0, 0, 1, 1, 2, 2, 2]
    assert held.montage(7, frames[3]).shape == (2, 4, 3) and len(seen) == 4
    assert len(held._frames) == 2  # the frames before the one shown are let go
    third = Fraction(1, 30)
    uneven = HeldInputs(Timeline(Fraction(2), [0 * third, third, 2 * third, 5 * third], Fraction(60)))
    list(uneven.watch(frames))  # a variable frame rate: inputs at outputs 0, 2, 4 and 10
    assert [int(uneven.at(k)[0, 0, 0]) for k in range(11)] == [0, 0, 1, 1, 2, 2, 2, 2, 2, 2, 3]


# --- end to end --------------------------------------------------------------------------------------------------


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FRAMEFILL_DEBUG", raising=False)
    return tmp_path


def interp(weights: Path, *args: str):  # noqa: ANN201
    return runner.invoke(app, ["interp", *args, "--weights", str(weights), "--device", "cpu", "--precision", "fp32"])


def frames_of(path: Path) -> list[np.ndarray]:
    with FrameSource(path) as source:
        return list(source)


def test_video_debug_and_montage(work: Path, weights: Path) -> None:
    clip = write_clip(work / "in.mp4", list(moving_square(n=6)))
    result = interp(weights, str(clip), "out.mp4", "--factor", "2", "--debug", "dbg", "--montage", "side.mp4")
    assert result.exit_code == 0, result.output
    out, side = frames_of(work / "out.mp4"), frames_of(work / "side.mp4")
    ins = frames_of(clip)
    assert len(out) == len(side) == 11
    assert side[0].shape == (48, 128, 3) and out[0].shape == (48, 64, 3)
    assert probe(work / "side.mp4").fps == probe(work / "out.mp4").fps == Fraction(60000, 1001)
    for k in range(11):
        assert psnr(side[k][:, 64:], out[k]) > 35, k  # the right half is the output, within H.264's loss
        assert psnr(side[k][:, :64], ins[k // 2]) > 35, k  # the left half holds the input
    # Five in-betweens, each one model call: four pictures each, named by output frame and time.
    names = sorted(p.name for p in (work / "dbg").iterdir())
    assert names == sorted(f"out{2 * i + 1:06d}_at{i:06d}.5000_{kind}.png"
                           for i in range(5) for kind in ("flow01", "flow10", "mask", "fallback"))
    assert read_image(work / "dbg" / names[0]).shape == (48, 64, 3)


def test_montage_keeps_audio(work: Path, weights: Path) -> None:
    make_clip(work / "in.mp4", n=4)
    result = interp(weights, "in.mp4", "out.mkv", "--montage", "side.mkv", "--codec", "ffv1")
    assert result.exit_code == 0, result.output
    assert probe(work / "side.mkv").has_audio and probe(work / "out.mkv").has_audio
    out, side = frames_of(work / "out.mkv"), frames_of(work / "side.mkv")
    assert len(side) == len(out) == 7
    assert all(np.array_equal(s[:, 64:], o) for s, o in zip(side, out, strict=True))  # lossless: exactly


def test_pair_debug_and_montage(work: Path, weights: Path) -> None:
    a, b = translation()
    write_image(work / "a.png", a)
    write_image(work / "b.png", b)
    result = interp(weights, "a.png", "b.png", "mid.png", "--debug", "dbg", "--montage", "side.png")
    assert result.exit_code == 0, result.output
    mid, side = read_image(work / "mid.png"), read_image(work / "side.png")
    assert np.array_equal(side, np.concatenate([a, mid], axis=1))
    stem = work / "dbg" / "out000000_at000000.5000"
    assert sorted(p.name for p in (work / "dbg").iterdir()) == sorted(
        f"{stem.name}_{kind}.png" for kind in ("flow01", "flow10", "mask", "fallback"))
    assert hue(read_image(Path(f"{stem}_flow01.png"))[PATCH]) == "red"
    assert hue(read_image(Path(f"{stem}_flow10.png"))[PATCH]) == "cyan"


def test_convlstm_debug_warns_and_writes_nothing(work: Path, tmp_path: Path) -> None:
    weights = tmp_path / "convlstm-tiny.safetensors"
    save_model(weights, build_model("convlstm", "convlstm-tiny"), architecture="convlstm")
    write_clip(work / "in.mkv", list(moving_square(n=4)), options=LOSSLESS)
    result = interp(weights, "in.mkv", "out.mkv", "--model", "convlstm", "--debug", "dbg", "--montage", "side.mkv")
    assert result.exit_code == 0, result.output
    assert "warning: --debug: pictures are not made for four-frame models (convlstm)" in plain(result.stderr)
    assert not (work / "dbg").exists()
    assert len(frames_of(work / "side.mkv")) == len(frames_of(work / "out.mkv")) == 7


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["in.mkv", "out.mkv", "--montage", "out.mkv"], "--montage out.mkv is the output"),
        (["in.mkv", "out.mkv", "--montage", "in.mkv"], "--montage in.mkv is an input"),
        (["in.mkv", "out.mkv", "--debug", "side.mkv", "--montage", "side.mkv"], "--debug side.mkv is the --montage"),
        (["in.mkv", "out.mkv", "--montage", "taken.mkv"], "taken.mkv exists; use --force"),
        (["in.mkv", "out.mkv", "--debug", "taken.mkv"], "taken.mkv is a file, not a folder"),
        (["in.mkv", "out.mkv", "--montage", "nowhere/side.mkv"], "output folder nowhere does not exist"),
        (["a.png", "b.png", "mid.png", "--montage", "side.mp4"], "the montage of a pair is an image"),
        (["a.png", "b.png", "mid.png", "--montage", "taken.mkv"], "taken.mkv exists; use --force"),
    ],
    ids=["montage-is-output", "montage-is-input", "debug-is-montage", "montage-exists", "debug-is-file",
         "montage-folder-missing", "pair-montage-not-image", "pair-montage-exists"],
)
def test_bad_paths_are_one_error_line_and_write_nothing(work: Path, weights: Path, args: list[str],
                                                        message: str) -> None:
    write_clip(work / "in.mkv", list(moving_square(n=3)), options=LOSSLESS)
    a, b = translation()
    write_image(work / "a.png", a)
    write_image(work / "b.png", b)
    (work / "taken.mkv").write_bytes(b"somebody else's file")
    before = sorted(p.name for p in work.iterdir())
    result = interp(weights, *args)
    assert result.exit_code == 2, result.output
    assert_one_error(result.stderr, result.stdout, message)
    assert sorted(p.name for p in work.iterdir()) == before  # no output, no montage, no pictures, no temp files


def test_failed_job_leaves_no_montage_or_pictures(work: Path, weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_clip(work / "in.mkv", list(moving_square(n=6)), options=LOSSLESS)
    calls = []

    def breaks(self: DebugWriter, frame: ModelFrame) -> None:
        calls.append(frame)
        if len(calls) == 3:
            raise OSError("disk full")

    monkeypatch.setattr(DebugWriter, "__call__", breaks)
    before = sorted(p.name for p in work.iterdir())
    result = interp(weights, "in.mkv", "out.mkv", "--debug", "dbg", "--montage", "side.mkv", "--batch-size", "1")
    assert result.exit_code == 1, result.output
    assert "disk full" in plain(result.stderr)
    assert sorted(p.name for p in work.iterdir()) == before


def test_help_names_both_options() -> None:
    text = help_text("interp")
    assert "--debug" in text and "--montage" in text and "side-by-side" in text
