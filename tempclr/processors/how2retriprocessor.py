"""Retrieval-augmented HowTo100M processors: one item is a group of videos."""
from __future__ import annotations

from typing import Any, List, Sequence, Tuple

from tempclr.utils.collate import collate_dicts
from tempclr.utils.config_schema import dataset_setting
from tempclr.utils.registry import register

from .how2processor import (OverlappedAligner, ShardedHow2MetaProcessor, ShardedTextProcessor,
                            ShardedVideoProcessor, VariedLenAligner)

GROUPS_MULTIPLE = 8  # the number of groups is truncated to a multiple of this, as the original


@register("meta_processor")
class ShardedHow2VideoRetriMetaProcessor(ShardedHow2MetaProcessor):
    """Items are groups of ``num_video_per_batch`` videos: consecutive in the list at first, then the
    retrieved groups set by :meth:`set_candidates` before each training epoch."""

    def __init__(self, config: Any):
        super().__init__(config)
        self.num_video_per_batch = int(dataset_setting(config, "num_video_per_batch"))
        self.videos = [(vid, -1, shard, idx) for vid, _, shard, idx in self.data]
        n_groups = len(self.videos) // self.num_video_per_batch
        n_groups -= n_groups % GROUPS_MULTIPLE
        if n_groups == 0:
            raise ValueError(
                f"{self._get_split_path(config)}: {len(self.videos)} videos make no full set of "
                f"{GROUPS_MULTIPLE} groups of num_video_per_batch={self.num_video_per_batch}; "
                "use more videos or a smaller dataset.num_video_per_batch")
        self.cands = [self.videos[g * self.num_video_per_batch:(g + 1) * self.num_video_per_batch]
                      for g in range(n_groups)]
        self.video_index = {v[0]: v for v in self.videos}

    def __len__(self) -> int:
        return len(self.cands)

    def __getitem__(self, idx: int) -> Tuple[List, List]:
        return self.cands[idx], self.cands[idx]

    def set_candidates(self, groups: Sequence[Sequence[str]]) -> None:
        """Replace the groups by lists of video ids (the retrieval result)."""
        unknown = [v for g in groups for v in g if v not in self.video_index]
        if unknown:
            raise KeyError(f"set_candidates got {len(unknown)} unknown video id(s), first {unknown[0]!r}")
        self.cands = [[self.video_index[v] for v in g] for g in groups]


@register("video_processor")
class ShardedVideoRetriVideoProcessor(ShardedVideoProcessor):
    """The per-video processor mapped over a group."""

    def __call__(self, group):
        return [super(ShardedVideoRetriVideoProcessor, self).__call__(key) for key in group]


@register("text_processor")
class ShardedVideoRetriTextProcessor(ShardedTextProcessor):
    """The per-video processor mapped over a group."""

    def __call__(self, group):
        return [super(ShardedVideoRetriTextProcessor, self).__call__(key) for key in group]


class _GroupAligner:
    """Runs a per-video aligner on each video of a group and collates: ``[Nv, clip_per_video, ...]``."""

    per_video_cls = None

    def __init__(self, config: Any):
        self.per_video = self.per_video_cls(config)

    def __call__(self, group, video_features, text_features):
        outputs = [self.per_video(key, v, t) for key, v, t in zip(group, video_features, text_features)]
        batch = collate_dicts(outputs)
        batch["video_id"] = [o["video_id"] for o in outputs]
        return batch


@register("aligner")
class VideoRetriOverlappedAligner(_GroupAligner):
    per_video_cls = OverlappedAligner


@register("aligner")
class VideoRetriAligner(_GroupAligner):
    per_video_cls = VariedLenAligner
