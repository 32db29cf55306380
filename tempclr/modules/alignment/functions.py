"""Public alignment functions (soft/hard DTW and OTAM scores, cumulative-cost matrix, expected alignment), the
autograd.Function with the analytic backward, and the backend choice.

Backends, keyed by name in :data:`BACKENDS`:

* ``"cpu"``: numba kernels (``cpu.py``); the default for CPU tensors;
* ``"triton"``: Triton kernels (``triton_kernels.py``); the default for CUDA tensors.  ``triton`` is imported
  only when this backend is first used.  On CPU tensors it runs only under ``TRITON_INTERPRET=1`` (tests);
* ``"ref"``: the cell-by-cell torch reference (``reference.py``), autograd does the backward.  Slow.

A CUDA tensor with no importable triton is computed by the ``"cpu"`` kernels with host copies, after a one-time
warning (same values, slower); an explicit ``backend=`` never falls back: it raises if it cannot run.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch.autograd.function import once_differentiable

from .grid import OTAM_PREPADDED, AlignPass, passes_for
from .reference import align_ref

__all__ = [
    "BACKENDS",
    "resolve_backend",
    "soft_dtw",
    "soft_otam",
    "hard_dtw",
    "hard_otam",
    "cumulative_cost",
    "expected_alignment",
]

_WARNED: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


# ----------------------------------------------------------------------------------------------------------------
# Backends
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KernelBackend:
    """A compiled backend, on D (float32/float64, contiguous) and lengths [B, 2] int64 or None:

    scores(D [B, L, M], lengths, gamma, align_pass, hard) -> (scores [B], state): one pass, no gradient;
    scores_alignment(D [..., L, M], lengths, gamma, passes, schedule) -> (summed scores [...], summed expected
        alignments [..., L, M]), B = prod(...) (the leading dims are handled inside, where reshaping is cheapest);
        schedule: None (the backend picks by shape) or the name of one of the backend's schedules, to force it;
    matrix(state, B) -> the cumulative-cost matrices [B, Lg, Wg] of a scores() call.
    device: "cpu" (inputs are moved to the CPU and results back) or None (runs on the input's device)."""

    name: str
    scores: Callable
    scores_alignment: Callable
    matrix: Callable
    device: Optional[str]


def _load_cpu() -> KernelBackend:
    from .cpu import cpu_matrix, cpu_scores, cpu_scores_alignment

    return KernelBackend("cpu", cpu_scores, cpu_scores_alignment, cpu_matrix, "cpu")


def _load_triton() -> KernelBackend:
    try:
        from .triton_kernels import triton_matrix, triton_scores, triton_scores_alignment
    except ImportError as err:
        raise ImportError(
            f"alignment backend 'triton' needs the triton package ({err}); install it with "
            "`pip install triton` (the project's `triton` extra) or pass backend='cpu'"
        ) from err
    return KernelBackend("triton", triton_scores, triton_scores_alignment, triton_matrix, None)


BACKENDS: dict[str, Optional[Callable[[], KernelBackend]]] = {
    "ref": None,  # the torch reference; no kernels
    "cpu": _load_cpu,
    "triton": _load_triton,
}
_LOADED: dict[str, KernelBackend] = {}


def _kernels(name: str) -> KernelBackend:
    if name not in _LOADED:
        _LOADED[name] = BACKENDS[name]()
    return _LOADED[name]


def _triton_importable() -> bool:
    try:
        _kernels("triton")
    except ImportError:
        return False
    return True


def resolve_backend(backend: Optional[str], device: torch.device) -> str:
    """The backend name to use for a tensor on ``device``: ``backend`` if given (checked), else "triton" for CUDA
    tensors (or "cpu" with a one-time warning when triton does not import) and "cpu" otherwise."""
    if backend is not None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown alignment backend {backend!r}; choose one of {sorted(BACKENDS)}")
        if backend == "triton" and device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
            raise ValueError(
                f"alignment backend 'triton' needs a CUDA tensor (got device {device}); use backend='cpu', or set "
                "TRITON_INTERPRET=1 before importing triton to run the kernels in triton's interpreter"
            )
        return backend
    if device.type == "cuda":
        if _triton_importable():
            return "triton"
        _warn_once(
            "no-triton",
            "triton is not importable: alignment on CUDA tensors runs the numba CPU kernels with host copies "
            "(same values, slower). Install triton (`pip install triton`) for the GPU kernels.",
        )
        return "cpu"
    if device.type != "cpu":
        _warn_once(
            f"device-{device.type}",
            f"no alignment kernel for {device.type} tensors: using the numba CPU kernels with host copies",
        )
    return "cpu"


# ----------------------------------------------------------------------------------------------------------------
# autograd.Function
# ----------------------------------------------------------------------------------------------------------------
class _AlignFunction(torch.autograd.Function):
    """Sum over ``passes`` of the soft alignment score, D [..., L, M] -> [...].

    D: float32/float64, contiguous, on the kernels' device; lengths [B, 2] int64 contiguous or None (full), with
    B = prod(...).  When D needs a gradient the kernels also return the expected alignment A = dScore/dD (computed
    right after the forward sweep, while R is in cache), so backward is just ``grad * A``.  The leading dims are
    flattened inside the Function, so no view nodes are added to the graph.  A forced ``schedule`` (not None) runs
    the gradient kernels of that schedule even when no gradient is needed; without one, such a call runs the
    backend's plain score kernels."""

    @staticmethod
    def forward(ctx, D, lengths, gamma, passes, kernels, schedule):
        if ctx.needs_input_grad[0] or schedule is not None:
            values, alignment = kernels.scores_alignment(D, lengths, gamma, passes, schedule)
            if not ctx.needs_input_grad[0]:
                _propagate_nan(D, lengths, values)
                return values
            _propagate_nan(D, lengths, values, alignment)
            ctx.save_for_backward(alignment)
            return values
        flat = D.reshape(-1, D.shape[-2], D.shape[-1])
        values = _sum_scores(kernels, flat, lengths, gamma, passes, hard=False).reshape(D.shape[:-2])
        _propagate_nan(D, lengths, values)
        return values

    @staticmethod
    def backward(ctx, grad):
        if torch.is_grad_enabled():  # create_graph=True: a second derivative through this must raise
            return _backward_once(ctx, grad)
        return _backward(ctx, grad)


def _backward(ctx, grad):
    """``grad [...] * alignment [..., L, M]``; the saved alignment is a constant (no second derivative)."""
    (alignment,) = ctx.saved_tensors
    if grad.dtype != alignment.dtype:
        grad = grad.to(alignment.dtype)
    return alignment * grad[..., None, None], None, None, None, None, None


# the same, marked so that differentiating it again (create_graph=True, then a second backward) raises; plain
# backward calls skip this wrapper, which costs a few microseconds per call
_backward_once = once_differentiable(_backward)


def _real_part(lengths: torch.Tensor, L: int, M: int, device: torch.device) -> torch.Tensor:
    """Bool [B, L, M]: True inside each item's first ``lengths[b] = (rows, cols)`` rows and columns."""
    lengths = lengths.to(device)
    rows = torch.arange(L, device=device)[None, :, None] < lengths[:, 0, None, None]
    cols = torch.arange(M, device=device)[None, None, :] < lengths[:, 1, None, None]
    return rows & cols


def _nan_items(D: torch.Tensor, lengths: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """Bool [B] (B = prod of D's leading dims): items with a NaN inside their real part (the first ``lengths``
    rows and columns); None when D holds no NaN at all.  The screen is one sum (NaN if any cell is NaN; 6 us on
    512 5x5 grids where ``isnan().any()`` takes 30 us); only a NaN sum (a NaN, or +inf and -inf) looks closer."""
    if not bool(torch.isnan(D.sum())):
        return None
    nan = torch.isnan(D.reshape(-1, D.shape[-2], D.shape[-1]))
    if lengths is not None:
        nan = nan & _real_part(lengths, D.shape[-2], D.shape[-1], D.device)
    return nan.flatten(1).any(dim=1)


def _propagate_nan(D: torch.Tensor, lengths: Optional[torch.Tensor], values: torch.Tensor,
                   alignment: Optional[torch.Tensor] = None) -> None:
    """In place: an item with a NaN anywhere in its real part gets a NaN score and, when ``alignment`` (the
    gradient dScore/dD) is given, NaN over its real part, as the reference recursion does.  The kernels' min/max
    would otherwise skip the NaN and return a clean-looking number.  Items without NaN are untouched."""
    bad = _nan_items(D, lengths)
    if bad is None or not bool(bad.any()):
        return
    values.view(-1)[bad.to(values.device)] = float("nan")
    if alignment is not None:
        flat = alignment.view(-1, alignment.shape[-2], alignment.shape[-1])
        poisoned = torch.full_like(flat[bad], float("nan"))
        if lengths is not None:  # padding keeps its exact zero gradient
            inside = _real_part(lengths[bad.to(lengths.device)], flat.shape[1], flat.shape[2], flat.device)
            poisoned = torch.where(inside, poisoned, torch.zeros_like(poisoned))
        flat[bad] = poisoned


def _sum_scores(kernels: KernelBackend, flat: torch.Tensor, lengths, gamma: float, passes, hard: bool):
    total = None
    for align_pass in passes:
        values = kernels.scores(flat, lengths, gamma, align_pass, hard)[0]
        total = values if total is None else total + values
    return total


# ----------------------------------------------------------------------------------------------------------------
# Input handling
# ----------------------------------------------------------------------------------------------------------------
def _check_gamma(gamma: float) -> float:
    gamma = float(gamma)
    if not (gamma > 0.0 and gamma < float("inf")):
        raise ValueError(
            f"gamma must be a finite number > 0 (got {gamma}); for the gamma -> 0 limit (plain min) use "
            "hard_dtw / hard_otam / cumulative_cost(gamma=0)"
        )
    return gamma


def _check(D: torch.Tensor, lengths: Optional[torch.Tensor], fn: str) -> Optional[torch.Tensor]:
    """Validate D [..., L, M] and lengths [..., 2]; returns lengths as contiguous int64 [B, 2] (or None)."""
    if not isinstance(D, torch.Tensor) or D.dim() < 2:
        raise ValueError(f"{fn}: D must be a tensor of shape [..., L, M]; got {getattr(D, 'shape', type(D))}")
    if not D.is_floating_point():
        raise TypeError(f"{fn}: D must be a floating-point tensor; got {D.dtype}")
    L, M = D.shape[-2:]
    if L == 0 or M == 0:
        raise ValueError(f"{fn}: D must have L >= 1 and M >= 1; got shape {tuple(D.shape)}")
    if lengths is None:
        return None
    lead = tuple(D.shape[:-2])
    if not isinstance(lengths, torch.Tensor) or tuple(lengths.shape) != (*lead, 2):
        raise ValueError(
            f"{fn}: lengths must be a tensor of shape [..., 2] = {(*lead, 2)} holding (rows, cols) per item; "
            f"got {getattr(lengths, 'shape', type(lengths))}"
        )
    if lengths.is_floating_point() or lengths.is_complex():
        raise TypeError(f"{fn}: lengths must be an integer tensor; got {lengths.dtype}")
    flat_len = lengths.reshape(-1, 2).to(torch.int64).contiguous()
    if flat_len.numel():
        lo = flat_len.min(dim=0).values.tolist()
        hi = flat_len.max(dim=0).values.tolist()
        if lo[0] < 1 or hi[0] > L or lo[1] < 1 or hi[1] > M:
            raise ValueError(
                f"{fn}: lengths (rows, cols) must lie in [1, {L}] x [1, {M}] for D of shape {tuple(D.shape)}; "
                f"got rows in [{lo[0]}, {hi[0]}], cols in [{lo[1]}, {hi[1]}]"
            )
    return flat_len


def _compute_dtype(D: torch.Tensor) -> torch.dtype:
    """float64 stays float64; everything else (fp16, bf16, fp32) is computed in float32."""
    return torch.float64 if D.dtype == torch.float64 else torch.float32


def _on(kernels: KernelBackend, t: torch.Tensor) -> torch.Tensor:
    # the device-type test first: Tensor.to is a dispatcher round trip even when it returns t itself
    return t if kernels.device is None or t.device.type == kernels.device else t.to(kernels.device)


def _score(
    D: torch.Tensor, gamma: float, passes: tuple[AlignPass, ...], lengths: Optional[torch.Tensor],
    backend: Optional[str], hard: bool, fn: str, schedule: Optional[str] = None,
) -> torch.Tensor:
    flat_len = _check(D, lengths, fn)
    # the common case first: resolve_backend costs a few microseconds, noticeable on many small grids
    name = "cpu" if backend is None and D.device.type == "cpu" else resolve_backend(backend, D.device)
    if schedule is not None and name == "ref":
        raise ValueError(f"{fn}: schedule={schedule!r} names a kernel schedule; the 'ref' backend has none")
    compute_dtype = _compute_dtype(D)
    X = D if D.dtype == compute_dtype else D.to(compute_dtype)
    if X.numel() == 0:
        out = X.sum(dim=(-1, -2)) * 0
    elif name == "ref":
        flat = X.reshape(-1, X.shape[-2], X.shape[-1])
        with torch.set_grad_enabled(torch.is_grad_enabled() and not hard):
            out = sum(align_ref(flat, gamma, p, flat_len, hard=hard) for p in passes).reshape(X.shape[:-2])
    else:
        kernels = _kernels(name)
        X_k = _on(kernels, X).contiguous()
        len_k = None if flat_len is None else _on(kernels, flat_len)
        if hard:
            with torch.no_grad():
                flat = X_k.reshape(-1, X_k.shape[-2], X_k.shape[-1])
                out = _sum_scores(kernels, flat, len_k, 1.0, passes, hard=True).reshape(X.shape[:-2])
                _propagate_nan(X_k, len_k, out)
        else:
            out = _AlignFunction.apply(X_k, len_k, gamma, passes, kernels, schedule)
    if out.dtype == D.dtype and out.device == D.device:
        return out
    result = out.to(device=D.device, dtype=D.dtype)
    if D.dtype in (torch.float16, torch.bfloat16):
        _check_no_overflow(out, result, fn)
    return result


def _check_no_overflow(computed: torch.Tensor, result: torch.Tensor, fn: str) -> None:
    """fp16/bf16 inputs are computed in float32; a score that is finite in float32 but not representable in the
    input's dtype raises instead of coming back as a silent inf."""
    overflow = torch.isinf(result) & torch.isfinite(computed.to(result.device))
    if bool(overflow.any()):
        worst = float(computed.detach().abs().max())
        raise OverflowError(
            f"{fn}: a score ({worst:.6g}) overflows {str(result.dtype).replace('torch.', '')} (max "
            f"{torch.finfo(result.dtype).max:.6g}); pass float32 costs (e.g. D.float()) to get it in float32")


# ----------------------------------------------------------------------------------------------------------------
# Public functions
# ----------------------------------------------------------------------------------------------------------------
def soft_dtw(
    D: torch.Tensor, gamma: float = 0.1, lengths: Optional[torch.Tensor] = None, *, backend: Optional[str] = None,
    schedule: Optional[str] = None,
) -> torch.Tensor:
    """Soft-DTW score of each cost matrix (differentiable; analytic backward).

    D: [..., L, M] pairwise costs (any leading dims; fp16/bf16 are computed in float32, float64 stays float64).
    gamma: soft-min temperature > 0.  ``smin_gamma(a) = -gamma log sum exp(-a / gamma)``; as gamma -> 0 the score
        tends to the hard DTW cost (min over monotone paths), see :func:`hard_dtw`; large gamma averages paths.
    lengths: optional [..., 2] int64 (rows, cols) of each item's real part of D for padded batches: the score is
        read at (rows-1, cols-1) and padding gets exactly zero gradient (no inf padding needed).
    Recursion: ``R[0,0] = D[0,0]``, first row/column are hard cumulative sums,
        ``R[l,m] = D[l,m] + smin(R[l-1,m-1], R[l,m-1], R[l-1,m])``.
    Returns [...] in D's dtype.  backend: "cpu" | "triton" | "ref" or None (by device).
    schedule: None (default: the backend picks by shape) or a kernel schedule to force, for tests and benchmarks
        (all give the same numbers to rounding): cpu "lanes" | "wavefront" | "columns" (OTAM only), triton
        "problems" | "waves"; a forced schedule runs the gradient kernels even without a gradient.  Not with "ref"."""
    return _score(D, _check_gamma(gamma), passes_for("dtw"), lengths, backend, False, "soft_dtw", schedule)


def soft_otam(
    D: torch.Tensor,
    gamma: float = 0.1,
    lengths: Optional[torch.Tensor] = None,
    *,
    bidirectional: bool = False,
    backend: Optional[str] = None,
    schedule: Optional[str] = None,
) -> torch.Tensor:
    """Soft-OTAM score (TRX / TempCLR formulation) of each cost matrix (differentiable; analytic backward).

    D is padded (implicitly) with a zero column on each side, so an alignment may start on any row and end on any
    row for free; only the first, second and last columns allow a vertical move.  The score is R[L-1, M+1] of the
    padded grid.  With ``bidirectional=True`` the result is OTAM(D) + OTAM(D^T), as used for training.
    D: [..., L, M]; lengths: optional [..., 2] (rows, cols) of each item's real part of D (the free zero column
    follows column cols-1; padding gets exactly zero gradient).  gamma > 0; gamma -> 0 gives the hard OTAM cost
    (:func:`hard_otam`).  Returns [...] in D's dtype.  schedule: see :func:`soft_dtw`."""
    mode = "otam_both" if bidirectional else "otam"
    return _score(D, _check_gamma(gamma), passes_for(mode), lengths, backend, False, "soft_otam", schedule)


def hard_dtw(
    D: torch.Tensor, lengths: Optional[torch.Tensor] = None, *, backend: Optional[str] = None
) -> torch.Tensor:
    """Hard DTW cost (gamma -> 0 limit of :func:`soft_dtw`: min over monotone paths), [..., L, M] -> [...].
    Not differentiable (computed under no_grad)."""
    return _score(D, 1.0, passes_for("dtw"), lengths, backend, True, "hard_dtw")


def hard_otam(
    D: torch.Tensor,
    lengths: Optional[torch.Tensor] = None,
    *,
    bidirectional: bool = False,
    backend: Optional[str] = None,
) -> torch.Tensor:
    """Hard OTAM cost (gamma -> 0 limit of :func:`soft_otam`), [..., L, M] -> [...].  Not differentiable."""
    mode = "otam_both" if bidirectional else "otam"
    return _score(D, 1.0, passes_for(mode), lengths, backend, True, "hard_otam")


def cumulative_cost(
    D: torch.Tensor,
    mode: str = "dtw",
    gamma: float = 0.0,
    *,
    prepadded: bool = False,
    backend: Optional[str] = None,
) -> torch.Tensor:
    """The full cumulative-cost matrix R of one alignment (no gradient).

    mode "dtw": D [..., L, M] -> R [..., L, M].  mode "otam": D [..., L, M] -> R [..., L, M+2] on the grid padded
    with zero side columns; with ``prepadded=True`` D [..., L, W] already carries its side columns (as made by
    ``OTAM_pad``; column 0 is treated as zero) and R is [..., L, W].  gamma = 0 (default) uses min (hard); gamma > 0
    the soft-min.  The score of the whole alignment is ``R[..., -1, -1]``."""
    if mode not in ("dtw", "otam"):
        raise ValueError(f"cumulative_cost: mode must be 'dtw' or 'otam'; got {mode!r}")
    if prepadded and mode != "otam":
        raise ValueError("cumulative_cost: prepadded=True only applies to mode='otam'")
    hard = float(gamma) == 0.0
    gamma = 1.0 if hard else _check_gamma(gamma)
    align_pass = OTAM_PREPADDED if prepadded else passes_for(mode)[0]
    _check(D, None, "cumulative_cost")
    flat = D.to(_compute_dtype(D)).reshape(-1, D.shape[-2], D.shape[-1])
    B, L, M = flat.shape
    Lg, Wg = align_pass.grid_shape(L, M)
    name = resolve_backend(backend, D.device)
    if name != "ref" and bool(torch.isnan(flat.sum())) and bool(torch.isnan(flat).any()):
        name = "ref"  # the kernels' min/max would skip a NaN; the reference recursion propagates it cell by cell
    with torch.no_grad():
        if name == "ref":
            R = align_ref(flat, gamma, align_pass, None, hard=hard, return_matrix=True)
        elif B == 0:
            R = flat.new_zeros((0, Lg, Wg))
        else:
            kernels = _kernels(name)
            _, state = kernels.scores(_on(kernels, flat).contiguous(), None, gamma, align_pass, hard)
            R = kernels.matrix(state, B)
    return R.to(device=D.device, dtype=D.dtype).reshape(*D.shape[:-2], Lg, Wg)


def expected_alignment(
    D: torch.Tensor,
    gamma: float,
    mode: str = "dtw",
    lengths: Optional[torch.Tensor] = None,
    *,
    backend: Optional[str] = None,
    schedule: Optional[str] = None,
) -> torch.Tensor:
    """Soft alignment matrix: the gradient of the soft score w.r.t. D, [..., L, M] -> [..., L, M].

    Entry (l, m) is the probability that the Gibbs distribution over alignments (temperature gamma) passes through
    cell (l, m); as gamma -> 0 it tends to the 0/1 indicator of the optimal path.  mode: "dtw", "otam" or
    "otam_both" (sum of both directions' alignments, so entries lie in [0, 2]).  Zero outside ``lengths``.
    schedule: see :func:`soft_dtw`."""
    gamma = _check_gamma(gamma)
    passes = passes_for(mode)
    with torch.enable_grad():
        leaf = D.detach().requires_grad_(True)
        score = _score(leaf, gamma, passes, lengths, backend, False, "expected_alignment", schedule)
        (grad,) = torch.autograd.grad(score.sum(), leaf)
    return grad
