"""The YouCook2 part of the demo: the writer (format, determinism, the records the processors must drop or clip),
the retrieval picture and its DTW path, and ``scripts/youcook_demo_report.py`` end to end on the small demo."""
from __future__ import annotations

import itertools
import json
import os
import pickle

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from conftest import ROOT, load_script  # noqa: E402
from tempclr.demo.world import World  # noqa: E402
from tempclr.demo.youcook import STOP_WORDS, strip_stop_words, write_youcook_set, youcook_video_id  # noqa: E402
from tempclr.evaluators.retrieval_plot import caption_average_scores, hard_dtw_path, plot_retrieval  # noqa: E402
from tempclr.modules.alignment import hard_dtw  # noqa: E402
from tempclr.processors.dsprocessor import YoucookFullVideoBGMetaProcessor, YoucookMetaProcessor  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def demo_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("youcook_demo") / "youcook"
    summary = write_youcook_set(World(0), str(out), seed=0, videos_per_task=3)
    return out, summary


def config(out, vocab_dir=None, **extra):
    return OmegaConf.create({"split": "test", "test_path": str(out / "youcook_val.pkl"),
                             "trainval_annotation": str(out / "youcookii_annotations_trainval.json"),
                             "vfeat_dir": str(out / "features"), "use_annotation_text": True, **extra})


def test_writer_format_and_ids(demo_set):
    out, summary = demo_set
    world = World(0)
    assert summary["videos"] == 24 and summary["missing_video"] == "demo_yc_0024"
    ids = sorted(p[:-4] for p in os.listdir(out / "features"))
    assert ids == [youcook_video_id(i) for i in range(24)] and all(len(v) == len("demo_yc_0000") for v in ids)
    database = json.loads((out / "youcookii_annotations_trainval.json").read_text())["database"]
    assert sorted(database) == ids + ["demo_yc_0024"]
    with open(out / "youcook_val.pkl", "rb") as f:
        records = pickle.load(f)
    assert len(records) == summary["records"] == sum(len(v["annotations"]) for v in database.values())
    for video_id, entry in database.items():
        task = world.task(entry["recipe_type"])
        for k, annotation in enumerate(entry["annotations"]):
            assert annotation["id"] == k
            assert annotation["sentence"] in {step.phrase for step in task.steps}
    by_id = {r["id"]: r["caption"] for r in records}
    sentence = database["demo_yc_0005"]["annotations"][0]["sentence"]
    assert by_id["demo_yc_0005_0"] == strip_stop_words(sentence)
    assert not set(by_id["demo_yc_0005_0"].split()) & STOP_WORDS
    truth = summary["truth"]["demo_yc_0000"]
    features = np.load(out / "features" / "demo_yc_0000.npy")
    assert features.dtype == np.float16 and features.shape == (truth["seconds"], 512)
    segments = [a["segment"] for a in database["demo_yc_0000"]["annotations"]]
    assert segments[:-1] == [s[1:] for s in truth["steps"][:-1]]
    assert segments[-1] == [truth["steps"][-1][1], truth["seconds"] + 3]    # runs 3 s past the features


def test_writer_is_deterministic_and_refuses_foreign_folders(demo_set, tmp_path):
    out, _ = demo_set
    again = tmp_path / "again"
    write_youcook_set(World(0), str(again), seed=0, videos_per_task=3)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == sorted(str(p.relative_to(again)) for p in again.rglob("*") if p.is_file())
    assert [f for f in files if (out / f).read_bytes() != (again / f).read_bytes()] == []
    other = tmp_path / "other"
    write_youcook_set(World(0), str(other), seed=1, videos_per_task=3)
    name = "features/demo_yc_0000.npy"
    assert (other / name).read_bytes() != (out / name).read_bytes()
    write_youcook_set(World(0), str(again), seed=0, videos_per_task=1)     # a demo set is replaced
    assert len(os.listdir(again / "features")) == 8
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("x")
    with pytest.raises(FileExistsError, match="is not a demo YouCook2 set"):
        write_youcook_set(World(0), str(foreign))


def test_processors_drop_the_missing_video_and_clip_the_long_segment(demo_set, vocab_dir, capsys):
    out, summary = demo_set
    meta = YoucookMetaProcessor(config(out, bert_name=vocab_dir))
    printed = capsys.readouterr().out
    n_missing = summary["records"] - len(meta)          # every record of the video without features
    with open(out / "youcook_val.pkl", "rb") as f:
        assert n_missing == sum(r["id"].startswith("demo_yc_0024_") for r in pickle.load(f)) > 0
    assert f"{n_missing} record(s) dropped: their video has no feature file" in printed
    assert "1 record(s) clipped: their segment ends after the video's features" in printed
    assert "(first: demo_yc_0000_" in printed
    truth = summary["truth"]["demo_yc_0000"]
    last = [meta[i][0] for i in range(len(meta)) if meta[i][0][0] == "demo_yc_0000"][-1]
    assert last == ("demo_yc_0000", truth["steps"][-1][1], truth["seconds"])
    # the features of each clip carry its step: the clip's mean is closest to its own step's prototype
    world = World(0)
    features = np.load(out / "features" / "demo_yc_0001.npy").astype(np.float32)
    task = world.task(summary["truth"]["demo_yc_0001"]["task"])
    for step, start, end in summary["truth"]["demo_yc_0001"]["steps"]:
        similarity = world.prototypes @ features[start:end].mean(axis=0)
        assert int(np.argmax(similarity)) == task.steps[step].proto
    bg = YoucookFullVideoBGMetaProcessor(config(out, bert_name=vocab_dir))
    assert bg.data == [youcook_video_id(i) for i in range(24)]


# ------------------------------------------------------------------------------------------ the picture


def brute_force_dtw(distance: np.ndarray) -> float:
    """Min over every monotone path from (0, 0) to (L-1, M-1) with down/right/diagonal moves (enumerated)."""
    rows, cols = distance.shape
    best = np.inf
    for moves in itertools.product(((1, 0), (0, 1), (1, 1)), repeat=rows + cols - 2):
        i = j = 0
        cost = distance[0, 0]
        for di, dj in moves:
            if (i, j) == (rows - 1, cols - 1):
                break
            i, j = i + di, j + dj
            if i >= rows or j >= cols:
                cost = np.inf
                break
            cost += distance[i, j]
        if (i, j) == (rows - 1, cols - 1):
            best = min(best, cost)
    return best


@pytest.mark.parametrize("shape,seed", [((3, 4), 0), ((4, 3), 1), ((1, 5), 2), ((4, 4), 3)])
def test_hard_dtw_path_is_the_cheapest_monotone_path(shape, seed):
    distance = np.random.default_rng(seed).random(shape)
    path = hard_dtw_path(distance)
    assert path[0] == (0, 0) and path[-1] == (shape[0] - 1, shape[1] - 1)
    for (i, j), (k, m) in zip(path, path[1:]):
        assert (k - i, m - j) in {(1, 0), (0, 1), (1, 1)}
    cost = sum(distance[i, j] for i, j in path)
    assert cost == pytest.approx(brute_force_dtw(distance), abs=1e-12)
    assert cost == pytest.approx(float(hard_dtw(torch.from_numpy(distance))), abs=1e-12)


def test_hard_dtw_path_by_hand_and_bad_grids():
    distance = np.array([[0, 5, 5, 5], [5, 0, 0, 5], [5, 5, 5, 0.0]])
    assert hard_dtw_path(distance) == [(0, 0), (1, 1), (1, 2), (2, 3)]
    with pytest.raises(ValueError, match="holds NaN or inf; the path is undefined"):
        hard_dtw_path(np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match=r"must be a non-empty \[L, M\] grid, got shape \(0, 3\)"):
        hard_dtw_path(np.zeros((0, 3)))


def test_caption_average_scores_by_hand():
    outputs = np.array([[1.0, 3.0, 2.0, 0.0],     # caption 0 (of video a) against clips a, b, a, c
                        [0.0, 1.0, 4.0, 2.0],     # caption 1 (of video a)
                        [9.0, 9.0, 9.0, 9.0]])    # caption 2 (of video b): not a row of the query
    scores = caption_average_scores(outputs, [0, 1], ["a", "b", "a", "c"])
    assert scores == {"a": (2.0 + 4.0) / 2, "b": (3.0 + 1.0) / 2, "c": (0.0 + 2.0) / 2}


def test_retrieval_png_is_written_and_valid(tmp_path):
    distance = np.random.default_rng(0).random((3, 5))
    path = hard_dtw_path(distance)
    out = plot_retrieval("vid_a", [("vid_b", 2.5), ("vid_a", 2.0), ("vid_c", 1.0)], distance, path,
                         ["crack the eggs", "whisk", "pour"], ["0-4", "4-9", "9-12", "12-20", "20-31"],
                         str(tmp_path / "pictures" / "r.png"), "test")
    assert out == str(tmp_path / "pictures" / "r.png")
    with open(out, "rb") as f:
        assert f.read(8) == PNG_MAGIC
    import matplotlib.image
    image = matplotlib.image.imread(out)
    assert image.shape[0] > 200 and image.shape[1] > 400 and np.ptp(image) > 0
    assert os.listdir(tmp_path / "pictures") == ["r.png"]          # no temp file left behind
    with pytest.raises(ValueError, match=r"distance \(3, 5\) must be \[len\(row_labels\), len\(col_labels\)\]"):
        plot_retrieval("a", [("a", 1.0)], distance, path, ["x"], ["y"], str(tmp_path / "x.png"))


# ------------------------------------------------------------------------------------------ the report script


@pytest.mark.slow  # evaluates two models with three configs on the small demo (about 10 s)
def test_report_compares_trained_untrained_and_chance_and_draws_the_picture(small_demo, tmp_path, capsys):
    configs = {}
    for name in ("test_youcook_zs", "test_youcook_fullvideo_zs", "test_youcook_fullvideo_bg_zs"):
        path = tmp_path / f"{name}.yaml"
        path.write_text(f"""includes: {os.path.join(ROOT, 'configs', 'demo', name + '.yaml')}
dataset:
  bert_name: {small_demo}/bert
  test_path: {small_demo}/youcook/youcook_val.pkl
  trainval_annotation: {small_demo}/youcook/youcookii_annotations_trainval.json
  vfeat_dir: {small_demo}/youcook/features
fairseq:
  common_eval:
    path: {tmp_path}/trained/checkpoint_best.pt
eval:
  save_path: {tmp_path}/{name}/eval
""")
        configs[name] = str(path)
    report = load_script("youcook_demo_report")
    from tempclr.tasks.task import Task
    from tempclr.utils.load_config import load_config
    torch.manual_seed(7)   # a second random model stands in for the trained one
    model = Task.config_task(load_config(config_file=configs["test_youcook_zs"])).build_model()
    report.save_untrained_checkpoint(model, str(tmp_path / "trained" / "checkpoint_best.pt"))
    out = tmp_path / "report"
    assert report.main(["--config", configs["test_youcook_zs"], "--fullvideo-config",
                        configs["test_youcook_fullvideo_zs"], "--bg-config", configs["test_youcook_fullvideo_bg_zs"],
                        "--out", str(out), "--query", "demo_yc_0003"]) == 0
    printed = capsys.readouterr().out
    saved = json.loads((out / "report.json").read_text())
    n_clips = saved["clips"]
    assert saved["videos"] == 16
    clip_rows = {row["metric"]: row for row in saved["table"] if row["block"] == "clip"}
    assert set(clip_rows) == {"R1", "R5", "R10", "MR"}
    assert clip_rows["R1"]["chance"] == pytest.approx(1 / n_clips)
    assert clip_rows["MR"]["chance"] == pytest.approx((n_clips + 1) / 2)
    assert clip_rows["R1"]["untrained"] == saved["blocks"]["clip"]["metrics"]["untrained"]["R1"]
    assert 0 < clip_rows["R1"]["ceiling"] < 1 and clip_rows["R10"]["ceiling"] == 1.0
    assert "clip R1" in printed and "untrained  pretrained   chance  ceiling" in printed
    picture = out / "retrieval_demo_yc_0003.png"
    assert saved["picture"]["path"] == str(picture) and len(saved["picture"]["top"]) == 5
    with open(picture, "rb") as f:
        assert f.read(8) == PNG_MAGIC
    assert sorted(os.listdir(tmp_path / "test_youcook_zs" / "eval")) == ["clip_pretrained.npy", "clip_untrained.npy"]
