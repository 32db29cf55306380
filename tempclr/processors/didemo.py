"""DiDeMo moment localisation (zero-shot test only): one item per description, its whole video (at most
``max_video_len`` seconds) and the description's tokens.

``test_data.json`` (github.com/LisaAnne/LocalizingMoments, ``data/``): a list of ``{"video": file name,
"description": str, "times": [[start_chunk, end_chunk], ...], "annotation_id": ..., ...}``; a video is cut into
6 chunks of 5 seconds, ``times`` holds one ``[start, end]`` (inclusive chunk indices 0..5) per annotator.
Features: one S3D ``<video>.npy`` per video in ``vfeat_dir``.

* :class:`DiDeMoMetaProcessor`: reads and checks the file (:func:`read_didemo_records`), drops descriptions
  whose video has no features (printed with a count), item ``(video, description)``; ``records`` the kept
  records in order (the predictor's targets).
* :class:`DiDeMoTextProcessor`: the description's token ids.
* :class:`DiDeMoAligner`: the downstream aligner of one clip and one caption.
"""
from __future__ import annotations

import itertools
import json
import os
from collections.abc import Mapping
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from tempclr.utils.config_schema import cfg_get
from tempclr.utils.fileio import check_name
from tempclr.utils.registry import register

from .processor import Aligner, MetaProcessor, TextProcessor, require_file

__all__ = ["DiDeMoMetaProcessor", "DiDeMoTextProcessor", "DiDeMoAligner", "read_didemo_records", "N_CHUNKS",
           "CHUNK_SECONDS", "MOMENTS", "N_MOMENTS", "moment_index", "annotated_moments"]

DIDEMO_HOW = ("test_data.json is DiDeMo's test annotation file (github.com/LisaAnne/LocalizingMoments, data/) and "
              "vfeat_dir holds one S3D <video>.npy per video; for the demo run "
              "`python scripts/make_demo_benchmarks.py` and use configs/demo/test_didemo_zs.yaml")
N_CHUNKS = 6
CHUNK_SECONDS = 5
SHOWN = 5

MOMENTS: Tuple[Tuple[int, int], ...] = tuple([(i, i) for i in range(N_CHUNKS)]
                                             + list(itertools.combinations(range(N_CHUNKS), 2)))
N_MOMENTS = len(MOMENTS)
_INDEX = {moment: i for i, moment in enumerate(MOMENTS)}


def moment_index(moment: Sequence[int]) -> int:
    """The position of ``(start_chunk, end_chunk)`` in :data:`MOMENTS`."""
    if len(moment) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in moment):
        raise ValueError(f"DiDeMo moment {moment!r} is not [start_chunk, end_chunk] (two integers)")
    key = (int(moment[0]), int(moment[1]))
    if key not in _INDEX:
        raise ValueError(f"DiDeMo moment {tuple(moment)!r} is not one of the 21 candidates (0 <= start <= end <= 5)")
    return _INDEX[key]


_TABLE = np.full((N_CHUNKS, N_CHUNKS), -1, dtype=np.int64)
for _i, (_s, _e) in enumerate(MOMENTS):
    _TABLE[_s, _e] = _i


def annotated_moments(targets: Sequence[Mapping[str, Any]]) -> Tuple[np.ndarray, np.ndarray]:
    """``(moment index [N, A] int64, present [N, A] bool)`` of every record's ``times`` (padded to the largest
    count A); a record without ``times`` or with a moment that is not a candidate is an error naming it."""
    try:
        times = [record["times"] for record in targets]
        counts = np.fromiter(map(len, times), dtype=np.int64, count=len(times))
        values = np.fromiter(itertools.chain.from_iterable(itertools.chain.from_iterable(times)), dtype=np.float64)
    except (KeyError, TypeError, ValueError):
        values, counts = None, None
    if (values is None or counts.min() == 0 or values.size != 2 * counts.sum()
            or not (values == np.floor(values)).all()):  # NaN and fractions fail the last test
        _explain_bad_times(targets)
    pairs = values.astype(np.int64).reshape(-1, 2)
    inside = (pairs >= 0).all(axis=1) & (pairs < N_CHUNKS).all(axis=1)
    moments = np.where(inside, _TABLE[np.clip(pairs[:, 0], 0, N_CHUNKS - 1), np.clip(pairs[:, 1], 0, N_CHUNKS - 1)],
                       -1)
    if (moments < 0).any():
        _explain_bad_times(targets)
    width = int(counts.max())
    present = np.arange(width)[None, :] < counts[:, None]
    index = np.zeros(present.shape, dtype=np.int64)
    index[present] = moments
    return index, present


def _explain_bad_times(targets: Sequence[Mapping[str, Any]]) -> None:
    """Raise the error naming the first record whose ``times`` is missing, empty or holds a non-candidate."""
    for row, record in enumerate(targets):
        times = record.get("times") if isinstance(record, Mapping) else None
        if not isinstance(times, (list, tuple)) or len(times) == 0:
            raise ValueError(f"DiDeMo: target {row} has no annotated moment ('times'); Rank and IoU are "
                             "undefined for it")
        for time in times:
            try:
                moment_index(time)
            except (ValueError, TypeError, IndexError, KeyError):
                raise ValueError(f"DiDeMo: target {row} has moment {time!r}; moments are [start, end] with "
                                 "0 <= start <= end <= 5") from None
    raise ValueError("DiDeMo: the targets' 'times' are malformed")


def _times(times: Any, where: str) -> List[List[int]]:
    if not isinstance(times, list) or not times:
        raise ValueError(f"{where}: 'times' must be a non-empty list of [start_chunk, end_chunk], got {times!r}; "
                         "fix the row")
    out = []
    for time in times:
        if (not isinstance(time, (list, tuple)) or len(time) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in time)
                or not 0 <= time[0] <= time[1] < N_CHUNKS):
            raise ValueError(f"{where}: moment {time!r} must be [start, end] chunk indices with 0 <= start <= end "
                             f"<= {N_CHUNKS - 1}; fix the row")
        out.append([int(time[0]), int(time[1])])
    return out


def read_didemo_records(path: str) -> List[Dict[str, Any]]:
    """The records of ``test_data.json`` in file order, each checked: ``video`` (a file name), ``description``
    (a non-empty string) and ``times`` (non-empty, chunk indices ``0 <= start <= end <= 5``); any other row is an
    error naming the file, the row and the fix."""
    with open(path, encoding="utf-8") as f:
        try:
            records = json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error}); {DIDEMO_HOW}") from None
    if not isinstance(records, list) or not records:
        raise ValueError(f"{path}: expected a non-empty list of {{\"video\", \"description\", \"times\"}} records; "
                         f"{DIDEMO_HOW}")
    checked = []
    for row, record in enumerate(records):
        where = f"{path}, row {row}"
        if not isinstance(record, dict) or not {"video", "description", "times"} <= set(record):
            raise ValueError(f"{where}: a record needs 'video', 'description' and 'times'; fix the row")
        check_name(record["video"], path, row, "video")
        if not isinstance(record["description"], str) or not record["description"].strip():
            raise ValueError(f"{where}: description {record['description']!r} must be a non-empty string; fix the row")
        checked.append({**record, "times": _times(record["times"], where)})
    return checked


@register("meta_processor")
class DiDeMoMetaProcessor(MetaProcessor):
    """One item per description of ``dataset.test_path`` whose video has ``<vfeat_dir>/<video>.npy``:
    ``(video, description)``, in file order; ``records`` holds the kept records (with ``times``).  Only the test
    split exists (zero-shot evaluation)."""

    def __init__(self, config: Any):
        super().__init__(config)
        if self.split != "test":
            raise ValueError(f"DiDeMo is evaluated zero-shot only: dataset.split must be test, got {self.split!r}")
        path = require_file(self._get_split_path(config), "test_path", DIDEMO_HOW)
        vfeat_dir = cfg_get(config, "vfeat_dir")
        if vfeat_dir is None:
            raise ValueError(f"DiDeMo needs 'dataset.vfeat_dir' in the config ({DIDEMO_HOW})")
        vfeat_dir = require_file(str(vfeat_dir), "vfeat_dir", DIDEMO_HOW)
        records = read_didemo_records(path)
        available = {name[:-4] for name in os.listdir(vfeat_dir) if name.endswith(".npy")}
        self.records: List[Dict[str, Any]] = [r for r in records if r["video"] in available]
        missing = [r["video"] for r in records if r["video"] not in available]
        videos = {r["video"] for r in records}
        print(f"DiDeMo: {path} holds {len(records)} descriptions of {len(videos)} videos; "
              f"{len(videos) - len(set(missing))} videos have features in {vfeat_dir}", flush=True)
        if missing:
            unique = list(dict.fromkeys(missing))
            shown = ", ".join(unique[:SHOWN]) + (", ..." if len(unique) > SHOWN else "")
            print(f"DiDeMo: {len(missing)} description(s) of {len(unique)} video(s) dropped: no feature file "
                  f"in {vfeat_dir} (first: {shown})", flush=True)
        if not self.records:
            raise ValueError(f"DiDeMo: no video of {path} has features in {vfeat_dir}; {DIDEMO_HOW}")
        self.data: List[Tuple[str, str]] = [(r["video"], r["description"]) for r in self.records]
        index, present = annotated_moments(self.records)
        # the records' annotated moments as arrays, parsed once here for the metric
        self.annotations: Dict[str, np.ndarray] = {"index": index, "present": present}


@register("text_processor")
class DiDeMoTextProcessor(TextProcessor):
    """A description -> its token ids (no special tokens)."""

    def __call__(self, text: str) -> List[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]


@register("aligner")
class DiDeMoAligner(Aligner):
    """The downstream aligner of one video and one description (the original subclassed ``DSAligner`` without
    changing it): ``vfeats [max_video_len, D]`` / ``vmasks`` holding the video's first ``min(T,
    max_video_len)`` seconds, ``caps [max_len - max_video_len]`` / ``cmasks`` = ``[CLS] [SEP] description [SEP]
    [PAD]...``, and ``video_id``."""

    def __call__(self, video_id: str, video_feature: np.ndarray, text_feature: Sequence[int]) -> Dict[str, Any]:
        if video_feature.ndim != 2 or len(video_feature) == 0:
            raise ValueError(f"DiDeMo video {video_id}: expected features [T, D] with T >= 1, got shape "
                             f"{video_feature.shape}")
        vfeats, vmasks = self._build_video_seq(video_feature)
        caps, cmasks = self._build_text_seq(list(text_feature))
        return {"caps": caps, "cmasks": cmasks, "vfeats": vfeats, "vmasks": vmasks, "video_id": video_id}
