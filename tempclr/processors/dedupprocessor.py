"""Caption de-duplication for HowTo100M-style ASR captions, seeded and deterministic.

YouTube's automatic captions roll: a line often repeats the end of the previous one.  Per video, over its
``(start, end, text)`` captions in order (``text`` with newlines turned into spaces and stripped; captions that
are not strings or are empty are dropped; the first remaining caption is kept as it is), each caption is compared
with the last kept one, ``prev``:

1. ``prev`` ends with the caption: only ``prev``'s end grows, ``end = max(end_prev, end)``;
2. the caption starts with ``prev``: it replaces ``prev``'s text, ``start = min``, ``end = max``;
3. else, the smallest ``e >= 1`` (in characters) with ``prev`` ending in ``text[:e]`` is the overlap.  With
   probability 1/2 (a draw ``> 0.5``) the overlap stays with ``prev``: ``end_prev = max(end_prev, start)`` and the
   rest ``text[e:]`` (stripped, when not empty) is appended over ``[max(end_prev, start), max(end, that))``;
   otherwise the overlap moves to the caption: ``prev`` loses its last ``e`` characters (and is dropped when
   nothing is left; else ``end_prev = min(end_prev, start)``) and the whole caption is appended;
4. no overlap: the caption is appended as it is.

After each step the last kept caption must satisfy ``end >= start - 0.001``; a violation is an error naming the
video.  These are the original rules, including the smallest overlap in characters.  What differs: the draw in
rule 3 comes from ``random.Random(f"{seed}:{video_id}")``, so the result is the same on every run and does not
depend on which other videos are processed or in which order (the original used the unseeded global ``random``);
no path is hard-coded; statistics cover every video (the original stopped at the first 4,096 and read feature
files from a fixed folder).

Run it as ``tempclr-dedup-captions`` or ``python -m tempclr.processors.dedupprocessor`` (the original's way).
The whole caption pipeline, from raw captions to the text shards the pretraining configs read::

    tempclr-extract --vdir videos/ --fdir data/feat/feat_how2_s3d                  # S3D features per video
    tempclr-shard-features --feat-dir data/feat/feat_how2_s3d --train-list ... --val-list ... \\
        --shard-dir data/feat/feat_how2_s3d_shard
    tempclr-dedup-captions --captions data/how2/raw_caption.json \\
        --out data/how2/raw_caption_dedup.pkl [--seed 0] [--feat-dir data/feat/feat_how2_s3d]
    tempclr-pretokenize --captions data/how2/raw_caption_dedup.pkl --tokenizer bert-base-uncased \\
        --shard-dir data/feat/feat_how2_s3d_shard
"""
from __future__ import annotations

import json
import math
import os
import random
from typing import Any, Mapping, Optional, Protocol

import numpy as np

from tempclr.utils.fileio import check_name, load_captions

__all__ = ["CaptionDedupProcessor", "dedup_caption", "video_rng"]

END_TOLERANCE = 0.001


class _Draws(Protocol):
    def random(self) -> float: ...


def video_rng(seed: int, video_id: str) -> random.Random:
    """The generator of one video's draws: ``random.Random(f"{seed}:{video_id}")`` (a string seed is hashed
    with SHA-512, so it is the same in every process, whatever ``PYTHONHASHSEED``)."""
    return random.Random(f"{seed}:{video_id}")


def _clean(text: Any) -> Optional[str]:
    if not isinstance(text, str):
        return None
    text = text.replace("\n", " ").strip()
    return text or None


def dedup_caption(caption: Mapping[str, Any], rng: _Draws, video_id: str = "?") -> dict:
    """``{"start": [...], "end": [...], "text": [...]}`` -> the de-duplicated captions (same keys, new lists), by
    the rules of this module; ``rng.random()`` decides rule 3.  ``video_id`` names the video in errors."""
    lengths = {key: len(caption.get(key, ())) for key in ("start", "end", "text")}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"video {video_id!r}: start/end/text lists have lengths {lengths}; they must be equal")
    starts: list = []
    ends: list = []
    texts: list[str] = []
    for start, end, raw in zip(caption["start"], caption["end"], caption["text"]):
        text = _clean(raw)
        if text is None:
            continue
        if not texts:
            starts.append(start), ends.append(end), texts.append(text)
            continue
        if texts[-1].endswith(text):
            ends[-1] = max(ends[-1], end)
        elif text.startswith(texts[-1]):
            texts[-1] = text
            starts[-1] = min(starts[-1], start)
            ends[-1] = max(ends[-1], end)
        else:
            overlap = next((e for e in range(1, len(text) + 1) if texts[-1].endswith(text[:e])), 0)
            if overlap == 0:
                starts.append(start), ends.append(end), texts.append(text)
            elif rng.random() > 0.5:
                ends[-1] = max(ends[-1], start)
                rest = text[overlap:].strip()
                if rest:
                    starts.append(max(ends[-1], start))
                    ends.append(max(end, starts[-1]))
                    texts.append(rest)
            else:
                left = texts[-1][:-overlap].strip()
                if left:
                    ends[-1] = min(ends[-1], start)
                    texts[-1] = left
                else:
                    starts.pop(), ends.pop(), texts.pop()
                starts.append(start), ends.append(end), texts.append(text)
        if not ends[-1] + END_TOLERANCE >= starts[-1]:
            raise ValueError(f"video {video_id!r}: caption {texts[-1]!r} ends at {ends[-1]} before it starts "
                             f"({starts[-1]}) after merging {text!r} [{start}, {end}]; fix its start/end times")
    return {"start": starts, "end": ends, "text": texts}


def _feature_length(feat_dir: Optional[str], video_id: str, source: str) -> Optional[int]:
    if feat_dir is None:
        return None
    path = os.path.join(feat_dir, f"{check_name(video_id, source, None, 'video id')}.npy")
    if not os.path.isfile(path):
        return None
    return int(np.load(path, mmap_mode="r").shape[0])


class CaptionDedupProcessor:
    """De-duplicate every video's captions of ``pkl_file`` (``.pkl`` or ``.json``; values dicts or json strings).

    ``processor()`` runs over all videos and prints the statistics; ``finalize(path)`` writes
    ``video_id -> json string`` (as the original, and as ``tempclr-pretokenize`` reads it) atomically.

    Args:
        pkl_file: the raw captions.
        seed: seed of the per-video draws (see :func:`video_rng`).
        feat_dir: optional folder of ``<video_id>.npy`` features: their row counts give the video lengths for
            the ``video_len`` / ``video_tps`` statistics (left out without it).
    """

    def __init__(self, pkl_file: str, seed: int = 0, feat_dir: Optional[str] = None) -> None:
        self.source = pkl_file
        self.data = load_captions(pkl_file)
        self.seed = seed
        self.feat_dir = feat_dir
        self.stat: dict[str, list] = {"t_clip_len": [], "video_len": [], "clip_tps": [], "video_tps": [],
                                      "clip_len": [], "num_clip": []}

    def _caption(self, video_id: str) -> dict:
        entry = self.data[video_id]
        if isinstance(entry, str):
            try:
                entry = json.loads(entry)
            except json.JSONDecodeError as error:
                raise ValueError(f"{self.source}: video {video_id!r} holds a string that is not json ({error})") \
                    from error
        if not isinstance(entry, Mapping):
            raise ValueError(f"{self.source}: video {video_id!r} holds a {type(entry).__name__}, expected "
                             "{'start': [...], 'end': [...], 'text': [...]}")
        return entry

    def _dedup(self, caption: Mapping[str, Any], video_id: str = "?") -> dict:
        return dedup_caption(caption, video_rng(self.seed, video_id), video_id)

    def __call__(self) -> dict:
        """De-duplicate every video in place; returns (and prints) the statistics."""
        for video_id in self.data:
            caption = self._dedup(self._caption(video_id), video_id)
            self.save_stat(video_id, caption)
            self.data[video_id] = json.dumps(caption)
        return self.print_stat()

    def single(self, video_id: str) -> dict:
        """One video before and after, printed (the original's inspection helper); returns the result."""
        caption = self._caption(video_id)
        for row in zip(caption["start"], caption["end"], caption["text"]):
            print(*row)
        print("@" * 100)
        result = self._dedup(caption, video_id)
        for row in zip(result["start"], result["end"], result["text"]):
            print(*row)
        print("#" * 100)
        return result

    def save_stat(self, video_id: str, caption: Mapping[str, Any]) -> None:
        """Add one de-duplicated video to the statistics.  A clip's length counts from the previous clip's end
        when they overlap (``end - max(end_prev, start)``), as the original."""
        t_clip_len, t_tokens = 0.0, 0
        for idx, (start, end, text) in enumerate(zip(caption["start"], caption["end"], caption["text"])):
            clip_len = end - max(caption["end"][idx - 1], start) if idx > 0 else end - start
            t_clip_len += clip_len
            t_tokens += len(text.split(" "))
            self.stat["clip_len"].append(clip_len)
        self.stat["num_clip"].append(len(caption["text"]))
        self.stat["t_clip_len"].append(t_clip_len)
        if t_clip_len > 0:
            self.stat["clip_tps"].append(t_tokens / t_clip_len)
        video_len = _feature_length(self.feat_dir, video_id, self.source)
        if video_len:
            self.stat["video_len"].append(video_len)
            self.stat["video_tps"].append(t_tokens / video_len)

    def print_stat(self) -> dict:
        """Means over the videos (``None`` where nothing was measured, never NaN)."""
        def mean(values: list) -> Optional[float]:
            return float(np.mean(values)) if values else None

        clip_len = self.stat["clip_len"]
        result = {
            "videos": len(self.stat["num_clip"]),
            "videos_with_features": len(self.stat["video_len"]),
            "t_clip_len": mean(self.stat["t_clip_len"]),
            "video_len": mean(self.stat["video_len"]),
            "clip_tps": mean(self.stat["clip_tps"]),
            "video_tps": mean(self.stat["video_tps"]),
            "min_clip_len": min(clip_len) if clip_len else None,
            "max_clip_len": max(clip_len) if clip_len else None,
            "mean_clip_len": mean(clip_len),
            "num_clip": mean(self.stat["num_clip"]),
        }
        if any(isinstance(v, float) and not math.isfinite(v) for v in result.values()):
            raise ValueError(f"{self.source}: caption times give non-finite statistics {result}; check for NaN/inf "
                             "start/end values")
        print(result)
        return result

    def finalize(self, tgt_fn: str) -> None:
        """Write ``video_id -> json string`` to ``tgt_fn`` (``.pkl``, or ``.json`` for a plain dict) atomically."""
        from tempclr.utils.fileio import write_json_atomic, write_pickle_atomic

        if tgt_fn.endswith(".json"):
            write_json_atomic(tgt_fn, {k: json.loads(v) if isinstance(v, str) else v for k, v in self.data.items()})
        else:
            write_pickle_atomic(tgt_fn, self.data)
