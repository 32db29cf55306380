"""Compile (or load from numba's cache) every CPU alignment kernel the tests reach, for one dtype.

``python tests/numba_warmup.py float32`` runs each kernel of ``tempclr/modules/alignment/cpu.py`` once on a small
input: scores without a gradient (soft and hard), and every schedule with its gradient, serial and on all
threads.  The conftest starts one process per dtype when the session starts, so the first compile of a fresh
clone (minutes on two cores) happens in parallel with test collection and is not charged to whichever test
happens to call a kernel first; later sessions load the compiled kernels from the cache in a second."""
import sys

import torch

from tempclr.modules.alignment import cumulative_cost, hard_dtw, hard_otam, soft_dtw, soft_otam

# (schedule, B, L, M): small calls run on one thread, calls of 65,536 cells or more on all of them
CALLS = (("lanes", 8, 5, 5), ("lanes", 128, 24, 24), ("wavefront", 2, 20, 20), ("wavefront", 2, 200, 200),
         ("wavefront", 1, 300, 300), ("columns", 2, 20, 20), ("columns", 2, 200, 200))


def warm(dtype: torch.dtype) -> None:
    for schedule, B, L, M in CALLS:
        for otam in (False, True):
            if schedule == "columns" and not otam:
                continue
            D = torch.rand(B, L, M, dtype=dtype, requires_grad=True)
            score = soft_otam(D, 0.1, bidirectional=True, schedule=schedule) if otam else soft_dtw(
                D, 0.1, schedule=schedule)
            score.sum().backward()
    for B in (8, 256):  # scores without a gradient, serial and parallel
        D = torch.rand(B, 16, 16, dtype=dtype)
        cumulative_cost(D, "dtw", 0.1), cumulative_cost(D, "otam", 0.1)
        soft_dtw(D, 0.1), soft_otam(D, 0.1), hard_dtw(D), hard_otam(D)


if __name__ == "__main__":
    warm(getattr(torch, sys.argv[1]))
