"""CrossTask step localisation: the aligner's sliding windows and targets, window averaging, the predictor end to
end on a hand-built release, AlignLocalTask's loss against a hand computation, the demo release writer, the
timeline picture, and the errors for a malformed or incomplete release."""
from __future__ import annotations

import itertools
import math
import os
import pickle

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from transformers import AutoTokenizer, BertConfig  # noqa: E402

from tempclr.datasets import MMDataset  # noqa: E402
from tempclr.demo.crosstask import crosstask_video_id, write_crosstask_release  # noqa: E402
from tempclr.demo.world import World  # noqa: E402
from tempclr.evaluators.crosstask_predictor import CrossTaskPredictor, average_windows  # noqa: E402
from tempclr.evaluators.metric import CrossTaskMetric  # noqa: E402
from tempclr.evaluators.timeline import plot_timeline  # noqa: E402
from tempclr.models import MMFusionSeparateActionLocalization  # noqa: E402
from tempclr.processors.crosstask_release import CrossTaskFormatError  # noqa: E402
from tempclr.processors.dsprocessor import (CrossTaskAligner, CrossTaskMetaProcessor,  # noqa: E402
                                            CrossTaskTextProcessor, CrossTaskVideoProcessor, sliding_windows)

# ------------------------------------------------------------------------------------------ a hand-built release
# task A (K=3): 3 videos, task B (K=2): 3 videos; with n_train=1 each task has 1 train and 2 test videos.
TASKS = {"100": ("make pancakes", ["crack eggs", "whisk batter", "flip pancake"]),
         "200": ("make batter", ["add flour", "pour milk"])}
VIDEOS = {  # vid -> (task, T, annotation rows (1-based step, start, end) in file order)
    "a1": ("100", 70, [(1, 2.0, 9.5), (2, 20.0, 31.0), (3, 50.2, 61.0)]),
    "a2": ("100", 45, [(1, 0.0, 5.0), (3, 30.0, 40.0)]),
    "a3": ("100", 33, [(2, 3.0, 12.0), (1, 13.0, 15.0), (3, 20.0, 30.0)]),
    "b1": ("200", 50, [(1, 5.0, 15.0), (2, 25.0, 45.0)]),
    "b2": ("200", 16, [(1, 1.0, 6.0), (2, 8.0, 14.0)]),
    "b3": ("200", 90, [(1, 10.0, 40.0), (2, 60.0, 80.0)]),
}
DIM = 512


def _write(path, text: str) -> str:
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def write_release(root) -> dict:
    """Write the hand-built release under ``root``; returns the dataset config dict."""
    release, features = root / "release", root / "features"
    _write(release / "tasks_primary.txt", "".join(
        f"{task}\n{title}\nhttp://example.org/{task}\n{len(steps)}\n{','.join(steps)}\n\n"
        for task, (title, steps) in TASKS.items()))
    _write(release / "tasks_related.txt", "300\nrelated\nhttp://example.org/300\n1\ndo it\n\n")
    rows = [f"{task},{vid},http://y/{vid}" for vid, (task, _, _) in VIDEOS.items()]
    rows += ["300,r1,http://y/r1", "100,nofeat,http://y/nofeat", "100,val1,http://y/val1"]
    _write(release / "videos.csv", "\n".join(rows) + "\n")
    _write(release / "videos_val.csv", "100,val1,http://y/val1\n")
    os.makedirs(features)
    rng = np.random.default_rng(0)
    for vid, (task, T, annotation) in VIDEOS.items():
        np.save(features / f"{vid}.npy", rng.standard_normal((T, DIM)).astype(np.float16))
        _write(release / "annotations" / f"{task}_{vid}.csv", "".join(f"{s},{a},{b}\n" for s, a, b in annotation))
    np.save(features / "r1.npy", np.zeros((40, DIM), np.float16))        # related: no annotation
    np.save(features / "val1.npy", np.zeros((40, DIM), np.float16))      # excluded by videos_val.csv
    _write(release / "annotations" / "100_val1.csv", "1,0,5\n")
    _write(release / "annotations" / "100_nofeat.csv", "1,0,5\n")        # no feature file
    return {"train_csv_path": str(release / "videos.csv"), "val_csv_path": str(release / "videos_val.csv"),
            "primary_path": str(release / "tasks_primary.txt"), "related_path": str(release / "tasks_related.txt"),
            "vfeat_dir": str(features), "annotation_path": str(release / "annotations"), "n_train": 1,
            "sliding_window": 16, "sliding_window_size": 32, "max_video_len": 32, "max_len": 96}


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return write_release(tmp_path_factory.mktemp("crosstask"))


def dataset_config(release, vocab_dir, split="test", **extra):
    return OmegaConf.create({**release, "bert_name": vocab_dir, "split": split, **extra})


def build_dataset(release, vocab_dir, split="test"):
    config = dataset_config(release, vocab_dir, split)
    return MMDataset(CrossTaskMetaProcessor(config), CrossTaskVideoProcessor(config), CrossTaskTextProcessor(config),
                     CrossTaskAligner(config))


# ------------------------------------------------------------------------------------------ windows and aligner


def test_sliding_windows_stop_rule():
    starts, lengths = sliding_windows(70, 16, 32)
    assert starts.tolist() == [0, 16, 32, 48] and lengths.tolist() == [32, 32, 32, 22]
    assert [w.tolist() for w in sliding_windows(32)] == [[0], [32]]       # T - 0 <= 32: one window
    assert [w.tolist() for w in sliding_windows(33)] == [[0, 16], [32, 17]]
    assert [w.tolist() for w in sliding_windows(5)] == [[0], [5]]
    assert [w.tolist() for w in sliding_windows(40, 16, 16)] == [[0, 16, 32], [16, 16, 8]]
    with pytest.raises(ValueError, match="at least one"):
        sliding_windows(0)


def test_aligner_windows_targets_and_sequence(release, vocab_dir):
    config = dataset_config(release, vocab_dir)
    aligner, texts = CrossTaskAligner(config), CrossTaskTextProcessor(config)
    steps = TASKS["100"][1]
    item = ("100", "a1", steps, 3)
    feat = CrossTaskVideoProcessor(config)(item)
    out = aligner(item, feat, texts(item))
    assert feat.shape == (70, DIM)
    assert out["vfeats"].shape == (4, 32, DIM) and out["vfeats"].dtype == np.float32
    assert out["vmasks"].sum(axis=1).tolist() == [32, 32, 32, 22]
    for w, start in enumerate([0, 16, 32, 48]):
        n = min(32, 70 - start)
        np.testing.assert_array_equal(out["vfeats"][w, :n], feat[start:start + n].astype(np.float32))
        assert not out["vfeats"][w, n:].any()
    labels = np.zeros((70, 3), np.float32)
    labels[2:10, 0] = 1     # floor(2.0):ceil(9.5)
    labels[20:31, 1] = 1
    labels[50:61, 2] = 1    # floor(50.2)
    expected = np.concatenate([labels[0:32], labels[16:48], labels[32:64], labels[48:70]])
    assert out["targets"].shape == (118, 3) and out["targets"].dtype == np.float32
    np.testing.assert_array_equal(out["targets"], expected)
    assert out["sequence_targets"].dtype == np.int64 and out["sequence_targets"].tolist() == [0, 1, 2]
    assert (out["video_id"], out["task"], out["video_len"]) == ("a1", "100", 70)
    tokenizer = AutoTokenizer.from_pretrained(vocab_dir)
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    assert out["caps"].shape == (3, 64) and out["cmasks"].shape == (3, 64)
    for k, step in enumerate(steps):
        ids = tokenizer(step, add_special_tokens=False)["input_ids"]
        assert out["caps"][k, :len(ids) + 3].tolist() == [cls_id, sep_id] + ids + [sep_id]
        assert out["cmasks"][k].sum() == len(ids) + 3


def test_sequence_targets_keep_file_order(release, vocab_dir):
    config = dataset_config(release, vocab_dir)
    item = ("100", "a3", TASKS["100"][1], 3)
    out = CrossTaskAligner(config)(item, CrossTaskVideoProcessor(config)(item), CrossTaskTextProcessor(config)(item))
    assert out["sequence_targets"].tolist() == [1, 0, 2]          # rows 2,1,3 of the csv, 0-based
    assert out["vmasks"].sum(axis=1).tolist() == [32, 17]         # T = 33


def test_meta_processor_split_and_filter(release, vocab_dir):
    test = CrossTaskMetaProcessor(dataset_config(release, vocab_dir, "test"))
    valid = CrossTaskMetaProcessor(dataset_config(release, vocab_dir, "valid"))
    train = CrossTaskMetaProcessor(dataset_config(release, vocab_dir, "train"))
    test_vids = [item[1] for item, _ in (test[i] for i in range(len(test)))]
    train_vids = [item[1] for item, _ in (train[i] for i in range(len(train)))]
    assert [valid[i] for i in range(len(valid))] == [test[i] for i in range(len(test))]
    assert len(test_vids) == 4 and len(train_vids) == 2
    assert sorted(test_vids + train_vids) == sorted(VIDEOS)        # r1, nofeat and val1 are dropped
    video, text = test[0]
    assert video == text and video[0] in TASKS and video[2] == TASKS[video[0]][1] and video[3] == len(video[2])


# ------------------------------------------------------------------------------------------ window averaging


def average_windows_loop(logits: torch.Tensor, video_len: int, stride: int, size: int) -> torch.Tensor:
    """The original's loop (MMPT CrossTaskPredictor)."""
    out = torch.zeros(video_len, logits.size(1))
    counts = torch.zeros(video_len, 1)
    row = 0
    for start in range(0, video_len, stride):
        end = min(video_len - start, size)
        out[start:start + end] += logits[row:row + end]
        counts[start:start + end] += 1
        row += end
        if video_len - start <= size:
            break
    return out / counts


@pytest.mark.parametrize("video_len", [1, 16, 32, 33, 47, 48, 49, 70, 301])
@pytest.mark.parametrize("stride, size", [(16, 32), (16, 16), (10, 32)])
def test_average_windows_matches_loop(video_len, stride, size):
    starts, lengths = sliding_windows(video_len, stride, size)
    logits = torch.randn(int(lengths.sum()), 5, generator=torch.Generator().manual_seed(video_len))
    torch.testing.assert_close(average_windows(logits, video_len, stride, size),
                               average_windows_loop(logits, video_len, stride, size))


def test_average_windows_rejects_wrong_row_count():
    with pytest.raises(ValueError, match="118 window rows"):
        average_windows(torch.zeros(100, 3), 70)


# ------------------------------------------------------------------------------------------ predictor end to end


class OracleLocalizer(nn.Module):
    """Logits = 10 * the aligner's targets: a model that knows the answer, to check the bookkeeping."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))

    def forward(self, targets, **kwargs):
        return {"logits": self.scale * targets.squeeze(0)}


def predictor_config(release, vocab_dir, save_path):
    return OmegaConf.create({"dataset": dataset_config(release, vocab_dir), "eval": {"save_path": str(save_path)}})


def run_predictor(model, release, vocab_dir, save_path, output_file="merged"):
    dataset = build_dataset(release, vocab_dir)
    loader = DataLoader(dataset, batch_size=1, shuffle=False, collate_fn=dataset.collater)
    predictor = CrossTaskPredictor(predictor_config(release, vocab_dir, save_path))
    return predictor.predict_loop(model, loader, output_file)


def test_predictor_oracle_gets_full_recall(release, vocab_dir, tmp_path):
    outputs = run_predictor(OracleLocalizer(), release, vocab_dir, tmp_path / "eval")
    assert set(outputs) == {"outputs", "targets"}  # CrossTaskMetric.compute_metrics(outputs, targets)
    assert sorted((t, sorted(v)) for t, v in outputs["targets"].items()) == \
        sorted((t, sorted(v)) for t, v in outputs["outputs"].items())
    for task, by_vid in outputs["targets"].items():
        for vid, y_true in by_vid.items():
            T, annotation = VIDEOS[vid][1], VIDEOS[vid][2]
            expected = np.zeros((T, len(TASKS[task][1])), np.uint8)
            for step, start, end in annotation:
                expected[math.floor(start):math.ceil(end), step - 1] = 1
            np.testing.assert_array_equal(y_true, expected)
    metrics = CrossTaskMetric(None).compute_metrics(**outputs)
    assert metrics["recall"] == 1.0
    with open(tmp_path / "eval" / "merged.pkl", "rb") as f:
        saved = pickle.load(f)
    assert set(saved) == {"Y_pred", "Y_true"}
    assert not (tmp_path / "eval" / "merged.pkl.pkl").exists()


def test_predictor_with_tiny_model(release, vocab_dir, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(vocab_dir)
    bert = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id)
    run = OmegaConf.create({"dataset": {"bert_name": vocab_dir, "max_video_len": 32},
                            "model": {"num_hidden_video_layers": 1}})
    torch.manual_seed(0)
    model = MMFusionSeparateActionLocalization(run, bert_config=bert, tokenizer=tokenizer)
    outputs = run_predictor(model, release, vocab_dir, tmp_path / "eval", output_file="tiny.pkl")
    assert (tmp_path / "eval" / "tiny.pkl").is_file()
    n_videos = 0
    hits, totals = {}, {}
    for task, by_vid in outputs["outputs"].items():
        for vid, y_pred in by_vid.items():
            n_videos += 1
            assert y_pred.shape == (VIDEOS[vid][1], len(TASKS[task][1])) and y_pred.dtype == np.float32
            placed = [int(np.flatnonzero(y_pred[:, k])[0]) for k in range(y_pred.shape[1])]
            assert (y_pred.sum(axis=0) == 1).all() and placed == sorted(placed) and len(set(placed)) == len(placed)
            # recall by hand from the annotation: a step counts once if its placed second is inside any of its
            # annotated intervals [floor(start), ceil(end))
            steps = {}
            for step, start, end in VIDEOS[vid][2]:
                steps.setdefault(step - 1, []).append((math.floor(start), math.ceil(end)))
            hits[task] = hits.get(task, 0) + sum(any(lo <= placed[k] < hi for lo, hi in spans)
                                                 for k, spans in steps.items())
            totals[task] = totals.get(task, 0) + len(steps)
    assert n_videos == 4
    metrics = CrossTaskMetric(None).compute_metrics(**outputs)
    expected = {task: hits[task] / totals[task] for task in totals}
    assert metrics == pytest.approx({**expected, "recall": sum(expected.values()) / len(expected)}, abs=1e-12)


def test_predictor_one_video_per_batch(release, vocab_dir, tmp_path):
    dataset = build_dataset(release, vocab_dir)
    batch = dataset.collater([dataset[0], dataset[0]])
    predictor = CrossTaskPredictor(predictor_config(release, vocab_dir, tmp_path))
    Y_pred, Y_true = {}, {}
    with pytest.raises(ValueError, match=r"^CrossTaskPredictor takes one video per batch, got 2; set "
                                         r"fairseq.dataset.batch_size: 1$"):
        predictor(batch, OracleLocalizer(), Y_pred, Y_true)
    assert Y_pred == {} and Y_true == {}


# ------------------------------------------------------------------------------------------ errors


def test_missing_release_file_names_key_and_fix(release, vocab_dir, tmp_path):
    config = dataset_config(release, vocab_dir, primary_path=str(tmp_path / "nope.txt"))
    with pytest.raises(FileNotFoundError, match=r"dataset\.primary_path.*make_demo_data"):
        CrossTaskMetaProcessor(config)
    config = dataset_config(release, vocab_dir, vfeat_dir=str(tmp_path / "nofeatures"))
    with pytest.raises(FileNotFoundError, match=r"dataset\.vfeat_dir"):
        CrossTaskMetaProcessor(config)
    config = dataset_config(release, vocab_dir)
    del config["annotation_path"]
    with pytest.raises(ValueError, match=r"dataset\.annotation_path"):
        CrossTaskMetaProcessor(config)
    with pytest.raises(ValueError, match=r"dataset\.annotation_path"):
        CrossTaskAligner(config)


def test_empty_test_split_says_lower_n_train(release, vocab_dir):
    with pytest.raises(ValueError, match="lower n_train"):
        CrossTaskMetaProcessor(dataset_config(release, vocab_dir, n_train=4))  # no primary task has > 4 listed


def test_malformed_files_raise_documented_errors(tmp_path, vocab_dir):
    broken = write_release(tmp_path)
    _write(tmp_path / "release" / "tasks_primary.txt", "100\nmake pancakes\nurl\n4\ncrack eggs,flip pancake\n\n")
    with pytest.raises(CrossTaskFormatError, match=r"tasks_primary\.txt:5: .*declares 4 steps"):
        CrossTaskMetaProcessor(dataset_config(broken, vocab_dir))
    config = dataset_config(write_release(tmp_path / "second"), vocab_dir)
    _write(os.path.join(config.annotation_path, "100_a1.csv"), "1,2.0,9.5\n7,20,31\n")
    item = ("100", "a1", TASKS["100"][1], 3)
    with pytest.raises(CrossTaskFormatError, match=r"100_a1\.csv:2: step 7 is outside 1\.\.3"):
        CrossTaskAligner(config)(item, np.zeros((70, DIM), np.float16), [[5], [6], [7]])
    np.save(os.path.join(config.vfeat_dir, "a1.npy"), np.zeros((70,), np.float16))
    with pytest.raises(ValueError, match=r"a1\.npy: expected features \[T, D\]"):
        CrossTaskVideoProcessor(config)(item)
    with pytest.raises(ValueError, match="sliding_window_size=40 exceeds"):
        CrossTaskAligner(dataset_config(broken, vocab_dir, sliding_window_size=40))


# ------------------------------------------------------------------------------------------ demo release, timeline


def test_demo_release_split_and_files(tmp_path):
    world = World(0)
    out = tmp_path / "crosstask"
    summary = write_crosstask_release(world, str(out), seed=5, videos_per_task=4)
    release = out / "crosstask_release"
    config = dict(train_csv_path=release / "videos.csv", val_csv_path=release / "videos_val.csv",
                  primary_path=release / "tasks_primary.txt", related_path=release / "tasks_related.txt",
                  vfeat_dir=out / "features", annotation_path=release / "annotations", n_train=2, split="test")
    config = OmegaConf.create({k: str(v) if not isinstance(v, (int, str)) else v for k, v in config.items()})
    test = CrossTaskMetaProcessor(config)
    train = CrossTaskMetaProcessor(OmegaConf.merge(config, {"split": "train"}))
    # per task 4 videos - 1 val = 3: 2 train, 1 test; the first task also lists the unavailable video, so it splits
    # 4 listed videos 2 / 2 and the seeded draw puts the unavailable one in train, where it is then skipped
    assert (len(test), len(train)) == (len(world.tasks) + 1, 2 * len(world.tasks) - 1)
    listed = {line.split(",")[1] for line in (release / "videos.csv").read_text().split()}
    used = {test[i][0][1] for i in range(len(test))} | {train[i][0][1] for i in range(len(train))}
    assert summary["unavailable_video"] in listed - used
    assert {crosstask_video_id("91001", 0), crosstask_video_id("91002", 1)} <= listed - used
    task = world.tasks[2]
    vid = summary["primary_videos"][task.id][3]
    video = world.sample_video(np.random.default_rng([world.seed, 2, 5, 2, 3]), task)
    features = np.load(out / "features" / f"{vid}.npy")
    assert features.dtype == np.float16 and features.shape == (video.duration, 512)
    np.testing.assert_array_equal(features, video.features)
    rows = (release / "annotations" / f"{task.id}_{vid}.csv").read_text().split()
    assert rows == [f"{s + 1},{a:.2f},{b:.2f}" for s, a, b in video.steps]
    first_primary = (release / "tasks_primary.txt").read_text().split("\n")[:5]
    assert first_primary == [world.tasks[0].id, world.tasks[0].title, world.tasks[0].url,
                             str(len(world.tasks[0].steps)), ",".join(s.name for s in world.tasks[0].steps)]
    again = write_crosstask_release(world, str(out), seed=5, videos_per_task=4)   # replaces its own release
    assert again == summary and np.array_equal(np.load(out / "features" / f"{vid}.npy"), features)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not a demo CrossTask release"):
        write_crosstask_release(world, str(tmp_path / "other"), videos_per_task=4)


def test_timeline_png(tmp_path):
    y_pred = np.zeros((60, 3), np.float32)
    y_pred[[5, 25, 50], [0, 1, 2]] = 1
    path = plot_timeline(y_pred, [(0, 2.0, 9.5), (2, 40.0, 55.0)], ["crack eggs", "whisk", "flip"],
                         str(tmp_path / "pics" / "t.png"), title="video a1")
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(path) > 2000 and os.listdir(tmp_path / "pics") == ["t.png"]
    with pytest.raises(ValueError, match="K = 2 step names"):
        plot_timeline(y_pred, [], ["a", "b"], str(tmp_path / "x.png"))


# ------------------------------------------------------------------------------------------ AlignLocalTask

from tempclr.losses import BCE  # noqa: E402
from tempclr.tasks.alignlocaltask import AlignLocalTask  # noqa: E402
from tempclr.tasks.seqalign import count_distinct_orders, inner_shuffle_columns, negative_orders  # noqa: E402
from tempclr.testing.original import dtw_cells, otam_cells  # noqa: E402

GAMMA = 0.1


class FixedLocalizer(nn.Module):
    """Stand-in localisation model with learnable outputs: logits = video_seq @ pooled_text.T."""

    def __init__(self, video_seq, pooled_text):
        super().__init__()
        self.video_seq = nn.Parameter(video_seq.clone())
        self.pooled_text = nn.Parameter(pooled_text.clone())

    def forward(self, **sample):
        return {"logits": self.video_seq @ self.pooled_text.T, "pooled_text": self.pooled_text,
                "video_seq": self.video_seq}


def align_task(metric="dtw", total_sample_size=4, multiplier=2, inner_shuffling=True):
    task = AlignLocalTask(OmegaConf.create({"alignment": {
        "metric": metric, "total_sample_size": total_sample_size, "alignment_loss_coeff": 0.12,
        "video_sampling_multiplier": multiplier, "inner_shuffling": inner_shuffling}}))
    task.loss_fn = BCE()
    return task


def hand_batch():
    """12 window rows, K = 3: rows 2-4 step 1, 5-6 step 0, 8-10 step 2 (row 8 also step 0), others empty;
    annotation order 1, 0, 0, 2 -> A = [1, 0, 2]."""
    gen = torch.Generator().manual_seed(3)
    targets = torch.zeros(12, 3)
    targets[2:5, 1] = 1
    targets[5:7, 0] = 1
    targets[8:11, 2] = 1
    targets[8, 0] = 1
    sample = {"targets": targets.unsqueeze(0), "sequence_targets": torch.tensor([[1, 0, 0, 2]])}
    return sample, torch.randn(12, 4, generator=gen), torch.randn(3, 4, generator=gen)


def cos_dist(text, video):
    """1 - x.y / (|x| |y| + 0.01), float64 [K, n]."""
    text, video = text.double(), video.double()
    return 1 - text @ video.T / (text.norm(dim=1)[:, None] * video.norm(dim=1)[None, :] + 0.01)


def within_segment_permutations(segments):
    """Every column permutation that only moves columns inside their segment (``segments`` non-decreasing)."""
    groups = [[i for i, s in enumerate(segments) if s == g] for g in sorted(set(segments))]
    result = []
    for parts in itertools.product(*(itertools.permutations(g) for g in groups)):
        result.append([c for part in parts for c in part])
    return result


@pytest.mark.parametrize("metric, inner", [("dtw", True), ("otam", True), ("dtw", False)])
def test_alignlocal_loss_equals_hand_computation(metric, inner):
    """The oracle does not draw negatives: it enumerates every admissible set of 3 negatives (3 distinct
    reorderings of A, each with any within-segment column shuffle when ``inner``), computes each candidate's loss
    with plain loops, and the task's loss (float64) must equal one of them; over seeds, the drawn sets vary."""
    sample, video_seq, pooled_text = hand_batch()
    video_seq, pooled_text = video_seq.double(), pooled_text.double()
    task = align_task(metric, inner_shuffling=inner)
    model = FixedLocalizer(video_seq, pooled_text).train()
    # by hand: BCE over all 12 x 3 cells
    bce = F.binary_cross_entropy_with_logits(video_seq @ pooled_text.T, sample["targets"][0].double()).item()
    # labelled rows 2,3,4,5,6,8,9,10 with labels 1,1,1,0,0,0,2,2 (row 8: first marked step); n = min(8, 3 * 2) = 6
    # rows at floor(linspace(0, 7, 6)) = 0,1,2,4,5,7 -> window rows 2,3,4,6,8,10, labels 1,1,1,0,0,2
    # -> segments 0,0,0,1,1,2
    D = cos_dist(pooled_text, video_seq[[2, 3, 4, 6, 8, 10]]).tolist()
    A = (1, 0, 2)
    columns = within_segment_permutations([0, 0, 0, 1, 1, 2]) if inner else [list(range(6))]
    assert len(columns) == (12 if inner else 1)

    def cost(order, cols):
        grid = [[D[step][c] for c in cols] for step in order]
        if metric == "dtw":
            return dtw_cells(grid, GAMMA)
        return otam_cells(grid, GAMMA) + otam_cells([list(col) for col in zip(*grid)], GAMMA)

    positive = cost(A, list(range(6)))
    others = [o for o in itertools.permutations(A) if o != A]
    assert len(others) == 5
    exp_neg = {o: np.array([math.exp(-cost(o, cols)) for cols in columns]) for o in others}
    candidates = []
    for subset in itertools.combinations(others, 3):
        sums = sum(np.meshgrid(*(exp_neg[o] for o in subset), indexing="ij")).ravel()
        candidates.append(positive + np.log(math.exp(-positive) + sums))   # CE(logits = -cost, target 0)
    candidates = np.concatenate(candidates)
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        out = task(model, sample)
        align = out["align_loss"].item()
        gap = np.abs(candidates - align)
        assert gap.min() < 1e-9, (seed, align, gap.min())
        seen.add(round(align, 9))
        assert out["bce_loss"].item() == pytest.approx(bce, abs=1e-12)
        assert out["loss"].item() == pytest.approx(0.88 * bce + 0.12 * align, abs=1e-12)
    assert len(seen) > 3  # the negatives are drawn anew every call
    out["loss"].backward()
    assert model.pooled_text.grad.abs().sum() > 0 and model.video_seq.grad[[0, 1, 7, 11]].abs().sum() > 0


def test_alignlocal_eval_and_single_step_have_zero_align_loss():
    sample, video_seq, pooled_text = hand_batch()
    task = align_task(total_sample_size=32)
    model = FixedLocalizer(video_seq, pooled_text).eval()
    out = task(model, sample)
    assert out["align_loss"].item() == 0.0
    assert out["loss"].item() == pytest.approx(0.88 * out["bce_loss"].item(), rel=1e-6)
    model.train()
    one_step = {**sample, "sequence_targets": torch.tensor([[2, 2]])}        # |A| = 1
    assert task(model, one_step)["align_loss"].item() == 0.0
    assert task(model, sample)["align_loss"].item() > 0.0


def test_negative_orders_distinct_and_bounded():
    torch.manual_seed(0)
    many = negative_orders(torch.tensor([3, 1, 4, 0, 2]), 31)
    rows = [tuple(r) for r in many.tolist()]
    assert many.shape == (31, 5) and len(set(rows)) == 31 and (3, 1, 4, 0, 2) not in rows
    assert all(sorted(r) == [0, 1, 2, 3, 4] for r in rows)
    swap = negative_orders(torch.tensor([0, 1]), 31)               # one reordering exists: every negative is it
    assert swap.tolist() == [[1, 0]] * 31
    repeats = negative_orders(torch.tensor([0, 1, 0]), 31)         # two exist: both used, cycled
    assert {tuple(r) for r in repeats.tolist()} == {(1, 0, 0), (0, 0, 1)}
    assert count_distinct_orders([0, 1, 0, 1, 0, 1]) == 20 and count_distinct_orders([4, 2, 7, 1, 0]) == 120
    exact = negative_orders(torch.tensor([0, 1, 0, 1, 0, 1]), 19)  # exactly 19 others: each once
    assert len({tuple(r) for r in exact.tolist()}) == 19
    with pytest.raises(ValueError, match="two different steps"):
        negative_orders(torch.tensor([2, 2]), 3)


def test_inner_shuffle_stays_inside_segments():
    segments = torch.tensor([0, 0, 0, 1, 2, 2, 2, 2])
    columns = inner_shuffle_columns(segments, 50, generator=torch.Generator().manual_seed(0))
    assert columns.shape == (50, 8)
    for row in columns.tolist():
        assert sorted(row[:3]) == [0, 1, 2] and row[3] == 3 and sorted(row[4:]) == [4, 5, 6, 7]
    assert len({tuple(r) for r in columns.tolist()}) > 10


def test_alignlocal_config_errors():
    with pytest.raises(ValueError, match="alignment.metric"):
        AlignLocalTask(OmegaConf.create({"alignment": {"metric": "euclid"}}))
    with pytest.raises(ValueError, match="total_sample_size=1"):
        AlignLocalTask(OmegaConf.create({"alignment": {"total_sample_size": 1}}))
