"""AlignRetriTask: clip selection, shuffled-order negatives and the loss, by hand."""
import itertools
import math

import pytest
import torch
from omegaconf import OmegaConf

from tempclr.tasks.alignretritask import AlignRetriTask, evenly_spaced, freeze_all_but_layernorm, nonoverlapped_indices
from tempclr.tasks.seqalign import negative_orders
from tempclr.testing.original import dtw_cells, otam_cells


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)) + 0.01)


def make_task(metric, threshold=3, sample_size=4, clips=6):
    config = OmegaConf.create({"dataset": {"clip_per_video": clips},
                               "alignment": {"metric": metric, "sampling_threshold": threshold,
                                             "total_sample_size": sample_size, "alignment_loss_coeff": 0.7}})
    return AlignRetriTask(config)


# two videos of 6 sorted clips; video 0 has 4 non-overlapping clips (0, 2, 3, 5), video 1 only 1
# (a kept clip must leave a caption and a second of gap: ends are exclusive)
TEXT_START = [0, 0, 3, 5, 5, 7] + [0, 0, 1, 1, 2, 2]
TEXT_END = [2, 3, 4, 6, 7, 8] + [3, 3, 4, 4, 5, 5]
VIDEO_START = [0, 1, 10, 20, 21, 30] + [0, 5, 5, 6, 7, 8]
VIDEO_END = [8, 9, 15, 25, 28, 40] + [9, 9, 9, 9, 9, 9]


def test_selection_helpers():
    assert nonoverlapped_indices(TEXT_START[:6], TEXT_END[:6], VIDEO_START[:6], VIDEO_END[:6]) == [0, 2, 3, 5]
    assert nonoverlapped_indices(TEXT_START[6:], TEXT_END[6:], VIDEO_START[6:], VIDEO_END[6:]) == [0]
    assert evenly_spaced(4, 3) == [0, 1, 3] and evenly_spaced(5, 5) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("length,count", [(3, 5), (3, 31), (5, 31), (10, 31), (20, 63)])
def test_shuffled_orders_distinct_and_not_identity(length, count):
    torch.manual_seed(0)
    identity = list(range(length))
    orders = negative_orders(torch.tensor(identity), count, cycle=False).tolist()
    assert len(orders) == min(count, math.factorial(length) - 1)    # fewer when fewer exist, as the original
    assert len({tuple(o) for o in orders}) == len(orders)
    assert all(sorted(o) == identity and o != identity for o in orders)


def hand_scores(video, text, metric):
    """Sequence score of every order of the three picked clips (0, 2, 5) of video 0, computed with plain loops:
    ``{order: score}`` over all 3! orders (the identity included)."""
    picked = [0, 2, 5]
    dist = [[1 - cosine(text[t].tolist(), video[v].tolist()) for v in picked] for t in picked]
    scores = {}
    for order in itertools.permutations(range(3)):
        shuffled = [dist[r] for r in order]                                   # sentences shuffled
        keys = [[shuffled[t][v] for t in range(3)] for v in range(3)]         # rows = video, cols = text
        if metric == "dtw":
            scores[order] = dtw_cells(keys, 0.1)
        else:
            transposed = [list(col) for col in zip(*keys)]
            scores[order] = otam_cells(keys, 0.1) + otam_cells(transposed, 0.1)
    return scores


def cross_entropy_first(scores):
    logits = [-s for s in scores]
    return -(logits[0] - math.log(sum(math.exp(x) for x in logits)))


@pytest.mark.parametrize("metric", ["dtw", "otam"])
def test_alignment_loss_equals_hand_computation(metric):
    """Only video 0 qualifies (kept clips 0, 2, 3, 5 -> evenly spaced 0, 2, 5); its loss must be the
    cross-entropy of the true order against 3 distinct shuffled orders.  The oracle does not draw: it enumerates
    every set of 3 of the 5 non-identity orders, and the loss must be one of those 10 values — for every seed —
    and, over seeds, every one of them (the sampler is uniform over sets, so 200 draws miss none)."""
    torch.manual_seed(0)
    video = torch.randn(12, 5, dtype=torch.float64)
    text = torch.randn(12, 5, dtype=torch.float64)
    task = make_task(metric)
    scores = hand_scores(video, text, metric)
    identity = (0, 1, 2)
    others = [o for o in scores if o != identity]
    expected = {subset: cross_entropy_first([scores[identity]] + [scores[o] for o in subset])
                for subset in itertools.combinations(others, 3)}
    assert min(abs(a - b) for a, b in itertools.combinations(expected.values(), 2)) > 1e-6  # distinguishable
    positions = [torch.tensor(x) for x in (TEXT_START, TEXT_END, VIDEO_START, VIDEO_END)]
    seen = set()
    for seed in range(200):
        torch.manual_seed(seed)
        loss = task.alignment_loss(video, text, *positions).item()
        match = [subset for subset, value in expected.items() if abs(loss - value) < 1e-9]
        assert len(match) == 1, (seed, loss)
        seen.add(match[0])
    assert seen == set(expected)


def test_no_qualifying_video_gives_zero_on_input_device_and_dtype():
    task = make_task("dtw", threshold=5)
    video = torch.randn(12, 5, dtype=torch.float64, requires_grad=True)
    loss = task.alignment_loss(video, torch.randn(12, 5, dtype=torch.float64),
                               *(torch.tensor(x) for x in (TEXT_START, TEXT_END, VIDEO_START, VIDEO_END)))
    assert loss.item() == 0 and loss.dtype == torch.float64 and loss.device == video.device


def test_total_loss_mixes_contrastive_and_alignment():
    from tempclr.losses import MMContraLoss

    class Tower(torch.nn.Module):
        def forward(self, pooled_video, pooled_text, **kwargs):
            return {"pooled_video": pooled_video, "pooled_text": pooled_text}

    torch.manual_seed(1)
    task = make_task("dtw")
    task.loss_fn = MMContraLoss()
    sample = {"pooled_video": torch.randn(12, 5), "pooled_text": torch.randn(12, 5)}
    sample.update({k: torch.tensor(v) for k, v in zip(("text_start", "text_end", "video_start", "video_end"),
                                                       (TEXT_START, TEXT_END, VIDEO_START, VIDEO_END))})
    torch.manual_seed(3)
    out = task(Tower(), dict(sample))
    torch.manual_seed(3)
    align = task.alignment_loss(sample["pooled_video"], sample["pooled_text"], sample["text_start"],
                                sample["text_end"], sample["video_start"], sample["video_end"])
    contrastive = MMContraLoss()(sample["pooled_video"], sample["pooled_text"])
    assert torch.allclose(out["loss"], 0.3 * contrastive + 0.7 * align)
    assert torch.allclose(out["align_loss"], align) and torch.allclose(out["contrastive_loss"], contrastive)


def test_layernorm_only_leaves_layernorms_trainable():
    model = torch.nn.ModuleDict({"block": torch.nn.ModuleDict({"dense": torch.nn.Linear(3, 3),
                                                               "LayerNorm": torch.nn.LayerNorm(3)})})
    assert freeze_all_but_layernorm(model) == 6
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"block.LayerNorm.weight", "block.LayerNorm.bias"}


def test_alignment_settings_one_set_of_names():
    task = make_task("otam", threshold=4, sample_size=8)
    settings = task.alignment
    assert (settings.metric, settings.sampling_threshold, settings.total_sample_size, settings.alignment_loss_coeff,
            settings.gamma, settings.layernorm_only) == ("otam", 4, 8, 0.7, 0.1, False)
    with pytest.raises(ValueError, match=r"^alignment.metric must be one of dtw, otam, got 'euclid'$"):
        make_task("euclid")
    with pytest.raises(ValueError, match=r"^alignment.sampling_threshold=1: a sequence needs at least 2 clips"):
        make_task("dtw", threshold=1)


@pytest.mark.parametrize("metric", ["dtw", "otam"])
def test_both_tasks_use_the_fused_kernel_with_the_configured_gamma(metric, monkeypatch):
    """AlignRetriTask and AlignLocalTask score through tempclr.tasks.seqalign.sequence_scores: one soft_dtw call,
    or one fused two-way soft_otam call (never two one-way calls on a transposed copy), at ``alignment.gamma``."""
    from tempclr.modules import alignment
    from tempclr.tasks import seqalign
    from tempclr.tasks.alignlocaltask import AlignLocalTask

    calls = []

    def spy(name, fn):
        def wrapped(D, gamma=0.1, lengths=None, **kwargs):
            calls.append((name, gamma, kwargs.get("bidirectional", False), tuple(D.shape)))
            return fn(D, gamma, lengths, **kwargs)
        return wrapped

    monkeypatch.setattr(seqalign, "soft_dtw", spy("dtw", alignment.soft_dtw))
    monkeypatch.setattr(seqalign, "soft_otam", spy("otam", alignment.soft_otam))
    config = OmegaConf.create({"dataset": {"clip_per_video": 6},
                               "alignment": {"metric": metric, "sampling_threshold": 3, "total_sample_size": 4,
                                             "gamma": 0.37}})
    torch.manual_seed(0)
    AlignRetriTask(config).alignment_loss(torch.randn(12, 5), torch.randn(12, 5),
                                          *(torch.tensor(x) for x in (TEXT_START, TEXT_END, VIDEO_START, VIDEO_END)))
    local = AlignLocalTask(config)
    local.query_to_logits(torch.randn(3, 5), torch.randn(8, 5), torch.tensor([1, 0, 2]),
                          torch.tensor([1, 1, 1, 0, 0, 0, 2, 2]))
    expected = ("dtw", 0.37, False) if metric == "dtw" else ("otam", 0.37, True)
    assert [c[:3] for c in calls] == [expected, expected]
    assert calls[0][3] == (1, 4, 3, 3) and calls[1][3][:2] == (1, 4)
