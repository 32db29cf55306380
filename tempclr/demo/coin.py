"""Write a COIN-format demo action segmentation set drawn from a :class:`World`.

Layout under ``out_dir`` (``data/demo/coin``), the files the COIN configs read::

    COIN.json            {"database": {vid: {"subset": "training" | "testing", "recipe_type": task id,
                          "class": task title, "duration": T, "annotation": [{"id": "<step id>",
                          "segment": [start_s, end_s], "label": step name}, ...]}}}
    features/<vid>.npy   float16 [T, 512], one row per second
    demo_coin.json       how the set was drawn (marks the folder as a demo set)

Step ids run 1..K over the world's distinct step names (sorted); task ``i`` gets ``train_per_task`` training and
``test_per_task`` testing videos ``demo_coin_<n:04d>``, each drawn with ``np.random.default_rng([world.seed,
COIN_CODE, seed, i, j])``.  Segments end half a second early (``[start, end - 0.5]``: the aligner's ``ceil``
gives back the whole seconds).  Edge cases, as real COIN data has them: one testing video is annotated but has
no feature file (dropped with a count), and one testing segment starts after its video's features end (dropped
with a count).
"""
from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from tempclr.demo.world import World
from tempclr.utils.fileio import atomic_dir

__all__ = ["COIN_CODE", "write_coin_set", "coin_step_ids"]

COIN_CODE = 4   # this writer's stream in the world's seed sequence (HowTo100M 1, CrossTask 2, YouCook2 3)
MARKER = "demo_coin.json"


def coin_step_ids(world: World) -> dict[str, int]:
    """Step name -> COIN step id (1..K, names sorted)."""
    names = sorted({step.name for task in world.tasks for step in task.steps})
    return {name: k + 1 for k, name in enumerate(names)}


def _build(folder: str, world: World, seed: int, train_per_task: int, test_per_task: int) -> dict[str, Any]:
    features = os.path.join(folder, "features")
    os.makedirs(features)
    ids = coin_step_ids(world)
    database: dict[str, Any] = {}
    count = 0
    testing: list[str] = []
    for i, task in enumerate(world.tasks):
        for j in range(train_per_task + test_per_task):
            video_id = f"demo_coin_{count:04d}"
            count += 1
            video = world.sample_video(np.random.default_rng([world.seed, COIN_CODE, seed, i, j]), task)
            subset = "training" if j < train_per_task else "testing"
            np.save(os.path.join(features, f"{video_id}.npy"), video.features, allow_pickle=False)
            annotation = [{"id": str(ids[task.steps[step].name]), "segment": [float(start), float(end) - 0.5],
                           "label": task.steps[step].name} for step, start, end in video.steps]
            database[video_id] = {"subset": subset, "recipe_type": task.id, "class": task.title,
                                  "duration": float(video.duration), "annotation": annotation}
            if subset == "testing":
                testing.append(video_id)
    # edge cases: a testing video without features, a testing segment past the end of the features
    missing = testing[0]
    os.remove(os.path.join(features, f"{missing}.npy"))
    past_end = testing[1]
    record = database[past_end]
    step = record["annotation"][-1]
    record["annotation"].append({"id": step["id"], "segment": [record["duration"] + 2.0, record["duration"] + 6.0],
                                 "label": step["label"]})
    with open(os.path.join(folder, "COIN.json"), "w", encoding="utf-8") as f:
        json.dump({"database": database}, f)
    summary = {"seed": seed, "world_seed": world.seed, "stream": COIN_CODE, "videos": count,
               "training": count - len(testing), "testing": len(testing), "steps": len(ids),
               "missing_video": missing, "segment_past_end": past_end}
    with open(os.path.join(folder, MARKER), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    return summary


def write_coin_set(world: World, out_dir: str, seed: int = 0, train_per_task: int = 4,
                   test_per_task: int = 2) -> dict[str, Any]:
    """Write the demo COIN set into ``out_dir`` (see the module docstring; an earlier demo set there is
    replaced, any other existing folder refused); returns the summary written to ``demo_coin.json``."""
    if train_per_task < 1 or test_per_task < 1 or len(world.tasks) * test_per_task < 3:
        raise ValueError(f"train_per_task={train_per_task} and test_per_task={test_per_task} must be >= 1 (and give "
                         "at least 3 testing videos)")
    out_dir = os.path.abspath(out_dir)
    if os.path.lexists(out_dir) and not (os.path.isdir(out_dir) and (
            not os.listdir(out_dir) or os.path.isfile(os.path.join(out_dir, MARKER)))):
        raise FileExistsError(f"{out_dir} exists and is not a demo COIN set (no {MARKER}); choose another folder "
                              "or remove it yourself")
    with atomic_dir(out_dir) as tmp:
        summary = _build(tmp, world, seed, train_per_task, test_per_task)
    return summary
