"""YouCook2 full-video retrieval metrics (caption average, DTW, OTAM; background kept).

Oracles: hand computations on tiny cases (numbers written out below), a plain per-pair loop of the corrected
arithmetic (the cell loops of tempclr.testing.original), and the original's own loops over video pairs
(tempclr.testing.original: float32 accumulators, substring ids, contiguous blocks scaled in place, inf padding
with the ``[-d0-1:, -d1:]`` zero slice, the OTAM column-1 subtraction, the background variant's transposed grid
padded to the untransposed targets, ``torch.argsort`` window selection and ``np.argsort`` recall)."""
from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from tempclr.evaluators import FullVideoBGRetrievalMetric, FullVideoRetrievalMetric
from tempclr.evaluators.fullvideo import ENGINES, kept_windows, pair_costs, segments_by_counts, segments_by_id
from tempclr.evaluators.metric import metric_compat
from tempclr.testing.original import (
    METRIC_NAMES as NAMES,
    dtw_cells,
    original_loop_bg,
    original_loop_clip,
    otam_cells,
)
from tempclr.utils.registry import lookup

ORIGINAL = {"eval": {"metric_compat": "original"}}


# ----------------------------------------------------------------------------------------------------------------
# oracle 1: the corrected arithmetic, one pair at a time
# ----------------------------------------------------------------------------------------------------------------
def loop_pair_costs(scores, row_members, col_members, keep=None):
    """Per pair: D = 1 - scores (float64); background: keep the min(keep, W) windows with the smallest distance
    to any caption (earlier window first on a tie), in temporal order; costs divided by the cell count."""
    Q, C = len(row_members), len(col_members)
    dtw, otam = np.zeros((Q, C)), np.zeros((Q, C))
    for q, rows in enumerate(row_members):
        for c, cols in enumerate(col_members):
            D = 1.0 - scores[np.ix_(rows, cols)].astype(np.float64)
            if keep is not None:
                k = min(keep[q], len(cols))
                D = D[:, np.sort(np.argsort(D.min(axis=0), kind="stable")[:k])]
            dtw[q, c] = dtw_cells(D) / D.size
            otam[q, c] = (otam_cells(D) + otam_cells(D.T)) / D.size
    return dtw, otam


def clip_ids(ids, counts):
    return [v for v, n in zip(ids, counts) for _ in range(n)]


# ----------------------------------------------------------------------------------------------------------------
# tiny hand-computed cases
# ----------------------------------------------------------------------------------------------------------------
# three videos a (2 clips), b (1), c (2); row i = caption of clip i, columns = clips a0 a1 b0 c0 c1
HAND_SCORES = np.array([[1.0, 0.0, 0.5, 0.0, 1.0],
                        [0.0, 1.0, 0.0, 1.0, 0.5],
                        [0.5, 0.5, 1.0, 0.0, 0.0],
                        [1.0, 0.5, 0.5, 1.0, 0.0],
                        [1.0, 0.0, 0.0, 0.0, 1.0]], np.float32)
HAND_IDS = ["a", "a", "b", "c", "c"]


def test_registered_names_and_selection_metric():
    for name, cls in (("FullVideoRetrievalMetric", FullVideoRetrievalMetric),
                      ("FullVideoBGRetrievalMetric", FullVideoBGRetrievalMetric)):
        assert lookup("metric", name) is cls
        metric = cls(None)
        assert metric.metric_names == NAMES
        assert metric.best_metric({n: 0.25 * (k == 0) for k, n in enumerate(NAMES)}) == 0.25


def test_fullvideo_metric_by_hand(capsys):
    metric = FullVideoRetrievalMetric(OmegaConf.create({"eval": {"save_path": "unused"}}))
    sims = metric.similarities(HAND_SCORES, HAND_IDS)
    assert sims["video_ids"] == ["a", "b", "c"]
    # caption average: a0 -> (1, .5, 1), a1 -> (1, 0, 1); b0 -> (.5, 1, 0); c0 -> (1, .5, 1), c1 -> (1, 0, 1)
    np.testing.assert_array_equal(sims["caption_average"], [[1.0, 0.25, 1.0], [0.5, 1.0, 0.0], [1.0, 0.25, 1.0]])
    # D = 1 - scores.  E.g. (a, c): [[1, 0], [0, .5]] -> DTW 1 + .5 over 4 cells; OTAM 0 + .5 one way, the same
    # the other way, over 4 cells.  (c, a): [[0, .5], [0, 1]] -> DTW 0 + 0 + 1 = 1; OTAM .5 + 0 = .5, over 4.
    np.testing.assert_array_equal(-sims["dtw"], [[0.0, 1.5 / 2, 1.5 / 4], [1.0 / 2, 0.0, 2.0 / 2],
                                                 [1.0 / 4, 1.5 / 2, 0.0]])
    np.testing.assert_array_equal(-sims["otam"], [[0.0, 2.0 / 2, 1.0 / 4], [1.5 / 2, 0.0, 3.0 / 2],
                                                  [0.5 / 4, 2.0 / 2, 0.0]])
    metrics = metric.compute_metrics(HAND_SCORES, ["text"] * 5, video_ids=HAND_IDS)
    # caption average: a and c tie in both rows, so each ranks 1 (ties count against the query); b ranks 0
    assert metrics == {"R1": 1 / 3, "R5": 1.0, "R10": 1.0, "DTW-R1": 1.0, "DTW-R5": 1.0, "DTW-R10": 1.0,
                       "OTAM-R1": 1.0, "OTAM-R5": 1.0, "OTAM-R10": 1.0}
    metric.print_computed_metrics(metrics)
    assert capsys.readouterr().out.splitlines() == [
        "Caption Average:", "R@1: 0.3333 - R@5: 1.0000 - R@10: 1.0000",
        "DTW:", "R@1: 1.0000 - R@5: 1.0000 - R@10: 1.0000",
        "OTAM", "R@1: 1.0000 - R@5: 1.0000 - R@10: 1.0000"]


def test_background_metric_by_hand(capsys):
    # x: captions x0 x1, windows xw0..xw2; y: caption y0, windows yw0 yw1
    scores = np.array([[1.0, 0.0, 0.5, 0.0, 0.5],
                       [0.0, 0.0, 1.0, 0.5, 0.0],
                       [0.0, 0.5, 0.0, 0.0, 1.0]], np.float32)
    metric = FullVideoBGRetrievalMetric(None)
    sims = metric.similarities(scores, ["x", "y"], [2, 1], [3, 2])
    np.testing.assert_array_equal(sims["caption_average"], [[1.0, 0.5], [0.5, 1.0]])
    # (x, x): int(1.3 * 2) = 2 windows kept of 3: minima over x0, x1 are (0, 1, 0), so xw1 goes; grid
    #   [[0, .5], [1, 0]]: DTW 0, OTAM 0 both ways.
    # (x, y): both windows (2 <= 2): [[1, .5], [.5, 1]]: DTW 1 + 1 = 2 over 4; OTAM 1.5 + 1.5 over 4.
    # (y, x): one window kept, the nearest to y0 (xw1, distance .5): DTW .5, OTAM .5 + .5, over 1 cell.
    # (y, y): yw1 (distance 0) kept: 0.
    np.testing.assert_array_equal(-sims["dtw"], [[0.0, 0.5], [0.5, 0.0]])
    np.testing.assert_array_equal(-sims["otam"], [[0.0, 0.75], [1.0, 0.0]])
    metrics = metric.compute_metrics(scores, None, video_ids=["x", "y"], text_lengths=[2, 1], video_lengths=[3, 2])
    assert metrics == dict.fromkeys(NAMES, 1.0)
    metric.print_computed_metrics(metrics)
    assert capsys.readouterr().out.splitlines()[::2] == ["Caption Average:", "DTW:", "OTAM"]


def test_window_selection_tie_keeps_the_earlier_window():
    # query: 2 captions -> keeps int(1.3 * 2) = 2; candidate: 4 windows with minima (.5, .25, .25, .25)
    scores = 1 - np.array([[0.5, 0.25, 0.75, 0.25], [0.75, 0.5, 0.25, 0.5]])
    rows, cols = segments_by_counts(["q"], [2]), segments_by_counts(["c"], [4])
    kept, counts = kept_windows(scores, rows, cols, keep=[2])
    assert kept.tolist() == [[[1, 2]]] and counts.tolist() == [[2]]
    kept, counts = kept_windows(scores, rows, cols, keep=[9])
    assert kept.tolist() == [[[0, 1, 2, 3]]] and counts.tolist() == [[4]]


# ----------------------------------------------------------------------------------------------------------------
# batched pair costs == the per-pair loop
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pair_costs_equal_the_per_pair_loop(engine, dtype):
    rng = np.random.default_rng(7)
    ids = [f"v{k}" for k in rng.integers(0, 9, 45)]  # interleaved clips, 1..10 per video
    scores = np.round(rng.standard_normal((45, 45)), 1).astype(dtype)  # rounded: ties in the window minima
    groups = segments_by_id(ids)
    members = [[i for i, x in enumerate(ids) if x == v] for v in groups.ids]
    dtw, otam = pair_costs(scores, groups, groups, engine=engine)
    expected = loop_pair_costs(scores, members, members)
    np.testing.assert_array_equal(dtw, expected[0])
    np.testing.assert_array_equal(otam, expected[1])
    # background kept: captions and windows in consecutive blocks, a different number of windows per video
    n_caps, n_wins = rng.integers(1, 7, 8), rng.integers(1, 12, 8)
    scores = np.round(rng.standard_normal((n_caps.sum(), n_wins.sum())), 1).astype(dtype)
    rows, cols = segments_by_counts(list("abcdefgh"), n_caps), segments_by_counts(list("abcdefgh"), n_wins)
    keep = [int(1.3 * n) for n in n_caps]
    dtw, otam = pair_costs(scores, rows, cols, keep=keep, engine=engine)
    row_members = [list(range(s, s + n)) for s, n in zip(rows.starts, rows.lengths)]
    col_members = [list(range(s, s + n)) for s, n in zip(cols.starts, cols.lengths)]
    expected = loop_pair_costs(scores, row_members, col_members, keep)
    np.testing.assert_array_equal(dtw, expected[0])
    np.testing.assert_array_equal(otam, expected[1])


# ----------------------------------------------------------------------------------------------------------------
# compat == the original arithmetic
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compat_equals_the_original_loop(dtype):
    rng = np.random.default_rng(3)
    # "v1" owns the clips of "v10" and "v11" (substring ids, contiguous): blocks overlap, scaled in place
    ids = ["v1", "v10", "v11", "v2", "v3", "v4", "v5"]
    counts = [2, 3, 1, 4, 2, 1, 3]
    cids = clip_ids(ids, counts)
    for scores in (rng.standard_normal((16, 16)), np.round(rng.standard_normal((16, 16)), 1) + 0.5):
        scores = scores.astype(dtype)
        metric = FullVideoRetrievalMetric(ORIGINAL)
        sims = metric.similarities(scores, cids)
        expected_metrics, expected = original_loop_clip(scores, cids)
        for key in ("caption_average", "dtw", "otam"):
            assert sims[key].dtype == expected[key].dtype
            np.testing.assert_array_equal(sims[key], expected[key])
        assert metric.compute_metrics(scores, None, video_ids=cids) == expected_metrics
    # background: 4 captions keep 5 windows (> Lmax_text = 4: the transposed grid is cropped); a video with more
    # captions than Wmax would make the column padding negative
    for n_wins in ([6, 10, 2, 3, 7], [3, 2, 2, 3, 2]):
        n_caps = [4, 1, 3, 2, 4]
        scores = np.round(rng.standard_normal((sum(n_caps), sum(n_wins))), 1).astype(dtype)
        vids = ["g", "gh", "h", "k", "a"]  # "g" and "h" both own the windows of "gh"
        metric = FullVideoBGRetrievalMetric(ORIGINAL)
        sims = metric.similarities(scores, vids, n_caps, n_wins)
        expected_metrics, expected = original_loop_bg(scores, vids, n_caps, n_wins)
        for key in ("caption_average", "dtw", "otam"):
            np.testing.assert_array_equal(sims[key], expected[key])
        assert metric.compute_metrics(scores, None, video_ids=vids, text_lengths=n_caps,
                                      video_lengths=n_wins) == expected_metrics


# ----------------------------------------------------------------------------------------------------------------
# corrected vs compat on each original defect
# ----------------------------------------------------------------------------------------------------------------
def test_pair_with_the_longest_video():
    # p: 2 clips (the longest), q: 1.  D = 1 - scores = [[0, 1 | 0], [1, 0 | 2], [.5, .5 | 0]]
    scores = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, -1.0], [0.5, 0.5, 1.0]], np.float32)
    ids = ["p", "p", "q"]
    corrected = FullVideoRetrievalMetric(None).similarities(scores, ids)["dtw"]
    # (p, q): [[0], [2]] -> 2 over 2 cells; (q, p): [[.5, .5]] -> 1 over 2
    np.testing.assert_array_equal(-corrected, [[0.0, 1.0], [0.5, 0.0]])
    compat = FullVideoRetrievalMetric(ORIGINAL).similarities(scores, ids)["dtw"]
    # (q, p): the candidate is the longest (no column padding), so the zero slice covers every column of the
    # query's row: cost 0 whatever the distances.  (p, q): the corridor [[0, inf], [4, 0]] skips q's distance 4.
    np.testing.assert_array_equal(compat, [[0.0, 0.0], [0.0, 0.0]])
    assert FullVideoRetrievalMetric(None).compute_metrics(scores, video_ids=ids)["DTW-R1"] == 1.0
    assert FullVideoRetrievalMetric(ORIGINAL).compute_metrics(scores, video_ids=ids)["DTW-R1"] == 0.5


def test_otam_column_one_sign():
    # s: 2 clips with D = [[-1, 1], [-1, 0]] (scores above 1: negative distances); t: 3 clips (Lmax = 3)
    scores = np.zeros((5, 5), np.float32)
    scores[:2, :2] = [[2.0, 0.0], [2.0, 1.0]]
    ids = ["s", "s", "t", "t", "t"]
    # corrected (s, s): OTAM(D) = -1 + -1 + 0 = -2, OTAM(D^T) = -1 + -1 = -2; over 4 cells -> -1
    assert FullVideoRetrievalMetric(None).similarities(scores, ids)["otam"][0, 0] == 1.0
    # original: D * 9/4; column 1 of row 1 is -2.25 - min(0, -2.25) = 0 instead of -4.5, so the forward pass
    # costs -2.25 (through row 0's -2.25) and the backward -4.5: score 6.75 (with + it would be 9)
    assert FullVideoRetrievalMetric(ORIGINAL).similarities(scores, ids)["otam"][0, 0] == np.float32(6.75)


def test_background_transposed_pad_sizes():
    # g: 4 captions, 6 windows, D = 1 - scores below; h: 1 caption, 10 windows (Wmax = 10), Lmax_text = 4
    D = np.array([[0.5, 0.0, 1.0, 1.0, 1.0, 1.0],
                  [1.0, 0.5, 0.0, 1.0, 1.0, 1.0],
                  [1.0, 1.0, 0.5, 0.0, 1.0, 1.0],
                  [1.0, 1.0, 1.0, 0.5, 0.0, 0.75]], np.float32)
    scores = np.zeros((5, 16), np.float32)
    scores[:4, :6] = 1 - D
    args = (scores, ["g", "h"], [4, 1], [6, 10])
    # (g, g): int(1.3 * 4) = 5 windows kept (w5, minimum .75, goes).  DTW: .5 + 0 + 0 + 0 + 0 = .5; OTAM: .5 one
    # way (w0 must be visited), 0 the other (c_k on w_{k+1}); both over 20 cells
    corrected = FullVideoBGRetrievalMetric(None).similarities(*args)
    assert (corrected["dtw"][0, 0], corrected["otam"][0, 0]) == (-0.5 / 20, -0.5 / 20)
    # original: scaled by 4 * 10 / (4 * 5) = 2.  DTW 2 * .5 = 1.  OTAM one way 1; the transposed grid (5 windows x
    # 4 captions) padded to (4, 10) loses window w4, so c3 must sit on w3 (2 * .5): 1 instead of 0 -> -(1 + 1)
    compat = FullVideoBGRetrievalMetric(ORIGINAL).similarities(*args)
    assert (compat["dtw"][0, 0], compat["otam"][0, 0]) == (-1.0, -2.0)


def test_ids_that_are_substrings_of_each_other():
    scores = np.array([[1.0, 0.0, 0.0, 0.0],
                       [0.0, 1.0, 0.0, 0.0],
                       [0.0, 0.0, 0.0, 1.0],
                       [0.0, 0.0, 1.0, 0.5]], np.float32)
    ids = ["v1", "v1", "v12", "v2"]
    corrected = FullVideoRetrievalMetric(None).similarities(scores, ids)["caption_average"]
    np.testing.assert_array_equal(corrected, [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.5]])
    # the original's "v1" owns the clip and the caption of "v12" too: its row averages 3 captions over 3 clips
    compat = FullVideoRetrievalMetric(ORIGINAL).similarities(scores, ids)["caption_average"]
    np.testing.assert_array_equal(compat, np.array([[2 / 3, 0.0, 1 / 3], [0.0, 0.0, 1.0], [1.0, 1.0, 0.5]],
                                                   np.float32))


def test_shuffled_clip_order():
    rng = np.random.default_rng(5)
    ids = clip_ids(["a", "b", "c", "d"], [3, 2, 4, 1])
    scores = rng.standard_normal((10, 10)).astype(np.float32)
    perm = np.array([0, 3, 5, 1, 6, 9, 4, 7, 2, 8])  # interleaves the videos, keeps each video's clip order
    shuffled_ids = [ids[p] for p in perm]
    metric = FullVideoRetrievalMetric(None)
    contiguous = metric.similarities(scores, ids)
    shuffled = metric.similarities(scores[np.ix_(perm, perm)], shuffled_ids)
    assert shuffled["video_ids"] == ["a", "b", "c", "d"]
    for key in ("caption_average", "dtw", "otam"):
        np.testing.assert_array_equal(shuffled[key], contiguous[key])
    with pytest.raises(ValueError) as error:
        FullVideoRetrievalMetric(ORIGINAL).compute_metrics(scores[np.ix_(perm, perm)], video_ids=shuffled_ids)
    assert str(error.value) == (
        "FullVideoRetrievalMetric (eval.metric_compat: original): the clips of video 'a' (ids containing it) are "
        "not contiguous (positions [0, 3, 8]); the original arithmetic slices each video's block [first:last+1] "
        "and cannot score them. Remove eval.metric_compat to use the corrected metric, which groups by exact id")


def test_ties_count_against_the_query():
    # the hand case: caption-average rows a and c are (1, .25, 1).  Corrected: a and c both rank 1.  Original
    # argsort: the later column of a tie comes last, so c is found at R@1 and a is not.
    corrected = FullVideoRetrievalMetric(None).compute_metrics(HAND_SCORES, video_ids=HAND_IDS)
    compat = FullVideoRetrievalMetric(ORIGINAL).compute_metrics(HAND_SCORES, video_ids=HAND_IDS)
    assert (corrected["R1"], compat["R1"]) == (1 / 3, 2 / 3)
    # a constant scorer: 7 videos of 2 clips, every similarity equal.  Corrected: every rank is 6.  Original: the
    # argsort of a constant row is 0..6, so video 6 is found at R@1 and videos 2..6 at R@5.
    scores = np.full((14, 14), 0.5, np.float32)
    ids = clip_ids([f"w{k}" for k in range(7)], [2] * 7)
    corrected = FullVideoRetrievalMetric(None).compute_metrics(scores, video_ids=ids)
    compat = FullVideoRetrievalMetric(ORIGINAL).compute_metrics(scores, video_ids=ids)
    assert corrected == {**dict.fromkeys(NAMES, 0.0), "R10": 1.0, "DTW-R10": 1.0, "OTAM-R10": 1.0}
    assert compat == {**dict.fromkeys(NAMES, 1.0), "R1": 1 / 7, "DTW-R1": 1 / 7, "OTAM-R1": 1 / 7,
                      "R5": 5 / 7, "DTW-R5": 5 / 7, "OTAM-R5": 5 / 7}


# ----------------------------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------------------------
def test_metric_compat_key():
    assert metric_compat(None) == "corrected"
    assert metric_compat({"eval": {"metric_compat": None}}) == "corrected"
    assert metric_compat(OmegaConf.create({"eval": {"metric_compat": "corrected"}})) == "corrected"
    assert metric_compat(OmegaConf.create(ORIGINAL)) == "original"
    for cls in (FullVideoRetrievalMetric, FullVideoBGRetrievalMetric):
        with pytest.raises(ValueError) as error:
            cls({"eval": {"metric_compat": "orig"}})
        assert str(error.value) == ("eval.metric_compat: 'orig' is not a valid value; allowed: 'corrected' (the "
                                    "default, also when the key is absent or null) or 'original' (the original "
                                    "TempCLR arithmetic)")


def _message(fn, *args, **kwargs):
    with pytest.raises(ValueError) as error:
        fn(*args, **kwargs)
    return str(error.value)


def test_bad_inputs_clip_level():
    metric = FullVideoRetrievalMetric(None)
    scores = HAND_SCORES.copy()
    scores[1, 2] = np.nan
    assert _message(metric.compute_metrics, scores, video_ids=HAND_IDS) == (
        "FullVideoRetrievalMetric: outputs contain 1 NaN score(s) (first at row 1, column 2); retrieval ranks are "
        "undefined")
    scores[1, 2] = 0
    scores[4, 0] = -np.inf
    assert _message(metric.compute_metrics, scores, video_ids=HAND_IDS) == (
        "FullVideoRetrievalMetric: outputs contain 1 infinite score(s) (first at row 4, column 0); retrieval ranks "
        "are undefined")
    assert _message(metric.compute_metrics, HAND_SCORES[:4], video_ids=HAND_IDS) == (
        "FullVideoRetrievalMetric: outputs has 4 caption rows and 5 clip columns; it must be square "
        "[n_captions, n_clips], row i the caption of clip i")
    assert _message(metric.compute_metrics, HAND_SCORES, video_ids=HAND_IDS[:4]) == (
        "FullVideoRetrievalMetric: video_ids has 4 entries for 5 clips (one parent video id per clip)")
    assert _message(metric.compute_metrics, HAND_SCORES) == (
        "FullVideoRetrievalMetric: compute_metrics needs video_ids, the parent video id of each clip")
    assert _message(FullVideoRetrievalMetric(ORIGINAL).compute_metrics, HAND_SCORES.astype(np.int64),
                    video_ids=HAND_IDS) == (
        "FullVideoRetrievalMetric (eval.metric_compat: original): the original arithmetic runs on float32 or "
        "float64 scores; got int64 (cast the outputs, or remove eval.metric_compat)")
    assert _message(FullVideoRetrievalMetric(ORIGINAL).compute_metrics, HAND_SCORES, video_ids=[1, 1, 2, 3, 3]) == (
        "FullVideoRetrievalMetric (eval.metric_compat: original): video ids must be strings for the original's "
        "substring matching; got 1 (int)")


def test_bad_inputs_background():
    metric = FullVideoBGRetrievalMetric(None)
    scores = np.zeros((3, 5), np.float32)
    ok = dict(video_ids=["x", "y"], text_lengths=[2, 1], video_lengths=[3, 2])
    assert _message(metric.compute_metrics, scores, **{**ok, "text_lengths": [2, 2]}) == (
        "FullVideoBGRetrievalMetric: text_lengths sum to 4 but outputs has 3 caption rows (the counts of each "
        "video, in video_ids order, must cover the matrix)")
    assert _message(metric.compute_metrics, scores, **{**ok, "video_lengths": [3, 1]}) == (
        "FullVideoBGRetrievalMetric: video_lengths sum to 4 but outputs has 5 window columns (the counts of each "
        "video, in video_ids order, must cover the matrix)")
    assert _message(metric.compute_metrics, scores, **{**ok, "video_lengths": [5]}) == (
        "FullVideoBGRetrievalMetric: video_lengths has 1 entries for 2 video_ids (one count per video)")
    assert _message(metric.compute_metrics, scores, **{**ok, "text_lengths": [3, 0]}) == (
        "FullVideoBGRetrievalMetric: text_lengths must be >= 1 for every video; video 1 has 0")
    assert _message(metric.compute_metrics, scores, **{**ok, "video_ids": ["x", "x"]}) == (
        "FullVideoBGRetrievalMetric: video_ids must name each video once; repeated: ['x']")
    assert _message(metric.compute_metrics, scores, video_ids=["x", "y"], text_lengths=[2, 1]) == (
        "FullVideoBGRetrievalMetric: compute_metrics needs video_lengths, the window count of each video")
    scores[0, 4] = np.nan
    assert _message(metric.compute_metrics, scores, **ok) == (
        "FullVideoBGRetrievalMetric: outputs contain 1 NaN score(s) (first at row 0, column 4); retrieval ranks "
        "are undefined")
