"""Write MSR-VTT- and MSR-VTT-QA-format demo sets drawn from a :class:`World`.

Layout under ``out_dir`` (``data/demo/msrvtt``), the files the MSR-VTT configs read::

    MSRVTT_train.csv              video_id                         (the training videos)
    MSRVTT_JSFUSION_test.csv      key,vid_key,video_id,sentence    (one sentence per test video)
    MSRVTT_FULL_test.csv          video_id                         (the test videos plus extra ones, which the
                                                                    training set takes in)
    MSRVTT_data.json              {"videos": [{"video_id", "split"}], "sentences": [{"video_id", "caption",
                                   "sen_id"}]}  (every train and extra video, several captions each)
    MSR_MC_test.csv               tab-separated vid_key a1 a2 a3 a4 a5 answer  (one question per test video)
    features/<video_id>.npy       float16 [T, 512], one row per second
    demo_msrvtt.json              how the set was drawn (marks the folder as a demo set)

An MSR-VTT video is short and shows one thing: each demo video is one step of a world video (the step's seconds
with up to 2 s either side), its captions the step's phrase in the world's caption templates.  Video ``video<N>``
of task ``i`` is drawn with ``np.random.default_rng([world.seed, MSRVTT_CODE, seed, i, j])``.

The edge cases of the real files are in it: one test video is listed (in the test csv and the QA file) without a
feature file (its rows are dropped with a count); one QA question has the candidate ``NA`` (a string, not a missing
value); one has its answer's text also at an earlier position (the original's argmax scored it wrong).  Written
into a temp folder next to ``out_dir`` that then replaces it (an earlier demo set is replaced, any other existing
folder refused).
"""
from __future__ import annotations

import csv
import json
import os
from typing import Any

import numpy as np

from tempclr.demo.world import CAPTION_TEMPLATES, DemoTask, World
from tempclr.utils.fileio import atomic_dir

__all__ = ["MSRVTT_CODE", "write_msrvtt_set"]

MSRVTT_CODE = 17   # this writer's stream in the world's seed sequence
MARKER = "demo_msrvtt.json"
MARGIN = 2         # seconds of context either side of the step
CANDIDATES = 5


def _clip(world: World, rng: np.random.Generator, task: DemoTask) -> tuple[np.ndarray, str]:
    """One short video: a random step of a sampled video with its margin, and that step's phrase."""
    video = world.sample_video(rng, task)
    step, start, end = video.steps[int(rng.integers(len(video.steps)))]
    start, end = max(0, start - MARGIN), min(video.duration, end + MARGIN)
    return video.features[start:end], task.steps[step].phrase


def _captions(rng: np.random.Generator, phrase: str, n: int) -> list[str]:
    picks = rng.choice(len(CAPTION_TEMPLATES), size=min(n, len(CAPTION_TEMPLATES)), replace=False)
    return [CAPTION_TEMPLATES[int(k)].format(phrase=phrase) for k in picks]


def _write_csv(path: str, header: list[str], rows: list[list[Any]], delimiter: str = ",") -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter=delimiter, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _build(folder: str, world: World, seed: int, train_per_task: int, test_per_task: int,
           extra_per_task: int) -> dict[str, Any]:
    features = os.path.join(folder, "features")
    os.makedirs(features)
    per_task = train_per_task + test_per_task + extra_per_task
    videos: dict[str, list[str]] = {"train": [], "test": [], "extra": []}
    phrase_of: dict[str, str] = {}
    sentences, videos_json = [], []
    for i, task in enumerate(world.tasks):
        for j in range(per_task):
            video_id = f"video{i * per_task + j}"
            rng = np.random.default_rng([world.seed, MSRVTT_CODE, seed, i, j])
            feats, phrase = _clip(world, rng, task)
            np.save(os.path.join(features, f"{video_id}.npy"), feats, allow_pickle=False)
            split = "train" if j < train_per_task else "test" if j < train_per_task + test_per_task else "extra"
            videos[split].append(video_id)
            phrase_of[video_id] = phrase
            captions = _captions(rng, phrase, 3)
            if split == "test":
                phrase_of[video_id] = captions[0]
            else:
                sentences += [{"video_id": video_id, "caption": c} for c in captions]
            videos_json.append({"video_id": video_id, "split": "train" if split == "train" else "test",
                                "category": int(task.id) % 20})
    # a test video listed everywhere but without features (dropped, as real MSR-VTT videos without features)
    missing = f"video{len(world.tasks) * per_task}"
    phrase_of[missing] = CAPTION_TEMPLATES[0].format(phrase=world.tasks[0].steps[0].phrase)
    test_ids = videos["test"] + [missing]
    for sen_id, sentence in enumerate(sentences):
        sentence["sen_id"] = sen_id
    _write_csv(os.path.join(folder, "MSRVTT_train.csv"), ["video_id"], [[v] for v in videos["train"]])
    _write_csv(os.path.join(folder, "MSRVTT_JSFUSION_test.csv"), ["key", "vid_key", "video_id", "sentence"],
               [[f"ret{k}", "msr" + v[5:], v, phrase_of[v]] for k, v in enumerate(test_ids)])
    _write_csv(os.path.join(folder, "MSRVTT_FULL_test.csv"), ["video_id"],
               [[v] for v in videos["test"] + videos["extra"] + [missing]])
    with open(os.path.join(folder, "MSRVTT_data.json"), "w", encoding="utf-8") as f:
        json.dump({"videos": videos_json, "sentences": sentences}, f)
    # QA: the answer is the video's test sentence, the distractors other test videos' sentences of other texts
    qa_rng = np.random.default_rng([world.seed, MSRVTT_CODE, seed, len(world.tasks)])
    rows, edge = [], {}
    for k, video_id in enumerate(test_ids):
        answer_text = phrase_of[video_id]
        others = sorted({phrase_of[v] for v in test_ids if phrase_of[v] != answer_text})
        distractors = [others[int(n)] for n in qa_rng.choice(len(others), size=CANDIDATES - 1, replace=False)]
        answer = int(qa_rng.integers(CANDIDATES))
        if k == 0:
            distractors[0] = "NA"
            edge["na_question"] = video_id
        if k == 1:
            answer = max(answer, 1)
            distractors[answer - 1] = answer_text      # the answer's text also at an earlier position
            edge["repeated_answer_question"] = video_id
        candidates = distractors[:answer] + [answer_text] + distractors[answer:]
        rows.append(["msr" + video_id[5:]] + candidates + [answer])
    _write_csv(os.path.join(folder, "MSR_MC_test.csv"), ["vid_key", "a1", "a2", "a3", "a4", "a5", "answer"], rows,
               delimiter="\t")
    summary = {"seed": seed, "world_seed": world.seed, "stream": MSRVTT_CODE,
               "train_videos": len(videos["train"]), "test_videos": len(videos["test"]),
               "extra_videos": len(videos["extra"]), "missing_video": missing, "questions": len(rows), **edge}
    with open(os.path.join(folder, MARKER), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    return summary


def write_msrvtt_set(world: World, out_dir: str, seed: int = 0, train_per_task: int = 6, test_per_task: int = 3,
                     extra_per_task: int = 1) -> dict[str, Any]:
    """Write the demo MSR-VTT / MSR-VTT-QA set into ``out_dir`` (see the module docstring); returns the summary
    also written to ``demo_msrvtt.json``."""
    if min(train_per_task, test_per_task) < 1 or extra_per_task < 0:
        raise ValueError("train_per_task and test_per_task must be >= 1, extra_per_task >= 0")
    out_dir = os.path.abspath(out_dir)
    if os.path.lexists(out_dir) and not (os.path.isdir(out_dir) and (
            not os.listdir(out_dir) or os.path.isfile(os.path.join(out_dir, MARKER)))):
        raise FileExistsError(f"{out_dir} exists and is not a demo MSR-VTT set (no {MARKER}); choose another "
                              "folder or remove it yourself")
    with atomic_dir(out_dir) as tmp:
        summary = _build(tmp, world, seed, train_per_task, test_per_task, extra_per_task)
    return summary
