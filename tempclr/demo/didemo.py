"""Write a DiDeMo-format demo moment localisation set drawn from a :class:`World`.

Layout under ``out_dir`` (``data/demo/didemo``), the files the DiDeMo config reads::

    test_data.json        [{"annotation_id": n, "video": "<vid>.mp4", "description": step phrase,
                            "times": [[start_chunk, end_chunk], ...]}, ...]   (chunks of 5 s, ends inclusive)
    features/<vid>.mp4.npy  float16 [T, 512], T <= 30 (one row per second)
    demo_didemo.json      how the set was drawn (marks the folder as a demo set)

Task ``i`` gets ``videos_per_task`` videos; each is a 30-second cut (25 s for every third video) of a world
video drawn with ``np.random.default_rng([world.seed, DIDEMO_CODE, seed, i, j])``, starting at a performed
step.  Every step whose interval overlaps the cut by at least 3 seconds gives one description (its phrase) with
four annotators: the chunks it covers, and three copies moved by at most one chunk at either end.  Edge cases,
as real DiDeMo data has them: one described video has no feature file (dropped with a count), and one video is
cut to 22 seconds while its description's moment reaches chunk 5, which has no features.
"""
from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from tempclr.demo.world import World
from tempclr.utils.fileio import atomic_dir

__all__ = ["DIDEMO_CODE", "write_didemo_set"]

DIDEMO_CODE = 5   # this writer's stream in the world's seed sequence (COIN 4)
MARKER = "demo_didemo.json"
CHUNK = 5
MIN_OVERLAP = 3


def _chunks(start: int, end: int) -> list[int]:
    """Chunk span ``[first, last]`` (inclusive) of seconds ``start .. end - 1``."""
    return [min(5, start // CHUNK), min(5, (end - 1) // CHUNK)]


def _annotators(rng: np.random.Generator, span: list[int]) -> list[list[int]]:
    times = [list(span)]
    for _ in range(3):
        first = int(np.clip(span[0] + rng.integers(-1, 2), 0, 5))
        last = int(np.clip(span[1] + rng.integers(-1, 2), first, 5))
        times.append([first, last])
    return times


def _build(folder: str, world: World, seed: int, videos_per_task: int) -> dict[str, Any]:
    features = os.path.join(folder, "features")
    os.makedirs(features)
    records: list[dict[str, Any]] = []
    count = 0
    for i, task in enumerate(world.tasks):
        for j in range(videos_per_task):
            rng = np.random.default_rng([world.seed, DIDEMO_CODE, seed, i, j])
            video = world.sample_video(rng, task)
            length = 25 if count % 3 == 2 else 30
            step_start = video.steps[int(rng.integers(len(video.steps)))][1]
            cut = int(min(max(0, step_start - int(rng.integers(0, 6))), video.duration - length))
            name = f"demo_didemo_{count:04d}.mp4"
            count += 1
            np.save(os.path.join(features, f"{name}.npy"), video.features[cut:cut + length], allow_pickle=False)
            for step, start, end in video.steps:
                start, end = max(start - cut, 0), min(end - cut, length)
                if end - start >= MIN_OVERLAP:
                    records.append({"annotation_id": len(records), "video": name,
                                    "description": task.steps[step].phrase,
                                    "times": _annotators(rng, _chunks(start, end))})
    # edge cases: a video cut to 22 s whose moment reaches chunk 5; a described video without features
    short = records[0]["video"]
    array = np.load(os.path.join(features, f"{short}.npy"))
    np.save(os.path.join(features, f"{short}.npy"), array[:22], allow_pickle=False)
    records[0]["times"][0] = [records[0]["times"][0][0], 5]
    missing = records[-1]["video"]
    os.remove(os.path.join(features, f"{missing}.npy"))
    with open(os.path.join(folder, "test_data.json"), "w", encoding="utf-8") as f:
        json.dump(records, f)
    summary = {"seed": seed, "world_seed": world.seed, "stream": DIDEMO_CODE, "videos": count,
               "descriptions": len(records), "short_video": short, "missing_video": missing}
    with open(os.path.join(folder, MARKER), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    return summary


def write_didemo_set(world: World, out_dir: str, seed: int = 0, videos_per_task: int = 4) -> dict[str, Any]:
    """Write the demo DiDeMo set into ``out_dir`` (see the module docstring; an earlier demo set there is
    replaced, any other existing folder refused); returns the summary written to ``demo_didemo.json``."""
    if videos_per_task < 1:
        raise ValueError(f"videos_per_task={videos_per_task} must be >= 1")
    out_dir = os.path.abspath(out_dir)
    if os.path.lexists(out_dir) and not (os.path.isdir(out_dir) and (
            not os.listdir(out_dir) or os.path.isfile(os.path.join(out_dir, MARKER)))):
        raise FileExistsError(f"{out_dir} exists and is not a demo DiDeMo set (no {MARKER}); choose another folder "
                              "or remove it yourself")
    with atomic_dir(out_dir) as tmp:
        summary = _build(tmp, world, seed, videos_per_task)
    return summary
