"""Write a HowTo100M-format demo set drawn from a :class:`World`.

Writes, for ``n_train + n_val`` videos with ids ``demo_how2_00000, demo_how2_00001, ...`` (train first):

- ``<how2_dir>/how2_s3d_train.lst``, ``how2_s3d_val.lst``: one video id per line;
- ``<how2_dir>/raw_caption.json``: ``id -> {"start": [s], "end": [s], "text": [str]}``, captions sorted by start;
- ``<how2_dir>/demo_steps.json``: ``id -> {"task": task_id, "steps": [[step_index, start_s, end_s], ...]}`` (ground
  truth, not part of the HowTo100M format; for checks and probes);
- ``<feat_dir>/<id>.npy``: float16 ``[T, 512]`` per-second features.

Video ``g`` is drawn with ``np.random.default_rng([world.seed, HOW2_CODE, g])``, so it does not depend on how many
other videos are written.
"""
from __future__ import annotations

import json
import os

import numpy as np

from tempclr.demo.world import World
from tempclr.utils.fileio import save_npy_atomic, write_text_atomic

__all__ = ["HOW2_CODE", "how2_video_id", "write_demo_how2"]

HOW2_CODE = 1     # this writer's stream in the world's seed sequence; other writers use other codes


def how2_video_id(index: int) -> str:
    """``demo_how2_<index:05d>``: fixed width, so no id is a substring of another."""
    if not 0 <= index < 100_000:
        raise ValueError(f"demo video index {index} does not fit 5 digits")
    return f"demo_how2_{index:05d}"


def write_demo_how2(world: World, how2_dir: str, feat_dir: str, n_train: int, n_val: int) -> dict[str, list[str]]:
    """Write the lists, captions and features; returns ``{"train": [ids], "val": [ids]}``."""
    if n_train < 1 or n_val < 1:
        raise ValueError(f"need at least one train and one val video, got n_train={n_train}, n_val={n_val}")
    os.makedirs(how2_dir, exist_ok=True)
    os.makedirs(feat_dir, exist_ok=True)
    captions, steps = {}, {}
    for index in range(n_train + n_val):
        video_id = how2_video_id(index)
        rng = np.random.default_rng([world.seed, HOW2_CODE, index])
        task = world.tasks[int(rng.integers(len(world.tasks)))]
        video = world.sample_video(rng, task)
        save_npy_atomic(os.path.join(feat_dir, f"{video_id}.npy"), video.features)
        captions[video_id] = {"start": [c[0] for c in video.captions], "end": [c[1] for c in video.captions],
                              "text": [c[2] for c in video.captions]}
        steps[video_id] = {"task": task.id, "steps": [list(s) for s in video.steps]}
    ids = {"train": [how2_video_id(i) for i in range(n_train)],
           "val": [how2_video_id(i) for i in range(n_train, n_train + n_val)]}
    for split, split_ids in ids.items():
        write_text_atomic(os.path.join(how2_dir, f"how2_s3d_{split}.lst"), "".join(v + "\n" for v in split_ids))
    write_text_atomic(os.path.join(how2_dir, "raw_caption.json"), json.dumps(captions))
    write_text_atomic(os.path.join(how2_dir, "demo_steps.json"), json.dumps(steps))
    return ids
