"""YouCook2 retrieval inputs: the processors and aligners on a hand-written pickle/json/features set (missing
features, a segment past the end, a one-clip video, annotation text on/off), and the retrieval predictors on a tiny
real model against a per-item loop."""
from __future__ import annotations

import json
import os
import pickle

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from transformers import AutoTokenizer, BertConfig  # noqa: E402

from conftest import WORDS  # noqa: E402
from tempclr.datasets import MMDataset  # noqa: E402
from tempclr.evaluators.metric import RetrievalMetric  # noqa: E402
from tempclr.evaluators.predictor import BGRetrievalPredictor, RetrievalPredictor, parent_video_ids  # noqa: E402
from tempclr.models import MMFusionSeparate, MMFusionSeparateFullVideoBGRetrieval  # noqa: E402
from tempclr.processors.dsprocessor import (DSAligner, YoucookFullVideoBGAligner,  # noqa: E402
                                            YoucookFullVideoBGMetaProcessor, YoucookFullVideoBGProcessor,
                                            YoucookFullVideoBGTextProcessor, YoucookMetaProcessor,
                                            YoucookVideoProcessor)
from tempclr.processors.processor import TextProcessor  # noqa: E402
from tempclr.utils.registry import lookup  # noqa: E402

DIM = 512
# video -> (feature rows or None for "no feature file", [(segment, sentence, pickle caption), ...])
VIDEOS = {
    "ab_c1": (50, [([2, 10], "crack the eggs into a bowl", "crack eggs bowl"),
                   ([12, 30], "whisk the batter", "whisk batter"),
                   ([40, 60], "pour the batter into the pan", "pour batter pan")]),       # ends past 50: clipped
    "vidB": (20, [([0, 5], "add flour and milk", "add flour milk"),
                  ([25, 30], "flip the pancake", "flip pancake"),                         # starts past 20: dropped
                  ([5, 8.4], "now serve", "serve")]),                                     # floor/ceil: [5, 9)
    "vidC": (10, [([1, 4], "pour milk", "pour milk")]),                                   # a one-clip video
    "vidM": (None, [([0, 4], "serve pancakes", "serve pancakes"), ([4, 8], "crack eggs", "crack eggs")]),
}
# pickle order, interleaved across videos
PKL_ORDER = ["ab_c1_0", "vidM_0", "vidB_0", "ab_c1_1", "vidC_0", "vidB_1", "ab_c1_2", "vidM_1", "vidB_2"]


def features(video_id: str) -> np.ndarray:
    rows = VIDEOS[video_id][0]
    seed = sum(map(ord, video_id))
    return np.random.default_rng(seed).standard_normal((rows, DIM)).astype(np.float16)


def write_youcook(root) -> dict:
    feat_dir = root / "features"
    feat_dir.mkdir(parents=True)
    database = {}
    for video_id, (rows, clips) in VIDEOS.items():
        database[video_id] = {"subset": "validation", "duration": 60.0, "annotations": [
            {"segment": segment, "sentence": sentence, "id": k} for k, (segment, sentence, _) in enumerate(clips)]}
        if rows is not None:
            np.save(feat_dir / f"{video_id}.npy", features(video_id))
    (feat_dir / "notes.txt").write_text("not a feature file")
    records = []
    for record_id in PKL_ORDER:
        video_id, clip = record_id.rsplit("_", 1)
        records.append({"id": record_id, "caption": VIDEOS[video_id][1][int(clip)][2], "2d": None, "3d": None})
    with open(root / "youcook_val.pkl", "wb") as f:
        pickle.dump(records, f)
    (root / "annotations.json").write_text(json.dumps({"database": database}))
    return {"test_path": str(root / "youcook_val.pkl"), "trainval_annotation": str(root / "annotations.json"),
            "vfeat_dir": str(feat_dir), "max_video_len": 32, "max_len": 96, "split": "test"}


@pytest.fixture(scope="module")
def youcook(tmp_path_factory):
    return write_youcook(tmp_path_factory.mktemp("youcook"))


def dataset_config(youcook, vocab_dir, **extra):
    return OmegaConf.create({**youcook, "bert_name": vocab_dir, "use_annotation_text": True, **extra})


# ------------------------------------------------------------------------------------------ clip level


def test_clip_level_drops_missing_features_and_late_segments_and_clips_the_end(youcook, vocab_dir, capsys):
    meta = YoucookMetaProcessor(dataset_config(youcook, vocab_dir))
    printed = capsys.readouterr().out.splitlines()
    assert printed == [
        f"YoucookMetaProcessor: {youcook['test_path']} holds 9 records of 4 videos; 3 videos have features in "
        f"{youcook['vfeat_dir']}",
        f"YoucookMetaProcessor: 2 record(s) dropped: their video has no feature file in {youcook['vfeat_dir']} "
        "(first: vidM_0, vidM_1)",
        "YoucookMetaProcessor: 1 record(s) dropped: their segment starts at or after the end of the video's "
        "features (first: vidB_1)",
        "YoucookMetaProcessor: 1 record(s) clipped: their segment ends after the video's features (cut to the "
        "last second) (first: ab_c1_2)",
    ]
    assert [meta[i] for i in range(len(meta))] == [
        (("ab_c1", 2, 10), "crack the eggs into a bowl"),
        (("vidB", 0, 5), "add flour and milk"),
        (("ab_c1", 12, 30), "whisk the batter"),
        (("vidC", 1, 4), "pour milk"),
        (("ab_c1", 40, 50), "pour the batter into the pan"),   # 60 clipped to the 50 feature rows
        (("vidB", 5, 9), "now serve"),                         # [5, 8.4] -> floor, ceil
    ]
    assert [r.record_id for r in meta.data] == ["ab_c1_0", "vidB_0", "ab_c1_1", "vidC_0", "ab_c1_2", "vidB_2"]
    assert meta.data[4].num_seconds == 50


def test_use_annotation_text_picks_the_sentence_or_the_pickle_caption(youcook, vocab_dir):
    captions = {flag: [YoucookMetaProcessor(dataset_config(youcook, vocab_dir, use_annotation_text=flag))[i][1]
                       for i in range(6)] for flag in (True, False)}
    assert captions[True] == ["crack the eggs into a bowl", "add flour and milk", "whisk the batter", "pour milk",
                              "pour the batter into the pan", "now serve"]
    assert captions[False] == ["crack eggs bowl", "add flour milk", "whisk batter", "pour milk", "pour batter pan",
                               "serve"]
    config = dataset_config(youcook, vocab_dir)
    del config["use_annotation_text"]                       # missing: the pickle's captions, as the original
    assert YoucookMetaProcessor(config)[0][1] == "crack eggs bowl"
    with pytest.raises(ValueError, match=r"^dataset.use_annotation_text must be true or false, got 'yes'$"):
        YoucookMetaProcessor(dataset_config(youcook, vocab_dir, use_annotation_text="yes"))


def test_video_processor_slices_the_segment_and_cuts_at_the_end(youcook, vocab_dir):
    videos = YoucookVideoProcessor(dataset_config(youcook, vocab_dir))
    np.testing.assert_array_equal(videos(("ab_c1", 2, 10)), features("ab_c1")[2:10])
    np.testing.assert_array_equal(videos(("ab_c1", 40, 60)), features("ab_c1")[40:50])
    assert videos(("vidC", 0, 10)).shape == (10, DIM)
    with pytest.raises(ValueError, match=r"vidB\.npy has 20 rows; the segment \[25, 30\) holds none of them$"):
        videos(("vidB", 25, 30))


def test_ds_aligner_builds_one_clip_and_one_caption(youcook, vocab_dir):
    config = dataset_config(youcook, vocab_dir)
    aligner, texts = DSAligner(config), TextProcessor(config)
    tokenizer = AutoTokenizer.from_pretrained(vocab_dir)
    cls_id, sep_id, pad_id = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id
    clip = features("ab_c1")[12:30]                              # 18 seconds
    out = aligner(("ab_c1", 12, 30), clip, texts("whisk the batter"))
    assert set(out) == {"caps", "cmasks", "vfeats", "vmasks", "video_id"} and out["video_id"] == ("ab_c1", 12, 30)
    ids = [WORDS.index(w) for w in ("whisk", "the", "batter")]
    assert out["caps"].shape == (64,) and out["caps"].dtype == np.int64
    assert out["caps"][:6].tolist() == [cls_id, sep_id] + ids + [sep_id] and (out["caps"][6:] == pad_id).all()
    assert out["cmasks"].tolist() == [True] * 6 + [False] * 58
    assert out["vfeats"].shape == (32, DIM) and out["vfeats"].dtype == np.float32
    np.testing.assert_array_equal(out["vfeats"][:18], clip.astype(np.float32))
    assert not out["vfeats"][18:].any() and out["vmasks"].tolist() == [True] * 18 + [False] * 14
    long_clip = features("ab_c1")                                # 50 seconds: the first 32 are kept
    out = aligner(("ab_c1", 0, 50), long_clip, texts("pour milk"))
    assert out["vmasks"].all()
    np.testing.assert_array_equal(out["vfeats"], long_clip[:32].astype(np.float32))
    with pytest.raises(ValueError, match=r"^DSAligner: clip \('vidB', 25, 30\) has no feature rows$"):
        aligner(("vidB", 25, 30), features("vidB")[25:30], texts("flip the pancake"))


def clip_dataset(youcook, vocab_dir, **extra):
    config = dataset_config(youcook, vocab_dir, **extra)
    return MMDataset(YoucookMetaProcessor(config), YoucookVideoProcessor(config), TextProcessor(config),
                     DSAligner(config))


def test_clip_level_batches_keep_the_clip_ids(youcook, vocab_dir):
    dataset = clip_dataset(youcook, vocab_dir)
    batches = list(DataLoader(dataset, batch_size=4, collate_fn=dataset.collater))
    assert [b["caps"].shape for b in batches] == [(4, 64), (2, 64)]
    assert batches[0]["vfeats"].shape == (4, 32, DIM)
    assert batches[0]["video_id"] == [("ab_c1", 2, 10), ("vidB", 0, 5), ("ab_c1", 12, 30), ("vidC", 1, 4)]
    assert batches[0]["vmasks"].sum(dim=1).tolist() == [8, 5, 18, 3]
    assert batches[1]["vmasks"].sum(dim=1).tolist() == [10, 4]
    assert parent_video_ids(batches[0]["video_id"]) == ["ab_c1", "vidB", "ab_c1", "vidC"]


def test_parent_video_ids_reads_every_collated_form():
    assert parent_video_ids([("a_1", 0, 4), ("b", 2, 3)]) == ["a_1", "b"]                 # this package's collater
    assert parent_video_ids([["a_1", "b"], torch.tensor([0, 2]), torch.tensor([4, 3])]) == ["a_1", "b"]  # torch's
    assert parent_video_ids(["a_1", "b"]) == ["a_1", "b"]
    assert parent_video_ids("a_1") == ["a_1"]
    with pytest.raises(ValueError, match=r"^cannot read parent video ids from the batch's video_id \[3, 4\]"):
        parent_video_ids([3, 4])


# ------------------------------------------------------------------------------------------ full video, background


def test_full_video_meta_groups_captions_per_video_in_pickle_order(youcook, vocab_dir, capsys):
    meta = YoucookFullVideoBGMetaProcessor(dataset_config(youcook, vocab_dir))
    printed = capsys.readouterr().out
    assert "2 record(s) dropped: their video has no feature file" in printed
    assert "segment" not in printed                               # windows cover the whole video: no clipping
    assert meta.data == ["ab_c1", "vidB", "vidC"]                 # sorted, not set order
    assert [meta[i] for i in range(3)] == [
        ("ab_c1", ["crack the eggs into a bowl", "whisk the batter", "pour the batter into the pan"]),
        ("vidB", ["add flour and milk", "flip the pancake", "now serve"]),
        ("vidC", ["pour milk"]),
    ]
    off = YoucookFullVideoBGMetaProcessor(dataset_config(youcook, vocab_dir, use_annotation_text=False))
    assert off[1] == ("vidB", ["add flour milk", "flip pancake", "serve"])


def test_full_video_aligner_windows_and_captions(youcook, vocab_dir):
    config = dataset_config(youcook, vocab_dir, sliding_window=16, sliding_window_size=16)
    aligner, texts = YoucookFullVideoBGAligner(config), YoucookFullVideoBGTextProcessor(config)
    videos = YoucookFullVideoBGProcessor(config)
    feat = videos("ab_c1")
    np.testing.assert_array_equal(feat, features("ab_c1"))
    captions = ["crack the eggs into a bowl", "whisk the batter", "pour the batter into the pan"]
    tokens = texts(captions)
    assert tokens == [[WORDS.index(w) for w in c.split()] for c in captions]
    out = aligner("ab_c1", feat, tokens)
    assert (out["video_id"], out["video_len"]) == ("ab_c1", 50)
    assert out["vfeats"].shape == (4, 32, DIM) and out["vmasks"].shape == (4, 32)
    assert out["vmasks"].sum(axis=1).tolist() == [16, 16, 16, 2]  # 0-16, 16-32, 32-48, 48-50: no overlap
    for w, start in enumerate([0, 16, 32, 48]):
        n = min(16, 50 - start)
        np.testing.assert_array_equal(out["vfeats"][w, :n], feat[start:start + n].astype(np.float32))
        assert not out["vfeats"][w, n:].any()
    assert out["caps"].shape == (3, 64) and out["cmasks"].sum(axis=1).tolist() == [9, 6, 9]
    for k, ids in enumerate(tokens):
        assert out["caps"][k, :len(ids) + 3].tolist() == [aligner.cls_token_id, aligner.sep_token_id] + ids + [
            aligner.sep_token_id]
    one = aligner("vidC", videos("vidC"), texts(["pour milk"]))   # one-clip, 10-second video: one window
    assert one["vfeats"].shape == (1, 32, DIM) and one["vmasks"].sum() == 10 and one["caps"].shape == (1, 64)
    with pytest.raises(ValueError, match="sliding_window_size=40 exceeds dataset.max_video_len=32"):
        YoucookFullVideoBGAligner(dataset_config(youcook, vocab_dir, sliding_window_size=40))


def bg_dataset(youcook, vocab_dir):
    config = dataset_config(youcook, vocab_dir, sliding_window=16, sliding_window_size=16)
    return MMDataset(YoucookFullVideoBGMetaProcessor(config), YoucookFullVideoBGProcessor(config),
                     YoucookFullVideoBGTextProcessor(config), YoucookFullVideoBGAligner(config))


# ------------------------------------------------------------------------------------------ bad input


def test_bad_records_name_the_file_and_the_record(youcook, vocab_dir, tmp_path):
    def run(records=None, database=None, **extra):
        config = dataset_config(youcook, vocab_dir, **extra)
        if records is not None:
            config.test_path = str(tmp_path / "bad.pkl")
            with open(config.test_path, "wb") as f:
                pickle.dump(records, f)
        if database is not None:
            config.trainval_annotation = str(tmp_path / "bad.json")
            (tmp_path / "bad.json").write_text(json.dumps(database))
        return YoucookMetaProcessor(config)

    bad_pkl = str(tmp_path / "bad.pkl")
    with pytest.raises(ValueError, match=f"^{bad_pkl} \\(dataset.test_path\\): 1 record id fault\\(s\\): record 1: id "
                                         "'vidB' is not '<video>_<clip>' with an integer clip index; fix the id$"):
        run([{"id": "vidB_0"}, {"id": "vidB"}])
    with pytest.raises(ValueError, match="record 0: id 'vidB_x' is not '<video>_<clip>' with an integer clip index"):
        run([{"id": "vidB_x"}])
    with pytest.raises(ValueError, match=r"expected a list of dicts with an 'id' key"):
        run({"id": "vidB_0"})
    with pytest.raises(KeyError, match=r"has no video 'ab_c1' of record 'ab_c1_0'; the pickle and the annotation file"):
        run(database={"database": {"vidB": {"annotations": []}}}, test_path=youcook["test_path"])
    with pytest.raises(KeyError, match=r"video 'vidC' has 1 annotations, record 'vidC_3' asks for clip 3"):
        run([{"id": "vidC_3", "caption": "x"}])
    with pytest.raises(ValueError, match=r"expected \{\"database\": "):
        run(database={"videos": {}})
    with pytest.raises(ValueError, match=r"the segment of record 'vidC_0' is \[4, 1\]; it needs 0 <= start < end"):
        run(database={"database": {"vidC": {"annotations": [{"segment": [4, 1], "sentence": "s"}]}}},
            records=[{"id": "vidC_0", "caption": "x"}])
    with pytest.raises(KeyError, match=r"record 'vidC_0' has no 'caption'; set dataset.use_annotation_text: true"):
        run([{"id": "vidC_0"}], use_annotation_text=False)
    with pytest.raises(ValueError, match=r"^YoucookMetaProcessor: no record of .*bad.pkl is left \(features in "):
        run([{"id": "vidM_0", "caption": "x"}])
    with pytest.raises(ValueError, match=r"^YouCook2 needs 'dataset.trainval_annotation' in the config"):
        run(trainval_annotation=None)
    with pytest.raises(FileNotFoundError, match=r"nowhere.pkl \(dataset.test_path\) does not exist; "
                                                r"youcook_val.pkl and youcookii_annotations_trainval.json"):
        run(test_path=str(tmp_path / "nowhere.pkl"))


def test_configs_name_these_classes():
    for kind, name, cls in (("meta_processor", "YoucookMetaProcessor", YoucookMetaProcessor),
                            ("video_processor", "YoucookVideoProcessor", YoucookVideoProcessor),
                            ("aligner", "DSAligner", DSAligner),
                            ("meta_processor", "YoucookFullVideoBGMetaProcessor", YoucookFullVideoBGMetaProcessor),
                            ("video_processor", "YoucookFullVideoBGProcessor", YoucookFullVideoBGProcessor),
                            ("text_processor", "YoucookFullVideoBGTextProcessor", YoucookFullVideoBGTextProcessor),
                            ("aligner", "YoucookFullVideoBGAligner", YoucookFullVideoBGAligner),
                            ("predictor", "RetrievalPredictor", RetrievalPredictor),
                            ("predictor", "BGRetrievalPredictor", BGRetrievalPredictor),
                            ("model", "MMFusionSeparateFullVideoBGRetrieval", MMFusionSeparateFullVideoBGRetrieval)):
        assert lookup(kind, name) is cls


# ------------------------------------------------------------------------------------------ predictors


def tiny_bert() -> BertConfig:
    return BertConfig(vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=128, pad_token_id=0)


def run_config(youcook, vocab_dir, save_path, model_cls="MMFusionSeparate"):
    return OmegaConf.create({
        "dataset": {**youcook, "bert_name": vocab_dir, "use_annotation_text": True, "train_path": None},
        "model": {"model_cls": model_cls, "video_encoder_cls": "MMBertForEncoder", "text_encoder_cls": "BertModel",
                  "num_hidden_video_layers": 2},
        "eval": {"save_path": str(save_path)}})


def build_model(cls, config, vocab_dir, seed=0):
    torch.manual_seed(seed)
    return cls(config, bert_config=tiny_bert(), tokenizer=AutoTokenizer.from_pretrained(vocab_dir)).eval()


def as_batch(item: dict) -> dict:
    """One item as a batch of 1 (tensors get a leading dim)."""
    return {k: torch.from_numpy(np.asarray(v))[None] for k, v in item.items() if isinstance(v, np.ndarray)}


def test_retrieval_predictor_scores_every_caption_against_every_clip(youcook, vocab_dir, tmp_path):
    config = run_config(youcook, vocab_dir, tmp_path / "eval")
    model = build_model(MMFusionSeparate, config, vocab_dir)
    dataset = clip_dataset(youcook, vocab_dir)
    loader = DataLoader(dataset, batch_size=4, collate_fn=dataset.collater)
    predictor = RetrievalPredictor(config)
    out = predictor.predict_loop(model, loader)                 # default output_file="retrieval.npy"
    # oracle: each clip through the model alone, then a plain double loop of dot products
    with torch.no_grad():
        single = [model(**as_batch(dataset[i])) for i in range(len(dataset))]
    videos = [s["pooled_video"][0].double() for s in single]
    texts = [s["pooled_text"][0].double() for s in single]
    expected = np.array([[float(t @ v) for v in videos] for t in texts])
    assert out["outputs"].shape == (6, 6) and out["outputs"].dtype == np.float32
    np.testing.assert_allclose(out["outputs"], expected, rtol=1e-5, atol=1e-5)
    assert out["texts"] == ["crack the eggs into a bowl", "add flour and milk", "whisk the batter", "pour milk",
                            "pour the batter into the pan", "now serve"]
    assert out["video_ids"] == ["ab_c1", "vidB", "ab_c1", "vidC", "ab_c1", "vidB"]
    saved = os.listdir(tmp_path / "eval")
    assert saved == ["retrieval.npy"]                           # one extension (the original wrote .npy.npy)
    np.testing.assert_array_equal(np.load(tmp_path / "eval" / "retrieval.npy"), out["outputs"])
    metrics = RetrievalMetric(config).compute_metrics(**out)
    ranks = [int((expected[i] >= expected[i, i]).sum()) - 1 for i in range(6)]   # other clips scoring >= the true
    assert metrics["R1"] == np.mean([r == 0 for r in ranks]) and metrics["R5"] == np.mean([r < 5 for r in ranks])
    predictor.predict_loop(model, loader, output_file="merged")
    assert sorted(os.listdir(tmp_path / "eval")) == ["merged.npy", "retrieval.npy"]


def test_bg_retrieval_predictor_stacks_videos_with_their_lengths(youcook, vocab_dir, tmp_path):
    config = run_config(youcook, vocab_dir, tmp_path / "eval", "MMFusionSeparateFullVideoBGRetrieval")
    model = build_model(MMFusionSeparateFullVideoBGRetrieval, config, vocab_dir)
    dataset = bg_dataset(youcook, vocab_dir)
    out = BGRetrievalPredictor(config).predict_loop(model, DataLoader(dataset, batch_size=1,
                                                                      collate_fn=dataset.collater), None)
    assert set(out) == {"outputs", "texts", "video_ids", "text_lengths", "video_lengths"}
    assert out["video_ids"] == ["ab_c1", "vidB", "vidC"]
    assert out["text_lengths"] == [3, 3, 1] and out["video_lengths"] == [4, 2, 1]
    assert out["texts"] == ["crack the eggs into a bowl", "whisk the batter", "pour the batter into the pan",
                            "add flour and milk", "flip the pancake", "now serve", "pour milk"]
    # oracle: every caption and every window through the model one at a time, in video order
    captions, windows = [], []
    with torch.no_grad():
        for i in range(len(dataset)):
            item = as_batch(dataset[i])
            for k in range(item["caps"].shape[1]):
                captions.append(model.forward_text(item["caps"][0, k:k + 1], item["cmasks"][0, k:k + 1])[0])
            for w in range(item["vfeats"].shape[1]):
                windows.append(model.forward_windows(item["vfeats"][0, w:w + 1], item["vmasks"][0, w:w + 1])[0])
    expected = np.array([[float(t.double() @ v.double()) for v in windows] for t in captions])
    assert out["outputs"].shape == (7, 7)
    np.testing.assert_allclose(out["outputs"], expected, rtol=1e-5, atol=1e-5)
    assert os.listdir(tmp_path) == []                            # output_file=None: nothing written
    with pytest.raises(ValueError, match=r"^cannot batch key 'vfeats': the items have shapes \[\(2, 32, 512\), "
                                         r"\(4, 32, 512\)\] .* need fairseq.dataset.batch_size: 1$"):
        BGRetrievalPredictor(config).predict_loop(model, DataLoader(dataset, batch_size=2,
                                                                    collate_fn=dataset.collater), None)
    two = dataset.collater([dataset[1], dataset[1]])           # same sizes: they batch, the predictor refuses
    with pytest.raises(ValueError, match=r"^BGRetrievalPredictor takes one video per batch, got 2; set "
                                         r"fairseq.dataset.batch_size: 1$"):
        BGRetrievalPredictor(config).predict_loop(model, [two], None)


def test_predictor_refuses_nan_scores_and_an_empty_loader(youcook, vocab_dir, tmp_path):
    predictor = RetrievalPredictor(run_config(youcook, vocab_dir, tmp_path))
    video = np.ones((2, 4), np.float32)
    text = np.array([[1, 0, 0, 0], [np.nan, 0, 0, 0]], np.float32)
    with pytest.raises(ValueError, match=r"^RetrievalPredictor: 1 caption rows of the scores hold NaN or inf"):
        predictor.finalize([[video], [text], ["a", "b"]], ["x", "y"])
    with pytest.raises(ValueError, match=r"^RetrievalPredictor: the evaluation loader gave no batch$"):
        predictor.finalize([], [])
    with pytest.raises(ValueError, match=r"^RetrievalPredictor: 2 captions x 2 clips but 1 texts and 2 video ids$"):
        predictor.finalize([[video], [np.zeros((2, 4), np.float32)], ["a", "b"]], ["x"])
