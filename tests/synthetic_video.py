"""Tiny synthetic video files written with PyAV, shared by the extractor / MMPTModel / search tests."""
from __future__ import annotations

from fractions import Fraction
from typing import Callable, Optional

import numpy as np


def gray_frame(index: int, height: int, width: int, step: int = 5) -> np.ndarray:
    """Frame ``index`` as a uniform gray of level ``index * step mod 256`` (the decoder can read the index back)."""
    return np.full((height, width, 3), (index * step) % 256, dtype=np.uint8)


def write_video(path: str, fps, width: int, height: int, n_frames: int,
                frame: Optional[Callable[[int, int, int], np.ndarray]] = None, codec: str = "libx264",
                pix_fmt: str = "yuv444p", lossless: bool = True) -> str:
    """Write ``n_frames`` frames ``frame(i, height, width)`` (RGB uint8) at ``fps`` (int or Fraction).

    yuv444p takes odd sizes; ``lossless`` sets x264's qp 0, so gray levels come back within +-1."""
    import av

    frame = frame or gray_frame
    with av.open(path, "w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if lossless and codec == "libx264":
            stream.options = {"qp": "0", "preset": "ultrafast"}
        for i in range(n_frames):
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame(i, height, width)), format="rgb24")
            for packet in stream.encode(picture):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_audio_only(path: str, seconds: float = 0.5, rate: int = 8000) -> str:
    """A .wav holding one silent audio stream and no video stream."""
    import av

    with av.open(path, "w") as container:
        stream = container.add_stream("pcm_s16le", rate=rate)
        samples = av.AudioFrame.from_ndarray(np.zeros((1, int(seconds * rate)), np.int16), format="s16",
                                             layout="mono")
        samples.sample_rate = rate
        for packet in stream.encode(samples):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_zero_frame_mkv(path: str) -> str:
    """A Matroska file whose header declares a video stream but which holds no frame (cut at its first cluster)."""
    full = path + ".full.mkv"
    write_video(full, 25, 32, 32, 5, codec="mpeg4", pix_fmt="yuv420p", lossless=False)
    with open(full, "rb") as f:
        data = f.read()
    cluster = data.find(bytes.fromhex("1F43B675"))
    if cluster < 0:
        raise RuntimeError(f"{full}: no Matroska cluster found")
    with open(path, "wb") as f:
        f.write(data[:cluster + 4])
    import os

    os.unlink(full)
    return path
