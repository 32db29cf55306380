"""Readers for the CrossTask release (``crosstask_release/``) and the train/test split of CrossTask ``train.py``.

Files (one entry per line; ``\\r\\n`` endings are fine; line numbers in errors are 1-based):

* ``tasks_primary.txt`` / ``tasks_related.txt``: repeated 6-line blocks -- task id, title, URL, number of steps
  ``K``, the ``K`` step descriptions separated by commas, a blank line.  The last block may end at the end of
  the file without its blank line; blank lines after the last block are ignored.
* ``videos.csv`` / ``videos_val.csv``: ``task_id,youtube_id,url`` per line; blank lines are skipped.
* ``annotations/<task_id>_<youtube_id>.csv``: ``step,start,end`` per line, ``step`` 1-based, times in seconds;
  the row order is the step sequence.

Every malformed line raises :class:`CrossTaskFormatError` (a ``ValueError``) naming the file and line.

The split (:func:`split_vids`) is the one of CrossTask ``train.py`` / MMPT
``CrossTaskMetaProcessor``, with a local ``np.random.RandomState(seed)`` in place of the global
``np.random.seed(0)``: the draws are the same, and nothing else in the process can shift them.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Collection
from typing import Optional

import numpy as np

from tempclr.utils.fileio import check_name

__all__ = [
    "CrossTaskFormatError", "read_task_info", "get_vids", "get_available_vids", "filter_available",
    "read_annotation", "read_assignment", "read_step_sequence", "random_split", "split_vids",
]

TaskVids = dict[str, list[str]]


class CrossTaskFormatError(ValueError):
    """A CrossTask release file does not have the documented format (message names the file and line)."""

    def __init__(self, path: str, line_no: Optional[int], problem: str):
        where = f"{path}:{line_no}" if line_no is not None else path
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.line_no = line_no


def _read_lines(path: str) -> list[str]:
    with open(path, "r", encoding="utf-8") as f:
        return f.read().splitlines()


# --------------------------------------------------------------------------------------------------------------
# task descriptions


def read_task_info(path: str) -> dict[str, dict]:
    """Read ``tasks_primary.txt`` / ``tasks_related.txt``.

    Returns ``{"title": {id: str}, "url": {id: str}, "n_steps": {id: int}, "steps": {id: [str] * K}}``, each
    dict in file order.  Fields are stripped of surrounding whitespace; step descriptions are the pieces of
    the comma split, unstripped, as in the original.  Errors: a block cut short by the end of the file, a
    blank line where a task id is expected, a duplicate id, ``K`` not a positive integer, a step line with
    other than ``K`` pieces or an empty piece, a non-blank 6th line.
    """
    lines = _read_lines(path)
    info: dict[str, dict] = {"title": {}, "url": {}, "n_steps": {}, "steps": {}}
    last_content = len(lines)
    while last_content > 0 and not lines[last_content - 1].strip():
        last_content -= 1
    i = 0
    while i < last_content:
        _read_task_block(path, lines, i, info)
        i += 6
    return info


def _read_task_block(path: str, lines: list[str], start: int, info: dict[str, dict]) -> None:
    """Parse the 6-line block beginning at 0-based line ``start`` into ``info``."""
    names = ("task id", "title", "URL", "number of steps", "step descriptions")
    if start + len(names) > len(lines):
        raise CrossTaskFormatError(path, len(lines), f"the task block starting at line {start + 1} ends after "
                                   f"{len(lines) - start} lines; each block needs 5 lines plus a blank line "
                                   f"(id, title, URL, number of steps, comma-separated steps)")
    task_id, title, url, k_text, steps_text = (lines[start + n].strip() for n in range(len(names)))
    if not task_id:
        raise CrossTaskFormatError(path, start + 1, "expected a task id, found a blank line (exactly one "
                                   "blank line must separate the 6-line task blocks)")
    if task_id in info["title"]:
        raise CrossTaskFormatError(path, start + 1, f"task id {task_id!r} appears twice")
    try:
        n_steps = int(k_text)
    except ValueError:
        n_steps = 0
    if n_steps <= 0:
        raise CrossTaskFormatError(path, start + 4, f"number of steps of task {task_id} must be a positive "
                                   f"integer, got {k_text!r}")
    steps = steps_text.split(",")
    if len(steps) != n_steps:
        raise CrossTaskFormatError(path, start + 5, f"task {task_id} declares {n_steps} steps on line "
                                   f"{start + 4} but this line has {len(steps)} comma-separated descriptions")
    if any(not step.strip() for step in steps):
        raise CrossTaskFormatError(path, start + 5, f"task {task_id} has an empty step description")
    sep = start + 5
    if sep < len(lines) and lines[sep].strip():
        raise CrossTaskFormatError(path, sep + 1, f"expected a blank line after the steps of task {task_id}, "
                                   f"found {lines[sep].strip()[:60]!r}")
    info["title"][task_id] = title
    info["url"][task_id] = url
    info["n_steps"][task_id] = n_steps
    info["steps"][task_id] = steps


# --------------------------------------------------------------------------------------------------------------
# video lists


def _csv_rows(path: str, layout: str):
    """``(line_no, fields)`` for each non-blank line of a 3-field csv; a line with another field count is a
    :class:`CrossTaskFormatError` naming the file, the line and the expected ``layout``."""
    for line_no, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        fields = line.strip().split(",")
        if len(fields) != 3:
            raise CrossTaskFormatError(path, line_no, f"expected 3 comma-separated fields '{layout}', "
                                       f"found {len(fields)}: {line.strip()[:80]!r}")
        yield line_no, fields


def get_vids(csv_path: str, keep: Optional[Callable[[str, str], bool]] = None) -> TaskVids:
    """Read ``videos.csv`` / ``videos_val.csv`` into ``{task_id: [youtube_id, ...]}`` (tasks in order of their
    first kept video, videos in file order).  ``keep(task, vid)`` (optional) drops the videos it rejects; a
    task none of whose videos is kept does not appear.  Lines need exactly 3 comma-separated fields
    ``task_id,youtube_id,url`` with non-empty task and video ids, each task and video pair once; blank lines
    are skipped."""
    task_vids: TaskVids = {}
    first_line: dict[tuple[str, str], int] = {}
    for line_no, fields in _csv_rows(csv_path, "task_id,youtube_id,url"):
        task, vid = fields[0].strip(), fields[1].strip()
        if not task or not vid:
            raise CrossTaskFormatError(csv_path, line_no, "empty task id or video id")
        if (task, vid) in first_line:
            raise CrossTaskFormatError(csv_path, line_no, f"task {task} video {vid} is listed again (first on line "
                                       f"{first_line[task, vid]}); a video listed twice counts twice: remove the "
                                       "repeated line")
        first_line[task, vid] = line_no
        # both name files: <vfeat_dir>/<vid>.npy and <annotation_path>/<task>_<vid>.csv
        check_name(task, csv_path, line_no, "task id")
        check_name(vid, csv_path, line_no, "video id")
        if keep is not None and not keep(task, vid):
            continue
        task_vids.setdefault(task, []).append(vid)
    return task_vids


def _is_available(feature_dir: str, annotation_dir: str, task: str, vid: str) -> bool:
    return (os.path.exists(os.path.join(feature_dir, vid + ".npy"))
            and os.path.exists(os.path.join(annotation_dir, f"{task}_{vid}.csv")))


def get_available_vids(csv_path: str, feature_dir: str, annotation_dir: str) -> TaskVids:
    """:func:`get_vids` keeping only videos with ``<feature_dir>/<vid>.npy`` and
    ``<annotation_dir>/<task>_<vid>.csv``, filtering while reading as MMPT does, so tasks are ordered by their
    first *available* video (the order :func:`random_split` draws in)."""
    return get_vids(csv_path, keep=lambda task, vid: _is_available(feature_dir, annotation_dir, task, vid))


def filter_available(task_vids: TaskVids, feature_dir: str, annotation_dir: str) -> TaskVids:
    """Keep the videos of ``task_vids`` whose ``<feature_dir>/<vid>.npy`` and
    ``<annotation_dir>/<task>_<vid>.csv`` both exist; tasks left with no video are dropped.  Task order is
    the input order; when a csv interleaves tasks, use :func:`get_available_vids` to get MMPT's task order."""
    kept: TaskVids = {}
    for task, vids in task_vids.items():
        available = [vid for vid in vids if _is_available(feature_dir, annotation_dir, task, vid)]
        if available:
            kept[task] = available
    return kept


# --------------------------------------------------------------------------------------------------------------
# annotations


def read_annotation(path: str, n_steps: Optional[int] = None) -> list[tuple[int, float, float]]:
    """Parse an annotation csv into ``[(step (0-based), start_sec, end_sec), ...]`` in row order.

    Each non-blank line must be ``step,start,end`` with ``step`` an integer in ``1..n_steps`` (``>= 1`` when
    ``n_steps`` is None) and finite times ``0 <= start <= end``."""
    return [_parse_annotation_fields(path, line_no, fields, n_steps)
            for line_no, fields in _csv_rows(path, "step,start,end")]


def _parse_annotation_fields(path: str, line_no: int, fields: list[str],
                             n_steps: Optional[int]) -> tuple[int, float, float]:
    step_text, start_text, end_text = (field.strip() for field in fields)
    try:
        step = int(step_text)
    except ValueError:
        raise CrossTaskFormatError(path, line_no, f"step {step_text!r} is not an integer") from None
    upper = "" if n_steps is None else f"..{n_steps}"
    if step < 1 or (n_steps is not None and step > n_steps):
        raise CrossTaskFormatError(path, line_no, f"step {step} is outside 1{upper} (steps are 1-based)")
    try:
        start, end = float(start_text), float(end_text)
    except ValueError:
        raise CrossTaskFormatError(path, line_no, f"start/end {start_text!r}, {end_text!r} are not numbers") \
            from None
    if not (math.isfinite(start) and math.isfinite(end)) or start < 0:
        raise CrossTaskFormatError(path, line_no, f"times must be finite and start >= 0, got "
                                   f"start={start_text}, end={end_text}")
    if end < start:
        raise CrossTaskFormatError(path, line_no, f"end {end_text} is before start {start_text}")
    return step - 1, start, end


def read_assignment(T: int, K: int, path: str) -> np.ndarray:
    """Ground truth ``Y`` (uint8 ``[T, K]``): ``Y[floor(start):ceil(end), step - 1] = 1`` for every row.

    As in the original, intervals reaching past the ``T`` seconds of the features are clipped at ``T`` (an
    interval starting at or after ``T`` marks nothing)."""
    Y = np.zeros([T, K], dtype=np.uint8)
    for step, start, end in read_annotation(path, n_steps=K):
        Y[int(math.floor(start)):int(math.ceil(end)), step] = 1
    return Y


def read_step_sequence(path: str, n_steps: Optional[int] = None) -> list[int]:
    """The 0-based step indices of the annotation rows, in row order (the step sequence)."""
    return [step for step, _, _ in read_annotation(path, n_steps=n_steps)]


# --------------------------------------------------------------------------------------------------------------
# split


def random_split(task_vids: TaskVids, test_tasks: Collection[str], n_train: int,
                 seed: int = 0) -> tuple[TaskVids, TaskVids]:
    """CrossTask's train/test split with a local RNG.

    For each task in ``task_vids`` order: a task in ``test_tasks`` with more than ``n_train`` videos gets
    ``RandomState(seed).choice(vids, n_train, replace=False)`` (one RandomState shared across tasks, in this
    order) as train and its other videos as test; every other task goes entirely to train.  Identical to
    ``np.random.seed(seed)`` followed by the original's ``np.random.choice`` calls.
    Returns ``(train_vids, test_vids)``; ``test_vids`` only has the tasks that were split."""
    rng = np.random.RandomState(seed)
    train_vids: TaskVids = {}
    test_vids: TaskVids = {}
    for task, vids in task_vids.items():
        if task in test_tasks and len(vids) > n_train:
            chosen = rng.choice(vids, n_train, replace=False).tolist()
            train_vids[task] = chosen
            chosen_set = set(chosen)
            test_vids[task] = [vid for vid in vids if vid not in chosen_set]
        else:
            train_vids[task] = list(vids)
    return train_vids, test_vids


def missing_files(task_vids: TaskVids, feature_dir: str, annotation_dir: str) -> list[str]:
    """The feature / annotation files the videos of ``task_vids`` need that do not exist, as paths."""
    missing = []
    for task, vids in task_vids.items():
        for vid in vids:
            for path in (os.path.join(feature_dir, vid + ".npy"), os.path.join(annotation_dir, f"{task}_{vid}.csv")):
                if not os.path.exists(path):
                    missing.append(path)
    return missing


def split_vids(train_csv: str, val_csv: str, primary_path: str, related_path: str, feature_dir: str,
               annotation_dir: str, n_train: int = 30, seed: int = 0,
               report: Optional[Callable[[str], None]] = print) -> dict[str, TaskVids]:
    """The CrossTask split end to end.

    The split is a function of the release alone: the videos listed in ``train_csv`` minus those of ``val_csv``
    (per task), restricted to primary and related tasks, split by :func:`random_split` with the primary tasks as
    test tasks.  Only then are videos whose feature file or annotation is missing dropped from their split, and
    ``report`` (default ``print``) is told how many and which, so a missing file never moves another video from
    test to train or back.  (The original filtered before splitting: one missing file re-drew a task's split.)
    Returns ``{"train": ..., "valid": test, "test": test}`` (valid and test are the same split)."""
    task_vids = get_vids(train_csv)
    val_sets = {task: set(vids) for task, vids in get_vids(val_csv).items()}
    task_vids = {task: [vid for vid in vids if vid not in val_sets.get(task, ())]
                 for task, vids in task_vids.items()}
    primary = read_task_info(primary_path)["n_steps"]
    related = read_task_info(related_path)["n_steps"]
    task_vids = {task: vids for task, vids in task_vids.items() if (task in primary or task in related) and vids}
    train_vids, test_vids = random_split(task_vids, set(primary), n_train, seed=seed)
    splits = {}
    for name, vids in (("train", train_vids), ("test", test_vids)):
        missing = missing_files(vids, feature_dir, annotation_dir)
        splits[name] = filter_available(vids, feature_dir, annotation_dir)
        if missing and report is not None:
            listed = sum(len(v) for v in vids.values())
            kept = sum(len(v) for v in splits[name].values())
            shown = ", ".join(missing[:3]) + (f", ... ({len(missing) - 3} more)" if len(missing) > 3 else "")
            report(f"[tempclr] CrossTask {name} split: {listed - kept} of {listed} listed videos skipped, "
                   f"{len(missing)} files missing ({shown}); the other videos keep their split")
    return {"train": splits["train"], "valid": splits["test"], "test": splits["test"]}
