"""Downstream-task processors: CrossTask step localisation and YouCook2 text-to-video retrieval.

CrossTask, one item per video of a task:

* :class:`CrossTaskMetaProcessor`: the split of CrossTask ``train.py`` (:func:`split_vids`); item
  ``(task, vid, steps, K)`` for both the video and the text side.  ``train`` is the train split, ``valid`` and
  ``test`` are both the test split, as in the original.
* :class:`CrossTaskVideoProcessor`: ``<vfeat_dir>/<vid>.npy``, ``[T, 512]``.
* :class:`CrossTaskTextProcessor`: the K step descriptions as K lists of token ids (no special tokens).
* :class:`CrossTaskAligner`: overlapping sliding windows over the video (:func:`sliding_windows`), per-second
  step labels ``targets [Σlen, K]`` window by window, and the annotated step order ``sequence_targets``.

Config keys (``dataset.*``): ``train_csv_path``, ``val_csv_path``, ``primary_path``, ``related_path``,
``vfeat_dir``, ``annotation_path``, ``n_train`` (30), ``sliding_window`` (16), ``sliding_window_size`` (32),
``max_video_len`` (32), ``max_len`` (96), ``bert_name``.

YouCook2 (:func:`read_youcook_records` reads ``test_path``, the HowTo100M evaluation pickle, with
``trainval_annotation``, the YouCook2 annotation json, and ``vfeat_dir``):

* clip level, one item per annotated segment: :class:`YoucookMetaProcessor` (item ``((vid, start, end),
  caption)``), :class:`YoucookVideoProcessor` (the segment's seconds ``[end - start, D]``), the plain
  :class:`~tempclr.processors.processor.TextProcessor`, :class:`DSAligner` (one clip, one caption);
* full video with background, one item per video: :class:`YoucookFullVideoBGMetaProcessor` (item ``(vid,
  [captions])``), :class:`YoucookFullVideoBGProcessor` (all ``[T, D]``), :class:`YoucookFullVideoBGTextProcessor`
  (one token list per caption), :class:`YoucookFullVideoBGAligner` (non-overlapping windows, every caption).

Config keys: ``test_path``, ``trainval_annotation``, ``vfeat_dir``, ``use_annotation_text`` (``true``: the
annotation's sentence, otherwise the pickle's stop-word-free caption), ``sliding_window`` (16),
``sliding_window_size`` (16), ``max_video_len`` (32), ``max_len`` (96), ``bert_name``.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Set, Tuple

import numpy as np

from tempclr.utils.config_schema import cfg_get, dataset_setting
from tempclr.utils.fileio import check_name
from tempclr.utils.registry import register
from tempclr.utils.safe_pickle import load_pickle

from .crosstask_release import read_assignment, read_step_sequence, read_task_info, split_vids
from .processor import SPLIT_PATH_KEYS, Aligner, MetaProcessor, TextProcessor, VideoProcessor, require_file
from .windows import CROSSTASK_WINDOW, YOUCOOK_WINDOW, check_features, sliding_windows, window_config

__all__ = ["CrossTaskMetaProcessor", "CrossTaskVideoProcessor", "CrossTaskTextProcessor", "CrossTaskAligner",
           "sliding_windows", "CrossTaskItem", "window_config", "CROSSTASK_WINDOW", "YOUCOOK_WINDOW",
           "check_features",
           "DSAligner", "YoucookMetaProcessor", "YoucookVideoProcessor", "YoucookFullVideoBGMetaProcessor",
           "YoucookFullVideoBGProcessor", "YoucookFullVideoBGTextProcessor", "YoucookFullVideoBGAligner",
           "YoucookRecord", "read_youcook_records",
           "COINActionSegmentationMetaProcessor", "COINActionSegmentationTextProcessor",
           "COINActionSegmentationAligner", "MetaTextBinarizer", "DiDeMoMetaProcessor", "DiDeMoTextProcessor",
           "DiDeMoAligner", "MSRVTTMetaProcessor", "MSRVTTTextProcessor", "MSRVTTQAMetaProcessor",
           "MSRVTTQATextProcessor", "MSRVTTQAAligner"]

# (task id, video id, step descriptions, K)
CrossTaskItem = Tuple[str, str, List[str], int]

RELEASE_HOW = ("unpack the CrossTask release there (crosstask_release.zip of github.com/DmZhukov/CrossTask), or "
               "run `python scripts/make_demo_data.py` and use the demo release under data/demo/crosstask")
FEATURES_HOW = ("extract one S3D feature file <vid>.npy per video there, or run "
                "`python scripts/make_demo_data.py` and use data/demo/crosstask/features")


def _required(config: Any, key: str) -> str:
    value = cfg_get(config, key)
    if value is None:
        raise ValueError(f"CrossTask needs 'dataset.{key}' in the config ({RELEASE_HOW})")
    return str(value)


def _required_dir(config: Any, key: str, how: str) -> str:
    path = require_file(_required(config, key), key, how)
    if not os.path.isdir(path):
        raise NotADirectoryError(f"{path} (dataset.{key}) is not a folder; {how}")
    return path


@register("meta_processor")
class CrossTaskMetaProcessor(MetaProcessor):
    """The videos of one split, ``[(task, vid, steps, K), ...]`` in task order then video order.

    The split is CrossTask's: videos of ``train_csv_path`` minus those of ``val_csv_path``
    whose feature file and annotation exist, of primary or related tasks; a primary task with more than
    ``n_train`` such videos gives ``n_train`` random ones (seed 0) to train and the rest to test, other tasks go
    to train.  A split with no video is an error (an evaluation over nothing would report nothing).
    """

    SPLIT_OF = {"train": "train", "valid": "test", "test": "test"}

    def __init__(self, config: Any):
        super().__init__(config)
        if self.split not in self.SPLIT_OF:
            raise ValueError(f"dataset.split must be train, valid or test, got {self.split!r}")
        paths = {key: require_file(_required(config, key), key, RELEASE_HOW)
                 for key in ("train_csv_path", "val_csv_path", "primary_path", "related_path")}
        vfeat_dir = _required_dir(config, "vfeat_dir", FEATURES_HOW)
        annotation_dir = _required_dir(config, "annotation_path", RELEASE_HOW)
        n_train = int(dataset_setting(config, "n_train"))
        splits = split_vids(paths["train_csv_path"], paths["val_csv_path"], paths["primary_path"],
                            paths["related_path"], vfeat_dir, annotation_dir, n_train=n_train)
        task_vids = splits[self.SPLIT_OF[self.split]]
        primary, related = read_task_info(paths["primary_path"]), read_task_info(paths["related_path"])
        self.task_steps: Dict[str, List[str]] = {**primary["steps"], **related["steps"]}
        self.n_steps: Dict[str, int] = {**primary["n_steps"], **related["n_steps"]}
        self.data = [(task, vid, self.task_steps[task], self.n_steps[task])
                     for task, vids in task_vids.items() for vid in vids]
        if not self.data:
            raise ValueError(
                f"CrossTask split {self.split!r} is empty: no video of {paths['train_csv_path']} has both "
                f"{vfeat_dir}/<vid>.npy and {annotation_dir}/<task>_<vid>.csv"
                + (f", or no primary task has more than dataset.n_train={n_train} of them (lower n_train)"
                   if self.SPLIT_OF[self.split] == "test" else ""))

    def __getitem__(self, idx: int) -> Tuple[CrossTaskItem, CrossTaskItem]:
        item = self.data[idx]
        return item, item


@register("video_processor")
class CrossTaskVideoProcessor(VideoProcessor):
    """``(task, vid, steps, K)`` → features ``[T, D]`` from ``<vfeat_dir>/<vid>.npy``."""

    def __call__(self, video_id: CrossTaskItem) -> np.ndarray:
        return check_features(super().__call__(video_id[1]), self.vfeat_dir, video_id[1])


@register("text_processor")
class CrossTaskTextProcessor(TextProcessor):
    """``(task, vid, steps, K)`` → K token-id lists, one per step description (no special tokens)."""

    def __call__(self, text_id: CrossTaskItem) -> List[List[int]]:
        return self.tokenize_each(text_id[2])


@register("aligner")
class CrossTaskAligner(Aligner):
    """Windows, labels and step texts of one CrossTask video.

    Output (numpy; the loader adds a leading batch dim of 1):

    * ``caps [K, max_len - max_video_len]`` int64, ``cmasks`` bool: one ``[CLS] [SEP] step [SEP]`` per step;
    * ``vfeats [W, max_video_len, D]`` float32, ``vmasks [W, max_video_len]`` bool: window ``w`` holds seconds
      ``starts[w] : starts[w] + lengths[w]`` of :func:`sliding_windows`, zero-padded;
    * ``targets [Σlen, K]`` float32: ``Y[floor(start):ceil(end), step] = 1`` (:func:`read_assignment`), the rows
      of each window concatenated (overlapping seconds appear once per window);
    * ``sequence_targets [n_rows]`` int64: 0-based steps of the annotation rows in file order;
    * ``video_id`` (str), ``task`` (str), ``video_len`` (int, T).
    """

    def __init__(self, config: Any):
        super().__init__(config)
        self.annotation_path = _required(config, "annotation_path")
        self.sliding_window, self.sliding_window_size = window_config(config, self.max_video_len, CROSSTASK_WINDOW)

    def annotation_file(self, task: str, vid: str) -> str:
        return os.path.join(self.annotation_path, f"{task}_{vid}.csv")

    def __call__(self, video_id: CrossTaskItem, video_feature: np.ndarray,
                 text_feature: List[List[int]]) -> Dict[str, Any]:
        task, vid, _, n_steps = video_id
        path = require_file(self.annotation_file(task, vid), "annotation_path", RELEASE_HOW)
        video_len = len(video_feature)
        labels = read_assignment(video_len, n_steps, path).astype(np.float32)
        sequence = np.asarray(read_step_sequence(path, n_steps), dtype=np.int64)
        starts, lengths = sliding_windows(video_len, self.sliding_window, self.sliding_window_size)
        vfeats, vmasks = self._build_window_seqs(video_feature, starts, lengths)
        targets = [labels[start:start + length] for start, length in zip(starts.tolist(), lengths.tolist())]
        caps, cmasks = self._build_text_seqs(text_feature)
        return {
            "caps": caps, "cmasks": cmasks, "vfeats": vfeats, "vmasks": vmasks,
            "targets": np.concatenate(targets, axis=0), "sequence_targets": sequence,
            "video_id": vid, "task": task, "video_len": video_len,
        }


# --------------------------------------------------------------------------------------------------------------
# YouCook2

YOUCOOK_HOW = ("youcook_val.pkl and youcookii_annotations_trainval.json are the HowTo100M evaluation data of "
               "YouCook2 (fairseq#5049) and features one S3D <youtube_id>.npy per video; for the demo run "
               "`make demo-data` and use configs/demo/test_youcook*.yaml")
SHOWN_NAMES = 5  # how many record ids a drop/clip message lists


@dataclass(frozen=True)
class YoucookRecord:
    """One record of the evaluation pickle, resolved against the annotation json and the features.

    ``start``/``end``: the annotated segment in whole seconds (``floor(start)``, ``ceil(end)``, end exclusive),
    ``end`` clipped to ``num_seconds``, the number of feature rows of the video.  ``caption``: the annotation's
    ``sentence`` with ``use_annotation_text``, else the pickle's ``caption``.
    """
    record_id: str
    video_id: str
    clip_index: int
    start: int
    end: int
    num_seconds: int
    caption: str


def _split_record_id(record_id: Any, pkl_path: str, index: int) -> Tuple[str, int]:
    """``"<youtube_id>_<clip_index>"`` -> ``(youtube_id, clip_index)``; YouTube ids may hold ``_``, the last one
    separates the clip index."""
    if not isinstance(record_id, str) or "_" not in record_id:
        raise ValueError(f"{pkl_path}: record {index} has id {record_id!r}; expected '<youtube_id>_<clip_index>'")
    video_id, _, clip = record_id.rpartition("_")
    if not video_id or not clip.isdigit():
        raise ValueError(f"{pkl_path}: record {index} has id {record_id!r}; expected '<youtube_id>_<clip_index>' "
                         "with a non-negative integer clip index")
    return check_name(video_id, pkl_path, index, "video id (of the record id)"), int(clip)


def youcook_record_problems(records: Sequence[Any], known_videos: Set[str]) -> List[Tuple[int, Any, str]]:
    """``[(index, record_id, sentence), ...]`` for every record of a YouCook2 evaluation pickle whose id is not
    ``<video>_<clip>`` with an integer clip index, is itself the id of a video in ``known_videos`` (the
    annotation file's and the feature folder's: it would be split into clip ``<clip>`` of another video), or
    repeats an earlier record's id (the clip would count twice)."""
    problems: List[Tuple[int, Any, str]] = []
    first: Dict[str, int] = {}
    for index, record in enumerate(records):
        record_id = record.get("id") if isinstance(record, dict) else None
        if not isinstance(record_id, str):
            problems.append((index, record_id, f"id {record_id!r} is not a string '<video>_<clip>'; fix the id"))
            continue
        video, _, clip = record_id.rpartition("_")
        if not video or not clip.isdigit():
            problems.append((index, record_id, f"id {record_id!r} is not '<video>_<clip>' with an integer clip "
                             "index; fix the id"))
        elif record_id in known_videos:
            problems.append((index, record_id, f"id {record_id!r} is the id of a video (in the annotation file or "
                             f"the feature folder), not '<video>_<clip>': it would be read as clip {clip} of video "
                             f"{video!r}; append the clip index"))
        if record_id in first:
            problems.append((index, record_id, f"id {record_id!r} appears again (first as record "
                             f"{first[record_id]}); a clip listed twice counts twice: remove the repeat"))
        else:
            first[record_id] = index
    return problems


def _use_annotation_text(config: Any) -> bool:
    """``dataset.use_annotation_text``: ``true`` uses the annotation's sentences; missing/``false`` the pickle's
    captions (the original tested ``is True``, so anything but a YAML boolean is refused here)."""
    value = cfg_get(config, "use_annotation_text")
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ValueError(f"dataset.use_annotation_text must be true or false, got {value!r}")
    return value


def _load_pickle_records(pkl_path: str) -> List[Dict[str, Any]]:
    records = load_pickle(pkl_path)
    if not isinstance(records, (list, tuple)) or not all(isinstance(r, dict) and "id" in r for r in records):
        raise ValueError(f"{pkl_path} (dataset.test_path): expected a list of dicts with an 'id' key (and "
                         f"'caption'), got {type(records).__name__}; {YOUCOOK_HOW}")
    return list(records)


def _load_annotation_database(path: str) -> Dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        annotation = json.load(f)
    if not isinstance(annotation, dict) or not isinstance(annotation.get("database"), dict):
        raise ValueError(f"{path} (dataset.trainval_annotation): expected {{\"database\": {{youtube_id: {{"
                         f"\"annotations\": [...]}}}}}}; {YOUCOOK_HOW}")
    return annotation["database"]


def _annotated_clip(database: Dict[str, Any], annotation_path: str, record_id: str, video_id: str,
                    clip_index: int) -> Dict[str, Any]:
    entry = database.get(video_id)
    if entry is None:
        raise KeyError(f"{annotation_path} (dataset.trainval_annotation) has no video {video_id!r} of record "
                       f"{record_id!r}; the pickle and the annotation file do not belong together")
    clips = entry.get("annotations") if isinstance(entry, dict) else None
    if not isinstance(clips, list) or not 0 <= clip_index < len(clips):
        count = len(clips) if isinstance(clips, list) else 0
        raise KeyError(f"{annotation_path} (dataset.trainval_annotation): video {video_id!r} has {count} "
                       f"annotations, record {record_id!r} asks for clip {clip_index}")
    clip = clips[clip_index]
    if not isinstance(clip, dict) or "segment" not in clip or "sentence" not in clip:
        raise ValueError(f"{annotation_path}: annotation {clip_index} of video {video_id!r} needs 'segment' "
                         f"[start_s, end_s] and 'sentence'")
    return clip


def _segment_seconds(segment: Any, annotation_path: str, record_id: str) -> Tuple[int, int]:
    try:
        start_s, end_s = (float(v) for v in segment)
    except (TypeError, ValueError):
        raise ValueError(f"{annotation_path}: the segment of record {record_id!r} is {segment!r}; expected "
                         "[start_s, end_s]") from None
    if not (math.isfinite(start_s) and math.isfinite(end_s)) or start_s < 0 or end_s <= start_s:
        raise ValueError(f"{annotation_path}: the segment of record {record_id!r} is {segment!r}; it needs "
                         "0 <= start < end")
    return int(math.floor(start_s)), int(math.ceil(end_s))


def _feature_lengths(vfeat_dir: str, video_ids: Sequence[str]) -> Dict[str, int]:
    """Rows of each ``<vfeat_dir>/<id>.npy`` read from the file header (memory-mapped, no data loaded)."""
    lengths = {}
    for video_id in video_ids:
        shape = np.load(os.path.join(vfeat_dir, video_id + ".npy"), mmap_mode="r").shape
        if len(shape) != 2 or shape[0] < 1:
            raise ValueError(f"{os.path.join(vfeat_dir, video_id + '.npy')}: expected features [T, D] with T >= 1, "
                             f"got shape {shape}")
        lengths[video_id] = int(shape[0])
    return lengths


def _report(what: str, ids: Sequence[str], why: str) -> None:
    shown = ", ".join(ids[:SHOWN_NAMES]) + (", ..." if len(ids) > SHOWN_NAMES else "")
    print(f"{what}: {len(ids)} record(s) {why} (first: {shown})", flush=True)


def read_youcook_records(pkl_path: str, annotation_path: str, vfeat_dir: str, use_annotation_text: bool,
                         clip_segments: bool, who: str = "YouCook2") -> List[YoucookRecord]:
    """The records of ``pkl_path`` that have features, in pickle order.

    * a record whose video has no ``<vfeat_dir>/<id>.npy`` is dropped; the count and the first record ids are
      printed (real YouCook2 features miss some videos);
    * with ``clip_segments`` (the clip-level processors), a segment that ends past the video's features is
      clipped to them and one that starts at or after their end is dropped, both printed with counts;
    * a video or clip index missing from the annotation json, a malformed id or segment is an error naming the
      file and the record; so is having no record left.
    """
    records = _load_pickle_records(pkl_path)
    database = _load_annotation_database(annotation_path)
    available = {os.path.splitext(name)[0] for name in os.listdir(vfeat_dir) if name.endswith(".npy")}
    problems = youcook_record_problems(records, available | set(database))
    if problems:
        shown = "; ".join(f"record {index}: {message}" for index, _, message in problems[:SHOWN_NAMES])
        raise ValueError(f"{pkl_path} (dataset.test_path): {len(problems)} record id fault(s): {shown}"
                         + (f"; ... ({len(problems) - SHOWN_NAMES} more, tempclr-check lists them all)"
                            if len(problems) > SHOWN_NAMES else ""))
    parsed, missing, missing_videos = [], [], set()
    for index, record in enumerate(records):
        video_id, clip_index = _split_record_id(record["id"], pkl_path, index)
        if video_id not in available:
            missing.append(record["id"])
            missing_videos.add(video_id)
            continue
        clip = _annotated_clip(database, annotation_path, record["id"], video_id, clip_index)
        if use_annotation_text:
            caption = clip["sentence"]
        elif "caption" in record:
            caption = record["caption"]
        else:
            raise KeyError(f"{pkl_path}: record {record['id']!r} has no 'caption'; set "
                           "dataset.use_annotation_text: true to use the annotation's sentences")
        if not isinstance(caption, str):
            raise ValueError(f"record {record['id']!r}: caption {caption!r} is not a string")
        parsed.append((record["id"], video_id, clip_index, _segment_seconds(clip["segment"], annotation_path,
                                                                            record["id"]), caption))
    total_videos = len({video_id for _, video_id, _, _, _ in parsed} | missing_videos)
    lengths = _feature_lengths(vfeat_dir, sorted({p[1] for p in parsed}))
    print(f"{who}: {pkl_path} holds {len(records)} records of {total_videos} videos; "
          f"{len(lengths)} videos have features in {vfeat_dir}", flush=True)
    if missing:
        _report(who, missing, f"dropped: their video has no feature file in {vfeat_dir}")
    kept, clipped, past_end = [], [], []
    for record_id, video_id, clip_index, (start, end), caption in parsed:
        num_seconds = lengths[video_id]
        if clip_segments and start >= num_seconds:
            past_end.append(record_id)
            continue
        if clip_segments and end > num_seconds:
            clipped.append(record_id)
            end = num_seconds
        kept.append(YoucookRecord(record_id, video_id, clip_index, start, end, num_seconds, caption))
    if past_end:
        _report(who, past_end, "dropped: their segment starts at or after the end of the video's features")
    if clipped:
        _report(who, clipped, "clipped: their segment ends after the video's features (cut to the last second)")
    if not kept:
        raise ValueError(f"{who}: no record of {pkl_path} is left (features in {vfeat_dir}); {YOUCOOK_HOW}")
    return kept


def _youcook_paths(meta: MetaProcessor, config: Any) -> Tuple[str, str, str]:
    pkl_path = require_file(meta._get_split_path(config), SPLIT_PATH_KEYS[meta.split], YOUCOOK_HOW)
    annotation_path = cfg_get(config, "trainval_annotation")
    if annotation_path is None:
        raise ValueError(f"YouCook2 needs 'dataset.trainval_annotation' in the config ({YOUCOOK_HOW})")
    annotation_path = require_file(str(annotation_path), "trainval_annotation", YOUCOOK_HOW)
    vfeat_dir = cfg_get(config, "vfeat_dir")
    if vfeat_dir is None:
        raise ValueError(f"YouCook2 needs 'dataset.vfeat_dir' in the config ({YOUCOOK_HOW})")
    vfeat_dir = require_file(str(vfeat_dir), "vfeat_dir", YOUCOOK_HOW)
    if not os.path.isdir(vfeat_dir):
        raise NotADirectoryError(f"{vfeat_dir} (dataset.vfeat_dir) is not a folder; {YOUCOOK_HOW}")
    return pkl_path, annotation_path, vfeat_dir


@register("aligner")
class DSAligner(Aligner):
    """The downstream aligner of one clip and one caption (YouCook2 clip-level retrieval).

    Output: ``vfeats [max_video_len, D]`` / ``vmasks`` holding the clip's first ``min(len, max_video_len)``
    seconds, ``caps [max_len - max_video_len]`` / ``cmasks`` = ``[CLS] [SEP] caption [SEP] [PAD]...`` (caption
    truncated), and ``video_id`` passed through (``(vid, start, end)`` from :class:`YoucookMetaProcessor`).
    ``wps`` (words per second) is kept from the original's signature; it only decorated an unused text span.
    """

    def __call__(self, video_id: Any, video_feature: np.ndarray, text_feature: Sequence[int],
                 wps: float = 0.7) -> Dict[str, Any]:
        if len(video_feature) == 0:
            raise ValueError(f"DSAligner: clip {video_id!r} has no feature rows")
        vfeats, vmasks = self._build_video_seq(video_feature)
        caps, cmasks = self._build_text_seq(list(text_feature))
        return {"caps": caps, "cmasks": cmasks, "vfeats": vfeats, "vmasks": vmasks, "video_id": video_id}


@register("meta_processor")
class YoucookMetaProcessor(MetaProcessor):
    """One item per annotated YouCook2 clip with features: ``((video_id, start, end), caption)``.

    ``data`` holds the :class:`YoucookRecord` s in pickle order (:func:`read_youcook_records` with segment
    clipping: dropped and clipped records are printed with their count).
    """

    def __init__(self, config: Any):
        super().__init__(config)
        pkl_path, annotation_path, vfeat_dir = _youcook_paths(self, config)
        self.use_annotation_caption = _use_annotation_text(config)
        self.data: List[YoucookRecord] = read_youcook_records(
            pkl_path, annotation_path, vfeat_dir, self.use_annotation_caption, clip_segments=True,
            who=type(self).__name__)

    def __getitem__(self, idx: int) -> Tuple[Tuple[str, int, int], str]:
        record = self.data[idx]
        return (record.video_id, record.start, record.end), record.caption


@register("video_processor")
class YoucookVideoProcessor(VideoProcessor):
    """``(video_id, start, end)`` -> the clip's features ``feat[start:end]``, ``[end - start, D]`` (an end past
    the features is cut to them; an empty clip is an error)."""

    def __call__(self, video_fn: Tuple[str, int, int]) -> np.ndarray:
        video_id, start, end = video_fn
        feature = check_features(super().__call__(video_id), self.vfeat_dir, video_id)
        clip = feature[int(start):int(end)]
        if len(clip) == 0:
            raise ValueError(f"{os.path.join(self.vfeat_dir, video_id + '.npy')} has {len(feature)} rows; the "
                             f"segment [{start}, {end}) holds none of them")
        return clip


@register("meta_processor")
class YoucookFullVideoBGMetaProcessor(MetaProcessor):
    """One item per YouCook2 video with features: ``(video_id, [captions of its records in pickle order])``.

    ``data`` is the sorted list of video ids (the original used ``list(set(...))``, an order that changed from
    run to run); ``recs[video_id]`` its :class:`YoucookRecord` s.  Segments are not used (all windows of the
    video are scored), so none is dropped or clipped here.
    """

    def __init__(self, config: Any):
        super().__init__(config)
        pkl_path, annotation_path, vfeat_dir = _youcook_paths(self, config)
        self.use_annotation_caption = _use_annotation_text(config)
        records = read_youcook_records(pkl_path, annotation_path, vfeat_dir, self.use_annotation_caption,
                                       clip_segments=False, who=type(self).__name__)
        self.recs: Dict[str, List[YoucookRecord]] = {}
        for record in records:
            self.recs.setdefault(record.video_id, []).append(record)
        self.data: List[str] = sorted(self.recs)

    def __getitem__(self, idx: int) -> Tuple[str, List[str]]:
        video_id = self.data[idx]
        return video_id, [record.caption for record in self.recs[video_id]]


@register("video_processor")
class YoucookFullVideoBGProcessor(VideoProcessor):
    """``video_id`` -> all its features ``[T, D]``."""

    def __call__(self, video_fn: str) -> np.ndarray:
        return check_features(super().__call__(video_fn), self.vfeat_dir, video_fn)


@register("text_processor")
class YoucookFullVideoBGTextProcessor(TextProcessor):
    """``[caption, ...]`` -> one token-id list per caption (no special tokens)."""

    def __call__(self, text_ids: Sequence[str]) -> List[List[int]]:
        return self.tokenize_each(text_ids)


@register("aligner")
class YoucookFullVideoBGAligner(Aligner):
    """Every window and every caption of one YouCook2 video.

    Windows are :func:`sliding_windows` with ``dataset.sliding_window`` (16) and ``sliding_window_size`` (16):
    non-overlapping with the configs' 16/16.  Output (the loader adds a batch dim of 1):
    ``vfeats [W, max_video_len, D]`` / ``vmasks [W, max_video_len]``, ``caps [Ncap, max_len - max_video_len]`` /
    ``cmasks``, ``video_id`` (str) and ``video_len`` (T).
    """

    def __init__(self, config: Any):
        super().__init__(config)
        self.sliding_window, self.sliding_window_size = window_config(config, self.max_video_len, YOUCOOK_WINDOW)

    def __call__(self, video_id: str, video_feature: np.ndarray,
                 text_feature: Sequence[Sequence[int]]) -> Dict[str, Any]:
        video_len = len(video_feature)
        starts, lengths = sliding_windows(video_len, self.sliding_window, self.sliding_window_size)
        vfeats, vmasks = self._build_window_seqs(video_feature, starts, lengths)
        caps, cmasks = self._build_text_seqs(text_feature)
        return {"caps": caps, "cmasks": cmasks, "vfeats": vfeats, "vmasks": vmasks, "video_id": video_id,
                "video_len": video_len}


# MSR-VTT, MSR-VTT QA, COIN and DiDeMo live in their own modules; MMPT's module path keeps naming them
from .msrvtt import (MSRVTTMetaProcessor, MSRVTTQAAligner, MSRVTTQAMetaProcessor,  # noqa: E402
                     MSRVTTQATextProcessor, MSRVTTTextProcessor)
from .coin import (COINActionSegmentationAligner, COINActionSegmentationMetaProcessor,  # noqa: E402
                   COINActionSegmentationTextProcessor, MetaTextBinarizer)
from .didemo import DiDeMoAligner, DiDeMoMetaProcessor, DiDeMoTextProcessor  # noqa: E402
