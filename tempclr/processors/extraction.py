"""S3D features for a folder of videos: one L2-normalised 512-d vector per second of video.

``tempclr-extract`` (``scripts/video_feature_extractor/extract.py``) takes MMPT's flags::

    tempclr-extract --vdir videos/ --fdir data/feat/feat_how2_s3d --type s3d \\
        [--batch_size 32] [--half_precision 1] [--l2_normalize 1] [--num_decoding_thread 4] \\
        [--s3d_checkpoint pretrained_models/s3d_howto100m.pth] [--split i/n] [--device auto|cpu|cuda[:k]] [--strict]
        [--colour ffmpeg|exact] [--dryrun]
        [--engine local|ray [--address auto|HOST:PORT] [--num-model-actors N] [--gpus-per-actor G]]

``--engine ray`` runs the same extraction as a Ray Data pipeline on one machine or a cluster
(:mod:`tempclr.processors.ray_extraction`, the optional extra ``tempclr[ray]``); the rest of this description holds
for both engines.

Videos: every file of ``--vdir`` and of its direct sub-folders (hidden files and ``--fdir`` excluded), sorted by path; a
``.tar`` file there is a WebDataset shard as video2dataset writes it (``<key>.mp4`` + ``<key>.json``), read with
``tarfile``: its video members are videos named ``<shard>::<member>`` in logs, their output is ``<key>.npy``.
``--vdir`` may also be one ``.tar`` shard or a ``.csv`` list with a ``video_path`` column.  ``--split i/n`` keeps the
i-th of n contiguous parts (i from 0), for n machines.  Each video gives ``<fdir>/<file stem or key>.npy``,
``[ceil(seconds), 512]`` float16 (float32 with ``--half_precision 0``), row ``s`` covering seconds ``[s, s + 1)`` of the
file: the video decoded with PyAV in a stream into the frames the original extractor's ffmpeg command gave (see
:mod:`tempclr.processors.videoreader`: ffmpeg's ``fps=30`` rule, the file's timeline, rotation applied, short side 224
bicubic, centre crop, 30-frame clips, the last one padded with black frames), S3D's ``video_embedding`` per clip,
L2-normalised (``--l2_normalize 0`` keeps the raw embedding).  ``--colour exact`` converts to RGB honouring the stream's
chroma siting (the original's scale filter ignores it).

Decoding runs in ``--num_decoding_thread`` threads (one video each, a bounded queue of chunks of
``--batch_size`` clips, so memory does not grow with video length); S3D runs in the main thread on one chunk at a
time: a video's clips go through S3D in batches ``[0, batch_size)``, ``[batch_size, 2 * batch_size)``, ... of that
video alone, so its features are the same bytes whatever the thread count, the other videos in the run or the engine
(``--engine ray``, :mod:`tempclr.processors.ray_extraction`).

Resuming: a video whose feature file exists is skipped and its file left as it is; every feature file is
written to a temp file and renamed, so a killed run leaves no partial ``.npy`` (a dead run's temp files, named
``.<stem>.npy.*.npy``, are removed when that video is extracted again).  Run the same command again to finish.

Failures of one video (unreadable or corrupt file, no video stream, zero frames) are printed with the file's
name, appended to the error log (``<fdir>/extract_errors.log``: ``path<TAB>reason`` per line) and do not stop the
run.  At the end a summary gives done / skipped / failed, the seconds of video and the throughput.

Exit status: 0 when the run completed (even with failed videos); 1 when nothing could run (missing
``--vdir``, no videos, two videos with one file stem, missing or mismatching checkpoint, unavailable device);
2 for bad flags; 3 with ``--strict`` when a video failed.
"""
from __future__ import annotations

import glob
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

__all__ = ["ExtractError", "plan_videos", "list_videos", "video_key", "split_tar_member", "tar_videos",
           "open_video_reader", "TAR_MEMBER_SEPARATOR", "parse_split", "ExtractSummary", "extract_features",
           "resolve_device", "DEFAULT_CHECKPOINT", "ERROR_LOG_NAME"]

DEFAULT_CHECKPOINT = os.path.join("pretrained_models", "s3d_howto100m.pth")
ERROR_LOG_NAME = "extract_errors.log"


class ExtractError(Exception):
    """Nothing can run: the message says what to fix (exit status 1)."""


def parse_split(split: Optional[str]) -> Optional[tuple[int, int]]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``; None stays None."""
    if split is None:
        return None
    parts = split.split("/")
    try:
        if len(parts) != 2:
            raise ValueError
        index, count = int(parts[0]), int(parts[1])
    except ValueError:
        raise ValueError(f"--split {split!r}: expected i/n, e.g. 0/4 for the first of 4 parts") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"--split {split!r}: need n >= 1 and 0 <= i < n (parts are numbered from 0)")
    return index, count


TAR_MEMBER_SEPARATOR = "::"
# members of a WebDataset shard that are videos (video2dataset writes <key>.mp4 next to <key>.json, <key>.txt)
VIDEO_MEMBER_SUFFIXES = (".mp4", ".webm", ".mkv", ".avi", ".mov")


def tar_videos(shard: str) -> list[str]:
    """The videos of a WebDataset tar shard (as video2dataset writes them: ``<key>.mp4`` + ``<key>.json`` ...),
    in the shard's order, named ``<shard>::<member>`` (the name :func:`open_video_reader` and the logs use)."""
    import tarfile

    try:
        with tarfile.open(shard) as archive:
            members = [m.name for m in archive.getmembers()
                       if m.isfile() and m.name.lower().endswith(VIDEO_MEMBER_SUFFIXES)]
    except (tarfile.TarError, OSError) as error:
        raise ExtractError(f"{shard}: not a readable tar shard ({type(error).__name__}: {error})") from error
    return [shard + TAR_MEMBER_SEPARATOR + name for name in members]


def split_tar_member(video: str) -> Optional[tuple[str, str]]:
    """``(shard, member)`` for a video named ``<shard>.tar::<member>``; None for a plain file path."""
    shard, sep, member = video.partition(TAR_MEMBER_SEPARATOR)
    if sep and shard.endswith(".tar") and member:
        return shard, member
    return None


def video_key(video: str) -> str:
    """The output name of a video: its file stem, or for a shard member the key (member's base name, no suffix)."""
    parts = split_tar_member(video)
    return os.path.splitext(os.path.basename(parts[1] if parts else video))[0]


def open_video_reader(video: str, **kwargs):
    """A :class:`~tempclr.processors.videoreader.VideoClipReader` for a file or a shard member (``<shard>::<member>``,
    read with ``tarfile`` into memory; a missing member or unreadable shard raises ``VideoDecodeError``)."""
    import tarfile

    from tempclr.processors.videoreader import VideoClipReader, VideoDecodeError

    parts = split_tar_member(video)
    if parts is None:
        return VideoClipReader(video, **kwargs)
    shard, member = parts
    try:
        with tarfile.open(shard) as archive:
            handle = archive.extractfile(member)
            if handle is None:
                raise KeyError(member)
            data = handle.read()
    except KeyError:
        raise VideoDecodeError(f"{video}: no member {member!r} in {shard}") from None
    except (tarfile.TarError, OSError) as error:
        raise VideoDecodeError(f"{video}: cannot read the shard ({type(error).__name__}: {error})") from error
    return VideoClipReader(video, data=data, **kwargs)


def _scan(vdir: str, fdir: str) -> list[str]:
    skip = os.path.abspath(fdir)
    found = []
    for entry in sorted(os.listdir(vdir)):
        path = os.path.join(vdir, entry)
        if entry.startswith(".") or os.path.abspath(path) == skip:
            continue
        if os.path.isdir(path):
            found.extend(os.path.join(path, name) for name in sorted(os.listdir(path))
                         if not name.startswith(".") and os.path.isfile(os.path.join(path, name)))
        elif os.path.isfile(path):
            found.append(path)
    expanded = []
    for path in found:
        expanded.extend(tar_videos(path) if path.endswith(".tar") else [path])
    return expanded


def _read_csv(path: str) -> list[str]:
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "video_path" not in reader.fieldnames:
            raise ExtractError(f"--vdir {path}: a csv list needs a header with a video_path column "
                               f"(got {reader.fieldnames}); one video file per row")
        videos = []
        for row, record in enumerate(reader, start=2):
            video = (record["video_path"] or "").strip()
            if not video:
                raise ExtractError(f"--vdir {path}, row {row}: empty video_path; remove the row or fill it")
            videos.append(video)
    return videos


def list_videos(vdir: str, fdir: str) -> list[str]:
    """The videos of ``vdir``: a folder (its files and its direct sub-folders' files, sorted; each ``.tar`` file in
    it is a WebDataset shard whose video members are videos), one ``.tar`` shard, or a ``.csv`` list with a
    ``video_path`` column (paths as written, relative ones to the working folder)."""
    if os.path.isfile(vdir) and vdir.endswith(".csv"):
        videos = _read_csv(vdir)
    elif os.path.isfile(vdir) and vdir.endswith(".tar"):
        videos = tar_videos(vdir)
    elif os.path.isdir(vdir):
        videos = _scan(vdir, fdir)
    else:
        raise ExtractError(f"--vdir {vdir}: not a folder, a .tar shard or a .csv list")
    if not videos:
        raise ExtractError(f"--vdir {vdir}: no video files in it or in its direct sub-folders")
    return videos


def plan_videos(vdir: str, fdir: str, split: Optional[str] = None) -> list[tuple[str, str]]:
    """``[(video, feature_path)]`` for the videos of ``vdir`` (see :func:`list_videos`), the ``split`` part of them;
    ``feature_path = <fdir>/<key>.npy`` (key: :func:`video_key`, checked to name a file in ``fdir``).  Two videos
    with one key are an error."""
    from tempclr.utils.fileio import check_name

    videos = list_videos(vdir, fdir)
    by_stem: dict[str, str] = {}
    for row, path in enumerate(videos):
        try:
            stem = check_name(video_key(path), path, None, what="video key")
        except ValueError as error:
            raise ExtractError(str(error)) from None
        if stem in by_stem:
            raise ExtractError(f"{by_stem[stem]} and {path} would both write {os.path.join(fdir, stem + '.npy')}; "
                               "rename one of them")
        by_stem[stem] = path
    parts = parse_split(split)
    if parts is not None:
        index, count = parts
        videos = videos[len(videos) * index // count:len(videos) * (index + 1) // count]
    return [(path, os.path.join(fdir, video_key(path) + ".npy")) for path in videos]


@dataclass
class ExtractSummary:
    """What a run did: video paths done, skipped (feature file already there) and failed (with the reason)."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    video_seconds: float = 0.0
    wall_seconds: float = 0.0

    def fail(self, video: str, reason: str, bar, log: "Optional[_ErrorLog]") -> None:
        """Record ``video`` as failed: the reason without a leading ``"<video>: "``, one line above the progress
        ``bar`` (which advances), and a line in the error ``log`` when there is one."""
        if reason.startswith(video + ": "):
            reason = reason[len(video) + 2:]
        self.failed[video] = reason
        bar.write(f"failed: {video}: {reason}", file=sys.stderr)
        if log is not None:
            log.add(video, reason)
        bar.update(1)

    def line(self) -> str:
        rate = self.video_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0
        return (f"done {len(self.done)}, skipped {len(self.skipped)} (features exist), failed {len(self.failed)}; "
                f"{self.video_seconds:.1f} s of video in {self.wall_seconds:.1f} s ({rate:.2f} video-s/s)")


def resolve_device(name: str) -> "torch.device":  # noqa: F821
    """``auto`` -> CUDA when available, else CPU; an explicit CUDA device must exist."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ExtractError(f"--device {name!r}: {error}") from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ExtractError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ExtractError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
    return device


def _remove_stale_temp_files(feature_path: str) -> None:
    folder, name = os.path.split(os.path.abspath(feature_path))
    for stale in glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(name)}.*.npy")):
        os.unlink(stale)


class _ErrorLog:
    """``path<TAB>reason`` lines; each new line rewrites the file through a temp file (failures are rare)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def add(self, video: str, reason: str) -> None:
        from tempclr.utils.fileio import write_text_atomic

        old = ""
        if os.path.isfile(self.path):
            with open(self.path, encoding="utf-8") as f:
                old = f.read()
        reason = " ".join(reason.split())
        write_text_atomic(self.path, old + f"{time.strftime('%Y-%m-%dT%H:%M:%S')}\t{video}\t{reason}\n")


_EXIT = object()


def _decode_worker(jobs: "queue.Queue", out: "queue.Queue", stop: threading.Event, size: int,
                   clips_per_chunk: int, colour: str = "ffmpeg") -> None:
    """Take video indices from ``jobs``; put ``("chunk", i, clips)``, then ``("done", i, seconds)`` or
    ``("failed", i, reason)`` on ``out``; ``_EXIT`` when there are no more jobs."""
    from tempclr.processors.videoreader import VideoDecodeError

    def put(item) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    while not stop.is_set():
        try:
            index, path = jobs.get_nowait()
        except queue.Empty:
            break
        try:
            reader = open_video_reader(path, size=size, clips_per_chunk=clips_per_chunk, threads=0, colour=colour)
            for chunk in reader:
                if not put(("chunk", index, chunk)):
                    return
            result = ("done", index, reader.seconds)
        except VideoDecodeError as error:
            result = ("failed", index, str(error))
        except Exception as error:  # an unexpected libav / numpy error on one file must not stop the run
            result = ("failed", index, f"{path}: {type(error).__name__}: {error}")
        if not put(result):
            return
    put(_EXIT)


def extract_features(videos: Sequence[tuple[str, str]], model, batch_size: int = 32, l2_normalize: bool = True,
                     half_precision: bool = True, num_decoding_thread: int = 4, size: int = 224,
                     error_log: Optional[str] = None, progress: Optional[bool] = None,
                     colour: str = "ffmpeg") -> ExtractSummary:
    """Extract ``videos`` (``[(video_path, feature_path)]``) with the S3D ``model`` (on its device, eval mode).

    Feature files that exist are skipped; the others are written atomically as ``[n_clips, 512]`` float16
    (float32 without ``half_precision``).  Per-video failures go to the summary, stderr and ``error_log``.
    ``progress``: tqdm bar on stderr (None: only on a terminal).  ``size`` other than 224 is for tests and
    benchmarks only (the released S3D saw 224 x 224 crops).  ``colour``: ``"ffmpeg"`` (the original's conversion)
    or ``"exact"`` (chroma siting honoured), see :class:`tempclr.processors.videoreader.VideoClipReader`."""
    from tqdm import tqdm

    from tempclr.processors.models.s3dg import s3d_embed
    from tempclr.utils.fileio import save_npy_atomic

    from tempclr.processors.videoreader import COLOUR_MODES

    if batch_size < 1 or num_decoding_thread < 1:
        raise ValueError(f"batch_size and num_decoding_thread must be >= 1, got {batch_size}, {num_decoding_thread}")
    if colour not in COLOUR_MODES:
        raise ValueError(f"colour must be one of {', '.join(COLOUR_MODES)}, got {colour!r}")
    summary = ExtractSummary()
    log = _ErrorLog(error_log) if error_log else None
    todo = []
    for video, feature in videos:
        if os.path.isfile(feature):
            summary.skipped.append(video)
        else:
            todo.append((video, feature))
    start = time.perf_counter()
    if not todo:
        summary.wall_seconds = time.perf_counter() - start
        return summary
    for _, feature in todo:
        _remove_stale_temp_files(feature)
    jobs: queue.Queue = queue.Queue()
    for index, (video, _) in enumerate(todo):
        jobs.put((index, video))
    out: queue.Queue = queue.Queue(maxsize=2 * num_decoding_thread)
    stop = threading.Event()
    workers = [threading.Thread(target=_decode_worker, args=(jobs, out, stop, size, batch_size, colour),
                                daemon=True, name=f"decode-{k}") for k in range(min(num_decoding_thread, len(todo)))]
    for worker in workers:
        worker.start()
    parts: dict[int, list[np.ndarray]] = {}
    out_dtype = np.float16 if half_precision else np.float32
    bar = tqdm(total=len(todo), unit="video", disable=None if progress is None else not progress,
               dynamic_ncols=True, file=sys.stderr)

    def fail(index: int, reason: str) -> None:
        parts.pop(index, None)
        summary.fail(todo[index][0], reason, bar, log)

    def finish(index: int, seconds: float) -> None:
        video, feature = todo[index]
        features = np.concatenate(parts.pop(index), axis=0).astype(out_dtype)
        save_npy_atomic(feature, features)
        summary.done.append(video)
        summary.video_seconds += seconds
        elapsed = time.perf_counter() - start
        bar.set_postfix_str(f"{summary.video_seconds:.0f} video-s, {summary.video_seconds / elapsed:.2f} video-s/s",
                            refresh=False)
        bar.update(1)

    running = len(workers)
    try:
        while running:
            item = out.get()
            if item is _EXIT:
                running -= 1
            elif item[0] == "chunk":
                # one forward per chunk of one video: the chunks of a video are the same (clips [0, batch_size),
                # [batch_size, 2 * batch_size), ...) whatever else is decoded at the same time, so its features do
                # not depend on the thread count, the other videos or the engine (S3D's floats depend on the batch)
                parts.setdefault(item[1], []).append(
                    s3d_embed(model, item[2], l2_normalize=l2_normalize).cpu().numpy())
            elif item[0] == "done":
                finish(item[1], item[2])
            elif item[0] == "failed":
                fail(item[1], item[2])
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=5)
        bar.close()
    summary.wall_seconds = time.perf_counter() - start
    return summary
