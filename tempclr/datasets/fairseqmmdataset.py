"""fairseq wrapper of :class:`MMDataset`."""
from __future__ import annotations

from typing import Any, Dict, List

from fairseq.data import FairseqDataset, data_utils


class FairseqMMDataset(FairseqDataset):
    """Every item counts as size 1 (batches are built by item count, not tokens)."""

    def __init__(self, mmdataset):
        super().__init__()
        self.mmdataset = mmdataset

    def set_epoch(self, epoch: int, **unused) -> None:
        super().set_epoch(epoch)
        self.epoch = epoch

    def __getitem__(self, idx: int) -> Dict[str, Any]:
        with data_utils.numpy_seed(43211, getattr(self, "epoch", 1), idx):
            return self.mmdataset[idx]

    def __len__(self) -> int:
        return len(self.mmdataset)

    def collater(self, samples: List[Dict[str, Any]]) -> Dict[str, Any]:
        return self.mmdataset.collater(samples)

    def size(self, index: int) -> int:
        return 1

    def num_tokens(self, index: int) -> int:
        return 1
