"""What TempCLR's two sequence-alignment losses share: their ``alignment:`` settings, the sampler of shuffled
orders (the negatives), and the sequence score.

* :class:`~tempclr.utils.alignment_settings.AlignmentSettings` (re-exported here) reads the ``alignment:`` section
  once, under the config's own key names, for both :class:`~tempclr.tasks.alignretritask.AlignRetriTask`
  (pretraining) and :class:`~tempclr.tasks.alignlocaltask.AlignLocalTask` (CrossTask fine-tuning).
* :func:`negative_orders` is the one sampler of shuffled orders.  Its random source is torch's default generator
  (or the one passed in), which fairseq reseeds from ``--seed`` and the update number before every training step,
  so the negatives of a step are a function of the seed and the step.
* :func:`sequence_scores` is soft-DTW, or soft-OTAM both ways, of a batch of distance grids.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Dict, Iterator, Optional, Tuple

import torch

from tempclr.modules.alignment import soft_dtw, soft_otam
from tempclr.utils.alignment_settings import METRICS, AlignmentSettings

__all__ = ["AlignmentSettings", "count_distinct_orders", "negative_orders", "inner_shuffle_columns",
           "sequence_scores", "METRICS"]

def count_distinct_orders(sequence: list[int]) -> int:
    """Number of distinct sequences that reorder ``sequence`` (multinomial ``L! / Π multiplicity!``)."""
    total = math.factorial(len(sequence))
    for multiplicity in Counter(sequence).values():
        total //= math.factorial(multiplicity)
    return total


def _distinct_orders(counts: Dict[int, int], length: int) -> Iterator[Tuple[int, ...]]:
    """Every distinct sequence with these value multiplicities, in lexicographic order."""
    if length == 0:
        yield ()
        return
    for value in sorted(counts):
        if counts[value]:
            counts[value] -= 1
            for rest in _distinct_orders(counts, length - 1):
                yield (value,) + rest
            counts[value] += 1


def negative_orders(sequence: torch.Tensor, count: int, generator: Optional[torch.Generator] = None,
                    cycle: bool = True) -> torch.Tensor:
    """Reorderings of ``sequence [L]`` that differ from it, as int64 ``[n, L]`` on its device.

    When more than ``count`` such reorderings exist, ``n = count`` distinct ones, each drawn as a random permutation
    (``torch.randperm``) and rejected if it equals ``sequence`` or an earlier draw.  Otherwise every one of them is
    used, in random order: ``n = count`` by cycling through them when ``cycle`` (CrossTask fine-tuning: for
    ``L = 2`` every negative is the swap), else ``n`` = their number (pretraining, as the original: 2 distinct
    clips give one negative).  ``sequence`` needs at least two different values.
    """
    values = [int(v) for v in sequence.reshape(-1).tolist()]
    n_other = count_distinct_orders(values) - 1
    if n_other < 1:
        raise ValueError(f"negative_orders: {values} has no reordering that differs from it (needs two different "
                         "steps)")
    if n_other <= count:
        others = [order for order in _distinct_orders(Counter(values), len(values)) if list(order) != values]
        shuffled = torch.randperm(len(others), generator=generator).tolist()
        n = count if cycle else len(others)
        orders = [others[shuffled[i % len(others)]] for i in range(n)]
    else:
        seen = {tuple(values)}
        orders = []
        source = torch.tensor(values)
        while len(orders) < count:
            candidate = tuple(source[torch.randperm(len(values), generator=generator)].tolist())
            if candidate not in seen:
                seen.add(candidate)
                orders.append(candidate)
    return torch.tensor(orders, dtype=torch.long).reshape(len(orders), len(values)).to(sequence.device)


def inner_shuffle_columns(segment_ids: torch.Tensor, count: int, generator: Optional[torch.Generator] = None
                          ) -> torch.Tensor:
    """``count`` column permutations ``[count, n]`` that shuffle columns only within their segment.

    ``segment_ids [n]`` is non-decreasing (segment of each column); row ``i`` is an independent uniform shuffle
    inside every segment, drawn as ``argsort(segment_id + U[0, 1))``.
    """
    n = segment_ids.numel()
    noise = torch.rand(count, n, generator=generator, dtype=torch.float64)
    keys = segment_ids.detach().cpu().to(torch.float64).unsqueeze(0) + noise
    return torch.argsort(keys, dim=1).to(segment_ids.device)


def sequence_scores(keys: torch.Tensor, metric: str, gamma: float) -> torch.Tensor:
    """``keys [1, N, L, M]`` distance grids → cumulative alignment costs ``[1, N]``: soft-DTW (``metric='dtw'``)
    or soft-OTAM of the grid plus soft-OTAM of its transpose (``'otam'``, the original's
    ``OTAM_cum_dist(D) + OTAM_cum_dist(Dᵀ)``, here one fused two-way kernel call without the transposed copy),
    temperature ``gamma``.  The one alignment-loss score both training tasks use."""
    if metric == "dtw":
        return soft_dtw(keys, gamma=gamma)
    if metric == "otam":
        return soft_otam(keys, gamma=gamma, bidirectional=True)
    raise ValueError(f"alignment.metric must be one of {', '.join(METRICS)}, got {metric!r}")
