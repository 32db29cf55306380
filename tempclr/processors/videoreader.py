"""Streamed video decoding for S3D features, with PyAV (libav in-process; no ffmpeg command line).

:class:`VideoClipReader` turns a video file into 30-frame clips the way S3D features are made:

1. decode the first video stream frame by frame (memory holds one chunk of clips, never the whole video);
2. resample to ``fps`` (30): output frame ``k`` shows the input frame on screen at time ``k / fps``, i.e. the last
   input frame whose timestamp (relative to the first frame's) is ``<= k / fps``.  Input frames that are never on
   screen at an output time (above 30 fps) are not converted at all; frames shown at several output times (below
   30 fps) are converted once.  The video lasts until the last frame's end (its timestamp plus its duration),
   so it gives ``ceil(duration * fps)`` output frames.  Timestamps are exact rationals (``pts * time_base``), so
   a 25 fps, 45 s video gives exactly 1,350 frames.  A frame whose timestamp does not increase is dropped;
3. scale so that the short side is ``size`` (224), the long side ``floor(long * size / short)``, bicubic (the
   default of ffmpeg's scale filter), RGB, then crop ``size x size`` from the centre (offset
   ``(long' - size) // 2``);
4. group into clips of ``clip_len`` (30) frames = one second; the last clip is padded with black (zero) frames.

Pixels stay uint8 ``[0, 255]``; :func:`tempclr.processors.models.s3dg.s3d_embed` makes the S3D input
``[N, 3, 30, size, size]`` in [0, 1] from them (divided by 255, no mean/std), as the original extractor did.
"""
from __future__ import annotations

import math
import os
from fractions import Fraction
from typing import Iterator, Optional

import numpy as np

__all__ = ["VideoDecodeError", "VideoClipReader", "scaled_size", "read_clips"]


class VideoDecodeError(Exception):
    """A video that cannot give any frames: unreadable or corrupt file, no video stream, zero frames."""


def scaled_size(height: int, width: int, size: int) -> tuple[int, int]:
    """``(height', width')`` with the short side ``size`` and the long side ``floor(long * size / short)``."""
    if height <= 0 or width <= 0:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    if height >= width:
        return int(height * size // width), size
    return size, int(width * size // height)


class VideoClipReader:
    """Iterate over a video as chunks of clips ``uint8 [n, clip_len, size, size, 3]`` (RGB), ``n <=
    clips_per_chunk``; after the iteration ``n_frames`` (resampled frames, before padding), ``n_clips`` and
    ``seconds`` (``n_frames / fps``) describe what was read.

    Args:
        path: the video file.
        fps: output frame rate (30).
        size: output side (224).
        clip_len: frames per clip (30: one clip per second at 30 fps).
        clips_per_chunk: clips per yielded chunk; bounds the memory (about ``clips_per_chunk * clip_len * size^2 *
            3`` bytes).
        threads: decoder threads for this video (0: libav's automatic choice).

    Raises :class:`VideoDecodeError` (from the iteration) for a file that cannot be opened or decoded, has no video
    stream, or holds no frame.
    """

    def __init__(self, path: str, fps: int = 30, size: int = 224, clip_len: int = 30, clips_per_chunk: int = 32,
                 threads: int = 0) -> None:
        if size < 2 or size % 2:
            raise ValueError(f"size must be an even number >= 2 (S3D halves it), got {size}")
        if fps < 1 or clip_len < 1 or clips_per_chunk < 1:
            raise ValueError(f"fps, clip_len and clips_per_chunk must be >= 1, got {fps}, {clip_len}, "
                             f"{clips_per_chunk}")
        self.path = path
        self.fps = fps
        self.size = size
        self.clip_len = clip_len
        self.clips_per_chunk = clips_per_chunk
        self.threads = threads
        self.n_frames = 0
        self.source_size: Optional[tuple[int, int]] = None   # (width, height) of the decoded frames

    @property
    def n_clips(self) -> int:
        return math.ceil(self.n_frames / self.clip_len)

    @property
    def seconds(self) -> float:
        return self.n_frames / self.fps

    def _convert(self, frame) -> np.ndarray:
        height, width = scaled_size(frame.height, frame.width, self.size)
        rgb = frame.reformat(width=width, height=height, format="rgb24", interpolation="BICUBIC").to_ndarray()
        top, left = (height - self.size) // 2, (width - self.size) // 2
        return rgb[top:top + self.size, left:left + self.size]

    def frames(self) -> Iterator[np.ndarray]:
        """The resampled, scaled and cropped frames ``uint8 [size, size, 3]``, one per ``1 / fps`` second."""
        import av

        self.n_frames = 0
        if not os.path.isfile(self.path):
            raise VideoDecodeError(f"{self.path}: no such file")
        try:
            container = av.open(self.path)
        except (av.error.FFmpegError, OSError, EOFError, UnicodeDecodeError) as error:
            raise VideoDecodeError(f"{self.path}: cannot open ({type(error).__name__}: {error})") from error
        with container:
            if not container.streams.video:
                kinds = ", ".join(sorted({s.type for s in container.streams})) or "none"
                raise VideoDecodeError(f"{self.path}: no video stream (streams: {kinds})")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            stream.codec_context.thread_count = self.threads
            time_base = stream.time_base or Fraction(1, 1)
            step = Fraction(1, self.fps)
            rate = stream.average_rate or stream.guessed_rate
            shown: Optional[_Shown] = None          # the input frame on screen
            first_pts = None
            try:
                for frame in container.decode(stream):
                    if frame.pts is None:
                        if shown is None:
                            raise VideoDecodeError(f"{self.path}: the first frame has no timestamp")
                        time = shown.time + (Fraction(1) / Fraction(rate) if rate else step)
                    else:
                        if first_pts is None:
                            first_pts = frame.pts
                        time = (frame.pts - first_pts) * time_base
                    if shown is not None and time <= shown.time:
                        continue
                    if shown is not None:
                        while self.n_frames * step < time:
                            yield self._shown_image(shown)
                    shown = _Shown(time, frame)
                    if self.source_size is None:
                        self.source_size = (frame.width, frame.height)
            except av.error.FFmpegError as error:
                raise VideoDecodeError(f"{self.path}: decoding failed after {self.n_frames} frames "
                                       f"({type(error).__name__}: {error})") from error
            if shown is None:
                raise VideoDecodeError(f"{self.path}: zero frames decoded from its video stream")
            if shown.duration:
                length = shown.duration * time_base
            elif rate:
                length = Fraction(1) / Fraction(rate)
            else:
                length = step
            end = shown.time + length
            while self.n_frames * step < end:
                yield self._shown_image(shown)

    def _shown_image(self, shown: "_Shown") -> np.ndarray:
        if shown.image is None:
            shown.image = self._convert(shown.frame)
            shown.frame = None      # the decoded picture is not needed any more
        self.n_frames += 1
        return shown.image

    def __iter__(self) -> Iterator[np.ndarray]:
        chunk_frames = self.clips_per_chunk * self.clip_len
        buffer = np.zeros((chunk_frames, self.size, self.size, 3), dtype=np.uint8)
        filled = 0
        for image in self.frames():
            buffer[filled] = image
            filled += 1
            if filled == chunk_frames:
                yield buffer.reshape(self.clips_per_chunk, self.clip_len, self.size, self.size, 3).copy()
                filled = 0
        if filled:
            n_clips = math.ceil(filled / self.clip_len)
            buffer[filled:n_clips * self.clip_len] = 0
            yield buffer[:n_clips * self.clip_len].reshape(n_clips, self.clip_len, self.size, self.size, 3).copy()


class _Shown:
    """The input frame on screen: its time (seconds, exact), the decoded frame until it is converted, the
    converted picture, and its duration in time-base units (0 when unknown)."""

    __slots__ = ("time", "frame", "image", "duration")

    def __init__(self, time: Fraction, frame) -> None:
        self.time = time
        self.frame = frame
        self.image: Optional[np.ndarray] = None
        self.duration = frame.duration or 0


def read_clips(path: str, size: int = 224, fps: int = 30, clip_len: int = 30) -> np.ndarray:
    """The whole video as ``uint8 [n_clips, clip_len, size, size, 3]`` (short videos, tests, demos)."""
    chunks = list(VideoClipReader(path, fps=fps, size=size, clip_len=clip_len))
    return np.concatenate(chunks, axis=0)
