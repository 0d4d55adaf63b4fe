"""framefill eval: the metrics against hand-computed values, the baselines, triplet discovery, and the command.

Tiny everything (64x48 frames, an untrained film-tiny): these tests are about the protocol, not about quality.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import (
    LOSSLESS,
    assert_one_error,
    help_text,
    moving_square,
    no_cuda,
    plain,
    retime_unevenly,
    save_tiny_film,
    time_pairs_rows,
    write_clip,
)
from typer.testing import CliRunner

from framefill.checkpoint import save_model
from framefill.cli import app
from framefill.evaluate import (
    BASELINES,
    blend,
    dis,
    discover,
    ie,
    minterpolate,
    minterpolate_frames,
    psnr,
    repeat,
    ssim,
    triplet_starts,
)
from framefill.models.film import build_film
from framefill.video import write_image

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_film(tmp_path_factory.mktemp("weights") / "film-tiny.safetensors")


def flat(value: int | tuple[int, int, int], h: int = 24, w: int = 32) -> np.ndarray:
    return np.broadcast_to(np.array(value, dtype=np.uint8), (h, w, 3)).copy()


def texture(h: int = 48, w: int = 96, seed: int = 0) -> np.ndarray:
    """A smooth random RGB texture, (h, w, 3) uint8."""
    noise = np.random.default_rng(seed).random((h // 6, w // 6, 3)).astype(np.float32)
    return (cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1) * 255).astype(np.uint8)


# --- metrics ----------------------------------------------------------------------------------------------------


def test_psnr_of_a_constant_offset() -> None:
    assert psnr(flat(100), flat(105)) == pytest.approx(20 * math.log10(255 / 5))  # MSE = 25
    assert psnr(flat((100, 100, 100)), flat((100, 100, 109))) == pytest.approx(10 * math.log10(255**2 / 27))
    assert psnr(flat(7), flat(7)) == 100.0  # equal images: capped, so a mean over triplets stays finite


def test_ie_is_the_rms_of_the_rgb_difference() -> None:
    assert ie(flat(100), flat(104)) == pytest.approx(math.sqrt(3 * 4**2))  # |(4, 4, 4)| at every pixel
    pred = flat(50)
    pred[:, :16, 0] = 56  # half the pixels off by 6 in red only
    assert ie(pred, flat(50)) == pytest.approx(math.sqrt(36 / 2))
    assert ie(flat(9), flat(9)) == 0.0


def test_ssim_of_identical_and_of_flat_images() -> None:
    img = texture()
    assert ssim(img, img) == pytest.approx(1.0)
    c1 = (0.01 * 255) ** 2  # flat images: no variance, so SSIM is the luminance term alone
    assert ssim(flat(100), flat(110)) == pytest.approx((2 * 100 * 110 + c1) / (100**2 + 110**2 + c1))


def test_ssim_matches_the_definition_window_by_window() -> None:
    a, b = texture(16, 20, seed=1), texture(16, 20, seed=2)
    x = np.arange(11) - 5
    g = np.exp(-(x**2) / (2 * 1.5**2))
    win = np.outer(g, g) / np.outer(g, g).sum()  # (11, 11)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for ch in range(3):
        for i in range(16 - 10):
            for j in range(20 - 10):
                p = a[i:i + 11, j:j + 11, ch].astype(np.float64)
                q = b[i:i + 11, j:j + 11, ch].astype(np.float64)
                mp, mq = (win * p).sum(), (win * q).sum()
                vp, vq = (win * (p - mp) ** 2).sum(), (win * (q - mq) ** 2).sum()
                cov = (win * (p - mp) * (q - mq)).sum()
                values.append((2 * mp * mq + c1) * (2 * cov + c2) / ((mp**2 + mq**2 + c1) * (vp + vq + c2)))
    assert ssim(a, b) == pytest.approx(np.mean(values), abs=1e-9)
    assert ssim(a, b) == pytest.approx(ssim(b, a))


def test_metrics_refuse_images_of_two_shapes() -> None:
    with pytest.raises(ValueError, match="one shape"):
        psnr(flat(1, 24, 32), flat(1, 24, 30))


# --- baselines ----------------------------------------------------------------------------------------------------


def test_repeat_and_blend_are_exact() -> None:
    a, b = flat((10, 0, 200)), flat((15, 255, 201))
    out = repeat(a, b)
    assert np.array_equal(out, a) and out is not a
    assert np.array_equal(blend(a, b), flat((13, 128, 201)))  # 12.5 -> 13, 127.5 -> 128, 200.5 -> 201
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    assert np.array_equal(blend(x, y), (x.astype(int) + y + 1) // 2)
    assert blend(x, y).dtype == np.uint8


def test_dis_follows_a_pan() -> None:
    wide = texture(48, 100)
    a, mid, b = wide[:, 0:80], wide[:, 3:83], wide[:, 6:86]  # 3 px a frame
    assert dis(a, b).shape == a.shape
    assert psnr(dis(a, b), mid) > psnr(blend(a, b), mid) + 10  # warped, not blended: the flow signs are right


def test_minterpolate_takes_the_middle_frame() -> None:
    wide = texture(48, 100)
    a, mid, b = wide[:, 0:80], wide[:, 3:83], wide[:, 6:86]  # a pan, 3 px a frame
    frames, times = minterpolate_frames([a, b, b])
    by_time = dict(zip(times, frames, strict=True))
    assert sorted(by_time) == [0.0, 0.5, 1.0]
    assert psnr(by_time[0.0], a) > 40 and psnr(by_time[1.0], b) > 40  # the inputs, through yuv444p
    out = minterpolate(a, b)
    assert out.shape == a.shape and out.dtype == np.uint8
    assert np.array_equal(out, by_time[0.5])
    assert psnr(out, mid) > max(psnr(out, a), psnr(out, b)) + 5  # the in-between, not an input ...
    assert psnr(out, mid) > psnr(blend(a, b), mid) + 3  # ... and motion-compensated, not a blend


def test_minterpolate_takes_small_and_odd_frames() -> None:
    a, b = (f[:25, :33].copy() for f in list(moving_square(n=3))[::2])
    assert minterpolate(a, b).shape == (25, 33, 3)


# --- triplets -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "stride", "limit", "expected"), [
    (12, 1, 3, [0, 4, 9]),  # last start 12 - 1 - 2 = 9, middle round(4.5) = 4
    (12, 2, 10, [0, 1, 2, 3, 4, 5, 6, 7]),  # fewer than the limit: all of them
    (5, 2, 3, [0]),
    (4, 2, 3, []),  # too short for stride 2
    (100, 3, 1, [46]),  # one: from the middle
])
def test_triplet_starts_are_spread_evenly(n: int, stride: int, limit: int, expected: list[int]) -> None:
    assert triplet_starts(n, stride, limit) == expected


def test_discovers_middlebury_and_vimeo_layouts_beside_clips(tmp_path: Path) -> None:
    frames = list(moving_square(n=3))
    mb = tmp_path / "middlebury"
    for folder, names in [("other-data/Beanbags", ["frame10.png", "frame11.png"]),
                          ("other-gt-interp/Beanbags", ["frame10i11.png"]),
                          ("together", ["frame10.png", "frame11.png", "frame10i11.png"])]:
        (mb / folder).mkdir(parents=True)
        for name, frame in zip(names, frames, strict=False):
            write_image(mb / folder / name, frame)
    seq = tmp_path / "vimeo" / "sequences" / "00001" / "0001"
    seq.mkdir(parents=True)
    for i, frame in enumerate(frames, start=1):
        write_image(seq / f"im{i}.png", frame)
    (tmp_path / "shots").mkdir()
    for i, frame in enumerate(moving_square(n=4)):
        write_image(tmp_path / "shots" / f"{i}.png", frame)
    write_clip(tmp_path / "clip.mkv", list(moving_square(n=5)), options=LOSSLESS)
    (tmp_path / "notes.txt").write_text("not a clip")

    clips, given = discover(tmp_path)
    assert [c.name for c in clips] == ["clip.mkv", "shots"]
    found = {t.name: t for t in given}
    assert sorted(found) == ["middlebury/other-data/Beanbags", "middlebury/together", "vimeo/sequences/00001/0001"]
    beanbags = found["middlebury/other-data/Beanbags"]
    assert beanbags.layout == "middlebury"
    assert beanbags.truth == mb / "other-gt-interp/Beanbags/frame10i11.png"
    assert [p.name for p in beanbags.inputs] == ["frame10.png", "frame11.png"]
    assert found["middlebury/together"].truth == mb / "together/frame10i11.png"
    vimeo = found["vimeo/sequences/00001/0001"]
    assert vimeo.layout == "vimeo" and vimeo.truth.name == "im2.png"
    assert [p.name for p in vimeo.inputs] == ["im1.png", "im3.png"]


# --- the command ----------------------------------------------------------------------------------------------



@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lossless 7-frame clip (so decoded frames are the frames written) and a Vimeo-90K triplet."""
    d = tmp_path_factory.mktemp("data")
    write_clip(d / "square.mkv", list(moving_square(n=7)), options=LOSSLESS)
    (d / "vimeo" / "0001").mkdir(parents=True)
    for i, frame in enumerate(list(moving_square(n=3)), start=1):
        write_image(d / "vimeo" / "0001" / f"im{i}.png", frame)
    return d


def test_eval_command_writes_complete_json(data: Path, weights: Path, tmp_path: Path) -> None:
    out, pics = tmp_path / "scores.json", tmp_path / "pics"
    result = runner.invoke(app, ["eval", "--data", str(data), "--weights", str(weights), "--stride", "1,2",
                                 "--max-triplets", "2", "--json", str(out), "--save", str(pics)],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = plain(result.stdout)
    for words in ("stride 1: inputs i and i+2, truth i+1", "stride 2: inputs i and i+4, truth i+2", "given triplets",
                  "PSNR dB", "SSIM", "IE", "s/frame", "framefill", *BASELINES):
        assert words in text

    report = json.loads(out.read_text())
    methods = ["framefill", *BASELINES]
    assert report["methods"] == methods
    assert report["config"]["strides"] == [1, 2] and report["config"]["max_triplets"] == 2
    assert report["config"]["weights"] == str(weights.resolve())
    assert {"psnr", "ssim", "ie", "dis", "minterpolate"} <= report["config"]["protocol"].keys()
    assert {"type", "torch_threads"} <= report["device"].keys() and report["device"]["type"] == "cpu"
    assert {"framefill", "torch", "numpy", "opencv", "ffmpeg", "python"} <= report["versions"].keys()
    assert report["weights_metadata"]["architecture"] == "film"
    assert list(report["groups"]) == ["stride 1", "stride 2", "given"]
    assert sorted(report["groups"]["stride 1"]["clips"]) == ["square.mkv"]
    assert list(report["groups"]["given"]["clips"]) == ["vimeo/0001"]
    assert sorted(report["overall"]) == sorted(methods) and report["overall"]["framefill"]["n"] == 5
    for figures in [report["overall"], *(g["methods"] for g in report["groups"].values())]:
        for m in methods:
            assert {"n", "psnr", "ssim", "ie", "sec_median", "sec_mean"} <= figures[m].keys()
    assert len(report["triplets"]) == 5  # 2 per stride of the clip, 1 given
    frames = list(moving_square(n=7))
    for t in report["triplets"]:
        assert sorted(t["scores"]) == sorted(methods)
        assert all(s["seconds"] >= 0 and 0 < s["ssim"] <= 1 for s in t["scores"].values())
        if t["stride"]:  # the clip is lossless: scores are exactly those of the frames the triplet names
            i, mid, j = (frames[k] for k in t["frames"])
            assert t["frames"][1] - t["frames"][0] == t["frames"][2] - t["frames"][1] == t["stride"]
            assert t["scores"]["repeat"]["psnr"] == pytest.approx(psnr(i, mid))
            assert t["scores"]["blend"]["ie"] == pytest.approx(ie(blend(i, j), mid))
    assert [t["frames"] for t in report["triplets"] if t["stride"] == 2] == [[0, 2, 4], [2, 4, 6]]
    assert len(list(pics.glob("*.png"))) == 5
    picture = cv2.imread(str(pics / "square.mkv_s1_f000000.png"))
    assert picture.shape[1] == 5 * 64 and picture.shape[0] > 48  # five panels and a label strip


def test_eval_skips_triplets_whose_middle_frame_is_not_halfway_in_time(tmp_path: Path, weights: Path) -> None:
    even = write_clip(tmp_path / "even.mkv", list(moving_square(n=9)), options=LOSSLESS)
    (tmp_path / "data").mkdir()
    retime_unevenly(even, tmp_path / "data" / "vfr.mkv", "-c:v", "ffv1")
    out = tmp_path / "scores.json"
    result = runner.invoke(app, ["eval", "--data", str(tmp_path / "data"), "--weights", str(weights), "--stride",
                                 "1", "--baselines", "blend", "-q", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert [t["frames"] for t in report["triplets"]] == [[i, i + 1, i + 2] for i in (0, 1, 2, 3, 5, 6)]  # not 4-5-6
    assert any("1 stride-1 triplets skipped: the middle frame is not halfway" in w for w in report["warnings"])


def test_eval_baselines_only_choice(data: Path, weights: Path) -> None:
    result = runner.invoke(app, ["eval", "--data", str(data / "vimeo"), "--weights", str(weights),
                                 "--baselines", "blend", "-q"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = plain(result.stdout)
    assert "blend" in text and "repeat" not in text and "given triplets" in text


@pytest.mark.parametrize(("args", "message"), [
    pytest.param(["--data", "missing"], "--data missing does not exist", id="missing path"),
    pytest.param(["--data", "empty"], "holds no videos", id="no usable clips"),
    pytest.param(["--data", "short.mkv"], "too few for stride 1", id="clip too short"),
    pytest.param(["--data", "still.mkv"], "static triplets", id="only static triplets"),
    pytest.param(["--data", "square.mkv", "--stride", "0"], "--stride '0' is not a list", id="stride 0"),
    pytest.param(["--data", "square.mkv", "--stride", "1,x"], "positive whole numbers", id="stride not a number"),
    pytest.param(["--data", "square.mkv", "--baselines", "blend,rife"], "unknown baseline 'rife'",
                 id="unknown baseline"),
    pytest.param(["--data", "square.mkv", "--json", "nodir/out.json"], "does not exist", id="json folder missing"),
    pytest.param(["--data", "square.mkv", "--device", "cuda"], "no CUDA device", id="cuda without cuda",
                 marks=no_cuda),
    pytest.param(["--data", "square.mkv", "--weights", "gone.safetensors"], "weights not found",
                 id="weights missing"),
])
def test_eval_bad_input_is_one_error_line(tmp_path: Path, weights: Path, monkeypatch: pytest.MonkeyPatch,
                                          args: list[str], message: str) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    write_clip(tmp_path / "square.mkv", list(moving_square(n=5)), options=LOSSLESS)
    write_clip(tmp_path / "short.mkv", list(moving_square(n=2)), options=LOSSLESS)
    write_clip(tmp_path / "still.mkv", [next(moving_square())] * 4, options=LOSSLESS)
    extra = [] if "--weights" in args else ["--weights", str(weights)]
    result = runner.invoke(app, ["eval", *args, *extra])
    assert result.exit_code == 2, result.output
    assert_one_error(result.stderr, result.stdout, message)


def test_eval_help_reads_well() -> None:
    text = help_text("eval")
    for words in ("--data", "--stride", "--max-triplets", "--baselines", "--save", "--json", "Middlebury",
                  "drop-frame", "framefill eval --data clips/"):
        assert words in text


def test_time_pairs_names_rows_by_the_weights_file_so_two_files_do_not_merge(tmp_path: Path) -> None:
    weights = tmp_path / "sel-1406.safetensors"
    save_model(weights, build_film("film-tiny"), architecture="film")

    def peers(*extra: str) -> set[str]:
        return {row["peer"] for row in time_pairs_rows(tmp_path, weights, *extra)}

    assert peers() == {"framefill_sel_1406"}
    assert peers("--init") == {"framefill_init"} and peers("--peer", "mine") == {"mine"}
