"""Soft-DTW / soft-OTAM benchmarks: forward + backward of our kernels against the cell-by-cell implementations.

For every shape ``[B, N, L, M]`` and for DTW and two-way OTAM (``OTAM(D) + OTAM(D^T)``, as TempCLR trains) it
times ``score(D).sum().backward()`` (float32, gamma = 0.1) for

* ``kernel``: ``tempclr.modules.alignment`` with the default backend (numba on CPU, Triton on CUDA);
* ``ref``: the cell-loop reference the tests use (``reference.py``, autograd through every cell);
* ``original``: TempCLR's own ``DTW_cum_dist`` / ``OTAM_cum_dist`` loops (in-place writes into R, so autograd's
  backward copies the whole R once per cell: quadratic in the number of cells);
* ``tslearn`` / ``pysdtw``: the CPU soft-DTW peers (``SoftDTWLossPyTorch``; ``pysdtw.SoftDTW(use_cuda=False)``) on
  the same precomputed D, DTW only (neither implements OTAM), when they are importable; they are not dependencies
  of the project (install them into the benchmark's environment); otherwise the run says "not installed";
* ``floor``: an ``autograd.Function`` that does no work (forward ``D.sum((-1, -2))``, backward the expanded
  gradient), timed the same way: the fixed cost of any autograd.Function-based score plus ``.sum().backward()``
  on this machine.  ``original / floor`` is the largest speed-up any such implementation could show here.

The first call of each implementation is checked against the reference values (where the reference is not run,
the first problem of the batch is) and is not timed.  Cell loops on grids of more than ``--max-loop-cells``
cells (default 4096) and up to ``--skip-loop-cells`` (default 65536, so 256x256) are not run, they would take many minutes: their time is estimated from
16x16 and 32x32 grids with the same number of problems (``ref`` is linear in the number of cells, ``original``'s
exponent is fitted on the two points) and marked "est."; larger grids (1024x1024, 4096x512) are not run at all
("-"), and the kernel is checked there against the CPU lane schedule.  "kernel workspace MiB" is what the CPU
kernels allocate per call beyond D and its gradient, computed from the arrays of the schedule the call selects.  Times
are medians of ``torch.utils.benchmark.Timer.blocked_autorange`` (which synchronises CUDA), of 3 runs for calls
over a second, or one run for calls over 10 s.  When CUDA is available a second table is timed on the GPU.

    .venv/bin/python benchmarks/bench_alignment.py [--threads 1] [--rounds 5] [--shapes 1x512x5x5,...] [--json out.json]

On a shared machine pass ``--threads 1``: two-thread parallel regions (numba's and torch's) stall whenever another
process holds a core, which makes every column noisy.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F
import torch.utils.benchmark as benchmark

from tempclr.modules.alignment import soft_dtw, soft_otam

SHAPES = [(1, 512, 5, 5), (1, 32, 8, 80), (1, 512, 32, 32), (1, 64, 64, 64), (1, 8, 256, 256), (1, 1, 1024, 1024),
          (1, 1, 4096, 512)]
GAMMA = 0.1


# ------------------------------------------------------------------------------------------------------------------
# TempCLR's original loops (utils/metrics.py), for timing only: the tests check metrics.py against the same
# recurrences.  R is written in place, as in the original.
# ------------------------------------------------------------------------------------------------------------------
def _lse_min(values: list[torch.Tensor], lbda: float) -> torch.Tensor:
    return -lbda * torch.logsumexp(torch.cat([(-v / lbda).unsqueeze(-1) for v in values], dim=-1), dim=-1)


def original_dtw(d: torch.Tensor, lbda: float = GAMMA) -> torch.Tensor:
    cum = torch.zeros(d.shape, device=d.device)
    cum[:, :, 0, 0] = d[:, :, 0, 0]
    for m in range(1, d.shape[3]):
        cum[:, :, 0, m] = d[:, :, 0, m] + cum[:, :, 0, m - 1]
    for l in range(1, d.shape[2]):
        cum[:, :, l, 0] = d[:, :, l, 0] + cum[:, :, l - 1, 0]
    for l in range(1, d.shape[2]):
        for m in range(1, d.shape[3]):
            preds = [cum[:, :, l - 1, m - 1], cum[:, :, l, m - 1], cum[:, :, l - 1, m]]
            cum[:, :, l, m] = d[:, :, l, m] + _lse_min(preds, lbda)
    return cum[:, :, -1, -1]


def original_otam(d: torch.Tensor, lbda: float = GAMMA) -> torch.Tensor:
    d = F.pad(d, (1, 1), "constant", 0)
    cum = torch.zeros(d.shape, device=d.device)
    for m in range(1, d.shape[3]):
        cum[:, :, 0, m] = d[:, :, 0, m] + cum[:, :, 0, m - 1]
    for l in range(1, d.shape[2]):
        cum[:, :, l, 1] = d[:, :, l, 1] + _lse_min([cum[:, :, l - 1, 0], cum[:, :, l - 1, 1], cum[:, :, l, 0]], lbda)
        for m in range(2, d.shape[3] - 1):
            cum[:, :, l, m] = d[:, :, l, m] + _lse_min([cum[:, :, l - 1, m - 1], cum[:, :, l, m - 1]], lbda)
        last = [cum[:, :, l - 1, -2], cum[:, :, l - 1, -1], cum[:, :, l, -2]]
        cum[:, :, l, -1] = d[:, :, l, -1] + _lse_min(last, lbda)
    return cum[:, :, -1, -1]


class _NoWork(torch.autograd.Function):
    """The per-call floor: an autograd.Function with the same input and output shapes that computes nothing."""

    @staticmethod
    def forward(ctx, D):
        ctx.shape = D.shape
        return D.sum((-1, -2))

    @staticmethod
    def backward(ctx, grad):
        return grad[..., None, None].expand(ctx.shape)


def _peer_tslearn():
    """tslearn's soft-DTW loss on a precomputed cost matrix (DTW only), or None when tslearn is not installed."""
    try:
        from tslearn.metrics import SoftDTWLossPyTorch
    except ImportError:
        return None
    loss = SoftDTWLossPyTorch(gamma=GAMMA, normalize=False, dist_func=lambda x, y: x)

    def run(D: torch.Tensor) -> torch.Tensor:
        flat = D.reshape(-1, *D.shape[-2:])
        return loss(flat, flat).reshape(D.shape[:-2])

    return run


def _peer_pysdtw():
    """pysdtw's soft-DTW (CPU) on a precomputed cost matrix (DTW only), or None when pysdtw is not installed."""
    try:
        import pysdtw
    except ImportError:
        return None
    sdtw = pysdtw.SoftDTW(gamma=GAMMA, dist_func=lambda x, y: x, use_cuda=False)

    def run(D: torch.Tensor) -> torch.Tensor:
        flat = D.reshape(-1, *D.shape[-2:])
        return sdtw(flat, flat).reshape(D.shape[:-2])

    return run


PEERS = {"tslearn": _peer_tslearn(), "pysdtw": _peer_pysdtw()}


def workspace_mib(shape, metric: str) -> float:
    """Kernel workspace of one CPU call beyond D and its gradient, in MiB (float32), from the arrays the chosen
    schedule allocates (numba's allocations are not seen by tracemalloc): see the memory note in cpu.py."""
    from tempclr.modules.alignment import cpu

    B = math.prod(shape[:-2])
    L, M = shape[-2:]
    W = M + (2 if metric == "otam2" else 0)
    threads = cpu._parts(B, B * L * W) if cpu.use_wavefront(B, L, W) else cpu._parts(-(-B // cpu._LANES), B * L * W)
    if cpu.use_wavefront(B, L, W):
        cells = (L + 1) * (W + 1)
        if metric == "otam2":
            cells = max(cells, (M + 1) * (L + 3))
        values = 2 * cells + 9 * (max(L, M) + 2) + (L + M + 3) * 2  # R, C, push vectors, offsets (int64)
        return threads * values * 4 / 2**20
    lanes = min(B, cpu._LANES)
    values = lanes * ((L + 1) * (W + 1) + 2 * L * W + 2 * (W + 1))  # R, costs, E, two E rows
    return threads * values * 4 / 2**20


# ------------------------------------------------------------------------------------------------------------------
IMPLS: dict[str, dict[str, Callable[[torch.Tensor], torch.Tensor]]] = {
    "dtw": {
        "kernel": lambda D: soft_dtw(D, GAMMA),
        "ref": lambda D: soft_dtw(D, GAMMA, backend="ref"),
        "original": original_dtw,
        "floor": _NoWork.apply,
        **{name: fn for name, fn in PEERS.items() if fn is not None},
    },
    "otam2": {
        "kernel": lambda D: soft_otam(D, GAMMA, bidirectional=True),
        "ref": lambda D: soft_otam(D, GAMMA, bidirectional=True, backend="ref"),
        "original": lambda D: original_otam(D) + original_otam(D.transpose(-1, -2)),
        "floor": _NoWork.apply,
    },
}


def fwd_bwd(fn: Callable[[torch.Tensor], torch.Tensor], D: torch.Tensor) -> Callable[[], torch.Tensor]:
    def run() -> torch.Tensor:
        D.grad = None
        out = fn(D)
        out.sum().backward()
        return out

    return run


def measure(run: Callable[[], torch.Tensor], min_run_time: float, device: torch.device) -> tuple[float, torch.Tensor]:
    """(median seconds per call, output of the first call).  The first call is a warm-up, except for calls of more
    than 10 s, which are timed once (that first call)."""
    first, out = _timed(run, device)
    if first > 10.0:
        return first, out
    if first > 1.0:
        return statistics.median(_timed(run, device)[0] for _ in range(3)), out
    timer = benchmark.Timer(stmt="run()", globals={"run": run})
    return timer.blocked_autorange(min_run_time=min_run_time).median, out


def _timed(run: Callable[[], torch.Tensor], device: torch.device) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    out = run().detach()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def loop_estimate(impl: str, metric: str, shape, device, min_run_time: float) -> float:
    """Estimated seconds for a cell loop on ``shape``, from 16x16 and 32x32 grids with the same B x N: the
    reference is linear in the number of cells; the original's exponent is fitted on the two points."""
    B, N, L, M = shape
    points = []
    for side in (16, 32):
        D = torch.rand((B, N, side, side), device=device, requires_grad=True)
        points.append((side * side, measure(fwd_bwd(IMPLS[metric][impl], D), min_run_time, device)[0]))
    (c1, t1), (c2, t2) = points
    # the original's forward is linear and its backward quadratic in the cells: keep a noisy fit in [1, 2]
    exponent = 1.0 if impl == "ref" else min(2.0, max(1.0, math.log(t2 / t1) / math.log(c2 / c1)))
    return t2 * (L * M / c2) ** exponent


def run_table(
    shapes, device: torch.device, impls: list[str], max_loop_cells: int, min_run_time: float, rounds: int = 1,
    skip_loop_cells: int = 65536,
) -> list[dict]:
    """One row per shape and metric.  With rounds > 1 every implementation is measured ``rounds`` times,
    interleaved (kernel, ref, original, floor, kernel, ...), and the fastest round is kept: on a shared machine
    that is the least disturbed measurement of each, so their ratio does not depend on when a slow phase hit.
    Cell loops on grids of more than ``skip_loop_cells`` cells are neither run nor estimated ("-")."""
    rows = []
    for shape in shapes:
        gen = torch.Generator().manual_seed(0)
        base = torch.rand(shape, generator=gen).to(device)
        for metric in IMPLS:
            row = {"shape": "x".join(map(str, shape)), "metric": metric, "device": device.type, "rounds": rounds}
            if device.type == "cpu":
                row["workspace_mib"] = workspace_mib(shape, metric)
            values = {}
            for _ in range(rounds):
                for impl in impls:
                    if impl not in IMPLS[metric]:
                        continue
                    if impl in ("ref", "original") and shape[-2] * shape[-1] > skip_loop_cells:
                        continue
                    if impl in ("ref", "original") and shape[-2] * shape[-1] > max_loop_cells:
                        if impl not in row:  # an extrapolation, made once
                            row[impl] = loop_estimate(impl, metric, shape, device, min_run_time)
                            row[impl + "_estimated"] = True
                        continue
                    D = base.clone().requires_grad_(True)
                    seconds, values[impl] = measure(fwd_bwd(IMPLS[metric][impl], D), min_run_time, device)
                    row[impl] = min(seconds, row.get(impl, float("inf")))
            _check_against_reference(values, base, metric, shape, skip_loop_cells)
            rows.append(row)
            print(_format_row(row, impls), flush=True)
    return rows


def _check_against_reference(values: dict, base: torch.Tensor, metric: str, shape, skip_loop_cells: int) -> None:
    """Every measured implementation agrees with the reference; when the reference was not run, the first
    problem of the batch is checked against it, and on grids too large for the cell loop against the CPU lane
    schedule (forced with cpu.WAVEFRONT = False; the tests check both schedules against the reference)."""
    if "ref" in values:
        expected, picked = values["ref"], slice(None)
    else:
        flat = base.reshape(-1, *base.shape[-2:])[:1].cpu()
        if shape[-2] * shape[-1] > skip_loop_cells:
            from tempclr.modules.alignment import cpu

            cpu.WAVEFRONT = False
            try:
                expected = IMPLS[metric]["kernel"](flat.clone()).detach()
            finally:
                cpu.WAVEFRONT = None
        else:
            expected = IMPLS[metric]["ref"](flat.clone().requires_grad_(True)).detach()
        picked = slice(0, 1)
    for impl, got in values.items():
        if impl == "floor":
            continue
        got = got.reshape(-1)[picked].cpu()
        err = (got.float() - expected.reshape(-1).float()).abs().max().item()
        assert err <= 1e-4 * max(1.0, expected.abs().max().item()), f"{shape} {metric} {impl}: |diff| {err} vs ref"


def _format_time(seconds: float, estimated: bool) -> str:
    text = f"{seconds * 1e3:.3f} ms" if seconds < 1 else f"{seconds:.2f} s"
    if seconds >= 120:
        text = f"{seconds / 60:.0f} min"
    return text + (" (est.)" if estimated else "")


def _format_row(row: dict, impls: list[str]) -> str:
    cells = [row["shape"], row["metric"]]
    for impl in impls:
        cells.append(_format_time(row[impl], row.get(impl + "_estimated", False)) if impl in row else "-")
    for impl in impls:
        if impl not in ("kernel", "floor"):
            cells.append(f"{row[impl] / row['kernel']:.1f}x" if impl in row else "-")
    if "floor" in impls and "original" in impls:
        cells.append(f"{row['original'] / row['floor']:.0f}x" if "original" in row else "-")
    if "workspace_mib" in row:
        cells.append(f"{row['workspace_mib']:.2f}")
    return "| " + " | ".join(cells) + " |"


def header(impls: list[str], device: str = "cpu") -> str:
    cols = ["B x N x L x M", "metric"] + [f"{i} fwd+bwd" for i in impls]
    cols += [f"{i} / kernel" for i in impls if i not in ("kernel", "floor")]
    if "floor" in impls and "original" in impls:
        cols.append("original / floor")
    if device == "cpu":
        cols.append("kernel workspace MiB")
    return "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="torch and numba threads (default: all cores)")
    parser.add_argument("--shapes", default=None, help="comma-separated BxNxLxM list (default: the five standard ones)")
    parser.add_argument("--max-loop-cells", type=int, default=4096, help="estimate cell loops on larger grids")
    parser.add_argument(
        "--skip-loop-cells", type=int, default=65536, help="neither run nor estimate cell loops on larger grids"
    )
    parser.add_argument("--min-run-time", type=float, default=1.0, help="seconds per blocked_autorange measurement")
    parser.add_argument(
        "--device", choices=["all", "cpu", "cuda"], default="all",
        help="which tables: the CPU one, the GPU one (when CUDA is available), or both (default)",
    )
    parser.add_argument(
        "--rounds", type=int, default=1,
        help="measure every implementation this many times, interleaved, and keep each one's fastest round",
    )
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument(
        "--parallel-min-cells", type=int, default=None,
        help="override tempclr.modules.alignment.cpu.PARALLEL_MIN_CELLS (calls with fewer grid cells run serially)",
    )
    args = parser.parse_args()
    if args.threads:
        import numba

        torch.set_num_threads(args.threads)
        numba.set_num_threads(args.threads)
    if args.parallel_min_cells is not None:
        from tempclr.modules.alignment import cpu as cpu_kernels

        cpu_kernels.PARALLEL_MIN_CELLS = args.parallel_min_cells
    shapes = SHAPES if args.shapes is None else [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")]

    start = time.perf_counter()
    for lead in ((2,), (1,)):  # both CPU schedules: lanes (many small grids) and wavefront (few large ones)
        soft_dtw(torch.rand(*lead, 3 if lead == (2,) else 20, 20, requires_grad=True)).sum().backward()
        soft_otam(torch.rand(*lead, 3 if lead == (2,) else 20, 20, requires_grad=True), bidirectional=True).sum().backward()
    print(f"first kernel call (numba cache load or compile): {time.perf_counter() - start:.2f} s")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} torch threads")

    impls = ["kernel", "ref", "original", "floor"]
    for name, fn in PEERS.items():
        if fn is None:
            print(f"peer {name}: not installed (pip install {name} into the benchmark's environment to compare)")
        else:
            impls.append(name)
    rows = []
    if args.device in ("all", "cpu"):
        print("\nCPU (float32, gamma 0.1, forward + backward)\n" + header(impls))
        rows += run_table(shapes, torch.device("cpu"), impls, args.max_loop_cells, args.min_run_time, args.rounds,
                          args.skip_loop_cells)
    if args.device in ("all", "cuda"):
        if torch.cuda.is_available():
            print(f"\nGPU {torch.cuda.get_device_name()} (float32, gamma 0.1, forward + backward)\n"
                  + header(impls, "cuda"))
            rows += run_table(shapes, torch.device("cuda"), impls, args.max_loop_cells, args.min_run_time, args.rounds,
                              args.skip_loop_cells)
        elif args.device == "cuda":
            parser.error("--device cuda: torch sees no CUDA device here (torch.cuda.is_available() is False)")
        else:
            print("\nno CUDA device: the GPU (Triton) table needs a run on a machine with a GPU")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
