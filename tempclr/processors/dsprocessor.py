"""CrossTask step localisation processors.

One item is one video of a CrossTask task:

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
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Tuple

import numpy as np

from tempclr.utils.load_config import cfg_get
from tempclr.utils.registry import register

from .crosstask_release import read_assignment, read_step_sequence, read_task_info, split_vids
from .processor import Aligner, MetaProcessor, TextProcessor, VideoProcessor, require_file

__all__ = ["CrossTaskMetaProcessor", "CrossTaskVideoProcessor", "CrossTaskTextProcessor", "CrossTaskAligner",
           "sliding_windows", "CrossTaskItem"]

# (task id, video id, step descriptions, K)
CrossTaskItem = Tuple[str, str, List[str], int]

RELEASE_HOW = ("unpack the CrossTask release there (crosstask_release.zip of github.com/DmZhukov/CrossTask), or "
               "run `python scripts/make_demo_data.py` and use the demo release under data/demo/crosstask")
FEATURES_HOW = ("extract one S3D feature file <vid>.npy per video there, or run "
                "`python scripts/make_demo_data.py` and use data/demo/crosstask/features")


def sliding_windows(video_len: int, stride: int = 16, size: int = 32) -> Tuple[np.ndarray, np.ndarray]:
    """Window starts and lengths of the CrossTask aligner.

    For ``ws = 0, stride, 2*stride, ...``: ``length = min(video_len - ws, size)``; the loop stops after the first
    window with ``video_len - ws <= size`` (the window reaching the end).  Returns int64 ``starts [W]`` and
    ``lengths [W]``; ``sum(lengths)`` is the number of rows of the model's ``logits [Σlen, K]``.
    """
    if video_len < 1:
        raise ValueError(f"sliding_windows: the video has {video_len} seconds; it needs at least one")
    if stride < 1 or size < 1:
        raise ValueError(f"sliding_windows: sliding_window={stride} and sliding_window_size={size} must be >= 1")
    starts, lengths = [], []
    for start in range(0, video_len, stride):
        starts.append(start)
        lengths.append(min(video_len - start, size))
        if video_len - start <= size:
            break
    return np.asarray(starts, dtype=np.int64), np.asarray(lengths, dtype=np.int64)


def window_config(config: Any, max_video_len: int, default_stride: int, default_size: int) -> Tuple[int, int]:
    """``(dataset.sliding_window, dataset.sliding_window_size)`` with their defaults; a window longer than
    ``max_video_len`` is an error (``_build_video_seq`` would cut it silently)."""
    stride = int(cfg_get(config, "sliding_window", default_stride))
    size = int(cfg_get(config, "sliding_window_size", default_size))
    if size > max_video_len:
        raise ValueError(f"dataset.sliding_window_size={size} exceeds dataset.max_video_len={max_video_len}: "
                         "windows would be cut silently")
    return stride, size


def check_features(feature: np.ndarray, vfeat_dir: str, video_id: str) -> np.ndarray:
    """``feature`` if it is ``[T, D]`` with ``T >= 1``, else a ``ValueError`` naming ``<vfeat_dir>/<id>.npy``."""
    if feature.ndim != 2 or feature.shape[0] < 1:
        raise ValueError(f"{os.path.join(vfeat_dir, video_id + '.npy')}: expected features [T, D] with T >= 1, "
                         f"got shape {feature.shape}")
    return feature


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
        n_train = int(cfg_get(config, "n_train", 30))
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
        self.sliding_window, self.sliding_window_size = window_config(config, self.max_video_len, 16, 32)

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
