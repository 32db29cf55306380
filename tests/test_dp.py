"""CrossTask step-assignment DP: compiled path vs the plain-Python reference, brute-force optimality,
hand-worked tie cases, T == K / T < K, and infinite / invalid costs."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from tempclr.evaluators.dp import dp, dp_assign, dp_reference


def _both(C, exactly_one=True, bg_cost=0.0):
    """(compiled Y, reference Y) for costs C."""
    C = np.asarray(C)
    Y_fast = np.zeros(C.shape, dtype=np.float32)
    Y_ref = np.zeros(C.shape, dtype=np.float32)
    dp(Y_fast, C, exactly_one, bg_cost)
    dp_reference(Y_ref, C, exactly_one, bg_cost)
    return Y_fast, Y_ref


def _random_case(rng, case):
    """A small cost matrix with T > K; every other case integer-valued in {0, 1, 2} (many ties)."""
    K = int(rng.integers(1, 6))
    T = K + 1 + int(rng.integers(0, 6))
    if case % 2 == 0:
        C = rng.integers(0, 3, size=(T, K)).astype(np.float32)
    else:
        C = rng.random((T, K)).astype(np.float32)
    if case % 5 == 0:
        C[rng.random((T, K)) < 0.3] = np.inf
    return C


@pytest.mark.parametrize("exactly_one", [True, False])
@pytest.mark.parametrize("bg_cost", [0.0, 1.0, 0.5])
def test_compiled_matches_reference_with_ties(exactly_one, bg_cost):
    rng = np.random.default_rng(1000 + int(exactly_one) + int(10 * bg_cost))
    for case in range(600):
        C = _random_case(rng, case)
        Y_fast, Y_ref = _both(C, exactly_one, bg_cost)
        assert np.array_equal(Y_fast, Y_ref), f"case {case}: C=\n{C}\ncompiled=\n{Y_fast}\nreference=\n{Y_ref}"


def test_float64_costs_match_reference():
    rng = np.random.default_rng(7)
    for _ in range(200):
        C = rng.integers(0, 4, size=(9, 3)).astype(np.float64) / 3.0
        Y_fast, Y_ref = _both(C, True, 0.25)
        assert np.array_equal(Y_fast, Y_ref), f"C=\n{C}\n{Y_fast}\n{Y_ref}"


def _placement_cost(C, Y, bg_cost):
    """Total cost of placement Y: occupied cells plus bg_cost per second with no step."""
    background_seconds = int((Y.sum(axis=1) == 0).sum())
    return float((C * Y).sum()) + background_seconds * bg_cost


def _all_exactly_one_placements(T, K):
    for seconds in itertools.combinations(range(T), K):
        Y = np.zeros((T, K), dtype=np.float32)
        Y[list(seconds), range(K)] = 1
        yield Y


def _all_run_placements(T, K):
    """Every placement of K ordered non-empty runs of consecutive seconds (exactly_one=False)."""
    for bounds in itertools.combinations_with_replacement(range(T + 1), 2 * K):
        starts, ends = bounds[0::2], bounds[1::2]  # run s is [starts[s], ends[s]), ends[s] <= starts[s + 1]
        if any(start == end for start, end in zip(starts, ends)):
            continue
        Y = np.zeros((T, K), dtype=np.float32)
        for s in range(K):
            Y[starts[s]:ends[s], s] = 1
        yield Y


@pytest.mark.parametrize("exactly_one", [True, False])
def test_result_is_a_valid_optimal_placement(exactly_one):
    rng = np.random.default_rng(3)
    enumerate_placements = _all_exactly_one_placements if exactly_one else _all_run_placements
    for case in range(150):
        K = int(rng.integers(1, 4))
        T = K + int(rng.integers(0, 4))
        C = rng.integers(0, 5, size=(T, K)).astype(np.float32)
        bg_cost = float(rng.integers(0, 3)) / 2
        Y = dp_assign(C, exactly_one, bg_cost)
        placements = list(enumerate_placements(T, K))
        assert any(np.array_equal(Y, P) for P in placements), f"case {case}: not a valid placement:\n{Y}"
        best = min(_placement_cost(C, P, bg_cost) for P in placements)
        got = _placement_cost(C, Y, bg_cost)
        assert got == best, f"case {case}: cost {got} != optimum {best}; C=\n{C}\nY=\n{Y}"


def test_hand_worked_unique_optimum():
    C = np.array([[5, 9], [1, 9], [9, 9], [9, 0]], dtype=np.float32)
    expected = np.array([[0, 0], [1, 0], [0, 0], [0, 1]], dtype=np.float32)
    assert np.array_equal(dp_assign(C), expected)


def test_hand_worked_ties_follow_dp_pyx_order():
    # All costs equal, K=1, T=3: at t=3 state 2 stays (stay beats advance), the end ties and picks 2K-1,
    # so the step lands on the last second.
    assert np.array_equal(dp_assign(np.zeros((3, 1), np.float32)).ravel(), [0, 0, 1])
    # K=2, T=4: end 2K-1 at t=4 comes from state 2 (advance beats jump), which stayed since t=2 after step 1
    # at t=1: step 1 at second 0, step 2 at second 3.
    expected = np.array([[1, 0], [0, 0], [0, 0], [0, 1]], dtype=np.float32)
    assert np.array_equal(dp_assign(np.zeros((4, 2), np.float32)), expected)
    # End tie (L = 0 for both end states) takes 2K-1; a strictly cheaper 2K takes 2K.
    assert np.array_equal(dp_assign(np.array([[0], [0]], np.float32)).ravel(), [0, 1])
    assert np.array_equal(dp_assign(np.array([[0], [1]], np.float32)).ravel(), [1, 0])


@pytest.mark.parametrize("exactly_one", [True, False])
def test_t_equal_k_places_steps_on_the_diagonal(exactly_one):
    rng = np.random.default_rng(5)
    for K in range(1, 8):
        C = (rng.random((K, K)) * 10 + 1).astype(np.float32)  # off-diagonal cells cheaper than bg would be
        np.fill_diagonal(C, 100.0)
        Y_fast, Y_ref = _both(C, exactly_one, 0.0)
        assert np.array_equal(Y_fast, np.eye(K, dtype=np.float32)), f"K={K}:\n{Y_fast}"
        assert np.array_equal(Y_ref, Y_fast)


@pytest.mark.parametrize("impl", [dp, dp_reference])
def test_t_less_than_k_raises_and_leaves_y(impl):
    Y = np.full((2, 3), 7, dtype=np.float32)
    with pytest.raises(ValueError, match=r"T=2 seconds.*K=3 steps"):
        impl(Y, np.zeros((2, 3), np.float32))
    assert (Y == 7).all()


def test_zero_steps_is_empty():
    assert dp_assign(np.zeros((4, 0), np.float32)).shape == (4, 0)


def test_inf_costs_are_avoided():
    # only one finite placement: step 0 at second 2, step 1 at second 4
    C = np.full((6, 2), np.inf, dtype=np.float32)
    C[2, 0] = 3.0
    C[4, 1] = 1.0
    expected = np.zeros((6, 2), np.float32)
    expected[2, 0] = expected[4, 1] = 1
    Y_fast, Y_ref = _both(C)
    assert np.array_equal(Y_fast, expected), Y_fast
    assert np.array_equal(Y_ref, expected), Y_ref


def test_all_inf_still_gives_a_valid_placement():
    C = np.full((6, 3), np.inf, dtype=np.float32)
    Y_fast, Y_ref = _both(C)
    assert np.array_equal(Y_fast, Y_ref)
    assert (Y_fast.sum(axis=0) == 1).all(), Y_fast
    rows = Y_fast.argmax(axis=0)
    assert (np.diff(rows) > 0).all(), rows


def test_huge_finite_costs_beat_inf():
    C = np.full((5, 2), np.inf, dtype=np.float32)
    C[0, 0] = C[3, 1] = np.finfo(np.float32).max
    Y = dp_assign(C)
    assert Y[0, 0] == 1 and Y[3, 1] == 1 and Y.sum() == 2, Y


@pytest.mark.parametrize("impl", [dp, dp_reference])
@pytest.mark.parametrize("bad", [np.nan, -np.inf])
def test_nan_or_minus_inf_cost_raises(impl, bad):
    C = np.zeros((5, 2), np.float32)
    C[3, 1] = bad
    Y = np.full((5, 2), 7, dtype=np.float32)
    with pytest.raises(ValueError, match=r"C\[3, 1\]"):
        impl(Y, C)
    assert (Y == 7).all()


def test_bad_bg_cost_and_shapes_raise():
    with pytest.raises(ValueError, match="bg_cost"):
        dp_assign(np.zeros((4, 2), np.float32), bg_cost=float("nan"))
    with pytest.raises(ValueError, match="shape"):
        dp(np.zeros((4, 2), np.float32), np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="float32"):
        dp(np.zeros((4, 2), np.int64), np.zeros((4, 2), np.float32))


def test_y_is_overwritten_and_exactly_one_per_step():
    rng = np.random.default_rng(11)
    C = rng.random((50, 6)).astype(np.float32)
    Y = np.ones((50, 6), dtype=np.float32)
    dp(Y, C)
    assert (Y.sum(axis=0) == 1).all()
    assert (np.diff(Y.argmax(axis=0)) > 0).all()
    assert Y.sum() == 6


# Outputs of the original CrossTask Cython ``dp`` (dp.pyx built with Cython 3.3, language_level=2) on the 48
# cases of _golden_cases(): per second, the 0-based step placed there or -1 for background.
ORIGINAL_DP_OUTPUTS = [
    [0, -1, -1, -1, -1, -1], [-1, 0], [0, -1, -1, -1, -1], [0, -1, -1, 1, 2, -1, -1], [0, -1, 1, -1, 2, 3],
    [0, 0, 1, 2, 3], [0, -1, -1, -1, -1, 1, 2, -1, -1], [0, -1, -1, -1], [0, 1, -1, -1, -1, -1],
    [-1, -1, -1, -1, -1, 0, 1, 2, 3, -1], [0, 1, 2, 3, -1], [-1, 0, -1, 1, 1, 2, -1], [-1, -1, 0],
    [0, 1, 1, 1, 1, -1, 2, -1], [0, -1, -1, 1], [-1, 0, -1, -1, -1], [0, -1, -1, 1, 2, -1, -1, -1],
    [0, 1, -1, 2], [-1, -1, -1, -1, -1, -1, 0], [-1, 0, 1, -1, 2, -1, -1, -1, -1], [-1, -1, -1, -1, -1, -1, 0],
    [0, 1, -1, 2, -1, -1, -1, 3, -1, -1], [0, -1, -1, -1, -1, 1], [0, -1, 1, -1, -1, 2], [-1, 0, 1, 2, 3, -1],
    [-1, -1, 0, -1, 1, 1, -1, 2], [-1, 0, 1, -1], [0, 1, -1, -1, -1, -1, -1, -1, 2],
    [-1, -1, -1, 0, -1, -1, 1, 2, -1, 3], [-1, 0, 0, -1, -1, -1, -1], [-1, -1, 0, 1, -1, -1],
    [0, -1, 1, 2, 3, -1], [-1, -1, -1, 0, 1, -1, 2], [0, -1, -1, -1, -1, 1, 1, 1], [-1, -1, -1, -1, 0, 1, -1, -1],
    [-1, -1, 0, 1, 2, -1, 3], [0, 1, -1, 2, 3], [-1, 0, 1, 1, 1, 1], [-1, 0, 1, -1, -1, 2], [0, 1, 2, 2, 2],
    [-1, -1, -1, 0, -1], [0, 1, 2, -1], [-1, -1, 0, 1, 2, -1, -1, -1], [0, -1, 1, -1, 2, 2, 3],
    [-1, -1, 0, 1, -1, -1, 2], [-1, 0, -1, 1, 2, -1, -1, -1], [0, -1, -1, -1, -1, -1, 1, -1], [0, -1],
]


def _golden_cases():
    """48 small T > K cases with integer costs in {0, 1, 2} (many ties), some +inf; alternating exactly_one."""
    rng = np.random.default_rng(20240601)
    for i in range(48):
        K = int(rng.integers(1, 5))
        T = K + 1 + int(rng.integers(0, 6))
        C = rng.integers(0, 3, size=(T, K)).astype(np.float32)
        if i % 4 == 3:
            C[rng.random((T, K)) < 0.3] = np.inf
        yield C, i % 2 == 0, [0.0, 1.0, 0.5][i % 3]


def test_matches_recorded_outputs_of_original_dp():
    for i, ((C, exactly_one, bg_cost), expected) in enumerate(zip(_golden_cases(), ORIGINAL_DP_OUTPUTS)):
        for Y in _both(C, exactly_one, bg_cost):
            labels = np.where(Y.sum(axis=1) > 0, Y.argmax(axis=1), -1).tolist()
            assert labels == expected, f"case {i} (exactly_one={exactly_one}, bg_cost={bg_cost}):\n{C}\n{labels}"
