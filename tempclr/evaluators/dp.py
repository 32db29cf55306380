"""CrossTask step assignment: the dynamic program of ``dp.pyx`` in DmZhukov/CrossTask, re-implemented.

Problem
-------
A video has ``T`` seconds and its task has ``K`` ordered steps.  ``C[t, s]`` (shape ``[T, K]``) is the cost of
placing step ``s`` at second ``t`` (CrossTask evaluation passes ``-log_softmax(logits)``).  The DP places the
steps in their canonical order along the video and writes ``Y[t, s] = 1`` where step ``s`` is placed.

States and moves
----------------
States ``k = 0 .. 2K``.  Even ``k`` are background states (``k = 2s``: background after the first ``s`` steps),
odd ``k = 2s + 1`` means "at step ``s``" (``s`` 0-based, so ``C[:, s]`` is its cost column).
``L[0, 0] = 0`` and every other state is unreachable before the first second.  For second ``t = 1 .. T`` state
``k`` may come from these predecessors at ``t - 1``, examined in this order:

1. ``k`` itself (stay): background states always; step states only when ``exactly_one`` is False;
2. ``k - 1`` (advance one state);
3. ``k - 2`` (jump): only into a step state, i.e. from the previous step straight to the next one without a
   background second between them.

An unreachable predecessor is skipped.  The first candidate whose ``L`` is **strictly smaller** than the best so
far wins, so on a tie stay beats advance, and advance beats jump (``dp.pyx`` compares with ``>``).  The
chosen ``L`` plus the cost of the new state is ``L[t, k]``: ``C[t - 1, s]`` for step state ``2s + 1`` and
``bg_cost`` for a background state.  Costs are accumulated in float64, cell by cell in this order, exactly
as ``dp.pyx`` does (float32 costs are widened to float64 before the addition), so ties are bit-identical.

End state: ``2K`` (background after the last step) when it is reachable and its ``L`` is strictly smaller
than that of ``2K - 1`` (at the last step); otherwise ``2K - 1``.  On an exact tie the end is therefore
``2K - 1``, as in ``dp.pyx`` (``L[T, 2K] < L[T, 2K - 1]`` is False on a tie).  The path is then followed back
and every second spent in step state ``2s + 1`` gets ``Y[t, s] = 1``.

Meaning of the result
---------------------
* ``exactly_one=True`` (the CrossTask evaluation): each step occupies exactly one second, steps are in
  order at strictly increasing seconds, every other second is background.  The result minimises
  ``sum_s C[t_s, s] + (T - K) * bg_cost``; among optimal placements the tie rules above choose one.
  With all costs equal, for example, the last step lands on the last second.
* ``exactly_one=False``: each step occupies a non-empty run of consecutive seconds (step states may stay),
  runs are in order, background seconds (each costing ``bg_cost``) may sit before, between and after them.
  The total cost of all occupied cells plus the background seconds is minimised.

Video length (``dp.pyx`` leaves ``T <= K`` undefined; it can return an empty ``Y`` when ``T == K``)
--------------------------------------------------------------------------------------------------
* ``T > K``: identical to ``dp.pyx``, including its tie-breaking.
* ``T == K``: the only placement puts step ``s`` at second ``s`` (every second is a step, the path ends in
  ``2K - 1``); this is what is returned, never an empty ``Y``.  (``dp.pyx`` compared against the
  unreachable ``2K`` state's stale value and could backtrack from it.)
* ``T < K``: no placement exists; :class:`ValueError` naming ``T`` and ``K``.  ``Y`` is left untouched.
* ``K == 0``: nothing to place; ``Y`` (shape ``[T, 0]``) stays empty.

Infinite and invalid costs
--------------------------
``+inf`` costs (``-log`` of a zero probability) are allowed: ``inf`` is never strictly smaller than a finite
value, so a finite path is always preferred to an infinite one.  If every complete placement has infinite
cost, all candidates tie at ``inf`` and the tie rules above still return a valid placement (the same one
``dp.pyx`` returns).  NaN and ``-inf`` costs (and a NaN or ``-inf`` ``bg_cost``) have no meaningful minimum
and raise :class:`ValueError` naming the first offending cell; ``Y`` is then left untouched.

Public functions
----------------
* :func:`dp` ``(Y, C, exactly_one=True, bg_cost=0.0) -> None``: fills ``Y`` in place (drop-in for ``dp.pyx``).
* :func:`dp_assign` ``(C, exactly_one=True, bg_cost=0.0) -> Y``: allocates and returns ``Y`` (float32 ``[T, K]``).
* :func:`dp_reference`: the same contract as :func:`dp`, plain Python cell by cell, mirroring the loops of
  ``dp.pyx``; for tests and benchmarks only (over a hundred times slower).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["dp", "dp_assign", "dp_reference"]

_UNREACHABLE = -1  # backpointer value of a state that no path reaches


# --------------------------------------------------------------------------------------------------------------
# input checks shared by the compiled path and the reference


def _check_inputs(Y: np.ndarray, C: np.ndarray, bg_cost: float) -> np.ndarray:
    """Validate ``Y`` / ``C`` / ``bg_cost``; return ``C`` as a float32 or float64 C-contiguous array."""
    if not isinstance(Y, np.ndarray) or Y.ndim != 2:
        raise ValueError(f"dp: Y must be a 2-D numpy array [T, K], got {type(Y).__name__} "
                         f"with shape {getattr(Y, 'shape', None)}")
    if Y.dtype not in (np.float32, np.float64):
        raise ValueError(f"dp: Y must be float32 (or float64), got dtype {Y.dtype}; "
                         f"allocate it with np.zeros([T, K], dtype=np.float32)")
    if not Y.flags.writeable:
        raise ValueError("dp: Y is read-only; pass a writable array (np.zeros([T, K], dtype=np.float32))")
    C = np.asarray(C)
    if C.shape != Y.shape:
        raise ValueError(f"dp: C has shape {C.shape} but Y has shape {Y.shape}; both must be [T, K]")
    if C.dtype not in (np.float32, np.float64):
        if not (np.issubdtype(C.dtype, np.floating) or np.issubdtype(C.dtype, np.integer)
                or C.dtype == np.bool_):
            raise ValueError(f"dp: C must hold real numbers, got dtype {C.dtype}")
        C = C.astype(np.float64)
    bg = float(bg_cost)
    if math.isnan(bg) or bg == -math.inf:
        raise ValueError(f"dp: bg_cost must be a number or +inf, got {bg_cost!r}")
    T, K = Y.shape
    if T < K:
        raise ValueError(f"dp: the video has T={T} seconds but the task has K={K} steps; every step needs its "
                         f"own second (T >= K), so no assignment exists. Skip videos with T < K.")
    return np.ascontiguousarray(C)


def _bad_cost_error(C: np.ndarray, flat_index: int) -> ValueError:
    t, s = divmod(flat_index, C.shape[1])
    return ValueError(f"dp: C[{t}, {s}] = {C[t, s]!r}; costs must be finite or +inf (NaN and -inf have no "
                      f"minimum). Check the logits of second {t}, step {s}.")


# --------------------------------------------------------------------------------------------------------------
# compiled path


@njit(cache=True, nogil=True)
def _dp_kernel(Y, C, exactly_one, bg_cost):  # pragma: no cover - compiled; covered through dp()
    """Fill ``Y`` [T, K] (T >= K >= 1).  Returns 0, or ``1 + flat index`` of the first NaN / -inf cost
    (then ``Y`` is untouched).  Backpointers hold the offset (0 stay, 1 advance, 2 jump) or -1."""
    T, K = C.shape
    for t in range(T):
        for s in range(K):
            c = C[t, s]
            if c != c or c == -np.inf:
                return t * K + s + 1
    n_states = 2 * K + 1
    back = np.empty((T + 1, n_states), dtype=np.int8)
    back[0, :] = -1
    back[0, 0] = 0
    prev = np.empty(n_states, dtype=np.float64)
    cur = np.empty(n_states, dtype=np.float64)
    prev[0] = 0.0
    for t in range(1, T + 1):
        reach_prev = back[t - 1]
        reach_cur = back[t]
        for k in range(n_states):
            is_step = k % 2 == 1
            off = -1
            best = 0.0
            if (not is_step or not exactly_one) and reach_prev[k] != -1:
                off = 0
                best = prev[k]
            if k >= 1 and reach_prev[k - 1] != -1 and (off == -1 or best > prev[k - 1]):
                off = 1
                best = prev[k - 1]
            if is_step and k >= 2 and reach_prev[k - 2] != -1 and (off == -1 or best > prev[k - 2]):
                off = 2
                best = prev[k - 2]
            reach_cur[k] = off
            if off != -1:
                if is_step:
                    cur[k] = best + C[t - 1, k // 2]
                else:
                    cur[k] = best + bg_cost
        prev, cur = cur, prev
    last_bg = 2 * K
    last_step = 2 * K - 1
    k = last_step
    if back[T, last_bg] != -1 and (back[T, last_step] == -1 or prev[last_bg] < prev[last_step]):
        k = last_bg
    Y[:, :] = 0
    for t in range(T, 0, -1):
        if k % 2 == 1:
            Y[t - 1, k // 2] = 1
        k -= back[t, k]
    return 0


def dp(Y: np.ndarray, C: np.ndarray, exactly_one: bool = True, bg_cost: float = 0.0) -> None:
    """Fill ``Y`` [T, K] (float32, zeroed here) with the step placement minimising the costs ``C`` [T, K].

    Drop-in for ``dp`` of CrossTask's ``dp.pyx`` (see the module docstring for the exact semantics, tie rules,
    ``T <= K`` and ``inf`` handling).  ``C`` may be float32 or float64 (other real dtypes are converted to
    float64).  Raises ``ValueError`` for ``T < K``, shape / dtype mismatches, and NaN or ``-inf`` costs.
    """
    C = _check_inputs(Y, C, bg_cost)
    if Y.shape[1] == 0:
        return
    code = _dp_kernel(Y, C, bool(exactly_one), float(bg_cost))
    if code != 0:
        raise _bad_cost_error(C, code - 1)


def dp_assign(C: np.ndarray, exactly_one: bool = True, bg_cost: float = 0.0) -> np.ndarray:
    """Return the placement ``Y`` (float32 ``[T, K]``, 1 where step ``s`` sits at second ``t``) for costs
    ``C`` [T, K].  With ``exactly_one=True`` each column holds exactly one 1, at increasing rows."""
    C = np.asarray(C)
    if C.ndim != 2:
        raise ValueError(f"dp_assign: C must be 2-D [T, K], got shape {C.shape}")
    Y = np.zeros(C.shape, dtype=np.float32)
    dp(Y, C, exactly_one, bg_cost)
    return Y


# --------------------------------------------------------------------------------------------------------------
# plain-Python reference (tests and benchmarks only)


def _step_of(k: int) -> int:
    """1-based step of state ``k`` (0 for a background state), like ``get_step`` in ``dp.pyx``."""
    return 0 if k % 2 == 0 else (k + 1) // 2


def dp_reference(Y: np.ndarray, C: np.ndarray, exactly_one: bool = True, bg_cost: float = 0.0) -> None:
    """Same contract and result as :func:`dp`, written as plain Python loops over every cell in the order
    of ``dp.pyx`` (``L`` and ``P`` tables of shape ``[T + 1, 2K + 1]``, ``P = -1`` marks unreachable)."""
    C = _check_inputs(Y, C, bg_cost)
    T, K = Y.shape
    if K == 0:
        return
    costs = C.tolist()  # Python floats: the same float64 values the compiled path adds
    for t in range(T):
        for s in range(K):
            value = costs[t][s]
            if math.isnan(value) or value == -math.inf:
                raise _bad_cost_error(C, t * K + s)
    bg = float(bg_cost)
    K_ext = 2 * K + 1
    L = [[0.0] * K_ext for _ in range(T + 1)]
    P = [[_UNREACHABLE] * K_ext for _ in range(T + 1)]
    P[0][0] = 0
    for t in range(1, T + 1):
        for k in range(K_ext):
            s = _step_of(k)
            opt_label = _UNREACHABLE
            opt_value = 0.0
            j = k
            if P[t - 1][j] != _UNREACHABLE and (s == 0 or not exactly_one):
                opt_label = j
                opt_value = L[t - 1][j]
            j = k - 1
            if j >= 0 and P[t - 1][j] != _UNREACHABLE and (opt_label == _UNREACHABLE or opt_value > L[t - 1][j]):
                opt_label = j
                opt_value = L[t - 1][j]
            if s != 0:
                j = k - 2
                if j >= 0 and P[t - 1][j] != _UNREACHABLE and (
                        opt_label == _UNREACHABLE or opt_value > L[t - 1][j]):
                    opt_label = j
                    opt_value = L[t - 1][j]
            P[t][k] = opt_label
            if opt_label != _UNREACHABLE:
                L[t][k] = opt_value + (costs[t - 1][s - 1] if s != 0 else bg)
    end_bg, end_step = K_ext - 1, K_ext - 2
    if P[T][end_bg] != _UNREACHABLE and (P[T][end_step] == _UNREACHABLE or L[T][end_bg] < L[T][end_step]):
        k = end_bg
    else:
        k = end_step
    Y[:, :] = 0
    for t in range(T, 0, -1):
        s = _step_of(k)
        if s > 0:
            Y[t - 1, s - 1] = 1
        k = P[t][k]
