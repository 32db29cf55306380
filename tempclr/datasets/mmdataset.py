"""``MMDataset``: meta/video/text processors plus an aligner make one item."""
from __future__ import annotations

from typing import Any, Dict, List

from torch.utils.data import Dataset

from tempclr.utils import set_seed
from tempclr.utils.collate import collate_dicts


class MMDataset(Dataset):
    """Item ``idx``: ``video_id, text_id = meta[idx]``, then ``aligner(video_id, video(video_id),
    text(text_id))`` plus key ``idx``.  On the test split each item first seeds every RNG with ``idx``,
    so evaluation inputs do not depend on order or workers."""

    def __init__(self, meta_processor, video_processor, text_processor, align_processor):
        self.split = meta_processor.split
        self.meta_processor = meta_processor
        self.video_processor = video_processor
        self.text_processor = text_processor
        self.align_processor = align_processor

    def __len__(self) -> int:
        return len(self.meta_processor)

    def __getitem__(self, idx: int) -> Dict[str, Any]:
        if self.split == "test":
            set_seed(idx)
        video_id, text_id = self.meta_processor[idx]
        video_feature = self.video_processor(video_id)
        text_feature = self.text_processor(text_id)
        output = self.align_processor(video_id, video_feature, text_feature)
        output["idx"] = idx
        return output

    def collater(self, samples: List[Dict[str, Any]]) -> Dict[str, Any]:
        return collate_dicts(samples)
