"""Write a YouCook2-format demo evaluation set drawn from a :class:`World`.

Layout under ``out_dir`` (``data/demo/youcook`` in the demo), the files the YouCook2 configs read::

    youcook_val.pkl                          [{"id": "<vid>_<k>", "caption": stop-word-free sentence}, ...]
    youcookii_annotations_trainval.json      {"database": {vid: {"annotations": [{"segment": [start, end],
                                              "sentence": str, "id": k}, ...], "subset": "validation",
                                              "duration": T, "recipe_type": task id}}}
    features/<vid>.npy                       float16 [T, 512], one row per second
    demo_youcook.json                        how the set was drawn, with every video's task and steps
                                             (marks the folder as a demo set)

Task ``i`` of the world gets ``videos_per_task`` videos; video ``j`` of it is ``demo_yc_<i * videos_per_task +
j:04d>`` (fixed width: no id is a substring of another) drawn with ``np.random.default_rng([world.seed,
YOUCOOK_CODE, seed, i, j])``, a stream of its own (not the pretraining or CrossTask videos).  Each performed step
is one annotated segment ``[start, end]`` (whole seconds) whose sentence is the step's phrase, in time order.

Like the real set, two records need the processors' care: the last segment of the first video ends 3 s after its
features (the clip-level processors clip it), and one extra video is annotated and listed in the pickle but has no
feature file (its records are dropped with a count).

Everything is written into a temp folder next to ``out_dir`` that then replaces it (an earlier demo set is
replaced; any other existing folder is refused).
"""
from __future__ import annotations

import json
import os
import pickle
from typing import Any

import numpy as np

from tempclr.demo.world import DemoTask, DemoVideo, World
from tempclr.utils.fileio import atomic_dir

__all__ = ["YOUCOOK_CODE", "STOP_WORDS", "youcook_video_id", "strip_stop_words", "write_youcook_set"]

YOUCOOK_CODE = 3   # this writer's stream in the world's seed sequence (HowTo100M-style 1, CrossTask 2)
MARKER = "demo_youcook.json"
PAST_END_SECONDS = 3
# what the HowTo100M evaluation pickle's captions lack (its captions have stop words removed)
STOP_WORDS = frozenset("a an the to of in into on onto at with and or some your our it its is are be this that "
                       "then so".split())


def youcook_video_id(index: int) -> str:
    """``demo_yc_<index:04d>`` (fixed width, so no id is a substring of another)."""
    if not 0 <= index < 10_000:
        raise ValueError(f"demo YouCook2 video index {index} does not fit 4 digits")
    return f"demo_yc_{index:04d}"


def strip_stop_words(sentence: str) -> str:
    """The sentence without :data:`STOP_WORDS` (the pickle's caption style)."""
    return " ".join(word for word in sentence.split() if word not in STOP_WORDS)


def _annotations(task: DemoTask, video: DemoVideo) -> list[dict[str, Any]]:
    return [{"segment": [int(start), int(end)], "sentence": task.steps[step].phrase, "id": k}
            for k, (step, start, end) in enumerate(video.steps)]


def _build(folder: str, world: World, seed: int, videos_per_task: int) -> dict[str, Any]:
    features = os.path.join(folder, "features")
    os.makedirs(features)
    database: dict[str, Any] = {}
    records: list[dict[str, str]] = []
    truth: dict[str, Any] = {}
    n_videos = len(world.tasks) * videos_per_task
    for i, task in enumerate(world.tasks):
        for j in range(videos_per_task):
            video_id = youcook_video_id(i * videos_per_task + j)
            video = world.sample_video(np.random.default_rng([world.seed, YOUCOOK_CODE, seed, i, j]), task)
            np.save(os.path.join(features, f"{video_id}.npy"), video.features, allow_pickle=False)
            annotations = _annotations(task, video)
            database[video_id] = {"subset": "validation", "duration": float(video.duration),
                                  "recipe_type": task.id, "annotations": annotations}
            records += [{"id": f"{video_id}_{a['id']}", "caption": strip_stop_words(a["sentence"])}
                        for a in annotations]
            truth[video_id] = {"task": task.id, "seconds": video.duration, "steps": [list(s) for s in video.steps]}
    first = youcook_video_id(0)
    clipped = database[first]["annotations"][-1]
    clipped["segment"][1] = truth[first]["seconds"] + PAST_END_SECONDS
    # an annotated video without features (dropped by the processors, as real YouCook2 videos without features)
    missing = youcook_video_id(n_videos)
    task = world.tasks[0]
    video = world.sample_video(np.random.default_rng([world.seed, YOUCOOK_CODE, seed, len(world.tasks), 0]), task)
    database[missing] = {"subset": "validation", "duration": float(video.duration), "recipe_type": task.id,
                         "annotations": _annotations(task, video)}
    records += [{"id": f"{missing}_{a['id']}", "caption": strip_stop_words(a["sentence"])}
                for a in database[missing]["annotations"]]
    with open(os.path.join(folder, "youcook_val.pkl"), "wb") as f:
        pickle.dump(records, f, protocol=4)
    with open(os.path.join(folder, "youcookii_annotations_trainval.json"), "w", encoding="utf-8") as f:
        json.dump({"database": database}, f)
    summary = {"seed": seed, "world_seed": world.seed, "stream": YOUCOOK_CODE, "videos_per_task": videos_per_task,
               "videos": n_videos, "records": len(records), "missing_video": missing,
               "clipped_record": f"{first}_{clipped['id']}", "truth": truth}
    with open(os.path.join(folder, MARKER), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    return summary


def _check_replaceable(out_dir: str) -> None:
    if os.path.lexists(out_dir) and not (os.path.isdir(out_dir) and (
            not os.listdir(out_dir) or os.path.isfile(os.path.join(out_dir, MARKER)))):
        raise FileExistsError(f"{out_dir} exists and is not a demo YouCook2 set (no {MARKER}); choose another "
                              "folder or remove it yourself")


def write_youcook_set(world: World, out_dir: str, seed: int = 0, videos_per_task: int = 8) -> dict[str, Any]:
    """Write the demo YouCook2 set into ``out_dir`` (see the module docstring); returns the summary that is also
    written to ``demo_youcook.json`` (``truth``: every video's task, length and ``[step, start, end]`` steps)."""
    if videos_per_task < 1:
        raise ValueError(f"videos_per_task={videos_per_task} must be >= 1")
    out_dir = os.path.abspath(out_dir)
    _check_replaceable(out_dir)
    with atomic_dir(out_dir) as tmp:
        summary = _build(tmp, world, seed, videos_per_task)
    return summary
