"""fairseq wrapper of :class:`MMDataset`."""
from __future__ import annotations

import contextlib
import random
from typing import Any, Dict, Iterator, List

from fairseq.data import FairseqDataset, data_utils


@contextlib.contextmanager
def item_seed(seed: int, epoch: int, index: int) -> Iterator[None]:
    """Python ``random`` and numpy seeded from ``(seed, epoch, index)`` inside the block, their previous states
    restored after it.  An item is then a function of the run's seed, the epoch and its index alone: the same
    whichever items were drawn before it, so a run resumed mid-epoch draws exactly what the uninterrupted run
    drew, with any number of loader workers."""
    state = random.getstate()
    random.seed((int(seed) * 1_000_003 + int(epoch)) * 1_000_003 + int(index))
    try:
        with data_utils.numpy_seed(int(seed), int(epoch), int(index)):
            yield
    finally:
        random.setstate(state)


class FairseqMMDataset(FairseqDataset):
    """Every item counts as size 1 (batches are built by item count, not tokens).  The aligners' random clip
    sampling is seeded per item from ``seed`` (fairseq's ``--seed``), the epoch and the index
    (:func:`item_seed`)."""

    def __init__(self, mmdataset, seed: int = 1):
        super().__init__()
        self.mmdataset = mmdataset
        self.seed = int(seed)
        self.epoch = 1

    def set_epoch(self, epoch: int, **unused) -> None:
        super().set_epoch(epoch)
        self.epoch = epoch

    def __getitem__(self, idx: int) -> Dict[str, Any]:
        with item_seed(self.seed, self.epoch, idx):
            return self.mmdataset[idx]

    def __len__(self) -> int:
        return len(self.mmdataset)

    def collater(self, samples: List[Dict[str, Any]]) -> Dict[str, Any]:
        return self.mmdataset.collater(samples)

    def size(self, index: int) -> int:
        return 1

    def num_tokens(self, index: int) -> int:
        return 1
