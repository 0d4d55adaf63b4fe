"""Tests of framefill.video: exact rates and sizes, frame counts, audio, folders, atomic writes, errors."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import tempfile
import threading
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import (
    LOSSLESS,
    NTSC,
    child_processes,
    make_clip,
    make_frame_folder,
    moving_square,
    psnr,
    ramp_clip,
    retime_unevenly,
    run_ffmpeg,
    untagged_hd_clip,
    write_clip,
)

from framefill.ffmpeg import decode, scan
from framefill.ffmpeg_banner import (
    Colour,
    bit_depth,
    packet_times,
    stream_colour,
    timing_drift,
    untagged_matrix,
)
from framefill.video import (
    EncodeOptions,
    FrameSink,
    FrameSource,
    ThreadedSink,
    VideoError,
    is_image_file,
    parse_rate,
    prefetch,
    probe,
    read_image,
    write_image,
)


def one_line_error(excinfo: pytest.ExceptionInfo[VideoError]) -> str:
    text = str(excinfo.value)
    assert text and "\n" not in text
    return text


def read_all(path: Path, **kwargs: object) -> list[np.ndarray]:
    with FrameSource(path, **kwargs) as source:  # type: ignore[arg-type]
        return list(source)


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("29.97", NTSC),
        ("23.98", Fraction(24000, 1001)),
        ("23.976", Fraction(24000, 1001)),
        ("59.94", Fraction(60000, 1001)),
        ("16.67", Fraction(50, 3)),
        ("12.50", Fraction(25, 2)),
        ("25", Fraction(25)),
        ("30k", Fraction(30000)),
        ("30000/1001", NTSC),
    ],
)
def test_parse_rate_recovers_exact_rates(text: str, rate: Fraction) -> None:
    assert parse_rate(text) == rate


def test_probe_reads_exact_rate_size_count_and_audio(clip: Path) -> None:
    info = probe(clip)
    assert (info.width, info.height, info.fps, info.n_frames) == (64, 48, NTSC, 12)
    assert info.has_audio and not info.has_subtitles and info.codec == "h264"
    assert info.duration == pytest.approx(12 / 29.97, abs=0.05)
    assert probe(clip, count_frames=False).n_frames is None


@pytest.mark.parametrize(("ext", "fps"), [(".mp4", NTSC), (".mkv", Fraction(24000, 1001)), (".webm", Fraction(25))])
def test_round_trip_keeps_exact_rate_count_and_audio(tmp_path: Path, ext: str, fps: Fraction) -> None:
    src = make_clip(tmp_path / f"in{ext}", n=10, fps=fps)
    frames = read_all(src)
    assert len(frames) == 10 and frames[0].shape == (48, 64, 3) and frames[0].dtype == np.uint8
    out = write_clip(tmp_path / f"out{ext}", frames, fps=fps, audio_from=src)
    info, src_info = probe(out), probe(src)
    assert (info.fps, info.n_frames, info.width, info.height) == (fps, 10, 64, 48)
    assert info.has_audio
    assert info.duration == pytest.approx(src_info.duration, abs=0.1)
    assert len(read_all(out)) == 10
    for a, b in zip(frames, read_all(out), strict=True):
        assert psnr(a, b) > 30


def test_odd_size_is_kept(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "odd.mp4", w=33, h=25, n=8)
    assert (probe(src).width, probe(src).height) == (33, 25)
    frames = read_all(src)
    assert frames[0].shape == (25, 33, 3)
    out = write_clip(tmp_path / "out.mp4", frames)  # default yuv420p must become yuv444p, not a rescale
    info = probe(out)
    assert (info.width, info.height, info.n_frames) == (33, 25, 8)
    assert min(psnr(a, b) for a, b in zip(frames, read_all(out), strict=True)) > 30


def test_lossless_ffv1_is_exact_and_x264_is_close(tmp_path: Path) -> None:
    frames = list(moving_square(n=6))
    lossless = write_clip(tmp_path / "sq.mkv", frames, options=LOSSLESS)
    assert all(np.array_equal(a, b) for a, b in zip(frames, read_all(lossless), strict=True))
    lossy = write_clip(tmp_path / "sq.mp4", frames)
    assert min(psnr(a, b) for a, b in zip(frames, read_all(lossy), strict=True)) > 30


def test_subtitles_and_audio_carried_into_mp4(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "subs.mkv", n=6, subtitles=True)
    assert probe(src).has_subtitles
    out = write_clip(tmp_path / "out.mp4", read_all(src), audio_from=src)
    streams = scan(out, False)[0]
    assert [(s.kind, s.codec) for s in streams] == [("Video", "h264"), ("Audio", "aac"), ("Subtitle", "mov_text")]


def test_audio_reencoded_when_container_refuses_codec(tmp_path: Path, clip: Path) -> None:
    out = write_clip(tmp_path / "out.webm", read_all(clip), audio_from=clip)  # aac cannot go into webm
    assert [(s.kind, s.codec) for s in scan(out, False)[0]] == [("Video", "vp9"), ("Audio", "opus")]


def test_rotated_video_decodes_upright(tmp_path: Path, clip: Path) -> None:
    rotated = tmp_path / "rot.mp4"
    run_ffmpeg("-display_rotation", "90", "-i", str(clip), "-c", "copy", str(rotated))
    info = probe(rotated)
    assert (info.width, info.height) == (48, 64)
    assert read_all(rotated)[0].shape == (64, 48, 3)


def test_encoded_video_is_tagged_bt709_throughout(tmp_path: Path, clip: Path) -> None:
    out = write_clip(tmp_path / "out.mp4", read_all(clip))
    video = next(s for s in scan(out, False)[0] if s.kind == "Video")
    assert "yuv420p(tv, bt709, progressive)" in video.text  # matrix, primaries and transfer, not "bt709/unknown/..."


@pytest.mark.parametrize(("stream", "matrix"), [
    ("Video: h264 (High), yuv420p(progressive), 1280x720 [SAR 1:1 DAR 16:9], 24 fps", "bt709"),
    ("Video: vp8, yuv420p(progressive), 1280x720, SAR 1:1 DAR 16:9, 24 fps", "bt709"),
    ("Video: mpeg4 (Simple Profile) (FMP4 / 0x34504D46), yuv420p, 720x576 [SAR 16:15 DAR 4:3]", "bt601"),
    ("Video: h264 (High), yuvj420p(pc, progressive), 320x240 [SAR 1:1 DAR 4:3]", "bt601"),
    ("Video: h264 (High), yuv420p(progressive), 720x1280, 30 fps (rotated phone video)", "bt709"),
    ("Video: h264 (High), yuv420p(tv, bt709, progressive), 1280x720", None),
    ("Video: h264 (High), yuv420p(tv, smpte170m/smpte170m/bt709, progressive), 1920x1080", None),
    ("Video: hevc (Main 10), yuv420p10le(tv, bt2020nc/bt2020/smpte2084), 3840x2160", None),
    ("Video: png (png  / 0x20676E70), rgb24(pc, gbr/unknown/unknown, progressive), 1280x720", None),
])
def test_untagged_yuv_gets_the_matrix_players_assume(stream: str, matrix: str | None) -> None:
    assert untagged_matrix(stream) == matrix


def test_untagged_hd_video_decodes_with_bt709(tmp_path: Path) -> None:
    src = untagged_hd_clip(tmp_path / "untagged.mp4")  # RGB (32, 192, 64)
    assert probe(src).matrix == "bt709"
    frame = next(iter(FrameSource(src)))
    assert np.abs(frame.astype(int) - (32, 192, 64)).max() <= 2
    as_bt601 = list(decode(src, 1280, 720, [], matrix="bt601"))[0]  # what ffmpeg's default made of it
    assert np.abs(as_bt601.astype(int) - (45, 216, 68)).max() <= 2


def test_packet_times_are_read_from_framecrc_sorted_and_in_seconds() -> None:
    crc = ("#tb 0: 1/90\n#media_type 0: video\n0, -3, 0, 3, 100, 0x1\n0, 0, 9, 3, 50, 0x2, F=0x0\n"
           "0, 3, 3, 3, 50, 0x3\n0, 6, 6, 3, 50, 0x4\n")  # B-frame order: pts 0, 9, 3, 6
    assert packet_times(crc) == (4, [Fraction(0), Fraction(1, 30), Fraction(2, 30), Fraction(3, 30)])
    assert packet_times(crc.replace(" 9, 3, 50", f" {-(2**63)}, 3, 50")) == (4, None)  # a packet without pts
    assert packet_times(crc.replace(" 9, 3, 50", " 6, 3, 50")) == (4, None)  # two packets at one time
    assert packet_times("#tb 0: 1/90\n") == (0, None)


def test_packets_flagged_for_discard_are_not_frames() -> None:
    crc = ("#tb 0: 1/90\n0, -6, -6, 3, 100, 0x1, F=0x5\n0, -3, -3, 3, 50, 0x2, F=0x4\n"
           "0, 0, 0, 3, 50, 0x3, F=0x0\n0, 3, 3, 3, 50, 0x4\n")  # the first two precede an edit list's start
    assert packet_times(crc) == (2, [Fraction(0), Fraction(1, 30)])


def test_a_trim_by_stream_copy_counts_the_frames_it_shows(tmp_path: Path) -> None:
    # `ffmpeg -ss T -i in.mp4 -c copy out.mp4` keeps the packets from the keyframe before T, marked to be
    # discarded by an edit list: they are not frames of the video (nor are their times the video's)
    src = make_clip(tmp_path / "src.mp4", n=24, fps=Fraction(24), audio=False)
    trimmed = tmp_path / "trimmed.mp4"
    run_ffmpeg("-ss", "0.3", "-i", str(src), "-c", "copy", str(trimmed))
    info = probe(trimmed)
    source = FrameSource(trimmed)
    frames = list(source)
    assert info.n_frames == len(frames) < 24
    assert source.warnings == []
    assert info.frame_times is None or len(info.frame_times) == len(frames)


def test_timing_drift_is_the_largest_distance_from_a_constant_rate() -> None:
    tenths = [Fraction(k, 10) for k in (0, 1, 2, 6)]
    assert timing_drift(tenths[:3], Fraction(10)) == 0
    assert timing_drift(tenths, Fraction(5)) == pytest.approx(0.2)  # at 0, .2, .4, .6: frame 2 is .2 off
    assert timing_drift(tenths, Fraction(10)) == pytest.approx(0.3)


def test_variable_frame_rate_is_measured(tmp_path: Path, clip: Path) -> None:
    vfr = retime_unevenly(clip, tmp_path / "vfr.mp4", "-an")
    assert probe(vfr).drift > 0.1
    assert probe(clip).drift == pytest.approx(0, abs=1e-3)
    assert probe(vfr, count_frames=False).drift is None


@pytest.mark.parametrize(("stream", "colour"), [
    ("Video: hevc (Main 10), yuv420p10le(tv, bt2020nc/bt2020/arib-std-b67), 3840x2160", ("bt2020nc", "bt2020",
                                                                                         "arib-std-b67")),
    ("Video: h264, yuv420p(tv, smpte170m/smpte170m/bt709, progressive), 720x480", ("smpte170m", "smpte170m",
                                                                                  "bt709")),
    ("Video: h264, yuv420p(tv, bt709, progressive), 1280x720", ("bt709",) * 3),
    ("Video: h264, yuv420p(tv, bt709/unknown/unknown, progressive), 1280x720", ("bt709",) * 3),
    ("Video: h264, yuv420p(progressive), 1280x720", ("bt709",) * 3),  # untagged
    ("Video: h264, yuv420p(tv, bt2020c/bt2020/smpte2084), 3840x2160", ("bt709", "bt2020", "smpte2084")),  # no CL
    ("Video: png, rgb24(pc, gbr/unknown/unknown, progressive), 1280x720", ("bt709",) * 3),
])
def test_output_colour_follows_the_input_tags(stream: str, colour: tuple[str, str, str]) -> None:
    assert stream_colour(stream) == Colour(*colour)


def test_hdr_tags_are_written(tmp_path: Path, clip: Path) -> None:
    hlg = Colour("bt2020nc", "bt2020", "arib-std-b67")  # iPhone HDR video
    out = write_clip(tmp_path / "out.mp4", read_all(clip), colour=hlg)
    video = next(s for s in scan(out, False)[0] if s.kind == "Video")
    assert "yuv420p(tv, bt2020nc/bt2020/arib-std-b67, progressive)" in video.text
    assert probe(out).colour == hlg


def test_interlaced_video_is_deinterlaced(tmp_path: Path) -> None:
    src = tmp_path / "interlaced.mp4"  # 50 progressive frames a second woven into 25 interlaced ones
    run_ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=50", "-t", "0.4", "-vf", "interlace=scan=tff",
               "-c:v", "libx264", "-flags", "+ilme+ildct", "-x264opts", "tff=1", "-pix_fmt", "yuv420p", str(src))
    source = FrameSource(src)
    assert source.info.interlaced and not probe(make_clip(tmp_path / "p.mp4")).interlaced

    def comb(frame: np.ndarray) -> float:  # how far each row is from the mean of its neighbours
        g = frame.astype(float).mean(axis=2)
        return float(np.abs(g[1:-1] - (g[:-2] + g[2:]) / 2).mean())

    woven = list(decode(src, 160, 120, [], deinterlace=False))
    frames = list(source)
    assert len(frames) == len(woven) == 10
    assert np.mean([comb(f) for f in frames]) < 0.8 * np.mean([comb(f) for f in woven])  # 0.71 measured


@pytest.mark.parametrize(("stream", "bits"), [
    ("Video: h264 (High), yuv420p(progressive), 1280x720", 8),
    ("Video: hevc (Main 10), yuv420p10le(tv, bt2020nc/bt2020/arib-std-b67), 3840x2160", 10),
    ("Video: prores (HQ), yuv422p10le(progressive), 1920x1080", 10),
    ("Video: hevc, p010le(tv, bt2020nc/bt2020/smpte2084), 3840x2160", 10),
    ("Video: ffv1, yuv444p12le, 640x480", 12),
    ("Video: png, rgb48be(pc, gbr/unknown/unknown), 640x480", 16),
    ("Video: gif, bgra, 200x150, 50 fps", 8),
])
def test_bit_depth_of_a_stream(stream: str, bits: int) -> None:
    assert bit_depth(stream) == bits


def test_deep_decoding_keeps_the_bits_of_10_bit_video(tmp_path: Path) -> None:
    src = ramp_clip(tmp_path / "ramp10.mp4")
    assert probe(src).bits == 10
    deep, shallow = list(FrameSource(src, deep=True)), list(FrameSource(src))
    assert deep[0].dtype == np.uint16 and shallow[0].dtype == np.uint8 and len(deep) == len(shallow) == 4
    assert len(np.unique(deep[0][48, :, 1])) > 150 and len(np.unique(shallow[0][48, :, 1])) <= 52
    truth = ((np.linspace(0.3, 0.5, 640)) * 65535)[None, :]  # the ramp written
    assert np.abs(deep[0][..., 1].astype(float) - truth).max() < 65535 / 1023  # within a 10-bit step
    assert np.abs(deep[0].astype(float) / 257 - shallow[0]).max() <= 3  # the same picture (swscale's 8-bit path
    # reads this 1-2 levels darker)


def test_full_range_video_decodes_to_its_levels_without_warnings(tmp_path: Path) -> None:
    src = tmp_path / "full.mp4"  # yuvj420p: swscale says "deprecated pixel format used" and converts it right
    run_ffmpeg("-f", "lavfi", "-i", "color=c=0xEBEBEB:size=64x48:rate=10", "-t", "0.3", "-vf",
               "scale=out_range=pc,format=yuvj420p", "-c:v", "libx264", "-color_range", "pc", str(src))
    source = FrameSource(src)
    frames = list(source)
    assert len(frames) == 3 and source.warnings == []
    assert np.abs(frames[0].astype(int) - 235).max() <= 1  # full range: 235 stays 235 (read as TV range: 255)


def test_frame_folder_round_trip_in_natural_order(tmp_path: Path) -> None:
    names = ["frame1.png", "frame2.jpg", "frame10.png", "Frame11.png", "frame100.png"]
    frames = make_frame_folder(tmp_path / "in", names)
    (tmp_path / "in" / "notes.txt").write_text("not a frame")
    source = FrameSource(tmp_path / "in", fps=Fraction(24))
    assert (source.info.width, source.info.height, source.info.n_frames, source.info.fps) == (16, 12, 5, 24)
    got = list(source)
    assert [int(f[0, 0, 0]) for f in got] == pytest.approx([int(f[0, 0, 0]) for f in frames], abs=2)  # jpg
    out = write_clip(tmp_path / "out", got)
    assert sorted(p.name for p in out.iterdir()) == [f"frame_{i:06d}.png" for i in range(1, 6)]
    assert all(np.array_equal(a, b) for a, b in zip(got, read_all(out), strict=True))
    assert FrameSource(tmp_path / "in").info.fps == 30


def test_folder_output_by_trailing_slash_and_existing_folders(tmp_path: Path) -> None:
    frames = list(moving_square(16, 12, n=2))
    slash = write_clip(str(tmp_path / "frames.d") + os.sep, frames)  # type: ignore[arg-type]
    assert slash.is_dir() and len(list(slash.iterdir())) == 2
    (tmp_path / "empty").mkdir()
    write_clip(tmp_path / "empty", frames)  # an empty folder is a fine target
    with pytest.raises(VideoError, match="use --force") as e:
        write_clip(tmp_path / "empty", frames)
    one_line_error(e)
    write_clip(tmp_path / "empty", frames[:1], overwrite=True)
    assert [p.name for p in (tmp_path / "empty").iterdir()] == ["frame_000001.png"]
    (tmp_path / "empty" / "keep.txt").write_text("mine")
    with pytest.raises(VideoError, match="other than frames"):
        write_clip(tmp_path / "empty", frames, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "frames.d"]  # no temp folders left


def test_image_read_write_rgb_order(tmp_path: Path) -> None:
    img = np.zeros((4, 5, 3), np.uint8)
    img[..., 0] = 255  # red
    write_image(tmp_path / "red.png", img)
    assert cv2.imread(str(tmp_path / "red.png"))[0, 0].tolist() == [0, 0, 255]  # BGR on disk
    assert np.array_equal(read_image(tmp_path / "red.png"), img)
    assert is_image_file(Path("a/B.JPG")) and not is_image_file(Path("a.mp4"))
    assert [p.name for p in tmp_path.iterdir()] == ["red.png"]


@pytest.mark.parametrize(
    ("target", "error"), [("out.mp4", KeyError), ("frames", KeyError), ("o.mkv", KeyboardInterrupt)]
)
def test_exception_inside_with_leaves_nothing(tmp_path: Path, target: str, error: type[BaseException]) -> None:
    with pytest.raises(error), FrameSink(tmp_path / target, width=64, height=48, fps=NTSC) as sink:
        for frame in moving_square(n=3):
            sink.write(frame)
        raise error("boom")
    assert list(tmp_path.iterdir()) == []
    assert child_processes() == []


def test_existing_output_and_input_as_output_refused(tmp_path: Path, clip: Path) -> None:
    with pytest.raises(VideoError, match="exists; use --force") as e:
        FrameSink(clip, width=64, height=48, fps=NTSC)
    one_line_error(e)
    with pytest.raises(VideoError, match="is the input"):
        FrameSink(clip, width=64, height=48, fps=NTSC, audio_from=clip, overwrite=True)
    with pytest.raises(VideoError, match="is the input"):
        FrameSink(tmp_path / "." / "clip.mp4", width=64, height=48, fps=NTSC, source=clip, overwrite=True)
    before = clip.read_bytes()
    write_clip(clip.with_name("other.mp4"), list(moving_square(n=2)))
    write_clip(clip.with_name("other.mp4"), list(moving_square(n=3)), overwrite=True)
    assert probe(clip.with_name("other.mp4")).n_frames == 3 and clip.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "other.mp4"]


def test_missing_and_not_a_video(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="no such file") as e:
        probe(tmp_path / "nope.mp4")
    one_line_error(e)
    with pytest.raises(VideoError, match="no such file"):
        FrameSource(tmp_path / "nope.mkv")
    fake = tmp_path / "fake.mp4"
    fake.write_text("this is not a video\n" * 20)
    with pytest.raises(VideoError, match="is not a readable video") as e:
        FrameSource(fake)
    assert "ffmpeg:" in one_line_error(e)
    with pytest.raises(VideoError, match="not a readable image"):
        read_image(fake)


def test_zero_frames_and_no_video_stream(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mkv"
    video, sound = "testsrc2=size=64x48:rate=30:duration=0.3", "sine=duration=0.3"
    no_frames = ["-vf", "select=0", "-c:v", "libx264"]  # a video stream whose every frame is dropped
    run_ffmpeg(
        "-f", "lavfi", "-i", video, "-f", "lavfi", "-i", sound, "-map", "0:v", "-map", "1:a", *no_frames, str(empty)
    )
    with pytest.raises(VideoError, match="no video frames") as e:
        FrameSource(empty)
    one_line_error(e)
    m4a = tmp_path / "sound.m4a"
    run_ffmpeg("-f", "lavfi", "-i", sound, "-c:a", "aac", str(m4a))
    with pytest.raises(VideoError, match="no video stream"):
        probe(m4a)


def test_truncated_mkv_gives_the_readable_frames_with_warnings(tmp_path: Path) -> None:
    full = make_clip(tmp_path / "full.mkv", n=20)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    source = FrameSource(cut)
    frames = list(source)
    assert 0 < len(frames) < 20
    assert source.warnings
    assert child_processes() == []


def test_truncated_mp4_is_a_clean_error(tmp_path: Path, clip: Path) -> None:
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    with pytest.raises(VideoError, match=r"not a readable video \(truncated") as e:
        FrameSource(cut)
    one_line_error(e)


def test_missing_or_unwritable_output_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for target in (tmp_path / "no" / "out.mp4", tmp_path / "no" / "frames"):
        with pytest.raises(VideoError, match="does not exist") as e:
            FrameSink(target, width=8, height=8, fps=NTSC)
        one_line_error(e)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.access(locked, os.W_OK):  # root ignores permissions: fail file creation the way the OS would

        def deny(*args: object, **kwargs: object) -> None:
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(tempfile, "mkstemp", deny)
        monkeypatch.setattr(tempfile, "mkdtemp", deny)
    try:
        for target in (locked / "out.mp4", locked / "frames"):
            with pytest.raises(VideoError, match="cannot write to folder .*Permission denied") as e:
                FrameSink(target, width=8, height=8, fps=NTSC)
            one_line_error(e)
    finally:
        locked.chmod(0o700)


def test_bad_encoder_settings_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="cannot be stored in .webm"):
        FrameSink(tmp_path / "a.webm", width=8, height=8, fps=NTSC, options=EncodeOptions())
    with pytest.raises(VideoError, match="not in the bundled ffmpeg"):
        FrameSink(tmp_path / "a.mp4", width=8, height=8, fps=NTSC, options=EncodeOptions(codec="nope264"))
    with pytest.raises(VideoError, match="cannot write .xyz files"):
        FrameSink(tmp_path / "a.xyz", width=8, height=8, fps=NTSC)
    with pytest.raises(VideoError, match="ffmpeg could not write a.mp4") as e:
        write_clip(tmp_path / "a.mp4", list(moving_square(n=2)), options=EncodeOptions(preset="warp-speed"))
    assert "ffmpeg:" in one_line_error(e)
    with (
        pytest.raises(VideoError, match="no frames were written"),
        FrameSink(tmp_path / "b.mp4", width=8, height=8, fps=NTSC),
    ):
        pass
    with pytest.raises(ValueError, match=r"expected a \(48, 64, 3\) uint8"):
        write_clip(tmp_path / "c.mp4", [np.zeros((48, 64), np.uint8)])
    assert list(tmp_path.iterdir()) == []


def test_folder_of_mixed_sizes_and_empty_folder(tmp_path: Path) -> None:
    make_frame_folder(tmp_path / "mixed", ["a1.png", "a2.png"])
    write_image(tmp_path / "mixed" / "a3.png", np.zeros((5, 5, 3), np.uint8))
    with pytest.raises(VideoError, match="a3.png is 5x5 but the first frame is 16x12") as e:
        read_all(tmp_path / "mixed")
    one_line_error(e)
    (tmp_path / "none").mkdir()
    with pytest.raises(VideoError, match="contains no image files"):
        FrameSource(tmp_path / "none")


def test_prefetch_passes_items_and_propagates_errors() -> None:
    assert list(prefetch(range(20), depth=2)) == list(range(20))

    def broken():
        yield 1
        yield 2
        raise RuntimeError("decoder fell over")

    got = []
    with pytest.raises(RuntimeError, match="decoder fell over"):
        for item in prefetch(broken()):
            got.append(item)
    assert got == [1, 2]


def test_early_stop_stops_ffmpeg(tmp_path: Path, clip: Path) -> None:
    source = FrameSource(clip)
    frames = iter(source)
    next(frames)
    assert len(child_processes()) == 1  # the decoder
    source.close()
    assert child_processes() == []

    ahead = prefetch(FrameSource(clip), depth=2)  # FrameSource's pass runs on prefetch's thread
    next(ahead)
    ahead.close()
    assert child_processes() == []

    for _ in FrameSource(clip):
        break  # the abandoned pass is collected and closed
    gc.collect()
    assert child_processes() == []
    assert threading.active_count() == 1


def test_threaded_sink_writes_all_and_reports_encoder_errors(tmp_path: Path) -> None:
    frames = list(moving_square(n=7))
    with ThreadedSink(FrameSink(tmp_path / "t.mkv", width=64, height=48, fps=NTSC, options=LOSSLESS), 2) as out:
        for frame in frames:
            out.write(frame)
    assert out.frames_written == 7 and probe(tmp_path / "t.mkv").n_frames == 7

    broken = EncodeOptions(extra=("-no-such-option", "1"))  # ffmpeg exits at once: the thread's write fails
    with pytest.raises(VideoError) as e:
        with ThreadedSink(FrameSink(tmp_path / "bad.mp4", width=64, height=48, fps=NTSC, options=broken)) as out:
            for frame in moving_square(n=200):
                out.write(frame)
    one_line_error(e)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.mkv"]
    assert child_processes() == []


def test_odd_file_names_are_files_not_options_or_protocols(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    name = Path("-x:y.mkv")  # relative: ffmpeg would read "-x..." as an option and "x:" as a protocol
    write_clip(name, list(moving_square(n=3)), fps=30.0)
    assert probe(name).fps == 30 and len(read_all(name)) == 3


CTRL_C_SCRIPT = """
import signal, sys, time
import numpy as np
from framefill.video import FrameSink, FrameSource
signal.signal(signal.SIGINT, signal.default_int_handler)  # a background process may start with SIGINT ignored
if sys.argv[1] == "write":
    with FrameSink("out.mp4", width=64, height=48, fps=30) as sink:
        while True:
            sink.write(np.zeros((48, 64, 3), np.uint8))
            print("ready", flush=True)
            time.sleep(0.02)
for frame in FrameSource(sys.argv[1]):
    print("ready", flush=True)
    time.sleep(30)
"""


@pytest.mark.skipif(os.name != "posix", reason="sends SIGINT")
@pytest.mark.parametrize("mode", ["write", "read"])
def test_ctrl_c_stops_ffmpeg_and_leaves_no_file(tmp_path: Path, clip: Path, mode: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    argv = [sys.executable, "-c", CTRL_C_SCRIPT, "write" if mode == "write" else str(clip)]
    proc = subprocess.Popen(argv, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"  # type: ignore[union-attr]
        ffmpeg = [line.split()[0] for line in child_processes(proc.pid)]
        assert len(ffmpeg) == 1
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "KeyboardInterrupt" in err
    assert not Path(f"/proc/{ffmpeg[0]}").exists()  # killed and reaped, not orphaned
    assert list(work.iterdir()) == []


def test_outputs_get_the_usual_permissions(tmp_path):
    """Temp files are private (mkstemp); the published output follows the umask like any new file."""
    from framefill.frames import _UMASK

    frame = np.zeros((48, 64, 3), np.uint8)
    with FrameSink(tmp_path / "p.mp4", width=64, height=48, fps=Fraction(30)) as sink:
        sink.write(frame)
        sink.write(frame)
    with FrameSink(tmp_path / "frames_out", width=64, height=48, fps=Fraction(30)) as sink:
        sink.write(frame)
    write_image(tmp_path / "mid.png", frame)
    mode = {name: (tmp_path / name).stat().st_mode & 0o777 for name in ("p.mp4", "frames_out", "mid.png")}
    file_mode, dir_mode = 0o666 & ~_UMASK, 0o777 & ~_UMASK
    assert mode == {"p.mp4": file_mode, "frames_out": dir_mode, "mid.png": file_mode}
    assert file_mode != 0o600  # not the private mode of the temp file (holds for any usual umask)
