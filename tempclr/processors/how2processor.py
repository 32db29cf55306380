"""HowTo100M processors over sharded features and pretokenised captions.

Sampling (which captions, which seconds) uses Python ``random``, as the original did; training seeds it
per epoch in ``FairseqMMTask.get_batch_iterator`` and test-time items seed it per index.
"""
from __future__ import annotations

import functools
import math
import os
import random
from typing import Any, Dict, List, Tuple

import numpy as np

from tempclr.utils.collate import stack_clip_dicts
from tempclr.utils.bert_name import load_pretrained
from tempclr.utils.config_schema import cfg_get, dataset_setting
from tempclr.utils.registry import register
from tempclr.utils.safe_pickle import load_pickle
from tempclr.utils.shardedtensor import ShardedTensor, shard_paths

from .processor import SPLIT_PATH_KEYS, Aligner, MetaProcessor, Processor, nonfinite_row, require_file

SHARD_HOW = "build the shards with scripts/shard_feature.py and scripts/pretokenization.py " \
            "(or run scripts/make_demo_data.py for the demo)"
MAX_TEXT_SPAN_SEC = 256  # a sampled caption span never grows past this many seconds
# a caption may end this many seconds after the last feature row's second: features are one row per whole second
# (the last partial second has none) and ASR caption times are not exact to the frame
CAPTION_END_TOLERANCE_S = 2.0
TEXT_SHARD_HOW = ("re-run scripts/pretokenization.py on the current video shards (it writes the caption shards of "
                  "each video shard, in its order)")


def shard_split_name(split: str) -> str:
    """The shard file prefix of a split: ``train`` for train, ``val`` for valid and test."""
    return "train" if split == "train" else "val"


@register("meta_processor")
class ShardedHow2MetaProcessor(MetaProcessor):
    """Video ids of a split list (``.lst``) with their shard positions from ``<vfeat_dir>/<split>_meta.pkl``.
    Item: ``(key, key)`` with ``key = (video_id, idx, shard_id, idx_in_shard)``."""

    def __init__(self, config: Any):
        super().__init__(config)
        list_path = require_file(self._get_split_path(config), SPLIT_PATH_KEYS[self.split], "write the split list")
        with open(list_path) as f:
            video_ids = [line.strip() for line in f if line.strip()]
        location = read_shard_meta(str(cfg_get(config, "vfeat_dir")), self.split)
        missing = [v for v in video_ids if v not in location]
        if missing:
            raise KeyError(f"{len(missing)} video(s) of {list_path} are not in the shard meta "
                           f"(first: {missing[0]}); re-run scripts/shard_feature.py with this list")
        self.data = [(vid, i) + location[vid] for i, vid in enumerate(video_ids)]

    def __getitem__(self, idx: int) -> Tuple[Any, Any]:
        return self.data[idx], self.data[idx]


@functools.lru_cache(maxsize=8)
def _load_pickle(path: str, mtime_ns: int, size: int) -> Any:
    """The unpickled file, read once per version of it (the key holds its mtime and size): a split's meta
    processor, video processor and text processor, and the retrieval pass of every epoch, all need the shard
    meta, which for HowTo100M lists a million videos.  Callers must not modify the result."""
    return load_pickle(path)


def _shard_meta(vfeat_dir: str, split: str) -> Dict[Any, List[str]]:
    """``{shard_id: [video_id, ...]}`` of ``<vfeat_dir>/<train|val>_meta.pkl``."""
    path = require_file(os.path.join(vfeat_dir, f"{shard_split_name(split)}_meta.pkl"), "vfeat_dir", SHARD_HOW)
    stat = os.stat(path)
    return _load_pickle(os.path.abspath(path), stat.st_mtime_ns, stat.st_size)


def read_shard_meta(vfeat_dir: str, split: str) -> Dict[str, Tuple[int, int]]:
    """``video_id -> (shard_id, index_in_shard)`` from ``<vfeat_dir>/<train|val>_meta.pkl``."""
    return {vid: (int(shard), i) for shard, vids in _shard_meta(vfeat_dir, split).items() for i, vid in enumerate(vids)}


def shard_counts(vfeat_dir: str, split: str) -> Dict[int, int]:
    """``shard_id -> number of videos`` the shard meta ``<vfeat_dir>/<train|val>_meta.pkl`` lists."""
    return {int(shard): len(vids) for shard, vids in _shard_meta(vfeat_dir, split).items()}


class _ShardCache:
    """Opens each shard's memmaps once, on first use (per worker process).  ``prefix_format`` holds one ``{}``
    for the shard id (a string, so the cache pickles into spawned/forkserver workers).  With ``counts`` (videos
    per shard, from the shard meta) a shard holding another number of items is an error naming its file."""

    def __init__(self, prefix_format: str, counts: Dict[int, int] | None = None, made_by: str = SHARD_HOW):
        self.prefix_format = prefix_format
        self.counts = counts
        self.made_by = made_by
        self.shards: Dict[int, ShardedTensor] = {}

    def get(self, shard_id: int) -> ShardedTensor:
        if shard_id not in self.shards:
            prefix = self.prefix_format.format(shard_id)
            shard = ShardedTensor.load(prefix, mmap_mode="r")
            expected = None if self.counts is None else self.counts.get(shard_id)
            if expected is not None and len(shard) != expected:
                raise ValueError(f"{shard_paths(prefix)[0]} holds {len(shard)} items but the shard meta lists "
                                 f"{expected} videos in shard {shard_id}: the files are from different runs; "
                                 f"{self.made_by}")
            self.shards[shard_id] = shard
        return self.shards[shard_id]


@register("video_processor")
class ShardedVideoProcessor(Processor):
    """``(video_id, idx, shard_id, idx_in_shard)`` → the video's ``[T, 512]`` float16 memmap rows."""

    def __init__(self, config: Any):
        super().__init__(config)
        vfeat_dir = str(cfg_get(config, "vfeat_dir"))
        split = shard_split_name(cfg_get(config, "split"))
        self.prefix_format = os.path.join(vfeat_dir.replace("{", "{{").replace("}", "}}"), split + "_{}")
        self.cache = _ShardCache(self.prefix_format, shard_counts(vfeat_dir, cfg_get(config, "split")))

    def __call__(self, key: Tuple[str, int, int, int]) -> np.ndarray:
        features = self.cache.get(key[2])[key[3]]
        row = nonfinite_row(features)
        if row is not None:
            raise ValueError(f"video {key[0]}: NaN or inf in its features (second {row}) in "
                             f"{shard_paths(self.prefix_format.format(key[2]))[1]}; re-extract its features "
                             "(scripts/check_data.py lists every such video)")
        return features


@register("text_processor")
class ShardedTextProcessor(Processor):
    """``(video_id, idx, shard_id, idx_in_shard)`` → ``{"start": [s], "end": [s], "cap": [[ids]]}`` read from
    the ``<tfeat_dir><split>_<k>.startends`` and ``.caps_ids`` shards (padding ``-1`` removed)."""

    def __init__(self, config: Any):
        super().__init__(config)
        tfeat_dir = str(cfg_get(config, "tfeat_dir"))
        split = shard_split_name(cfg_get(config, "split"))
        prefix = tfeat_dir.replace("{", "{{").replace("}", "}}") + split + "_{}"
        counts = shard_counts(str(cfg_get(config, "vfeat_dir")), cfg_get(config, "split"))
        self.startends = _ShardCache(prefix + ".startends", counts, TEXT_SHARD_HOW)
        self.caps_ids = _ShardCache(prefix + ".caps_ids", counts, TEXT_SHARD_HOW)
        self.bert_name = str(dataset_setting(config, "bert_name"))
        self._vocab_size: int | None = None

    def vocab_size(self) -> int:
        """``vocab_size`` of ``dataset.bert_name``'s config.json (read once): token ids must lie below it."""
        if self._vocab_size is None:
            from transformers import AutoConfig

            self._vocab_size = int(load_pretrained(AutoConfig, self.bert_name).vocab_size)
        return self._vocab_size

    def __call__(self, key: Tuple[str, int, int, int]) -> Dict[str, List]:
        startends = np.asarray(self.startends.get(key[2])[key[3]])
        caps = np.asarray(self.caps_ids.get(key[2])[key[3]])
        if len(startends) != len(caps):
            raise ValueError(f"video {key[0]}: {len(startends)} caption times but {len(caps)} token rows in "
                             f"{self.caps_ids.prefix_format.format(key[2])}; {TEXT_SHARD_HOW}")
        backwards = np.flatnonzero(startends[:, 1] < startends[:, 0])
        if len(backwards):
            i = int(backwards[0])
            raise ValueError(f"video {key[0]}: caption {i} ends before it starts ({startends[i, 0]:g} s > "
                             f"{startends[i, 1]:g} s) in {self.startends.prefix_format.format(key[2])}; fix the "
                             f"caption file and {TEXT_SHARD_HOW}")
        if caps.size and (caps.max() >= self.vocab_size() or caps.min() < -1):
            bad = (caps >= self.vocab_size()) | (caps < -1)
            row = int(np.argwhere(bad)[0, 0])
            raise ValueError(f"video {key[0]}: caption {row} holds token id {int(caps[row][bad[row]][0])}, outside "
                             f"the vocabulary [0, {self.vocab_size()}) of dataset.bert_name in "
                             f"{shard_paths(self.caps_ids.prefix_format.format(key[2]))[1]}; the captions were "
                             "tokenised with another tokenizer: re-run tempclr-pretokenize with dataset.bert_name's")
        return {"start": startends[:, 0].tolist(), "end": startends[:, 1].tolist(),
                "cap": [row[row != -1].tolist() for row in caps]}


class TextClipSampler:
    """Grow a caption span around a random centre caption until a random token budget
    ``U{sampled_min_len..sampled_max_len}`` or a 256-s span is reached."""

    def __init__(self, config: Any):
        self.min_len = int(dataset_setting(config, "sampled_min_len"))
        self.max_len = int(dataset_setting(config, "sampled_max_len"))

    def __call__(self, text_feature: Dict[str, List]) -> Tuple[int, int]:
        """Returns ``(first, end)``: caption indices ``first .. end-1``."""
        caps, starts, ends = text_feature["cap"], text_feature["start"], text_feature["end"]
        n = len(caps)
        first = last = random.randint(0, n - 1)
        budget = random.randint(self.min_len, self.max_len)
        tokens = len(caps[first])
        while (first > 0 or last < n - 1) and tokens < budget and ends[last] - starts[first] < MAX_TEXT_SPAN_SEC:
            if random.random() > 0.5 and last < n - 1:
                last += 1
                tokens += len(caps[last])
            elif first > 0:
                first -= 1
                tokens += len(caps[first])
            else:
                last += 1
                tokens += len(caps[last])
        return first, last + 1


class VideoClipSampler:
    """A random-length ``U{min..max}``-second window grown around a centre second."""

    def __init__(self, config: Any):
        self.min_len = int(dataset_setting(config, "sampled_video_min_len"))
        self.max_len = int(dataset_setting(config, "sampled_video_max_len"))

    def __call__(self, center: int, num_seconds: int) -> Tuple[int, int]:
        length = random.randint(self.min_len, self.max_len)
        start = end = center
        while end - start < length and (start > 0 or end < num_seconds):
            if start <= 0:
                end += 1
            elif end >= num_seconds:
                start -= 1
            elif random.random() > 0.5:
                end += 1
            else:
                start -= 1
        return start, end


class _SampledClipsAligner(Aligner):
    """Shared loop of the per-video aligners: sample ``clip_per_video`` clips, sort them in time, stack."""

    def __init__(self, config: Any):
        super().__init__(config)
        self.num_clips = int(cfg_get(config, "clip_per_video") or dataset_setting(config, "subsampling"))
        self.text_sampler = TextClipSampler(config)

    def _video_window(self, text_feature: Dict[str, List], first: int, end: int,
                      num_seconds: int) -> Tuple[int, int]:
        raise TypeError(f"{type(self).__name__} must define _video_window")

    def __call__(self, video_id: Any, video_feature: np.ndarray, text_feature: Dict[str, List]) -> Dict[str, Any]:
        name = video_id[0] if isinstance(video_id, tuple) else video_id
        if len(text_feature["cap"]) == 0:
            raise ValueError(f"video {name} has no captions; drop it from the split list")
        if len(video_feature) == 0:
            raise ValueError(f"video {name} has no feature rows; drop it from the split list")
        late = [i for i, start in enumerate(text_feature["start"]) if start > len(video_feature) + 1]
        if late:
            raise ValueError(f"video {name}: caption {late[0]} starts at {text_feature['start'][late[0]]:g} s but "
                             f"the video has {len(video_feature)} s of features; the caption shards (tfeat_dir) "
                             "and the video shards (vfeat_dir) do not belong together: re-run "
                             "scripts/pretokenization.py on the shards' meta")
        late = [i for i, end in enumerate(text_feature["end"]) if end > len(video_feature) + CAPTION_END_TOLERANCE_S]
        if late:
            raise ValueError(f"video {name}: caption {late[0]} ends at {text_feature['end'][late[0]]:g} s but the "
                             f"video has {len(video_feature)} s of features (tolerance {CAPTION_END_TOLERANCE_S:g} "
                             "s); fix the caption file (or the video's features) and re-run "
                             "scripts/pretokenization.py (tempclr-check lists every such video)")
        clips = [self._one_clip(video_feature, text_feature) for _ in range(self.num_clips)]
        clips.sort(key=lambda c: (c["text_start"], c["video_start"], c["text_end"], c["video_end"]))
        out = stack_clip_dicts(clips)
        out["video_id"] = name
        return out

    def _one_clip(self, video_feature: np.ndarray, text_feature: Dict[str, List]) -> Dict[str, Any]:
        first, end = self.text_sampler(text_feature)
        video_start, video_end = self._video_window(text_feature, first, end, len(video_feature))
        caps, cmasks = self._build_text_seq(text_feature, range(first, end))
        vfeats, vmasks = self._build_video_seq(video_feature, {"start": [video_start], "end": [video_end]})
        return {"caps": caps, "cmasks": cmasks, "vfeats": vfeats, "vmasks": vmasks,
                "video_start": video_start, "video_end": video_end, "text_start": first, "text_end": end}


@register("aligner")
class OverlappedAligner(_SampledClipsAligner):
    """Clips whose video window is grown around a random second of the caption span: the window has a random
    length and may overlap other clips' windows."""

    def __init__(self, config: Any):
        super().__init__(config)
        self.video_sampler = VideoClipSampler(config)

    def _video_window(self, text_feature, first, end, num_seconds):
        low = math.floor(text_feature["start"][first])
        high = math.ceil(text_feature["end"][end - 1])
        center = random.randint(low, high) if low < high else (low + high) // 2
        center = min(max(center, 0), num_seconds - 1)
        return self.video_sampler(center, num_seconds)


@register("aligner")
class VariedLenAligner(_SampledClipsAligner):
    """Clips whose video window is the caption span itself (used by the retrieval embedding pass)."""

    def _video_window(self, text_feature, first, end, num_seconds):
        video_end = min(math.ceil(text_feature["end"][end - 1]), num_seconds)
        video_start = max(min(math.floor(text_feature["start"][first]), video_end), 0)
        return video_start, video_end
