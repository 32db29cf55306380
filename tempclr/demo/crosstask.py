"""Write a CrossTask-format demo release drawn from a :class:`World`.

Layout under ``out_dir`` (``data/demo/crosstask`` in the demo)::

    crosstask_release/tasks_primary.txt    6-line blocks, every world task is primary (step names as steps)
    crosstask_release/tasks_related.txt    RELATED_TASKS: listed in videos.csv, never annotated
    crosstask_release/videos.csv           task_id,video_id,url for every video below
    crosstask_release/videos_val.csv       the first ``val_per_task`` videos of each primary task
    crosstask_release/annotations/<task>_<vid>.csv   step (1-based),start,end per performed step, in order
    features/<vid>.npy                     float16 [T, 512], one row per second
    demo_crosstask.json                    how the release was drawn (marks the folder as a demo release)

Primary task ``i`` gets ``videos_per_task`` videos ``demo_ct_<task>_<j:03d>``; video ``j`` is
``world.sample_video(np.random.default_rng([world.seed, CROSSTASK_CODE, seed, i, j]), task)``, a stream of its
own, so these are not the HowTo100M-style pretraining videos (``HOW2_CODE``).  To exercise the availability filter
the release also lists, like the real one, videos that the split must drop: each related task's videos have
features but no annotation, and one extra video of the first task has an annotation but no feature file.

Everything is written into a temp folder next to ``out_dir`` that then replaces it (an earlier demo release is
replaced; any other existing folder is refused).
"""
from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from tempclr.demo.world import DemoTask, World
from tempclr.utils.fileio import atomic_dir

__all__ = ["CROSSTASK_CODE", "RELATED_TASKS", "crosstask_video_id", "write_crosstask_release"]

CROSSTASK_CODE = 2   # this writer's stream in the world's seed sequence (HowTo100M-style videos use 1)
MARKER = "demo_crosstask.json"
RELATED_TASKS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("91001", "make french toast", "https://www.wikihow.com/Make-French-Toast",
     ("whisk eggs", "dip bread", "fry bread", "serve toast")),
    ("91002", "hang a picture", "https://www.wikihow.com/Hang-a-Picture",
     ("measure wall", "hammer nail", "hang frame")),
)


def crosstask_video_id(task_id: str, index: int) -> str:
    """``demo_ct_<task_id>_<index:03d>`` (no commas, fixed width)."""
    if not 0 <= index < 1000:
        raise ValueError(f"demo CrossTask video index {index} does not fit 3 digits")
    return f"demo_ct_{task_id}_{index:03d}"


def _url(video_id: str) -> str:
    return f"https://www.youtube.com/watch?v={video_id}"


def _task_block(task_id: str, title: str, url: str, steps: list[str]) -> str:
    if any("," in step for step in steps):
        raise ValueError(f"task {task_id}: step names may not contain commas (CrossTask separates them by commas)")
    return f"{task_id}\n{title}\n{url}\n{len(steps)}\n{','.join(steps)}\n\n"


def _write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _annotation_text(steps: list[tuple[int, int, int]]) -> str:
    return "".join(f"{step + 1},{start:.2f},{end:.2f}\n" for step, start, end in steps)


def _write_primary_task(world: World, task_index: int, task: DemoTask, n_videos: int, seed: int, release: str,
                        features: str) -> list[str]:
    """Sample, save features and annotations for one primary task; returns its video ids in order."""
    ids = []
    for j in range(n_videos):
        video_id = crosstask_video_id(task.id, j)
        video = world.sample_video(np.random.default_rng([world.seed, CROSSTASK_CODE, seed, task_index, j]), task)
        np.save(os.path.join(features, f"{video_id}.npy"), video.features, allow_pickle=False)
        _write_text(os.path.join(release, "annotations", f"{task.id}_{video_id}.csv"), _annotation_text(video.steps))
        ids.append(video_id)
    return ids


def _build(folder: str, world: World, seed: int, videos_per_task: int, val_per_task: int,
           related_videos: int) -> dict[str, Any]:
    release = os.path.join(folder, "crosstask_release")
    features = os.path.join(folder, "features")
    os.makedirs(os.path.join(release, "annotations"))
    os.makedirs(features)
    _write_text(os.path.join(release, "tasks_primary.txt"), "".join(
        _task_block(t.id, t.title, t.url, [s.name for s in t.steps]) for t in world.tasks))
    _write_text(os.path.join(release, "tasks_related.txt"), "".join(
        _task_block(task_id, title, url, list(steps)) for task_id, title, url, steps in RELATED_TASKS))
    rows, val_rows, primary_ids = [], [], {}
    for i, task in enumerate(world.tasks):
        ids = _write_primary_task(world, i, task, videos_per_task, seed, release, features)
        primary_ids[task.id] = ids
        rows += [(task.id, v) for v in ids]
        val_rows += [(task.id, v) for v in ids[:val_per_task]]
    # dropped by the availability filter: an annotated video without features ...
    first = world.tasks[0]
    unavailable = crosstask_video_id(first.id, videos_per_task)
    _write_text(os.path.join(release, "annotations", f"{first.id}_{unavailable}.csv"), "1,0.00,5.00\n")
    rows.append((first.id, unavailable))
    # ... and related-task videos with features but no annotation
    for r, (task_id, _, _, _) in enumerate(RELATED_TASKS):
        for j in range(related_videos):
            video_id = crosstask_video_id(task_id, j)
            rng = np.random.default_rng([world.seed, CROSSTASK_CODE, seed, len(world.tasks) + r, j])
            video = world.sample_video(rng, world.tasks[r % len(world.tasks)])
            np.save(os.path.join(features, f"{video_id}.npy"), video.features, allow_pickle=False)
            rows.append((task_id, video_id))
    _write_text(os.path.join(release, "videos.csv"), "".join(f"{t},{v},{_url(v)}\n" for t, v in rows))
    _write_text(os.path.join(release, "videos_val.csv"), "".join(f"{t},{v},{_url(v)}\n" for t, v in val_rows))
    summary = {"seed": seed, "world_seed": world.seed, "stream": CROSSTASK_CODE, "videos_per_task": videos_per_task,
               "val_per_task": val_per_task, "related_videos": related_videos, "primary_videos": primary_ids,
               "unavailable_video": unavailable}
    _write_text(os.path.join(folder, MARKER), json.dumps(summary, indent=1))
    return summary


def _check_replaceable(out_dir: str) -> None:
    if os.path.lexists(out_dir) and not (os.path.isdir(out_dir) and (
            not os.listdir(out_dir) or os.path.isfile(os.path.join(out_dir, MARKER)))):
        raise FileExistsError(f"{out_dir} exists and is not a demo CrossTask release (no {MARKER}); choose another "
                              "folder or remove it yourself")


def write_crosstask_release(world: World, out_dir: str, seed: int = 0, videos_per_task: int = 14,
                            val_per_task: int = 1, related_videos: int = 2) -> dict[str, Any]:
    """Write the demo release into ``out_dir`` (see the module docstring); returns the summary that is also
    written to ``demo_crosstask.json``.

    With ``n_train`` train videos per task in the run config, each primary task has
    ``videos_per_task - val_per_task - n_train`` test videos; the split needs that to be at least 1.
    """
    if videos_per_task < 2 or not 0 <= val_per_task < videos_per_task - 1:
        raise ValueError(f"videos_per_task={videos_per_task} must be >= 2 and val_per_task={val_per_task} leave at "
                         "least 2 videos per task for the train/test split")
    out_dir = os.path.abspath(out_dir)
    _check_replaceable(out_dir)
    with atomic_dir(out_dir) as tmp:
        summary = _build(tmp, world, seed, videos_per_task, val_per_task, related_videos)
    return summary
