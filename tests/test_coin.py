"""COIN action segmentation: the processors on hand-written COIN.json records (malformed rows included), the
aligner's windows and targets against the original's loop, the frame-accuracy metric against a plain count, and
the window averaging and zero-shot labelling against the original's arithmetic (tempclr/testing/original.py)."""
import json
import math

import numpy as np
import pytest
import torch

from tempclr.evaluators.coin import (COINActionSegmentationMetric, COINZSPredictor, _merge_windows,
                                     zero_shot_labels)
from tempclr.processors.coin import (COINActionSegmentationAligner, COINActionSegmentationMetaProcessor,
                                     COINActionSegmentationTextProcessor)
from tempclr.testing.original import original_coin_frame_acc, original_coin_merge_windows, original_coin_zs_labels


def segment(step_id, start, end, label):
    return {"id": str(step_id), "segment": [start, end], "label": label}


DATABASE = {
    "vid_train": {"subset": "training", "annotation": [segment(1, 2.0, 7.5, "crack eggs"),
                                                       segment(3, 10.2, 20.0, "whisk batter")]},
    "vid_test1": {"subset": "testing", "annotation": [segment(2, 0.0, 4.6, "add flour"),
                                                      segment(3, 30.5, 50.0, "whisk batter"),
                                                      segment(1, 70.0, 75.0, "crack eggs")]},
    "vid_test2": {"subset": "testing", "annotation": [segment(1, 5.0, 9.0, "crack eggs")]},
    "vid_nofeat": {"subset": "testing", "annotation": [segment(2, 1.0, 3.0, "add flour")]},
}
SECONDS = {"vid_train": 25, "vid_test1": 60, "vid_test2": 12}


def write_coin(tmp_path, database=None, seconds=None):
    folder = tmp_path / "feat"
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for video_id, length in (seconds or SECONDS).items():
        np.save(folder / f"{video_id}.npy", rng.standard_normal((length, 8)).astype(np.float16))
    path = tmp_path / "COIN.json"
    path.write_text(json.dumps({"database": DATABASE if database is None else database}))
    return str(path), str(folder)


def dataset_config(path, vfeat_dir, vocab_dir, split="test", stride=16, size=32):
    return {"split": split, "test_path": path, "train_path": path, "val_path": path, "vfeat_dir": vfeat_dir,
            "bert_name": vocab_dir, "sliding_window": stride, "sliding_window_size": size, "max_video_len": 32,
            "max_len": 40}


def test_meta_processor_reads_the_subset_and_reports_drops(tmp_path, vocab_dir, capsys):
    path, vfeat_dir = write_coin(tmp_path)
    meta = COINActionSegmentationMetaProcessor(dataset_config(path, vfeat_dir, vocab_dir))
    out = capsys.readouterr().out
    assert [video_id for video_id, _ in meta.data] == ["vid_test1", "vid_test2"]
    assert "1 video(s) of subset 'testing' dropped: no feature file" in out and "vid_nofeat" in out
    # vid_test1's third segment starts at 70 s, after its 60 s of features
    assert "1 segment(s) dropped: they start at or after the end" in out and "vid_test1#2" in out
    assert meta.data[0][1] == {"start": [0.0, 30.5], "end": [4.6, 50.0], "label": [2, 3]}
    assert meta.text_labels == ["crack eggs", "add flour", "whisk batter"]  # ids 1..3 over every subset
    labels = meta.meta_text_labels(dataset_config(path, vfeat_dir, vocab_dir))
    assert labels["caps"].shape == (3, 8) and labels["cmasks"][:, :4].all()
    train = COINActionSegmentationMetaProcessor(dataset_config(path, vfeat_dir, vocab_dir, split="train"))
    assert [video_id for video_id, _ in train.data] == ["vid_train"]
    COINActionSegmentationMetaProcessor(dataset_config(path, vfeat_dir, vocab_dir, split="valid"))
    assert "selected on the test split" in capsys.readouterr().out


@pytest.mark.parametrize("change, message", [
    (lambda db: db["vid_train"].pop("subset"), r"video vid_train: needs 'subset'"),
    (lambda db: db["vid_train"]["annotation"][0].update(segment=[7.0, 7.0]), r"video vid_train, annotation 0: "
                                                                             r"segment \[7.0, 7.0\] needs 0 <= start"),
    (lambda db: db["vid_test1"]["annotation"][1].update(id="three"), r"video vid_test1, annotation 1: id 'three'"),
    (lambda db: db["vid_test2"]["annotation"][0].update(id="0"), r"step id 0 must be >= 1"),
    (lambda db: db["vid_test2"]["annotation"][0].update(label="beat eggs"), r"step id 1 is named 'beat eggs' here "
                                                                            r"but 'crack eggs' elsewhere"),
    (lambda db: db["vid_test2"]["annotation"][0].update(id="5"), r"step ids must run 1..5 without a gap; no segment "
                                                                 r"names ids \[4\]"),
    (lambda db: db.update({"../escape": {"subset": "testing", "annotation": []}}), r"video id '../escape'"),
])
def test_malformed_rows_are_errors_naming_file_video_and_fix(tmp_path, vocab_dir, change, message):
    database = json.loads(json.dumps(DATABASE))
    change(database)
    path, vfeat_dir = write_coin(tmp_path, database)
    with pytest.raises(ValueError, match=message) as error:
        COINActionSegmentationMetaProcessor(dataset_config(path, vfeat_dir, vocab_dir))
    assert path in str(error.value) and "fix" in str(error.value)


def test_not_json_and_missing_keys(tmp_path, vocab_dir):
    path, vfeat_dir = write_coin(tmp_path)
    (tmp_path / "COIN.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        COINActionSegmentationMetaProcessor(dataset_config(path, vfeat_dir, vocab_dir))
    config = dataset_config(path, vfeat_dir, vocab_dir)
    del config["sliding_window"]
    with pytest.raises(ValueError, match="COIN needs 'dataset.sliding_window'"):
        COINActionSegmentationAligner(config)


def original_aligner_targets(video_len, starts, ends, labels, stride, size, max_video_len):
    """The original aligner's loops: window targets [W, max_video_len] (-100 padding) and video targets [T]."""
    targets = []
    for window_start in range(0, video_len, stride):
        video_end = min(video_len - window_start, size)
        target = torch.full((max_video_len,), -100, dtype=torch.long)
        target[:video_end] = 0
        for start, end, label_id in zip(starts, ends, labels):
            if (window_start < end) and (start < (window_start + video_end)):
                start_offset = max(0, math.floor(start) - window_start)
                end_offset = min(video_end, math.ceil(end) - window_start)
                target[start_offset:end_offset] = label_id
        targets.append(target)
        if (video_len - window_start) <= size:
            break
    video_targets = torch.full((video_len,), 0)
    for start, end, label_id in zip(starts, ends, labels):
        video_targets[max(0, math.floor(start)):min(video_len, math.ceil(end))] = label_id
    return torch.stack(targets).numpy(), video_targets.numpy()


@pytest.mark.parametrize("video_len, stride, size", [(60, 16, 32), (60, 8, 32), (12, 16, 32), (33, 16, 32),
                                                     (1, 8, 32)])
def test_aligner_matches_the_original_loops(tmp_path, vocab_dir, video_len, stride, size):
    path, vfeat_dir = write_coin(tmp_path)
    aligner = COINActionSegmentationAligner(dataset_config(path, vfeat_dir, vocab_dir, stride=stride, size=size))
    text = COINActionSegmentationTextProcessor(dataset_config(path, vfeat_dir, vocab_dir))
    rng = np.random.default_rng(video_len)
    features = rng.standard_normal((video_len, 8)).astype(np.float32)
    segments = {"start": [0.0, 10.5, 20.2, 25.0], "end": [4.6, 30.0, 22.0, 90.0], "label": [2, 3, 1, 2]}
    item = aligner("v", features, text(segments))
    expected, expected_video = original_aligner_targets(video_len, segments["start"], segments["end"],
                                                        segments["label"], stride, size, 32)
    np.testing.assert_array_equal(item["targets"], expected)
    np.testing.assert_array_equal(item["video_targets"], expected_video)
    assert item["vfeats"].shape == (len(expected), 32, 8) and item["vmasks"].sum() == (expected != -100).sum()
    np.testing.assert_array_equal(item["vfeats"][0][: min(size, video_len)], features[: min(size, video_len)])
    assert item["caps"].shape == (len(expected), 4) and item["cmasks"].tolist()[0] == [False, True, False, True]


def plain_metrics(outputs, targets, steps):
    errors = foreground = foreground_errors = predicted_bg = true_bg = step_right = 0
    for predicted, true, step in zip(outputs, targets, steps):
        errors += predicted != true
        if true != 0:
            foreground += 1
            foreground_errors += predicted != true
            step_right += step == true
        predicted_bg += predicted == 0
        true_bg += true == 0
    n = len(targets)
    return {"frame_acc": 1 - errors / n, "frame_acc_no_bg": 1 - foreground_errors / foreground if foreground else None,
            "pred_bg_share": predicted_bg / n, "true_bg_share": true_bg / n,
            "step_acc": step_right / foreground if foreground else None}


@pytest.mark.parametrize("seed", range(4))
def test_metric_against_a_plain_count_and_the_original(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 500))
    targets = rng.integers(0, 4, n) * (rng.random(n) < 0.6)
    outputs = np.where(rng.random(n) < 0.5, targets, rng.integers(0, 4, n))
    steps = np.where(rng.random(n) < 0.5, np.maximum(targets, 1), rng.integers(1, 4, n))
    metric = COINActionSegmentationMetric({})
    got = metric.compute_metrics(outputs=outputs, targets=targets, step_outputs=steps)
    want = plain_metrics(outputs.tolist(), targets.tolist(), steps.tolist())
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value) if value is not None else got[key] is None
    assert got["frame_acc"] == original_coin_frame_acc(outputs, targets)  # the published number, bit for bit
    assert metric.best_metric(got) == got["frame_acc"]


def test_metric_all_background_and_bad_inputs(capsys):
    metric = COINActionSegmentationMetric({})
    targets = np.array([0, 0, 3, 3, 0, 5])
    result = metric.compute_metrics(outputs=np.zeros(6, dtype=np.int64), targets=targets)
    assert result == {"frame_acc": 0.5, "frame_acc_no_bg": 0.0, "pred_bg_share": 1.0, "true_bg_share": 0.5,
                      "step_acc": None}
    metric.print_computed_metrics(result)
    out = capsys.readouterr().out
    assert "frame accuracy: 0.5" in out and "WARNING: every second was predicted as background" in out
    assert metric.compute_metrics(outputs=[0, 1], targets=[0, 0])["frame_acc_no_bg"] is None
    with pytest.raises(ValueError, match="non-empty 1-D"):
        metric.compute_metrics(outputs=[], targets=[])
    with pytest.raises(ValueError, match=r"not whole labels \(first at second 1: nan\)"):
        metric.compute_metrics(outputs=[1.0, float("nan")], targets=[1, 1])
    with pytest.raises(ValueError, match="outputs has 2 seconds but targets 3"):
        metric.compute_metrics(outputs=[1, 1], targets=[1, 1, 0])
    with pytest.raises(ValueError, match="negative label"):
        metric.compute_metrics(outputs=[1, -100], targets=[1, 1])
    with pytest.raises(ValueError, match="step_outputs has 1 seconds but targets 2"):
        metric.compute_metrics(outputs=[1, 1], targets=[1, 1], step_outputs=[1])


@pytest.mark.parametrize("video_len, stride, size", [(60, 16, 32), (100, 8, 32), (20, 16, 32), (33, 8, 16)])
def test_window_merge_matches_the_original(video_len, stride, size):
    from tempclr.processors.windows import sliding_windows

    starts, lengths = sliding_windows(video_len, stride, size)
    generator = torch.Generator().manual_seed(video_len)
    logits = torch.randn(len(starts), 32, 5, generator=generator)
    vmasks = torch.zeros(len(starts), 32, dtype=torch.bool)
    for w, length in enumerate(lengths.tolist()):
        vmasks[w, :length] = True
    merged = _merge_windows(logits, vmasks, video_len, stride, size, "test")
    expected = original_coin_merge_windows(logits[vmasks], video_len, stride, size)
    torch.testing.assert_close(merged, expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match="NaN or inf"):
        _merge_windows(logits.masked_fill(torch.ones_like(logits, dtype=torch.bool), float("nan")), vmasks,
                       video_len, stride, size, "test")


def test_zero_shot_labels_match_the_original_with_ties():
    generator = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 4, (200, 6), generator=generator).float()  # many ties, some at the threshold
    lbd = torch.tensor(2.0)
    torch.testing.assert_close(zero_shot_labels(scores, lbd), original_coin_zs_labels(scores, lbd))
    hidden = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    assert COINZSPredictor.threshold(hidden).item() == pytest.approx(0.8)  # largest off-diagonal similarity


def test_action_segmentation_model_classifies_every_window_position(vocab_dir):
    """MMFusionSeparateActionSegmentation with MMBertForTokenClassification (model.num_labels classes): logits per
    window position, a loss that ignores padding, and the classifier filled in when a VideoCLIP checkpoint (which
    lacks it) is restored through the fairseq adapter."""
    from omegaconf import OmegaConf
    from transformers import BertConfig

    from tempclr.losses import CrossEntropy
    from tempclr.models import MMFusionSeparate, MMFusionSeparateActionSegmentation
    from tempclr.models.fairseqmmmodel import FairseqMMModel

    config = OmegaConf.create({
        "dataset": {"bert_name": vocab_dir, "max_video_len": 32},
        "model": {"model_cls": "MMFusionSeparateActionSegmentation",
                  "video_encoder_cls": "MMBertForTokenClassification",
                  "text_encoder_cls": "BertModel", "num_hidden_video_layers": 1, "num_labels": 7}})
    bert = BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    torch.manual_seed(0)
    model = MMFusionSeparateActionSegmentation(config, bert_config=bert)
    vmasks = torch.zeros(1, 3, 32, dtype=torch.bool)
    vmasks[0, 0, :32], vmasks[0, 1, :20], vmasks[0, 2, :4] = True, True, True
    batch = {"caps": torch.tensor([[2, 3, 0, 3]]).repeat(3, 1)[None], "cmasks": torch.tensor(
        [[False, True, False, True]]).repeat(3, 1)[None], "vfeats": torch.randn(1, 3, 32, 512), "vmasks": vmasks}
    logits = model(**batch)["logits"]
    assert logits.shape == (3, 32, 7)
    targets = torch.randint(0, 7, (1, 3, 32)).masked_fill(~vmasks, -100)
    loss = CrossEntropy()(logits=logits, targets=targets)
    expected = torch.nn.functional.cross_entropy(logits[vmasks[0]], targets[0][vmasks[0]])
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert model.video_encoder.classifier.weight.grad.abs().sum() > 0

    pretrained = {f"mmmodel.{k}": v for k, v in MMFusionSeparate(
        OmegaConf.merge(config, {"model": {"video_encoder_cls": "MMBertForEncoder"}}), bert_config=bert
    ).state_dict().items()}
    wrapper = FairseqMMModel(model)
    wrapper.load_state_dict(dict(pretrained), strict=True)  # fairseq's restore path: upgrade_state_dict, strict
    torch.testing.assert_close(wrapper.mmmodel.video_encoder.bert.embeddings.word_embeddings.weight,
                               pretrained["mmmodel.video_encoder.bert.embeddings.word_embeddings.weight"])
    partial = dict(pretrained, **{"mmmodel.video_encoder.classifier.weight": torch.zeros(7, 16)})
    with pytest.raises(RuntimeError, match="classifier.bias"):  # half a head is not filled in
        wrapper.load_state_dict(partial, strict=True)
