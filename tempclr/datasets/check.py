"""Scan a dataset for broken files before training on it: ``tempclr-check CONFIG`` (or
``python scripts/check_data.py CONFIG``).

The config is validated first (unknown keys, types).  Then every split the config names (``train_path``,
``val_path``, ``test_path``) is built with the config's own processors and every item is read through them, so
each check the loaders make when training runs here on every video, not only on the ones a run happens to reach:

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

from tempclr.processors.processor import SPLIT_PATH_KEYS
from tempclr.tasks.task import Task
from tempclr.utils.load_config import cfg_get, read_config

__all__ = ["check_dataset"]


def check_dataset(config_file: str, max_items: Optional[int] = None, progress: bool = True
                  ) -> List[Tuple[str, str, str]]:
    """``[(split, item, problem), ...]`` for every item of every split of ``config_file`` that cannot be read."""
    config = read_config(config_file=config_file)
    task = Task.config_task(config)
    problems: List[Tuple[str, str, str]] = []
    splits = [split for split, key in SPLIT_PATH_KEYS.items() if cfg_get(config, f"dataset.{key}") is not None]
    if cfg_get(config, "dataset.split") == "test":
        splits = ["test"]
    for split in splits:
        try:
            dataset = task.build_mmdataset(split)
        except (OSError, ValueError, KeyError) as error:
            problems.append((split, "(the split itself)", str(error)))
            continue
        count = len(dataset) if max_items is None else min(len(dataset), max_items)
        for index in tqdm(range(count), desc=f"checking {split}", unit="item", disable=not progress):
            try:
                dataset[index]
            except (OSError, ValueError, KeyError, IndexError) as error:
                problems.append((split, _item_name(dataset, index), str(error)))
    return problems


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
