"""ffmpeg's output arguments: what each container takes, how a video stream is encoded (``EncodeOptions``,
``video_args``) and how the input's audio and subtitles are carried into it (``carry_args``).

Arguments only: nothing here runs ffmpeg (``framefill.ffmpeg.Encoder`` does, and checks first that the bundled
build has the encoder).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from framefill.ffmpeg_banner import BT709, SCALE_MATRIX, Colour, Stream
from framefill.frames import VideoError

OUTPUT_EXTS = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".gif"})  # what FrameSink writes
ALIAS = {".m4v": ".mp4"}
AUDIO_COPY = {  # audio codecs each container takes as they are; .mkv takes any
    ".mp4": {"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"},
    ".mov": {"aac", "mp3", "ac3", "eac3", "alac", "pcm_s16le", "pcm_s24le", "pcm_s16be", "pcm_s24be", "pcm_f32le"},
    ".webm": {"opus", "vorbis"},
    ".avi": {"mp3", "ac3", "pcm_s16le"},
    ".ts": {"aac", "mp3", "mp2", "ac3", "eac3", "opus"},
}
AUDIO_FALLBACK = {".webm": "libopus", ".avi": "libmp3lame"}  # else aac
NO_AUDIO = frozenset({".gif"})  # containers without audio
GIF_MAX_FPS = 50  # GIF frame delays are whole hundredths of a second, and browsers slow down delays under 2
# GIF: a palette per frame (streams, unlike one palette for the whole clip, which holds every frame until the end)
GIF_FILTER = "split[a][b];[a]palettegen=stats_mode=single[p];[b][p]paletteuse=new=1:dither=sierra2_4a"
TEXT_SUBS = {"subrip", "srt", "ass", "ssa", "webvtt", "mov_text", "text"}
SUB_CODEC = {".mp4": "mov_text", ".mov": "mov_text", ".webm": "webvtt", ".mkv": "copy"}  # others: none
WEBM_CODECS = {"libvpx-vp9", "libvpx", "libaom-av1", "libsvtav1"}
RGB_PIX_FMT = {"ffv1": "bgr0", "png": "rgb24"}  # lossless codecs keep RGB instead of the yuv420p default
DEEP_CODECS = frozenset({"libx264", "libx265", "libvpx-vp9"})  # encode 10-bit YUV from 16-bit RGB frames
VP9_SPEED = {"ultrafast": 8, "superfast": 7, "veryfast": 6, "faster": 5, "fast": 4, "medium": 2, "slow": 1}


@dataclass(frozen=True)
class EncodeOptions:
    """How FrameSink encodes a video file; ``EncodeOptions.for_path`` picks defaults per extension."""

    codec: str = "libx264"  # ffmpeg encoder: libx264, libx265, libvpx-vp9 (.webm), ffv1 / png (lossless)
    crf: int = 18  # constant quality, lower is better (x264/x265: 0-51, vp9: 0-63); lossless codecs ignore it
    preset: str = "medium"  # x264/x265 speed preset, mapped onto -cpu-used for vp9; lossless codecs ignore it
    pix_fmt: str = "yuv420p"  # becomes yuv444p for odd sizes, and bgr0/rgb24 (RGB) for ffv1/png if left default
    extra: tuple[str, ...] = ()  # further ffmpeg output options, passed as given (an argument list, no shell)

    @classmethod
    def for_path(cls, path: Path) -> EncodeOptions:
        """Defaults for ``path``'s container: VP9 for .webm, H.264 (crf 18) for everything else."""
        ext = Path(path).suffix.lower()
        if ext == ".webm":
            return cls(codec="libvpx-vp9", crf=24)  # vp9's crf scale runs to 63; 24 looks like x264's 18
        if ext == ".gif":
            return cls(codec="gif", pix_fmt="pal8")
        return cls()


def video_args(opts: EncodeOptions, ext: str, width: int, height: int, colour: Colour = BT709) -> list[str]:
    """ffmpeg output options for the video stream; raises VideoError for choices that cannot work (an encoder the
    bundled build lacks is the caller's check: ``framefill.ffmpeg.encoders``)."""
    codec = opts.codec
    if ext == ".webm" and codec not in WEBM_CODECS:
        raise VideoError(f"{codec} cannot be stored in .webm; use libvpx-vp9, or write .mp4 or .mkv")
    if ext == ".gif" and codec != "gif":
        raise VideoError(f"{codec} cannot be stored in .gif; leave --codec out for a .gif output")
    if codec == "gif" and ext != ".gif":
        raise VideoError("the gif encoder writes .gif files only; name the output .gif")
    if codec == "gif":
        return ["-c:v", "gif", "-vf", GIF_FILTER]
    if codec == "libx265" and min(width, height) < 64:  # this x265 build aborts on tiny pictures
        raise VideoError(f"libx265 cannot encode pictures as small as {width}x{height}; use libx264")
    pix_fmt = opts.pix_fmt
    if codec in RGB_PIX_FMT and pix_fmt == EncodeOptions.pix_fmt:
        pix_fmt = RGB_PIX_FMT[codec]
    if (width % 2 or height % 2) and codec in ("libx264", "libx265"):
        pix_fmt = re.sub(r"^(yuvj?4(20|22|11|10|40)p|nv12|nv21)", "yuv444p", pix_fmt)
    args = ["-c:v", codec, "-pix_fmt", pix_fmt]
    if pix_fmt.startswith("yuv"):  # convert with and tag the input's colour description (BT.709 by default), so
        # players neither guess the matrix nor show HDR as SDR; the tags go on the frames (setparams): this ffmpeg
        # takes them from there and ignores -color_primaries/-color_trc
        c = colour
        args += ["-vf", f"scale=out_color_matrix={SCALE_MATRIX[c.matrix]}:out_range=tv,setparams=colorspace="
                        f"{c.matrix}:color_primaries={c.primaries}:color_trc={c.transfer}:range=tv",
                 "-colorspace", c.matrix, "-color_primaries", c.primaries, "-color_trc", c.transfer,
                 "-color_range", "tv"]
    if codec in ("libx264", "libx265"):
        args += ["-crf", str(opts.crf), "-preset", opts.preset]
    if codec == "libx265":
        args += ["-x265-params", "log-level=error"] + (["-tag:v", "hvc1"] if ext in (".mp4", ".mov") else [])
    elif codec in ("libvpx-vp9", "libvpx"):
        speed = VP9_SPEED.get(opts.preset, 0)
        args += ["-crf", str(opts.crf), "-b:v", "0", "-deadline", "good", "-cpu-used", str(speed), "-row-mt", "1"]
    return args


def carry_args(ext: str, streams: list[Stream], warnings: list[str]) -> list[str]:
    """Map the audio and subtitles of input 1 into the output, copying codecs the container takes."""
    args: list[str] = []
    copyable = AUDIO_COPY.get(ext)  # None: any codec
    n_audio = n_subs = 0
    for s in streams:
        if s.kind == "Audio" and ext in NO_AUDIO:
            warnings.append(f"audio stream {s.index} cannot be stored in {ext}; left out")
        elif s.kind == "Audio":
            if copyable is None or s.codec in copyable:
                args += ["-map", f"1:{s.index}", f"-c:a:{n_audio}", "copy"]
            else:
                codec = AUDIO_FALLBACK.get(ext, "aac")
                args += ["-map", f"1:{s.index}", f"-c:a:{n_audio}", codec, f"-b:a:{n_audio}", "160k"]
            n_audio += 1
        elif s.kind == "Subtitle":
            target = SUB_CODEC.get(ext)
            if target == "copy" or (target and s.codec in TEXT_SUBS):
                args += ["-map", f"1:{s.index}", f"-c:s:{n_subs}", target]
                n_subs += 1
            else:
                warnings.append(f"subtitle stream {s.index} ({s.codec}) cannot be stored in {ext}; left out")
    return args
