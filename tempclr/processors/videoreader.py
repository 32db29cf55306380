"""Streamed video decoding for S3D features, with PyAV (libav in-process; no ffmpeg command line).

:class:`VideoClipReader` turns a video file into 30-frame clips with the frames the original extractor (MMPT's
``video_feature_extractor``, which ran ``ffmpeg -i VIDEO -filter_complex fps=30,scale=W:H,crop=224:224:X:Y -f
rawvideo -pix_fmt rgb24 -``) gives, as Debian 12's ffmpeg 5.1 command line computes them:

1. decode the first video stream frame by frame (memory holds one chunk of clips, never the whole video);
2. the file's timeline: timestamps count from the file's start (``container.start_time``, the earliest stream's
   first timestamp), as the ffmpeg command line shifts them, so a video stream that starts 0.5 s into the file
   begins at 0.5 s; the first frame is held from the file start until then (the command line's constant frame
   rate output duplicates it), so row ``s`` covers seconds ``[s, s + 1)`` of the file, the time caption timestamps
   refer to;
3. resample to ``fps`` (30) as ffmpeg's ``fps`` filter does: each input frame gets the tick
   ``round(t * fps)`` (``t``: its timestamp in seconds, exact; halves away from zero: ``AV_ROUND_NEAR_INF``);
   output tick ``k`` shows the last frame, in decoding order, whose tick is ``<= k``, so a frame is shown from the
   tick nearest to its timestamp on, and of several frames with one tick only the last is shown.  The stream ends
   at its last frame's timestamp plus that frame's duration (the decoder's frame rate when the file gives none),
   rounded the same way: ticks up to that one, excluded, are output.  Frames never shown are not converted, a
   frame shown at several ticks is converted once;
4. rotation metadata (a display matrix of 90, 180 or 270 degrees, phone videos) is applied first: the displayed
   picture is what is scaled and cropped (the original scaled the rotated picture to the unrotated frame's size);
5. scale so that the short side is ``size`` (224), the long side ``floor(long * size / short)``, bicubic, to RGB
   in one libswscale pass, as ffmpeg's ``scale`` filter (5.0 and later) does: the colour matrix and range of the
   stream, chroma siting ignored (chroma samples taken as centred).  ``colour="exact"`` converts as PyAV's
   ``reformat`` does instead, honouring the stream's chroma siting (different pixels from the original's on
   H.264, whose chroma is usually left-sited); then crop ``size x size`` from the centre (offset
   ``(long' - size) // 2``);
6. group into clips of ``clip_len`` (30) frames = one second; the last clip is padded with black (zero) frames.

Pixels stay uint8 ``[0, 255]``; :func:`tempclr.processors.models.s3dg.s3d_embed` makes the S3D input
``[N, 3, 30, size, size]`` in [0, 1] from them (divided by 255, no mean/std), as the original extractor did.
"""
from __future__ import annotations

import io
import math
import os
from fractions import Fraction
from typing import Iterator, Optional

import numpy as np

__all__ = ["VideoDecodeError", "VideoClipReader", "scaled_size", "read_clips", "COLOUR_MODES"]

COLOUR_MODES = ("ffmpeg", "exact")
_MICROSECOND = Fraction(1, 1_000_000)       # AV_TIME_BASE_Q, the unit of the file's start time


class VideoDecodeError(Exception):
    """A video that cannot give any frames: unreadable or corrupt file, no video stream, zero frames."""


def scaled_size(height: int, width: int, size: int) -> tuple[int, int]:
    """``(height', width')`` with the short side ``size`` and the long side ``floor(long * size / short)``."""
    if height <= 0 or width <= 0:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    if height >= width:
        return int(height * size // width), size
    return size, int(width * size // height)


def _round_near(value: Fraction) -> int:
    """``value`` rounded to the nearest integer, halves away from zero (libavutil's ``AV_ROUND_NEAR_INF``)."""
    num, den = value.numerator, value.denominator
    if num >= 0:
        return (2 * num + den) // (2 * den)
    return -((-2 * num + den) // (2 * den))


def _quarter_turns(rotation) -> int:
    """Counter-clockwise quarter turns (0-3) of a display rotation in degrees (PyAV's ``frame.rotation``, counter-
    clockwise); angles that are not a multiple of 90 degrees (within 1 degree) count as 0."""
    try:
        angle = float(rotation or 0)
    except (TypeError, ValueError):
        return 0
    turns = round(angle / 90)
    return turns % 4 if abs(angle - 90 * turns) < 1 else 0


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
        colour: ``"ffmpeg"`` (the original extractor's conversion: ffmpeg's scale filter, chroma siting ignored)
            or ``"exact"`` (PyAV's conversion, honouring the stream's chroma siting).
        data: the file's bytes (a member of a tar shard); ``path`` then only names the video in messages.

    Raises :class:`VideoDecodeError` (from the iteration) for a file that cannot be opened or decoded, has no video
    stream, or holds no frame.
    """

    def __init__(self, path: str, fps: int = 30, size: int = 224, clip_len: int = 30, clips_per_chunk: int = 32,
                 threads: int = 0, colour: str = "ffmpeg", data: Optional[bytes] = None) -> None:
        if size < 2 or size % 2:
            raise ValueError(f"size must be an even number >= 2 (S3D halves it), got {size}")
        if fps < 1 or clip_len < 1 or clips_per_chunk < 1:
            raise ValueError(f"fps, clip_len and clips_per_chunk must be >= 1, got {fps}, {clip_len}, "
                             f"{clips_per_chunk}")
        if colour not in COLOUR_MODES:
            raise ValueError(f"colour must be one of {', '.join(COLOUR_MODES)}, got {colour!r}")
        self.path = path
        self.fps = fps
        self.size = size
        self.clip_len = clip_len
        self.clips_per_chunk = clips_per_chunk
        self.threads = threads
        self.colour = colour
        self.data = data
        self.n_frames = 0
        self.source_size: Optional[tuple[int, int]] = None   # (width, height) of the decoded frames
        self._scaler: Optional[_Scaler] = None

    @property
    def n_clips(self) -> int:
        return math.ceil(self.n_frames / self.clip_len)

    @property
    def seconds(self) -> float:
        return self.n_frames / self.fps

    def _convert(self, frame) -> np.ndarray:
        turns = _quarter_turns(getattr(frame, "rotation", 0))
        shown_h, shown_w = (frame.width, frame.height) if turns % 2 else (frame.height, frame.width)
        height, width = scaled_size(shown_h, shown_w, self.size)
        top, left = (height - self.size) // 2, (width - self.size) // 2
        if self.colour == "exact":
            # scale in the stored orientation to the turned target size, then turn (exact for quarter turns)
            stored = (width, height) if turns % 2 else (height, width)
            rgb = frame.reformat(width=stored[1], height=stored[0], format="rgb24",
                                 interpolation="BICUBIC").to_ndarray()
            rgb = np.rot90(rgb, turns) if turns else rgb
        else:
            key = (frame.width, frame.height, frame.format.name, turns)
            if self._scaler is None or self._scaler.key != key:
                self._scaler = _Scaler(key, frame, width, height)
            rgb = self._scaler(frame)
        return rgb[top:top + self.size, left:left + self.size]

    def frames(self) -> Iterator[np.ndarray]:
        """The resampled, scaled and cropped frames ``uint8 [size, size, 3]``, one per ``1 / fps`` second of the
        file's timeline (see the module's documentation for the rule)."""
        import av

        self.n_frames = 0
        if self.data is None and not os.path.isfile(self.path):
            raise VideoDecodeError(f"{self.path}: no such file")
        try:
            container = av.open(io.BytesIO(self.data) if self.data is not None else self.path)
        except (av.error.FFmpegError, OSError, EOFError, UnicodeDecodeError) as error:
            raise VideoDecodeError(f"{self.path}: cannot open ({type(error).__name__}: {error})") from error
        with container:
            if not container.streams.video:
                kinds = ", ".join(sorted({s.type for s in container.streams})) or "none"
                raise VideoDecodeError(f"{self.path}: no video stream (streams: {kinds})")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            stream.codec_context.thread_count = self.threads
            time_base = Fraction(stream.time_base or Fraction(1, 1))
            # the command line subtracts the file's start time (microseconds, rounded into the stream's units)
            start = container.start_time
            offset = _round_near(start * _MICROSECOND / time_base) if start is not None else 0
            rate = stream.codec_context.framerate or stream.average_rate or stream.guessed_rate
            # the time of one frame when neither the frame nor the file says, in microseconds (as ffmpeg computes)
            fallback_us = (1_000_000 * Fraction(rate).denominator) // Fraction(rate).numerator if rate else 0
            ticks_per_unit = time_base * self.fps
            shown: Optional[_Shown] = None          # the frame on screen from tick ``next_tick`` on
            next_tick = 0
            last_pts = None
            last_duration_us = 0
            try:
                for frame in container.decode(stream):
                    if frame.pts is not None:
                        pts = frame.pts - offset
                    elif last_pts is not None:       # no timestamp: the previous one plus a frame's time
                        pts = last_pts + _round_near(last_duration_us * _MICROSECOND / time_base)
                    else:
                        continue                     # the fps filter drops leading frames without timestamps
                    tick = _round_near(pts * ticks_per_unit)
                    duration = frame.duration or 0
                    last_pts = pts
                    last_duration_us = (_round_near(duration * time_base / _MICROSECOND) if duration > 0
                                        else fallback_us)
                    if self.source_size is None:
                        self.source_size = (frame.width, frame.height)
                    if shown is None:
                        shown, next_tick = _Shown(frame), tick
                        continue
                    while next_tick < tick:
                        yield from self._show(shown, next_tick)
                        next_tick += 1
                    shown = _Shown(frame)          # replaces the held frame (shown or not)
            except av.error.FFmpegError as error:
                raise VideoDecodeError(f"{self.path}: decoding failed after {self.n_frames} frames "
                                       f"({type(error).__name__}: {error})") from error
            if shown is None:
                raise VideoDecodeError(f"{self.path}: zero frames decoded from its video stream")
            # end of stream: the last frame's end, through microseconds and back as the command line rounds it
            end_us = _round_near(last_pts * time_base / _MICROSECOND) + last_duration_us
            end_tick = _round_near(_round_near(end_us * _MICROSECOND / time_base) * ticks_per_unit)
            while next_tick < end_tick:
                yield from self._show(shown, next_tick)
                next_tick += 1

    def _show(self, shown: "_Shown", tick: int) -> Iterator[np.ndarray]:
        """The frame at output tick ``tick``; the first one shown is held from the file's start (tick 0) on, as the
        command line's constant frame rate output does.  Ticks before the file's start are not shown."""
        if tick < self.n_frames:
            return
        if shown.image is None:
            shown.image = self._convert(shown.frame)
            shown.frame = None      # the decoded picture is not needed any more
        while self.n_frames <= tick:
            self.n_frames += 1
            yield shown.image

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
    """The input frame on screen: the decoded frame until it is converted, then the converted picture."""

    __slots__ = ("frame", "image")

    def __init__(self, frame) -> None:
        self.frame = frame
        self.image: Optional[np.ndarray] = None


class _Scaler:
    """A libavfilter graph ``buffer -> [transpose / hflip,vflip] -> scale (bicubic, chroma siting ignored) -> rgb24``
    for frames of one size, pixel format and rotation (``key``): the original's ``scale`` filter, in process."""

    _TURNS = {1: (("transpose", "cclock"),), 2: (("hflip", ""), ("vflip", "")), 3: (("transpose", "clock"),)}

    def __init__(self, key, frame, width: int, height: int) -> None:
        import av.filter

        self.key = key
        turns = key[3]
        graph = av.filter.Graph()
        node = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format.name,
                                time_base=Fraction(1, 1_000_000))
        for name, args in self._TURNS.get(turns, ()):
            step = graph.add(name, args) if args else graph.add(name)
            node.link_to(step)
            node = step
        for name, args in (("scale", f"w={width}:h={height}:flags=bicubic:in_chroma_loc=unknown"),
                           ("format", "rgb24"), ("buffersink", None)):
            step = graph.add(name, args) if args else graph.add(name)
            node.link_to(step)
            node = step
        graph.configure()
        self.graph = graph

    def __call__(self, frame) -> np.ndarray:
        frame.pts = None        # the graph does no timing; the reader has placed the frame already
        self.graph.push(frame)
        return self.graph.pull().to_ndarray()


def read_clips(path: str, size: int = 224, fps: int = 30, clip_len: int = 30, colour: str = "ffmpeg") -> np.ndarray:
    """The whole video as ``uint8 [n_clips, clip_len, size, size, 3]`` (short videos, tests, demos)."""
    chunks = list(VideoClipReader(path, fps=fps, size=size, clip_len=clip_len, colour=colour))
    return np.concatenate(chunks, axis=0)
