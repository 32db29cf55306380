"""DiDeMo: the processors on hand-written test_data.json records (malformed rows included), the moment scores
against plain loops and the original predictor, the metric against plain loops (ties, moments without features,
NaN, empty rows) and, with ``eval.metric_compat: original``, against the original metric
(tempclr/testing/original.py)."""
import json

import numpy as np
import pytest
import torch

from tempclr.evaluators.didemo import MOMENTS, DiDeMoMetric, moment_scores, ranked_moments
from tempclr.processors.didemo import DiDeMoAligner, DiDeMoMetaProcessor, DiDeMoTextProcessor, annotated_moments
from tempclr.testing.original import DIDEMO_SEGMENTS, original_didemo_eval, original_didemo_rankings

RECORDS = [
    {"annotation_id": 0, "video": "a@N01_1.mov", "description": "crack the eggs", "times": [[0, 1], [0, 0], [1, 1],
                                                                                           [0, 1]]},
    {"annotation_id": 1, "video": "b.mp4", "description": "whisk the batter", "times": [[2, 5], [3, 5], [2, 4]]},
    {"annotation_id": 2, "video": "missing.mp4", "description": "flip the pancake", "times": [[4, 4]]},
    {"annotation_id": 3, "video": "a@N01_1.mov", "description": "add flour", "times": [[5, 5]]},
]


def write_didemo(tmp_path, records=None):
    folder = tmp_path / "feat"
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for name, seconds in (("a@N01_1.mov", 30), ("b.mp4", 22)):
        np.save(folder / f"{name}.npy", rng.standard_normal((seconds, 8)).astype(np.float16))
    path = tmp_path / "test_data.json"
    path.write_text(json.dumps(RECORDS if records is None else records))
    return str(path), str(folder)


def config(path, vfeat_dir, vocab_dir, split="test"):
    return {"split": split, "test_path": path, "vfeat_dir": vfeat_dir, "bert_name": vocab_dir, "max_video_len": 32,
            "max_len": 48}


def test_processors_read_the_records_and_drop_missing_videos(tmp_path, vocab_dir, capsys):
    path, vfeat_dir = write_didemo(tmp_path)
    meta = DiDeMoMetaProcessor(config(path, vfeat_dir, vocab_dir))
    out = capsys.readouterr().out
    assert meta.data == [("a@N01_1.mov", "crack the eggs"), ("b.mp4", "whisk the batter"),
                         ("a@N01_1.mov", "add flour")]
    assert [r["annotation_id"] for r in meta.records] == [0, 1, 3]
    assert meta.annotations["present"].tolist() == [[True] * 4, [True] * 3 + [False], [True] + [False] * 3]
    assert [MOMENTS[m] for m in meta.annotations["index"][1, :3]] == [(2, 5), (3, 5), (2, 4)]
    assert "1 description(s) of 1 video(s) dropped: no feature file" in out and "missing.mp4" in out
    text = DiDeMoTextProcessor(config(path, vfeat_dir, vocab_dir))("crack the eggs")
    item = DiDeMoAligner(config(path, vfeat_dir, vocab_dir))("b.mp4", np.ones((22, 8), np.float32), text)
    assert item["vmasks"].sum() == 22 and item["vfeats"].shape == (32, 8) and item["caps"][item["cmasks"]].size == 6
    with pytest.raises(ValueError, match="dataset.split must be test"):
        DiDeMoMetaProcessor(config(path, vfeat_dir, vocab_dir, split="train"))


@pytest.mark.parametrize("change, message", [
    (lambda r: r[1].update(times=[[2, 6]]), r"row 1: moment \[2, 6\] must be \[start, end\] chunk indices"),
    (lambda r: r[1].update(times=[[3, 2]]), r"row 1: moment \[3, 2\]"),
    (lambda r: r[0].update(times=[]), r"row 0: 'times' must be a non-empty list"),
    (lambda r: r[0].update(times=[[True, 1]]), r"row 0: moment \[True, 1\]"),
    (lambda r: r[3].pop("description"), r"row 3: a record needs 'video', 'description' and 'times'"),
    (lambda r: r[3].update(description=""), r"row 3: description '' must be a non-empty string"),
    (lambda r: r[1].update(video="../b.mp4"), r"row 1: video '../b.mp4'"),
])
def test_malformed_rows_are_errors_naming_file_row_and_fix(tmp_path, vocab_dir, change, message):
    records = json.loads(json.dumps(RECORDS))
    change(records)
    path, vfeat_dir = write_didemo(tmp_path, records)
    with pytest.raises(ValueError, match=message) as error:
        DiDeMoMetaProcessor(config(path, vfeat_dir, vocab_dir))
    assert path in str(error.value) and "fix" in str(error.value)


def random_batch(seed, batch=6, length=32, hidden=4):
    generator = torch.Generator().manual_seed(seed)
    hidden_video = torch.randn(batch, length + 2, hidden, generator=generator)
    seconds = torch.randint(1, 31, (batch,), generator=generator)
    seconds[0], seconds[1] = 30, 7  # a full video and one whose chunks 2..5 have no features
    vmasks = torch.arange(length)[None, :] < seconds[:, None]
    return hidden_video, vmasks, torch.randn(batch, hidden, generator=generator)


@pytest.mark.parametrize("seed", range(3))
def test_corrected_moment_scores_are_masked_means(seed):
    hidden_video, vmasks, text = random_batch(seed)
    scores = moment_scores(hidden_video[:, 1:-1], vmasks, text)
    for b in range(len(scores)):
        for m, (s, e) in enumerate(MOMENTS):
            rows = [p for p in range(5 * s, 5 * (e + 1)) if vmasks[b, p]]
            if not rows:
                assert scores[b, m] == float("-inf")
            else:
                mean = sum(hidden_video[b, 1 + p] for p in rows) / len(rows)
                assert scores[b, m].item() == pytest.approx(float(mean @ text[b]), rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("seed", range(3))
def test_compat_moment_scores_rank_as_the_original(seed):
    hidden_video, vmasks, text = random_batch(seed)
    assert list(MOMENTS) == DIDEMO_SEGMENTS
    scores = moment_scores(hidden_video[:, 1:-1], vmasks, text, compat="original")
    assert ranked_moments(scores.numpy()) == original_didemo_rankings(hidden_video, vmasks, text)


def plain_metric(scores, targets):
    """Independent loops: rank = moments scoring >= the annotated one; top = first best; best-3 means."""
    rank1 = rank5 = iou_sum = 0.0
    for row, record in zip(scores, targets):
        ranks, ious = [], []
        top = max(range(21), key=lambda m: (row[m], -m))
        p0, p1 = MOMENTS[top]
        for s, e in record["times"]:
            value = row[MOMENTS.index((s, e))]
            ranks.append(sum(1 for m in range(21) if row[m] >= value))
            ious.append(max(0, min(p1, e) + 1 - max(p0, s)) / (max(p1, e) + 1 - min(p0, s)))
        average_rank = sum(sorted(ranks)[:3]) / len(sorted(ranks)[:3])
        rank1 += average_rank <= 1
        rank5 += average_rank <= 5
        best = sorted(ious)[-3:]
        iou_sum += sum(best) / len(best)
    n = len(targets)
    return {"rank1": rank1 / n, "rank5": rank5 / n, "miou": iou_sum / n}


def random_case(seed, n=300):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, (n, 21)).astype(np.float64)  # coarse scores: many ties
    scores[rng.random((n, 21)) < 0.1] = -np.inf  # moments without features
    scores[:, 0] = np.maximum(scores[:, 0], 0)  # every description keeps a scorable moment
    targets = [{"times": [list(MOMENTS[m]) for m in rng.integers(0, 21, int(rng.integers(1, 6)))]}
               for _ in range(n)]
    return scores, targets


@pytest.mark.parametrize("seed", range(4))
def test_metric_against_plain_loops_with_ties_and_unscorable_moments(seed):
    scores, targets = random_case(seed)
    metric = DiDeMoMetric({})
    got = metric.compute_metrics(outputs=ranked_moments(scores), targets=targets, scores=scores)
    want = plain_metric(scores, targets)
    index, present = annotated_moments(targets)  # what DiDeMoMetaProcessor.annotations holds
    assert metric.compute_metrics(outputs=ranked_moments(scores), targets=targets, scores=scores,
                                  annotations={"index": index, "present": present}) == got
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-12), key
    assert got["unscorable_annotations"] == sum(np.isneginf(scores[i, MOMENTS.index(tuple(t))])
                                                for i, r in enumerate(targets) for t in r["times"])
    # from the ranking alone (an MMPT caller without scores): equal when there are no ties
    distinct = np.argsort(np.random.default_rng(seed).random((len(targets), 21)), axis=1).astype(np.float64)
    from_lists = metric.compute_metrics(outputs=ranked_moments(distinct), targets=targets)
    with_scores = metric.compute_metrics(outputs=ranked_moments(distinct), targets=targets, scores=distinct)
    assert from_lists == with_scores


@pytest.mark.parametrize("seed", range(4))
def test_compat_metric_reproduces_the_original(seed):
    scores, targets = random_case(seed)
    rankings = ranked_moments(scores)  # moments without features are left out, as the original predictor did
    metric = DiDeMoMetric({"eval": {"metric_compat": "original"}})
    rank1, rank5, miou = original_didemo_eval(rankings, targets)
    for scored in (scores, None):  # positions from the predictor's scores, or from the rankings themselves
        got = metric.compute_metrics(outputs=rankings, targets=targets, scores=scored)
        assert (got["rank1"], got["rank5"], got["miou"]) == (rank1, rank5, miou)  # bit for bit


def test_metric_bad_inputs():
    metric = DiDeMoMetric({})
    scores, targets = random_case(0, n=3)
    nan = scores.copy()
    nan[1, 4] = np.nan
    with pytest.raises(ValueError, match="scores of description 1 hold NaN"):
        metric.compute_metrics(outputs=ranked_moments(scores), targets=targets, scores=nan)
    with pytest.raises(ValueError, match="target 2 has no annotated moment"):
        metric.compute_metrics(outputs=ranked_moments(scores), targets=targets[:2] + [{"times": []}], scores=scores)
    with pytest.raises(ValueError, match="prediction 0 ranks no moment"):
        metric.compute_metrics(outputs=[[]] + ranked_moments(scores)[1:], targets=targets)
    with pytest.raises(ValueError, match="3 predictions but 2 targets"):
        metric.compute_metrics(outputs=ranked_moments(scores), targets=targets[:2])
    with pytest.raises(ValueError, match=r"target 1 has moment \[1, 7\]"):
        metric.compute_metrics(outputs=ranked_moments(scores), targets=[targets[0], {"times": [[1, 7]]}, targets[2]],
                               scores=scores)
    with pytest.raises(ValueError, match=r"target 0 has moment \[1, 2, 3\]"):
        metric.compute_metrics(outputs=ranked_moments(scores), targets=[{"times": [[1, 2, 3]]}] + targets[1:],
                               scores=scores)
    for bad in ([1.5, 2], [float("nan"), 2]):
        with pytest.raises(ValueError, match=r"target 0 has moment \[(1.5|nan), 2\]"):
            metric.compute_metrics(outputs=ranked_moments(scores), targets=[{"times": [bad]}] + targets[1:],
                                   scores=scores)
    index, present = annotated_moments(targets)
    with pytest.raises(ValueError, match="annotations must be index/present"):
        metric.compute_metrics(outputs=ranked_moments(scores), targets=targets, scores=scores,
                               annotations={"index": index[:2], "present": present[:2]})
    with pytest.raises(ValueError, match="annotations must be index/present"):
        metric.compute_metrics(outputs=ranked_moments(scores), targets=targets, scores=scores,
                               annotations={"index": index + 21, "present": present})
    with pytest.raises(ValueError, match="no description to evaluate"):
        metric.compute_metrics(outputs=[], targets=[])
    with pytest.raises(ValueError, match="not a valid value"):
        DiDeMoMetric({"eval": {"metric_compat": "orignal"}})


def test_a_description_whose_moments_all_lack_features():
    """The original skipped the annotation and counted a miss silently; corrected, it ranks 21 and is reported."""
    scores = np.zeros((1, 21))
    scores[0, 5] = -np.inf  # chunk 5 has no features
    scores[0, 3] = 1.0
    targets = [{"times": [[5, 5], [5, 5], [5, 5]]}]
    corrected = DiDeMoMetric({}).compute_metrics(outputs=ranked_moments(scores), targets=targets, scores=scores)
    assert corrected["rank5"] == 0.0 and corrected["unscorable_annotations"] == 3.0
    original = DiDeMoMetric({"eval": {"metric_compat": "original"}}).compute_metrics(
        outputs=ranked_moments(scores), targets=targets)
    assert original["rank1"] == original["rank5"] == 0.0 and original["unscorable_annotations"] == 3.0
