"""Scan a dataset for broken files before training on it: ``tempclr-check CONFIG`` (or
``python scripts/check_data.py CONFIG``).

The config is validated first (unknown keys, types).  Then each split the config names (``train_path``,
``val_path``, ``test_path``) is scanned whole by :func:`tempclr.datasets.integrity.scan_split` (duplicate ids,
shard offsets and the shard record, caption times against the video, token ids against the vocabulary, YouCook2
ids: every fault by file and row), and built with the config's own processors and every item read through them,
so each check the loaders make when training runs here on every video, not only on the ones a run happens to
reach (an item whose video already has a fault is not read again):

- shard files: ``.npy`` headers against the file size (truncation), offsets monotone and ending at the data
  length, the number of items of every video and caption shard against the shard meta;
- features: NaN or inf, one second per row; captions: ``start <= end``, times within the video;
- per-video feature files of CrossTask / YouCook2: present, readable, finite.

Problems are collected, not raised: the scan goes on and prints each one (file and fix) and a summary; the exit
status is 1 when any was found, 2 when the config itself is wrong.  ``--max-items N`` stops each split after N
items (a quick look).
"""
from __future__ import annotations

from typing import List, Optional, Tuple

from tqdm import tqdm

from tempclr.datasets.integrity import config_vocab_size, scan_split
from tempclr.processors.processor import SPLIT_PATH_KEYS
from tempclr.tasks.task import Task
from tempclr.utils.load_config import cfg_get, read_config

__all__ = ["check_dataset"]


def check_dataset(config_file: str, max_items: Optional[int] = None, progress: bool = True,
                  notes: Optional[List[Tuple[str, str]]] = None) -> List[Tuple[str, str, str]]:
    """``[(split, item, problem), ...]`` for every fault of every split of ``config_file``: the whole-split scan's
    (item: the file and row) and every item that cannot be read.  Checks that could not run are appended to
    ``notes`` as ``(split, sentence)``."""
    config = read_config(config_file=config_file)
    task = Task.config_task(config)
    problems: List[Tuple[str, str, str]] = []
    splits = [split for split, key in SPLIT_PATH_KEYS.items() if cfg_get(config, f"dataset.{key}") is not None]
    if cfg_get(config, "dataset.split") == "test":
        splits = ["test"]
    vocab_size = config_vocab_size(config)
    for split in splits:
        try:
            report = scan_split(config.dataset, split, vocab_size)
        except (OSError, ValueError, KeyError) as error:
            problems.append((split, "(the split itself)", str(error)))
            continue
        problems.extend((split, fault.where(), fault.message) for fault in report.faults)
        if notes is not None:
            notes.extend((split, note) for note in report.warnings)
        faulty = report.faulty_videos()
        try:
            dataset = task.build_mmdataset(split)
        except (OSError, ValueError, KeyError) as error:
            if not report.faults:
                problems.append((split, "(the split itself)", str(error)))
            continue
        count = len(dataset) if max_items is None else min(len(dataset), max_items)
        for index in tqdm(range(count), desc=f"checking {split}", unit="item", disable=not progress):
            if faulty and faulty & _item_videos(dataset, index):
                continue  # its video's fault is listed already
            try:
                dataset[index]
            except (OSError, ValueError, KeyError, IndexError) as error:
                problems.append((split, _item_name(dataset, index), str(error)))
    return problems


def _item_videos(dataset, index: int) -> set:
    """The video ids (HowTo100M shard keys, groups of them) or record ids an item reads."""
    try:
        item = dataset.meta_processor[index][0]
    except Exception:  # noqa: BLE001 - only used to skip items whose fault is listed already
        return set()
    found = set()

    def walk(value):
        if isinstance(value, str):
            found.add(value)
        elif isinstance(value, (tuple, list)):
            for part in value:
                walk(part)

    walk(item)
    return found


def _item_name(dataset, index: int) -> str:
    try:
        video_id = dataset.meta_processor[index][0]
    except Exception:  # noqa: BLE001 - only used to label a problem that was already caught
        return f"item {index}"
    while isinstance(video_id, (tuple, list)) and video_id:
        if len(video_id) >= 2 and isinstance(video_id[0], str) and isinstance(video_id[1], str):
            video_id = f"{video_id[0]} {video_id[1]}"      # CrossTask: task and video
        else:
            video_id = video_id[0]                           # a shard key (video, ...), or a group of them
    return f"item {index} ({video_id})"
