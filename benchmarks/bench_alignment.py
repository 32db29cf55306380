"""Soft-DTW / soft-OTAM benchmarks: forward + backward of our kernels against the peers and the cell loops.

For every shape ``[B, N, L, M]`` and for DTW and two-way OTAM (``OTAM(D) + OTAM(D^T)``, as TempCLR trains) it
times ``score(D).sum().backward()`` (float32, gamma = 0.1, the same precomputed D for everyone) for

* ``kernel``: ``tempclr.modules.alignment`` with the default backend (numba on CPU, Triton on CUDA);
* ``tslearn`` / ``pysdtw``: the soft-DTW peers on the same D, DTW only (neither implements OTAM): tslearn's
  ``SoftDTWLossPyTorch(dist_func=identity)`` and pysdtw's CPU autograd function ``SoftDTWcpu`` (what
  ``pysdtw.SoftDTW(use_cuda=False)`` calls, given the (L, M) lengths directly: the module derives them from two
  sequence tensors).  Not dependencies of the project: ``pip install -e .[bench]`` (or see pyproject.toml); a run
  without them says "not installed" and leaves their columns out;
* ``original``: TempCLR's own ``DTW_cum_dist`` / ``OTAM_cum_dist`` loops (``tempclr.testing.original``, which the
  tests check ``utils/metrics.py`` against; in-place writes into R, so autograd's backward copies the whole R once
  per cell: quadratic in the number of cells);
* ``ref`` (only with ``--impls``): the cell-loop reference the tests use (``reference.py``);
* ``floor``: an ``autograd.Function`` that does no work (forward ``D.sum((-1, -2))``, backward the expanded
  gradient): the fixed cost of any autograd.Function-based score plus ``.sum().backward()`` on this machine.

The first call of each implementation is checked against the reference values (where the reference is not run,
the first problem of the batch is; on grids too large for the cell loop, the CPU lane schedule) and not timed.
Cell loops on grids of more than ``--max-loop-cells`` cells (default 4096) and up to ``--skip-loop-cells``
(default 65536, so 256x256) are not run, they would take many minutes: their time is estimated from 16x16 and
32x32 grids with the same number of problems (``ref`` linear in the cells, ``original``'s exponent fitted on the
two points) and marked "est."; larger grids are not run at all ("-").  Times are medians of
``torch.utils.benchmark.Timer.blocked_autorange`` (which synchronises CUDA), of 3 runs for calls over a second,
or one run for calls over 10 s; with ``--rounds R`` every implementation is measured R times, interleaved, and
the fastest round is kept.  Each row ends with the 1-minute load average when it was measured.

Memory (CPU): "workspace MiB" is what our kernels allocate per call beyond D and its gradient, computed from the
arrays of the schedule the call selects (numba's allocations are invisible to tracemalloc).  With ``--memory``
each implementation is also run in a fresh process (glibc's mmap threshold fixed at 64 KiB, so every large
buffer is mapped on allocation and returned on free): after a warm-up call, the peak RSS is reset
(``/proc/self/clear_refs``) and "peak MiB" is the high-water RSS of one more call above the RSS before it, i.e.
everything the call holds at its peak (workspace, saved alignment, gradient, the peers' float64 copies).

    .venv/bin/python benchmarks/bench_alignment.py [--threads 1] [--rounds 3] [--memory] [--shapes 1x512x5x5,...]

On a shared machine pass ``--threads 1``: two-thread parallel regions (numba's and torch's) stall whenever another
process holds a core, which makes every column noisy.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from typing import Callable

import numba
import torch
import torch.utils.benchmark as benchmark

from tempclr.modules.alignment import soft_dtw, soft_otam
from tempclr.testing.original import original_dtw, original_otam

SHAPES = [(1, 512, 5, 5), (1, 32, 8, 80), (1, 512, 32, 32), (1, 64, 64, 64), (1, 8, 256, 256), (1, 1, 1024, 1024),
          (1, 1, 4096, 512)]
GAMMA = 0.1


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
    """pysdtw's soft-DTW on a precomputed cost matrix (DTW only; its CPU function, or its CUDA one for CUDA
    tensors), or None when pysdtw is not installed."""
    try:
        from pysdtw.sdtw_cpu import SoftDTWcpu
    except ImportError:
        return None

    def run(D: torch.Tensor) -> torch.Tensor:
        flat = D.reshape(-1, *D.shape[-2:])
        lengths = torch.tensor(flat.shape[-2:], dtype=torch.int64).expand(flat.shape[0], 2).contiguous()
        if flat.is_cuda:  # pysdtw's numba.cuda kernels (grids of up to 1024 rows)
            from pysdtw.sdtw_cuda import SoftDTWcuda

            return SoftDTWcuda.apply(flat, lengths.to(flat.device), GAMMA, 0.0).reshape(D.shape[:-2])
        return SoftDTWcpu.apply(flat, lengths, GAMMA, 0.0).reshape(D.shape[:-2])

    return run


PEERS = {"tslearn": _peer_tslearn(), "pysdtw": _peer_pysdtw()}


def workspace_mib(shape, metric: str) -> float:
    """Kernel workspace of one CPU call beyond D and its gradient, in MiB (float32), from the arrays the chosen
    schedule allocates (numba's allocations are not seen by tracemalloc): see the memory notes in cpu.py."""
    from tempclr.modules.alignment import cpu

    B = math.prod(shape[:-2])
    L, M = shape[-2:]
    otam = metric == "otam2"
    W = M + (2 if otam else 0)
    cells = B * L * W * (2 if otam else 1)
    threads = cpu.call_threads(cells)
    schedule = cpu.choose_schedule(otam, B, L, W, threads)
    if schedule == "columns":  # the OTAM column schedule, per thread
        return cpu.col_workspace_values(L, M, 1) * threads * 4 / 2**20
    if schedule == "wavefront":
        values = cpu.wave_workspace_values(L, M, 1 if otam else 0, otam, threads)
        if B >= threads:  # whole problems per thread, each thread its own workspace
            values *= threads
        return values * 4 / 2**20
    threads = cpu._parts(-(-B // cpu._LANES), cells)
    lanes = min(B, cpu._LANES)
    grids = [(L, W), (M, L + 2)] if otam else [(L, W)]  # (rows, width) of each pass; the chunk's arrays per pass
    values = lanes * max((gl + 1) * (gw + 1) + 2 * gl * gw + 2 * (gw + 1) for gl, gw in grids)  # R, costs, E, rows
    return threads * values * 4 / 2**20


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status (the --memory measurement needs Linux)")


def peak_child(shape, metric: str, impl: str) -> None:
    """(In a fresh process) one warm-up call, then the peak RSS of one more call above the RSS before it, printed
    as 'peak_mib <value>'."""
    D = torch.rand(shape, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    run = fwd_bwd(IMPLS[metric][impl], D)
    run()
    D.grad = None
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM to the current RSS
    before = _rss_kib("VmRSS")
    run()
    print(f"peak_mib {(_rss_kib('VmHWM') - before) / 1024:.3f}")


def measure_peak(shape, metric: str, impl: str, threads) -> float:
    """Peak MiB of one call of ``impl`` (peak_child in a fresh process)."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    cmd = [sys.executable, __file__, "--peak-child", "x".join(map(str, shape)), metric, impl]
    if threads:
        cmd += ["--threads", str(threads)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    for line in proc.stdout.splitlines():
        if line.startswith("peak_mib "):
            return float(line.split()[1])
    raise RuntimeError(f"peak measurement of {impl} {metric} {shape} failed:\n{proc.stderr[-2000:]}")


# ------------------------------------------------------------------------------------------------------------------
IMPLS: dict[str, dict[str, Callable[[torch.Tensor], torch.Tensor]]] = {
    "dtw": {
        "kernel": lambda D: soft_dtw(D, GAMMA),
        "ref": lambda D: soft_dtw(D, GAMMA, backend="ref"),
        "original": original_dtw,
        "floor": _NoWork.apply,
        **{name: fn for name, fn in PEERS.items() if fn is not None},
    },  # (the peers implement DTW only)
    "otam2": {
        "kernel": lambda D: soft_otam(D, GAMMA, bidirectional=True),
        "ref": lambda D: soft_otam(D, GAMMA, bidirectional=True, backend="ref"),
        "original": lambda D: original_otam(D) + original_otam(D.transpose(-1, -2)),
        "floor": _NoWork.apply,
    },
}


# the CPU lane schedule, forced: the check for grids too large for the cell loops
LANES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "dtw": lambda D: soft_dtw(D, GAMMA, schedule="lanes"),
    "otam2": lambda D: soft_otam(D, GAMMA, bidirectional=True, schedule="lanes"),
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
    skip_loop_cells: int = 65536, memory: bool = False, threads=None,
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
                    if impl == "tslearn" and device.type == "cuda":
                        continue  # CPU only (its forward copies D to the host)
                    if row.get(impl + "_failed"):
                        continue
                    D = base.clone().requires_grad_(True)
                    try:
                        seconds, values[impl] = measure(fwd_bwd(IMPLS[metric][impl], D), min_run_time, device)
                    except Exception as err:  # a peer's own limit (pysdtw's CUDA kernel: grids of <= 1024 rows)
                        if impl not in PEER_NAMES:
                            raise
                        row[impl + "_failed"] = True
                        print(f"  {impl} failed on {row['shape']}: {type(err).__name__}: {err}"[:300], flush=True)
                        continue
                    row[impl] = min(seconds, row.get(impl, float("inf")))
            _check_against_reference(values, base, metric, shape, skip_loop_cells)
            if memory and device.type == "cpu":
                for impl in impls:
                    if impl in MEMORY_IMPLS and impl in IMPLS[metric]:
                        row[impl + "_peak_mib"] = measure_peak(shape, metric, impl, threads)
            row["load"] = os.getloadavg()[0]
            rows.append(row)
            print(_format_row(row, impls), flush=True)
    return rows


def _check_against_reference(values: dict, base: torch.Tensor, metric: str, shape, skip_loop_cells: int) -> None:
    """Every measured implementation agrees with the reference; when the reference was not run, the first
    problem of the batch is checked against it, and on grids too large for the cell loop against the CPU lane
    schedule (forced with schedule="lanes"; the tests check every schedule against the reference)."""
    if "ref" in values:
        expected, picked = values["ref"], slice(None)
    else:
        flat = base.reshape(-1, *base.shape[-2:])[:1].cpu()
        if shape[-2] * shape[-1] > skip_loop_cells:
            expected = LANES[metric](flat.clone()).detach()
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


MEMORY_IMPLS = ("kernel", "tslearn", "pysdtw")  # the cell loops hold R once per cell: not worth a fresh process
PEER_NAMES = ("tslearn", "pysdtw")


def _ratio(row: dict, impl: str) -> str:
    return f"{row[impl] / row['kernel']:.1f}x" if impl in row else "-"


def _format_row(row: dict, impls: list[str]) -> str:
    cells = [row["shape"], row["metric"]]
    for impl in impls:
        cells.append(_format_time(row[impl], row.get(impl + "_estimated", False)) if impl in row else "-")
    peers = [p for p in PEER_NAMES if p in impls]
    if peers:
        best = min((row[p] for p in peers if p in row), default=None)
        cells.append(f"{best / row['kernel']:.1f}x" if best is not None else "-")
    for impl in impls:
        if impl in ("ref", "original"):
            cells.append(_ratio(row, impl))
    if "floor" in impls and "original" in impls:
        cells.append(f"{row['original'] / row['floor']:.0f}x" if "original" in row else "-")
    if "workspace_mib" in row:
        cells.append(f"{row['workspace_mib']:.2f}")
    for impl in impls:
        if impl in MEMORY_IMPLS and any(k.endswith("_peak_mib") for k in row):
            cells.append(f"{row[impl + '_peak_mib']:.2f}" if impl + "_peak_mib" in row else "-")
    cells.append(f"{row['load']:.1f}")
    return "| " + " | ".join(cells) + " |"


def header(impls: list[str], device: str = "cpu", memory: bool = False) -> str:
    cols = ["B x N x L x M", "metric"] + [f"{i} fwd+bwd" for i in impls]
    if any(p in impls for p in PEER_NAMES):
        cols.append("best peer / kernel")
    cols += [f"{i} / kernel" for i in impls if i in ("ref", "original")]
    if "floor" in impls and "original" in impls:
        cols.append("original / floor")
    if device == "cpu":
        cols.append("kernel workspace MiB")
        if memory:
            cols += [f"{i} peak MiB" for i in impls if i in MEMORY_IMPLS]
    cols.append("load")
    return "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="torch and numba threads (default: all cores)")
    parser.add_argument("--shapes", default=None, help="comma-separated BxNxLxM list (default: the issue's seven)")
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
    parser.add_argument(
        "--impls", default="kernel,tslearn,pysdtw,original,floor",
        help="comma-separated implementations to time, of kernel, tslearn, pysdtw, original, ref, floor",
    )
    parser.add_argument("--memory", action="store_true", help="also measure each call's peak RSS in a fresh process")
    parser.add_argument("--peak-child", nargs=3, metavar=("SHAPE", "METRIC", "IMPL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        numba.set_num_threads(args.threads)
    if args.peak_child:
        shape, metric, impl = args.peak_child
        peak_child(tuple(int(x) for x in shape.split("x")), metric, impl)
        return
    if args.parallel_min_cells is not None:
        from tempclr.modules.alignment import cpu as cpu_kernels

        cpu_kernels.PARALLEL_MIN_CELLS = args.parallel_min_cells
    shapes = SHAPES if args.shapes is None else [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")]

    start = time.perf_counter()
    for lead in ((2,), (1,)):  # both CPU schedules: lanes (many small grids) and wavefront (few large ones)
        soft_dtw(torch.rand(*lead, 3 if lead == (2,) else 20, 20, requires_grad=True)).sum().backward()
        soft_otam(torch.rand(*lead, 3 if lead == (2,) else 20, 20, requires_grad=True), bidirectional=True).sum().backward()
    print(f"first kernel call (numba cache load or compile): {time.perf_counter() - start:.2f} s")
    for name, fn in PEERS.items():  # the peers' numba functions compile on their first call: not timed either
        if fn is not None:
            start = time.perf_counter()
            fwd_bwd(fn, torch.rand(1, 2, 4, 5, requires_grad=True))()
            print(f"first {name} call (numba compile): {time.perf_counter() - start:.2f} s")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} torch threads")

    print(f"numba {numba.__version__}, {numba.get_num_threads()} numba threads; load average "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    impls = []
    for name in args.impls.split(","):
        if name not in ("kernel", "tslearn", "pysdtw", "original", "ref", "floor"):
            parser.error(f"--impls: unknown implementation {name!r}")
        if name in PEERS and PEERS[name] is None:
            print(f"peer {name}: not installed (pip install -e .[bench], or pip install {name}, to compare)")
        else:
            impls.append(name)
    rows = []
    if args.device in ("all", "cpu"):
        print("\nCPU (float32, gamma 0.1, forward + backward)\n" + header(impls, "cpu", args.memory))
        rows += run_table(shapes, torch.device("cpu"), impls, args.max_loop_cells, args.min_run_time, args.rounds,
                          args.skip_loop_cells, args.memory, args.threads)
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
