"""Whole-split data checks: every fault of a split's files, by file and row, before anything is trained on them.

``tempclr-check`` lists what :func:`scan_split` finds; training (:func:`refuse_faulty_data`, called when the
fairseq task is set up) refuses a split with any fault before the first update.  What is checked:

HowTo100M shards (``ShardedHow2MetaProcessor`` and its subclasses):

- the split list and the shard meta hold each video once (a video listed twice would count twice);
- every listed video is in the shard meta;
- video shards: whole ``.npy`` files, offsets ``starts`` strictly increasing from 0 to the data length (every
  video has at least one row), one offset per video of the meta;
- against the record the sharding kept (``{split}_meta_record.npz``, :mod:`tempclr.utils.shard_record`): the
  video at each meta position is the one recorded there, its row count is the recorded one, and the CRC-32 of its
  first and last row is the recorded one (shifted offsets, reordered meta ids and shards rebuilt from other
  features all fail here).  A shard set without a record gets a warning naming what cannot be checked;
- caption shards (``tfeat_dir``): whole files, offsets non-decreasing, one item per video of the meta and as many
  caption times as token rows per video; each caption ``0 <= start <= end`` and ``end <= T +``
  :data:`CAPTION_END_TOLERANCE_S` for a video of ``T`` feature rows (seconds); token ids in ``[0, vocab_size)``,
  ``-1`` only as trailing padding.  These value checks read the caption shards whole: training runs them when the
  caption shards of a split hold at most :data:`VALUE_SCAN_BYTES` (beyond, the processors check each item's
  caption times and token ids as it is read), ``tempclr-check`` always.

YouCook2 (``Youcook*MetaProcessor``): every record id is ``<video>_<clip>`` with an integer clip index, is not
itself the id of a video (of the annotation file or the feature folder; such an id would be split into another
video's id), and appears once.

Each check costs reading the offsets and two rows per video, except the caption value checks.
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from tempclr.processors.dsprocessor import YOUCOOK_HOW, youcook_record_problems
from tempclr.processors.how2processor import (CAPTION_END_TOLERANCE_S, SHARD_HOW, TEXT_SHARD_HOW,
                                              ShardedHow2MetaProcessor, shard_split_name)
from tempclr.processors.processor import SPLIT_PATH_KEYS
from tempclr.utils.config_schema import cfg_get
from tempclr.utils.fileio import load_npy, npy_problem
from tempclr.utils.registry import lookup
from tempclr.utils.safe_pickle import load_pickle
from tempclr.utils.shard_record import read_record, record_path, row_checksums
from tempclr.utils.shardedtensor import shard_paths

__all__ = ["DataFault", "SplitReport", "DataIntegrityError", "CAPTION_END_TOLERANCE_S", "VALUE_SCAN_BYTES",
           "scan_split", "refuse_faulty_data"]

# training reads a split's caption shards whole for the value checks only up to this size
VALUE_SCAN_BYTES = 256 << 20
SHOWN_FAULTS = 20  # how many faults a training refusal lists


@dataclass(frozen=True)
class DataFault:
    """One fault: the file, the row within it (a line, an item, ``shard k row i``; None for the whole file), the
    video when known, and the sentence saying what is wrong and the fix."""
    file: str
    row: Optional[str]
    message: str
    video: Optional[str] = None

    def where(self) -> str:
        return self.file if self.row is None else f"{self.file}, {self.row}"

    def __str__(self) -> str:
        return f"{self.where()}: {self.message}"


@dataclass
class SplitReport:
    """What :func:`scan_split` found: ``faults`` (each a :class:`DataFault`) and ``warnings`` (checks that
    could not run, and why)."""
    faults: List[DataFault]
    warnings: List[str]

    def faulty_videos(self) -> set:
        return {fault.video for fault in self.faults if fault.video is not None}


class DataIntegrityError(ValueError):
    """A split has data faults; the message lists them (the first :data:`SHOWN_FAULTS`) and how to see all."""

    def __init__(self, split: str, faults: Sequence[DataFault], config_name: str):
        shown = "\n  ".join(str(f) for f in faults[:SHOWN_FAULTS])
        more = f"\n  ... and {len(faults) - SHOWN_FAULTS} more" if len(faults) > SHOWN_FAULTS else ""
        super().__init__(f"the {split} data has {len(faults)} fault(s); nothing was trained:\n  {shown}{more}\n"
                         f"run `tempclr-check {config_name}` for the full list, fix the files and start again")
        self.faults = list(faults)


# ---------------------------------------------------------------------------------------------- HowTo100M shards
def _read_split_list(list_path: str, faults: List[DataFault]) -> List[str]:
    ids, first_line = [], {}
    with open(list_path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            video_id = line.strip()
            if not video_id:
                continue
            if video_id in first_line:
                faults.append(DataFault(list_path, f"line {line_no}", f"video {video_id} is listed again (first on "
                                        f"line {first_line[video_id]}); a video listed twice counts twice in "
                                        "training: remove the repeated line", video_id))
                continue
            first_line[video_id] = line_no
            ids.append(video_id)
    return ids


def _read_meta(meta_path: str, faults: List[DataFault]) -> Optional[Dict[int, List[str]]]:
    meta = load_pickle(meta_path)
    if not isinstance(meta, dict) or not all(isinstance(v, (list, tuple)) and all(isinstance(i, str) for i in v)
                                             for v in meta.values()):
        faults.append(DataFault(meta_path, None, "expected {shard_id: [video_id, ...]}; re-run "
                                "tempclr-shard-features"))
        return None
    try:
        return {int(k): list(v) for k, v in meta.items()}
    except (TypeError, ValueError):
        faults.append(DataFault(meta_path, None, f"shard ids must be integers, got {sorted(map(repr, meta))[:5]}; "
                                "re-run tempclr-shard-features"))
        return None


def _check_video_shard(prefix: str, k: int, ids: List[str], record: Optional[Dict[str, np.ndarray]],
                       rec_rows: Optional[np.ndarray], faults: List[DataFault]) -> Optional[np.ndarray]:
    """Check video shard ``k``; returns each video's row count ``[len(ids)]`` when the offsets are usable."""
    starts_path, data_path = shard_paths(prefix)
    for path in (starts_path, data_path):
        if not os.path.isfile(path):
            faults.append(DataFault(path, None, f"missing: the shard meta lists {len(ids)} video(s) in shard {k}; "
                                    + SHARD_HOW))
            return None
        problem = npy_problem(path)
        if problem is not None:
            faults.append(DataFault(path, None, f"{problem}; {SHARD_HOW}"))
            return None
    starts = load_npy(starts_path)
    data = load_npy(data_path, mmap_mode="r")
    if starts.ndim != 1 or not np.issubdtype(starts.dtype, np.integer) or len(starts) == 0 or data.ndim < 1:
        faults.append(DataFault(starts_path, None, f"offsets must be integers [N + 1], got {starts.dtype} "
                                f"{starts.shape} (data {data.shape}); {SHARD_HOW}"))
        return None
    starts = starts.astype(np.int64)
    usable = True
    if len(starts) - 1 != len(ids):
        faults.append(DataFault(starts_path, None, f"holds {len(starts) - 1} videos but the shard meta lists "
                                f"{len(ids)} in shard {k}: the files are from different runs; {SHARD_HOW}"))
        usable = False
    if starts[0] != 0:
        faults.append(DataFault(starts_path, "offset 0", f"starts[0] is {starts[0]}, not 0; {SHARD_HOW}"))
        usable = False
    if starts[-1] != len(data):
        faults.append(DataFault(starts_path, f"offset {len(starts) - 1}", f"the last offset {starts[-1]} is not "
                                f"the number of rows of {data_path} ({len(data)}); {SHARD_HOW}"))
        usable = False
    for i in np.flatnonzero(np.diff(starts) <= 0)[:len(ids) or None].tolist():
        video = ids[i] if i < len(ids) else None
        faults.append(DataFault(starts_path, f"offset {i + 1}", f"offsets must increase strictly: starts[{i}]="
                                f"{starts[i]}, starts[{i + 1}]={starts[i + 1]} (video {video} would get "
                                f"{starts[i + 1] - starts[i]} rows); {SHARD_HOW}", video))
        usable = False
    if not usable:
        return None
    lengths = np.diff(starts)
    if record is None or rec_rows is None:
        return lengths
    rec_ids = record["ids"][rec_rows]
    for i in np.flatnonzero(rec_ids != np.asarray(ids, dtype=rec_ids.dtype)).tolist():
        faults.append(DataFault(data_path, f"shard {k} row {i}", f"the shard meta puts video {ids[i]} here but "
                                f"the sharding put {rec_ids[i]} here (the meta's ids were reordered or edited); "
                                f"{SHARD_HOW}", ids[i]))
    rec_lengths = record["lengths"][rec_rows]
    for i in np.flatnonzero(rec_lengths != lengths).tolist():
        faults.append(DataFault(starts_path, f"shard {k} row {i}", f"video {ids[i]} has {lengths[i]} rows by the "
                                f"offsets but {rec_lengths[i]} were written (offsets shifted or from another run); "
                                f"{SHARD_HOW}", ids[i]))
    same = np.flatnonzero(rec_lengths == lengths)
    if len(same):
        first = row_checksums(data, starts[same])
        last = row_checksums(data, starts[same + 1] - 1)
        bad = same[(first != record["first"][rec_rows][same]) | (last != record["last"][rec_rows][same])]
        for i in bad.tolist():
            faults.append(DataFault(data_path, f"shard {k} row {i}", f"the first or last feature row of video "
                                    f"{ids[i]} (rows {starts[i]}..{starts[i + 1] - 1}) is not the one written for "
                                    f"it: the data, offsets or meta were changed after sharding; {SHARD_HOW}",
                                    ids[i]))
    return lengths


def _caption_shard(prefix: str, k: int, n_videos: int, faults: List[DataFault]
                   ) -> Optional[Tuple[np.ndarray, np.ndarray, str]]:
    """``(starts int64 [n_videos + 1], data memmap, data path)`` of a caption shard, or None (faults added)."""
    starts_path, data_path = shard_paths(prefix)
    for path in (starts_path, data_path):
        if not os.path.isfile(path):
            faults.append(DataFault(path, None, f"missing (caption shard {k}); {TEXT_SHARD_HOW}"))
            return None
        problem = npy_problem(path)
        if problem is not None:
            faults.append(DataFault(path, None, f"{problem}; {TEXT_SHARD_HOW}"))
            return None
    starts = load_npy(starts_path).astype(np.int64)
    data = load_npy(data_path, mmap_mode="r")
    if starts.ndim != 1 or len(starts) - 1 != n_videos:
        faults.append(DataFault(starts_path, None, f"holds {len(starts) - 1} items but the shard meta lists "
                                f"{n_videos} videos in shard {k}: the files are from different runs; "
                                f"{TEXT_SHARD_HOW}"))
        return None
    if starts[0] != 0 or starts[-1] != len(data) or np.any(np.diff(starts) < 0):
        faults.append(DataFault(starts_path, None, f"offsets must run non-decreasing from 0 to the {len(data)} "
                                f"rows of {data_path}; {TEXT_SHARD_HOW}"))
        return None
    return starts, data, data_path


def _first_per_video(bad_rows: np.ndarray, row_video: np.ndarray) -> Dict[int, Tuple[int, int]]:
    """``{video: (first bad row, number of bad rows)}`` for the videos owning a row where ``bad_rows`` is true."""
    rows = np.flatnonzero(bad_rows)
    if len(rows) == 0:
        return {}
    videos, first, counts = np.unique(row_video[rows], return_index=True, return_counts=True)
    return {int(v): (int(rows[f]), int(c)) for v, f, c in zip(videos, first, counts)}


def _check_caption_values(k: int, ids: List[str], lengths: Optional[np.ndarray], times, caps,
                          vocab_size: Optional[int], faults: List[DataFault]) -> None:
    """Caption times and token ids of caption shard ``k``, vectorised over the shard; only faulty videos are
    visited one by one, to word their fault."""
    t_starts, t_data, t_path = times
    c_starts, c_data, c_path = caps
    n = len(ids)
    t_len, c_len = np.diff(t_starts), np.diff(c_starts)
    for i in np.flatnonzero(t_len != c_len).tolist():
        faults.append(DataFault(c_path, f"shard {k} row {i}", f"video {ids[i]} has {t_len[i]} caption times but "
                                f"{c_len[i]} token rows; {TEXT_SHARD_HOW}", ids[i]))
    if t_data.ndim != 2 or t_data.shape[1:] != (2,):
        faults.append(DataFault(t_path, None, f"caption times must be [n, 2], got {t_data.shape}; {TEXT_SHARD_HOW}"))
    else:
        se = np.asarray(t_data, dtype=np.float64)
        row_video = np.repeat(np.arange(n), t_len)
        with np.errstate(invalid="ignore"):
            checks = [("nonfinite", ~np.isfinite(se).all(axis=1)), ("backwards", se[:, 1] < se[:, 0]),
                      ("negative", se[:, 0] < 0)]
            if lengths is not None:
                checks.append(("late", se[:, 1] > lengths[row_video] + CAPTION_END_TOLERANCE_S))
        found = {name: _first_per_video(bad, row_video) for name, bad in checks}
        for i in sorted(set().union(*found.values())):
            problems = []
            if i in found["nonfinite"]:
                problems.append(f"caption {found['nonfinite'][i][0] - t_starts[i]} has a NaN or inf time")
            if i in found["backwards"]:
                row, count = found["backwards"][i]
                problems.append(f"caption {row - t_starts[i]} ends before it starts ({se[row, 0]:g} s > "
                                f"{se[row, 1]:g} s)" + (f" and {count - 1} more" if count > 1 else ""))
            if i in found["negative"]:
                row = found["negative"][i][0]
                problems.append(f"caption {row - t_starts[i]} starts at {se[row, 0]:g} s, before the video")
            if i in found.get("late", {}):
                row, count = found["late"][i]
                problems.append(f"caption {row - t_starts[i]} ends at {se[row, 1]:g} s but the video has "
                                f"{lengths[i]} s of features (tolerance {CAPTION_END_TOLERANCE_S:g} s)"
                                + (f"; {count - 1} more end past it" if count > 1 else ""))
            faults.append(DataFault(t_path, f"shard {k} row {i}", f"video {ids[i]}: " + "; ".join(problems)
                                    + f"; fix the caption file (or the video's features) and {TEXT_SHARD_HOW}",
                                    ids[i]))
    tokens = np.asarray(c_data)
    if tokens.ndim != 2 or len(tokens) == 0:
        return
    row_video = np.repeat(np.arange(n), c_len)
    pad = tokens == -1
    out_of_range = (~pad) & (tokens < 0)
    if vocab_size is not None:
        out_of_range |= tokens >= vocab_size
    outside = _first_per_video(out_of_range.any(axis=1), row_video)
    for i, (row, _) in outside.items():
        in_video = out_of_range[c_starts[i]:c_starts[i + 1]]
        value = int(tokens[row][out_of_range[row]][0])
        faults.append(DataFault(c_path, f"shard {k} row {i}", f"video {ids[i]}: caption {row - c_starts[i]} holds "
                                f"token id {value}, outside the vocabulary [0, {vocab_size}) of dataset.bert_name "
                                f"({int(in_video.sum())} such ids in this video); the captions were tokenised "
                                "with another tokenizer: re-run tempclr-pretokenize with dataset.bert_name's",
                                ids[i]))
    gaps = _first_per_video((pad[:, :-1] & ~pad[:, 1:]).any(axis=1), row_video)
    for i, (row, _) in gaps.items():
        if i not in outside:
            faults.append(DataFault(c_path, f"shard {k} row {i}", f"video {ids[i]}: caption {row - c_starts[i]} "
                                    f"has a token id after the -1 padding; {TEXT_SHARD_HOW}", ids[i]))


def _scan_how2(dataset_config: Any, split: str, vocab_size: Optional[int], value_scan_bytes: Optional[int]
               ) -> SplitReport:
    faults: List[DataFault] = []
    notes: List[str] = []
    list_path = str(cfg_get(dataset_config, SPLIT_PATH_KEYS[split]))
    vfeat_dir = str(cfg_get(dataset_config, "vfeat_dir"))
    shard_split = shard_split_name(split)
    meta_path = os.path.join(vfeat_dir, f"{shard_split}_meta.pkl")
    listed = _read_split_list(list_path, faults) if os.path.isfile(list_path) else []
    if not os.path.isfile(meta_path):
        faults.append(DataFault(meta_path, None, f"missing; {SHARD_HOW}"))
        return SplitReport(faults, notes)
    meta = _read_meta(meta_path, faults)
    if meta is None:
        return SplitReport(faults, notes)
    where: Dict[str, Tuple[int, int]] = {}
    for k in sorted(meta):
        for i, video in enumerate(meta[k]):
            if video in where:
                faults.append(DataFault(meta_path, f"shard {k} row {i}", f"video {video} is in the shard meta again "
                                        f"(first at shard {where[video][0]} row {where[video][1]}); each video may "
                                        f"be sharded once: {SHARD_HOW}", video))
            else:
                where[video] = (k, i)
    missing = [v for v in listed if v not in where]
    for video in missing[:SHOWN_FAULTS]:
        faults.append(DataFault(list_path, None, f"video {video} is not in the shard meta {meta_path}; re-run "
                                "tempclr-shard-features with this list", video))
    if len(missing) > SHOWN_FAULTS:
        faults.append(DataFault(list_path, None, f"... and {len(missing) - SHOWN_FAULTS} more videos not in the "
                                f"shard meta {meta_path}"))
    record = read_record(record_path(vfeat_dir, shard_split))
    rec_pos: Dict[Tuple[int, int], int] = {}
    if record is None:
        notes.append(f"{meta_path}: no shard record ({os.path.basename(record_path(vfeat_dir, shard_split))}) "
                     "beside it, so the videos' row counts and first/last-row checksums cannot be checked against "
                     "what was sharded (reordered meta ids or shifted offsets would go unseen); re-run "
                     "tempclr-shard-features to write one")
    else:
        rec_pos = {(int(s), int(i)): n for n, (s, i) in enumerate(zip(record["shard"], record["index"]))}
    prefix_format = os.path.join(vfeat_dir, f"{shard_split}_{{}}")
    lengths: Dict[int, Optional[np.ndarray]] = {}
    for k in sorted(meta):
        rows = None
        if record is not None:
            positions = [rec_pos.get((k, i)) for i in range(len(meta[k]))]
            if any(p is None for p in positions):
                faults.append(DataFault(record_path(vfeat_dir, shard_split), f"shard {k}", f"the record holds no "
                                        f"entry for some of the {len(meta[k])} videos the meta lists in shard {k}: "
                                        f"the meta and the record are from different runs; {SHARD_HOW}"))
            else:
                rows = np.asarray(positions, dtype=np.int64)
        lengths[k] = _check_video_shard(prefix_format.format(k), k, meta[k], record, rows, faults)
    tfeat_dir = cfg_get(dataset_config, "tfeat_dir")
    if tfeat_dir is None:
        return SplitReport(faults, notes)
    text_format = str(tfeat_dir) + f"{shard_split}_{{}}"
    text = {}
    for k in sorted(meta):
        times = _caption_shard(text_format.format(k) + ".startends", k, len(meta[k]), faults)
        caps = _caption_shard(text_format.format(k) + ".caps_ids", k, len(meta[k]), faults)
        if times is not None and caps is not None:
            text[k] = (times, caps)
    total = sum(t[1].nbytes + c[1].nbytes for t, c in text.values())
    if value_scan_bytes is not None and total > value_scan_bytes:
        notes.append(f"{text_format.format('*')}: the caption shards hold {total / 2**20:.0f} MiB, more than the "
                     f"{value_scan_bytes / 2**20:.0f} MiB read at start-up: caption times and token ids are checked "
                     "as each item is read (tempclr-check checks them all)")
        return SplitReport(faults, notes)
    for k, (times, caps) in text.items():
        _check_caption_values(k, meta[k], lengths.get(k), times, caps, vocab_size, faults)
    return SplitReport(faults, notes)


# -------------------------------------------------------------------------------------------------------- YouCook2
def _scan_youcook(dataset_config: Any, split: str) -> SplitReport:
    faults: List[DataFault] = []
    pkl_path = str(cfg_get(dataset_config, SPLIT_PATH_KEYS[split]))
    if not os.path.isfile(pkl_path):
        return SplitReport([DataFault(pkl_path, None, f"missing; {YOUCOOK_HOW}")], [])
    records = load_pickle(pkl_path)
    if not isinstance(records, (list, tuple)):
        return SplitReport([DataFault(pkl_path, None, f"expected a list of dicts with an 'id' key, got "
                                      f"{type(records).__name__}; {YOUCOOK_HOW}")], [])
    records = list(records)
    known_videos = set()
    annotation_path = cfg_get(dataset_config, "trainval_annotation")
    if annotation_path is not None and os.path.isfile(str(annotation_path)):
        with open(str(annotation_path), encoding="utf-8") as f:
            database = json.load(f)
        if isinstance(database, dict) and isinstance(database.get("database"), dict):
            known_videos |= set(database["database"])
    vfeat_dir = cfg_get(dataset_config, "vfeat_dir")
    if vfeat_dir is not None and os.path.isdir(str(vfeat_dir)):
        known_videos |= {name[:-4] for name in os.listdir(str(vfeat_dir)) if name.endswith(".npy")}
    for index, record_id, message in youcook_record_problems(records, known_videos):
        faults.append(DataFault(pkl_path, f"record {index}", message, record_id))
    return SplitReport(faults, [])


# ------------------------------------------------------------------------------------------------------ dispatch
def _meta_class(dataset_config: Any):
    name = cfg_get(dataset_config, "meta_processor")
    if name is None:
        return None
    try:
        return lookup("meta_processor", str(name))
    except (KeyError, ValueError):
        return None


def scan_split(dataset_config: Any, split: str, vocab_size: Optional[int] = None,
               value_scan_bytes: Optional[int] = None) -> SplitReport:
    """Every data fault of ``split`` (train / valid / test) of a dataset config (see the module docstring).
    ``vocab_size``: the BERT vocabulary, bounding the pretokenised ids (None: not checked).  ``value_scan_bytes``:
    skip the caption value checks when the caption shards are larger (None: always run them)."""
    cls = _meta_class(dataset_config)
    if cls is None or cfg_get(dataset_config, SPLIT_PATH_KEYS[split]) is None:
        return SplitReport([], [])
    if issubclass(cls, ShardedHow2MetaProcessor):
        return _scan_how2(dataset_config, split, vocab_size, value_scan_bytes)
    if cls.__name__.startswith("Youcook"):
        return _scan_youcook(dataset_config, split)
    return SplitReport([], [])


def config_vocab_size(config: Any) -> Optional[int]:
    """``vocab_size`` of ``dataset.bert_name``'s config.json, or None when it cannot be read here."""
    from tempclr.tasks.task import bert_config_only

    try:
        return int(bert_config_only(config).vocab_size)
    except (OSError, ValueError):
        return None


def refuse_faulty_data(config: Any, splits: Sequence[str], config_name: str,
                       vocab_size: Optional[int] = None) -> None:
    """Raise :class:`DataIntegrityError` for the first of ``splits`` with a fault; warn about the checks that
    could not run.  Cheap: offsets and two rows per video, caption values up to :data:`VALUE_SCAN_BYTES`."""
    for split in splits:
        report = scan_split(config.dataset, split, vocab_size, VALUE_SCAN_BYTES)
        for note in report.warnings:
            warnings.warn(note, stacklevel=2)
        if report.faults:
            raise DataIntegrityError(split, report.faults, config_name)
