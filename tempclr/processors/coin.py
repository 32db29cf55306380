"""COIN action segmentation: ``COIN.json`` read into one item per video, cut into sliding windows with per-second
step labels.

* :class:`COINActionSegmentationMetaProcessor`: the videos of one subset of ``COIN.json`` (``train`` is its
  ``training`` subset, ``valid`` and ``test`` both its ``testing`` subset, as in the original), item
  ``(video_id, {"start": [...], "end": [...], "label": [...]})``; :meth:`meta_text_labels` gives the step names as
  text inputs for the zero-shot predictor.
* :class:`COINActionSegmentationTextProcessor`: passes the segment dict through.
* :class:`COINActionSegmentationAligner`: windows of :func:`~tempclr.processors.windows.sliding_windows` with
  per-second targets (``-100`` padding, ``0`` background, the step id inside a segment).
* :class:`MetaTextBinarizer`: one step name -> ``caps`` / ``cmasks``.

``COIN.json`` (github.com/coin-dataset/annotations): ``{"database": {youtube_id: {"subset": "training" |
"testing", "annotation": [{"id": "<step id, 1-based>", "segment": [start_s, end_s], "label": "<step name>"},
...], ...}}}``.  Config keys (``dataset.*``): ``train_path`` / ``val_path`` / ``test_path`` (``COIN.json``),
``vfeat_dir`` (one S3D ``<youtube_id>.npy`` per video), ``sliding_window``, ``sliding_window_size`` (both
required: the configs use 8/32 to train and 16/32 to test), ``max_video_len`` (32), ``max_len`` (96),
``bert_name``.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from tempclr.utils.config_schema import cfg_get, dataset_setting
from tempclr.utils.fileio import check_name
from tempclr.utils.registry import register

from .processor import Aligner, MetaProcessor, TextProcessor, require_file
from .windows import sliding_windows

__all__ = ["COINActionSegmentationMetaProcessor", "COINActionSegmentationTextProcessor",
           "COINActionSegmentationAligner", "MetaTextBinarizer", "read_coin_database", "COINVideo",
           "coin_window_config", "IGNORE_INDEX"]

COIN_HOW = ("COIN.json is the COIN annotation file (github.com/coin-dataset/annotations) and vfeat_dir holds one "
            "S3D <youtube_id>.npy per video; for the demo run `python scripts/make_demo_benchmarks.py` and use "
            "configs/demo/test_coin_zs.yaml")
IGNORE_INDEX = -100  # target of padded window positions (torch's CrossEntropyLoss ignore_index)
SHOWN = 5

# (video_id, {"start": [float], "end": [float], "label": [int]})
COINVideo = Tuple[str, Dict[str, List[Any]]]


def coin_window_config(config: Any) -> Tuple[int, int]:
    """``(dataset.sliding_window, dataset.sliding_window_size)`` of the ``dataset:`` section ``config``; both are
    required (the original read them without a default) and a window may not exceed ``max_video_len``."""
    values = []
    for key in ("sliding_window", "sliding_window_size"):
        value = cfg_get(config, key)
        if value is None:
            raise ValueError(f"COIN needs 'dataset.{key}' in the config (the original configs use sliding_window 8 "
                             "to train, 16 to test, and sliding_window_size 32)")
        if int(value) < 1:
            raise ValueError(f"dataset.{key} = {value} must be >= 1")
        values.append(int(value))
    max_video_len = int(dataset_setting(config, "max_video_len"))
    if values[1] > max_video_len:
        raise ValueError(f"dataset.sliding_window_size={values[1]} exceeds dataset.max_video_len={max_video_len}: "
                         "windows would be cut silently")
    return values[0], values[1]


def _segment(segment: Any, where: str) -> Tuple[float, float, int, str]:
    if not isinstance(segment, dict) or not {"id", "segment", "label"} <= set(segment):
        raise ValueError(f"{where}: expected {{\"id\": step id, \"segment\": [start_s, end_s], \"label\": name}}, "
                         f"got {segment!r}; fix the row")
    try:
        label = int(segment["id"])
        start, end = (float(v) for v in segment["segment"])
    except (TypeError, ValueError):
        raise ValueError(f"{where}: id {segment['id']!r} / segment {segment['segment']!r} are not an integer and "
                         "[start_s, end_s]; fix the row") from None
    if label < 1:
        raise ValueError(f"{where}: step id {label} must be >= 1 (0 is the background label); fix the row")
    if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end <= start:
        raise ValueError(f"{where}: segment [{start}, {end}] needs 0 <= start < end; fix the row")
    if not isinstance(segment["label"], str) or not segment["label"].strip():
        raise ValueError(f"{where}: label {segment['label']!r} must be a non-empty step name; fix the row")
    return start, end, label, segment["label"]


def read_coin_database(path: str) -> Tuple[Dict[str, Dict[str, Any]], Dict[int, str]]:
    """``(videos, id2label)`` of ``COIN.json``: ``videos[youtube_id] = {"subset", "start", "end", "label"}`` in
    file order, and the step names by id over every subset.

    Every row is checked first: a malformed video, segment, id or name, or one id given two names, is an error
    naming the file, the video and the segment.  The step ids must run 1..K without a gap (the zero-shot
    predictor matches label ``k`` to the ``k``-th name).
    """
    with open(path, encoding="utf-8") as f:
        try:
            content = json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error}); {COIN_HOW}") from None
    database = content.get("database") if isinstance(content, dict) else None
    if not isinstance(database, dict) or not database:
        raise ValueError(f"{path}: expected {{\"database\": {{youtube_id: {{\"subset\": ..., \"annotation\": "
                         f"[...]}}}}}} with at least one video; {COIN_HOW}")
    videos: Dict[str, Dict[str, Any]] = {}
    id2label: Dict[int, str] = {}
    for video_id, record in database.items():
        check_name(video_id, path, video_id, "video id")
        if not isinstance(record, dict) or not isinstance(record.get("subset"), str) \
                or not isinstance(record.get("annotation"), list):
            raise ValueError(f"{path}, video {video_id}: needs 'subset' (training / testing) and an 'annotation' "
                             "list; fix the row")
        starts, ends, labels = [], [], []
        for index, segment in enumerate(record["annotation"]):
            where = f"{path}, video {video_id}, annotation {index}"
            start, end, label, name = _segment(segment, where)
            known = id2label.setdefault(label, name)
            if known != name:
                raise ValueError(f"{where}: step id {label} is named {name!r} here but {known!r} elsewhere; one id, "
                                 "one name: fix the file")
            starts.append(start)
            ends.append(end)
            labels.append(label)
        videos[video_id] = {"subset": record["subset"], "start": starts, "end": ends, "label": labels}
    if not id2label:
        raise ValueError(f"{path}: no video has an annotated segment; {COIN_HOW}")
    gaps = sorted(set(range(1, max(id2label) + 1)) - set(id2label))
    if gaps:
        raise ValueError(f"{path}: step ids must run 1..{max(id2label)} without a gap; no segment names ids "
                         f"{gaps[:SHOWN]}{' ...' if len(gaps) > SHOWN else ''}: fix the file")
    return videos, id2label


def _report(ids: Sequence[str], why: str) -> None:
    shown = ", ".join(ids[:SHOWN]) + (", ..." if len(ids) > SHOWN else "")
    print(f"COIN: {len(ids)} {why} (first: {shown})", flush=True)


@register("meta_processor")
class COINActionSegmentationMetaProcessor(MetaProcessor):
    """The videos of one ``COIN.json`` subset that have features, ``[(video_id, {"start", "end", "label"}),
    ...]`` in file order.

    ``text_labels[k - 1]`` is the name of step id ``k`` (every subset, ids 1..K).  A video without
    ``<vfeat_dir>/<id>.npy`` is dropped, and so is a segment that starts at or after the end of its video's
    features; both are printed with a count (the original skipped such videos silently).  ``valid`` is the
    ``testing`` subset, as in the original: a checkpoint picked on it is picked on the test split, which is
    printed.
    """

    split_map = {"train": "training", "valid": "testing", "test": "testing"}

    def __init__(self, config: Any):
        super().__init__(config)
        if self.split not in self.split_map:
            raise ValueError(f"dataset.split must be train, valid or test, got {self.split!r}")
        path = require_file(self._get_split_path(config), {"train": "train_path", "valid": "val_path",
                                                           "test": "test_path"}[self.split], COIN_HOW)
        vfeat_dir = cfg_get(config, "vfeat_dir")
        if vfeat_dir is None:
            raise ValueError(f"COIN needs 'dataset.vfeat_dir' in the config ({COIN_HOW})")
        vfeat_dir = require_file(str(vfeat_dir), "vfeat_dir", COIN_HOW)
        videos, id2label = read_coin_database(path)
        self.text_labels: List[str] = [id2label[k] for k in range(1, max(id2label) + 1)]
        self.id2label = {0: "O", **id2label}
        subset = self.split_map[self.split]
        chosen = [video_id for video_id, record in videos.items() if record["subset"] == subset]
        available = {name[:-4] for name in os.listdir(vfeat_dir) if name.endswith(".npy")}
        missing = [video_id for video_id in chosen if video_id not in available]
        print(f"COIN: {path} holds {len(videos)} videos, {len(chosen)} in subset {subset!r} (split "
              f"{self.split!r}); {len(self.text_labels)} step labels + background", flush=True)
        if missing:
            _report(missing, f"video(s) of subset {subset!r} dropped: no feature file in {vfeat_dir}")
        self.data: List[COINVideo] = []
        dropped_segments = []
        for video_id in chosen:
            if video_id in missing:
                continue
            record = videos[video_id]
            seconds = _feature_rows(vfeat_dir, video_id)
            keep = [i for i, start in enumerate(record["start"]) if math.floor(start) < seconds]
            dropped_segments += [f"{video_id}#{i}" for i in range(len(record["start"])) if i not in keep]
            self.data.append((video_id, {key: [record[key][i] for i in keep] for key in ("start", "end", "label")}))
        if dropped_segments:
            _report(dropped_segments, "segment(s) dropped: they start at or after the end of the video's features")
        if not self.data:
            raise ValueError(f"COIN split {self.split!r}: no video of subset {subset!r} in {path} has features in "
                             f"{vfeat_dir}; {COIN_HOW}")
        if self.split == "valid":
            print("COIN: WARNING: COIN has no validation subset; the valid split is the testing subset, so a "
                  "checkpoint selected on it (checkpoint_best.pt) is selected on the test split: report it only "
                  "as an oracle upper bound", flush=True)

    def meta_text_labels(self, config: Any) -> Dict[str, Any]:
        """The step names as text inputs: ``{"caps": [K, max_len - max_video_len] int64, "cmasks": bool}`` (torch
        tensors), row ``k - 1`` for step id ``k``; ``config`` is the ``dataset:`` section."""
        import torch

        text_processor = TextProcessor(config)
        binarizer = MetaTextBinarizer(config)
        outputs = [binarizer(text_processor(label)) for label in self.text_labels]
        return {key: torch.from_numpy(np.stack([o[key] for o in outputs])) for key in ("caps", "cmasks")}

    def __getitem__(self, idx: int) -> COINVideo:
        return self.data[idx]


def _feature_rows(vfeat_dir: str, video_id: str) -> int:
    """Rows of ``<vfeat_dir>/<id>.npy`` from its header (memory-mapped, no data read)."""
    path = os.path.join(vfeat_dir, video_id + ".npy")
    shape = np.load(path, mmap_mode="r").shape
    if len(shape) != 2 or shape[0] < 1:
        raise ValueError(f"{path}: expected features [T, D] with T >= 1, got shape {shape}; re-extract them")
    return int(shape[0])


@register("text_processor")
class COINActionSegmentationTextProcessor(TextProcessor):
    """The segment dict ``{"start", "end", "label"}`` passes through unchanged (the labels are the targets)."""

    def __call__(self, text_label: Dict[str, List[Any]]) -> Dict[str, List[Any]]:
        return text_label


class MetaTextBinarizer(Aligner):
    """Token ids of one step name -> ``{"caps": [max_len - max_video_len], "cmasks"}`` (``[CLS] [SEP] name
    [SEP]``, padded)."""

    def __call__(self, text_feature: Sequence[int]) -> Dict[str, np.ndarray]:
        caps, cmasks = self._build_text_seq(list(text_feature))
        return {"caps": caps, "cmasks": cmasks}


def second_labels(video_len: int, starts: Sequence[float], ends: Sequence[float],
                  labels: Sequence[int]) -> np.ndarray:
    """int64 ``[T]``: the step id of every second (``0`` background); segment ``i`` covers seconds
    ``floor(start) .. ceil(end) - 1`` clipped to the video, later segments overwriting earlier ones."""
    targets = np.zeros(video_len, dtype=np.int64)
    for start, end, label in zip(starts, ends, labels):
        targets[max(0, math.floor(start)):min(video_len, math.ceil(end))] = label
    return targets


@register("aligner")
class COINActionSegmentationAligner(Aligner):
    """Windows and per-second targets of one COIN video.

    Output (numpy; the loader adds a leading batch dim of 1):

    * ``vfeats [W, max_video_len, D]`` float32, ``vmasks [W, max_video_len]`` bool: window ``w`` holds seconds
      ``starts[w] : starts[w] + lengths[w]`` of :func:`sliding_windows` (``dataset.sliding_window`` /
      ``sliding_window_size``), zero-padded;
    * ``targets [W, max_video_len]`` int64: the step id of each second of the window, ``0`` on background,
      ``-100`` on padding;
    * ``caps [W, 4]`` = ``[CLS] [SEP] [PAD] [SEP]`` and ``cmasks [W, 4]`` = ``[0, 1, 0, 1]`` (the video branch
      reads only the first two ids);
    * ``video_targets [T]`` int64: the step id of every second of the video; ``video_id`` (str), ``video_len``
      (int, T).
    """

    def __init__(self, config: Any):
        super().__init__(config)
        self.sliding_window, self.sliding_window_size = coin_window_config(config)

    def __call__(self, video_id: str, video_feature: np.ndarray,
                 text_feature: Dict[str, List[Any]]) -> Dict[str, Any]:
        video_len = len(video_feature)
        if video_feature.ndim != 2 or video_len < 1:
            raise ValueError(f"COIN video {video_id}: expected features [T, D] with T >= 1, got shape "
                             f"{video_feature.shape}")
        video_targets = second_labels(video_len, text_feature["start"], text_feature["end"], text_feature["label"])
        starts, lengths = sliding_windows(video_len, self.sliding_window, self.sliding_window_size)
        vfeats, vmasks = self._build_window_seqs(video_feature, starts, lengths)
        targets = np.full(vmasks.shape, IGNORE_INDEX, dtype=np.int64)
        for w, (start, length) in enumerate(zip(starts.tolist(), lengths.tolist())):
            targets[w, :length] = video_targets[start:start + length]
        windows = len(starts)
        caps = np.tile(np.asarray([[self.cls_token_id, self.sep_token_id, self.pad_token_id, self.sep_token_id]],
                                  dtype=np.int64), (windows, 1))
        cmasks = np.tile(np.asarray([[False, True, False, True]]), (windows, 1))
        return {"caps": caps, "cmasks": cmasks, "vfeats": vfeats, "vmasks": vmasks, "targets": targets,
                "video_id": video_id, "video_len": video_len, "video_targets": video_targets}
