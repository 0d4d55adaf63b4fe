"""The baselines ``framefill eval`` scores beside the model: ``BASELINES``, each ``(img0, img1) -> middle frame``
on ``(H, W, 3)`` uint8 RGB (repeat, blend, DIS optical flow, ffmpeg's minterpolate)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable

import cv2
import numpy as np

from framefill.ffmpeg import ffmpeg_exe, relevant, session
from framefill.frames import VideoError

Frame = np.ndarray  # (H, W, 3) uint8 RGB

def repeat(img0: Frame, img1: Frame) -> Frame:
    """The first input, as a player that only repeats frames shows it."""
    return img0.copy()


def blend(img0: Frame, img1: Frame) -> Frame:
    """The exact mean of the two inputs, halves rounded up."""
    return ((img0.astype(np.uint16) + img1 + 1) // 2).astype(np.uint8)


def dis(img0: Frame, img1: Frame, preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM) -> Frame:
    """OpenCV DIS optical flow both ways; each input backward-warped to the middle by half its flow, averaged.

    ``calc(A, B)`` gives the flow ``f`` with ``A(p) ~ B(p + f(p))``. With motion ``v`` (``img1(p) = img0(p - v)``)
    the flow 0 -> 1 is ``v`` and 1 -> 0 is ``-v``, and the middle frame is ``img0(q - v/2) = img0(q + f10(q)/2)``
    and ``img1(q + v/2) = img1(q + f01(q)/2)``: each flow is read at the output pixel, which assumes the flow
    varies slowly.
    """
    flow = cv2.DISOpticalFlow_create(preset)
    g0, g1 = cv2.cvtColor(img0, cv2.COLOR_RGB2GRAY), cv2.cvtColor(img1, cv2.COLOR_RGB2GRAY)
    f01 = flow.calc(g0, g1, None)  # (H, W, 2) float32, channel 0 = dx
    f10 = flow.calc(g1, g0, None)
    h, w = g0.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)

    def warp(img: Frame, f: np.ndarray) -> np.ndarray:
        return cv2.remap(img, xx + 0.5 * f[..., 0], yy + 0.5 * f[..., 1], cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)

    return blend(warp(img0, f10), warp(img1, f01))


MINTERPOLATE = "minterpolate=fps=2:mi_mode=mci:mc_mode=aobmc:me_mode=bidir:scd=none"
MINTERPOLATE_MIN = 32  # the filter's smallest width and height


def minterpolate_frames(frames: list[Frame]) -> tuple[list[Frame], list[float]]:
    """Run ffmpeg's ``MINTERPOLATE`` on ``frames`` taken as 1 fps; every output frame and its time in seconds.

    ffmpeg converts to yuv444p for the filter and back, which rounds values by up to 2 levels.
    """
    h, w = frames[0].shape[:2]
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "info", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-video_size", f"{w}x{h}", "-framerate", "1", "-i", "pipe:0", "-vf", f"{MINTERPOLATE},showinfo",
           "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]  # fmt: skip
    data = b"".join(np.ascontiguousarray(f).tobytes() for f in frames)
    done = subprocess.run(cmd, input=data, capture_output=True, **session())
    text = done.stderr.decode(errors="replace")
    if done.returncode != 0:
        raise VideoError("ffmpeg's minterpolate failed", detail=relevant(text.splitlines()))
    out = np.frombuffer(done.stdout, dtype=np.uint8)
    times = [float(t) for t in re.findall(r"\bpts_time:\s*(-?[\d.]+)", text)]  # showinfo: one line per frame
    if out.size != len(times) * h * w * 3:
        raise VideoError(f"ffmpeg's minterpolate gave {out.size} bytes for {len(times)} frames of {w}x{h}")
    return list(out.reshape(-1, h, w, 3)), times


def minterpolate(img0: Frame, img1: Frame) -> Frame:
    """ffmpeg ``minterpolate`` (motion-compensated, bidirectional) at 2x: the output frame at t = 0.5.

    The filter emits a frame only once it holds the input after it, so a pair alone gives no output at all;
    the second input is sent twice (times 0, 1, 2 s) and the frame the filter stamps 0.5 s is taken, found by
    its time (``showinfo``), not by its position. The filter refuses frames under 32 pixels wide or high: such
    frames are padded (edge pixels repeated) and cropped back.
    """
    h, w = img0.shape[:2]
    pad = ((0, max(0, MINTERPOLATE_MIN - h)), (0, max(0, MINTERPOLATE_MIN - w)), (0, 0))
    frames, times = minterpolate_frames([np.pad(img, pad, mode="edge") for img in (img0, img1, img1)])
    middle = [f for f, t in zip(frames, times, strict=True) if abs(t - 0.5) < 1e-6]
    if len(middle) != 1:
        raise VideoError(f"ffmpeg's minterpolate gave frames at {times} s; expected exactly one at 0.5 s")
    return np.array(middle[0][:h, :w])  # a writable copy, unlike the frombuffer view


BASELINES: dict[str, Callable[[Frame, Frame], Frame]] = {
    "repeat": repeat, "blend": blend, "dis": dis, "minterpolate": minterpolate,
}  # fmt: skip
