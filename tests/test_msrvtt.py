"""MSR-VTT retrieval and MSR-VTT QA: the processors on hand-written files in the original formats (malformed rows
included), the T2V/V2T losses, QAPredictor with a real model, the demo writer, and the zero-shot demo configs end
to end through the launcher's predict command."""
from __future__ import annotations

import json
import os
import shlex
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from conftest import ROOT
from tempclr.demo.msrvtt import write_msrvtt_set
from tempclr.demo.world import World
from tempclr.losses.nce import T2VContraLoss, V2TContraLoss
from tempclr.processors.dsprocessor import (MSRVTTMetaProcessor, MSRVTTQAAligner, MSRVTTQAMetaProcessor,
                                            MSRVTTQATextProcessor, MSRVTTTextProcessor)

JSFUSION = "key,vid_key,video_id,sentence\nret0,msr0,video0,crack the eggs\nret1,msr1,video1,NA\n" \
           "ret2,msr2,video2,whisk the milk\n"
TRAIN = "video_id\nvideo3\nvideo4\n"
FULL_TEST = "video_id\nvideo0\nvideo1\nvideo2\nvideo5\nvideo6\n"
DATA = {"videos": [], "sentences": [{"video_id": v, "caption": c} for v, c in
                                     [("video3", "pour batter"), ("video3", "flip pancake"), ("video4", "serve"),
                                      ("video5", "add flour"), ("video6", "whisk eggs")]]}
QA = ("vid_key\ta1\ta2\ta3\ta4\ta5\tanswer\n"
      "msr0\tNA\tcrack the eggs\tpour batter\tserve\tflip\t1\n"
      "msr1\twhisk\tserve\tserve\tflour\tmilk\t2\n"
      "msr9\ta\tb\tc\td\te\t0\n")


@pytest.fixture
def files(tmp_path):
    features = tmp_path / "features"
    features.mkdir()
    for k in (0, 1, 3, 4, 5, 6):          # video2 and video9 have no features
        np.save(features / f"video{k}.npy", np.full((5 + k, 8), k, dtype=np.float16))
    for name, text in (("test.csv", JSFUSION), ("train.csv", TRAIN), ("full.csv", FULL_TEST), ("qa.csv", QA)):
        (tmp_path / name).write_text(text)
    (tmp_path / "data.json").write_text(json.dumps(DATA))
    return tmp_path


def config(files, vocab_dir, split="test", **extra):
    return OmegaConf.create({"split": split, "test_path": str(files / "test.csv"),
                             "train_path": str(files / "train.csv"), "vfeat_dir": str(files / "features"),
                             "bert_name": vocab_dir, **extra})


def test_test_csv_gives_sentences_keeps_na_and_drops_videos_without_features(files, vocab_dir, capsys):
    meta = MSRVTTMetaProcessor(config(files, vocab_dir))
    assert [meta[i] for i in range(len(meta))] == [("video0", "crack the eggs"), ("video1", "NA")]
    assert capsys.readouterr().out == (f"MSRVTTMetaProcessor: 1 row(s) of {files / 'test.csv'} dropped: 1 video(s) "
                                       f"have no feature file in {files / 'features'} (first: video2)\n")
    text = MSRVTTTextProcessor(config(files, vocab_dir, json_path=str(files / "data.json")))
    assert text("crack the eggs") == text.tokenizer("crack the eggs", add_special_tokens=False)["input_ids"]


def test_train_split_adds_full_test_videos_repeats_and_draws_captions(files, vocab_dir, capsys):
    cfg = config(files, vocab_dir, "train", jsfusion_path=str(files / "test.csv"),
                 full_test_path=str(files / "full.csv"), dup=2, json_path=str(files / "data.json"))
    meta = MSRVTTMetaProcessor(cfg)
    once = [("video3", "video3"), ("video4", "video4"), ("video5", "video5"), ("video6", "video6")]
    assert meta.data == once * 2
    assert "2 video(s) of" in capsys.readouterr().out
    text = MSRVTTTextProcessor(cfg)
    tokenize = text.tokenizer
    drawn = {tuple(text("video3")) for _ in range(40)}
    assert drawn == {tuple(tokenize(c, add_special_tokens=False)["input_ids"]) for c in ("pour batter", "flip pancake")}
    with pytest.raises(ValueError, match=r"train.csv has no 'sentence' column, so its captions come from "
                                         r"dataset.json_path"):
        MSRVTTMetaProcessor(config(files, vocab_dir, "train"))
    with pytest.raises(ValueError, match="go together"):
        MSRVTTMetaProcessor(config(files, vocab_dir, "train", full_test_path=str(files / "full.csv")))
    with pytest.raises(ValueError, match="dup=0 must be >= 1"):
        MSRVTTMetaProcessor(config(files, vocab_dir, "train", dup=0, json_path=str(files / "data.json")))


def test_malformed_msrvtt_files_name_the_file_and_the_row(files, vocab_dir):
    def meta(text, split="test", **extra):
        (files / "bad.csv").write_text(text)
        key = {"test": "test_path", "train": "train_path"}[split]
        return MSRVTTMetaProcessor(config(files, vocab_dir, split, **{key: str(files / "bad.csv")}, **extra))

    bad = str(files / "bad.csv")
    with pytest.raises(ValueError, match=rf"{bad}: the header \['vid', 'sentence'\] lacks the column\(s\) video_id"):
        meta("vid,sentence\nvideo0,x\n")
    with pytest.raises(ValueError, match=rf"{bad}, row 3: 2 fields for the 4 columns"):
        meta("key,vid_key,video_id,sentence\nret0,msr0,video0,x\nret1,msr1\n")
    with pytest.raises(ValueError, match=rf"{bad}, row 2: empty video_id; fix the row"):
        meta("video_id,sentence\n,x\n")
    with pytest.raises(ValueError, match=rf"{bad}, row 2: empty sentence"):
        meta("video_id,sentence\nvideo0,\n")
    with pytest.raises(ValueError, match=rf"{bad}, row 2: video_id '../video0' holds a path separator"):
        meta("video_id,sentence\n../video0,x\n")
    with pytest.raises(ValueError, match=rf"{bad}: the file is empty"):
        meta("")
    with pytest.raises(ValueError, match=rf"no row of {bad} has a feature file"):
        meta("video_id,sentence\nvideo2,x\n")
    with pytest.raises(FileNotFoundError, match=r"\(dataset.test_path\) does not exist"):
        MSRVTTMetaProcessor(config(files, vocab_dir, test_path=str(files / "nope.csv")))
    with pytest.raises(ValueError, match=r"has no caption for 1 training video\(s\) \(first: video4\)"):
        (files / "few.json").write_text(json.dumps({"sentences": DATA["sentences"][:2]}))
        meta(TRAIN, "train", json_path=str(files / "few.json"))
    with pytest.raises(ValueError, match=r"sentences\[0\] is"):
        (files / "bad.json").write_text(json.dumps({"sentences": [{"video_id": "video3"}]}))
        meta(TRAIN, "train", json_path=str(files / "bad.json"))


def qa_config(files, vocab_dir, **extra):
    return config(files, vocab_dir, test_path=str(files / "qa.csv"), **extra)


def test_qa_meta_text_and_aligner(files, vocab_dir, capsys):
    meta = MSRVTTQAMetaProcessor(qa_config(files, vocab_dir))
    assert meta.data == [("video0", (1, ["NA", "crack the eggs", "pour batter", "serve", "flip"])),
                         ("video1", (2, ["whisk", "serve", "serve", "flour", "milk"]))]
    assert "1 row(s) of" in (printed := capsys.readouterr().out) and "(first: video9)" in printed
    text = MSRVTTQATextProcessor(qa_config(files, vocab_dir))
    answer, tokens = text(meta[0][1])
    assert answer == 1 and tokens[1] == text.tokenizer("crack the eggs", add_special_tokens=False)["input_ids"]
    assert meta[0][1][1][0] == "NA"       # the item is not modified in place (the original tokenized it there)
    assert text((answer, tokens)) == (answer, tokens)
    aligner = MSRVTTQAAligner(qa_config(files, vocab_dir, max_video_len=4, max_len=12))
    features = np.load(files / "features" / "video0.npy")
    item = aligner("video0", features, (answer, tokens))
    assert item["caps"].shape == (5, 8) and item["cmasks"].shape == (5, 8) and item["vfeats"].shape == (4, 8)
    assert item["answers"].tolist() == [1] and item["vmasks"].tolist() == [True] * 4
    assert item["caps"][1, :2].tolist() == [aligner.cls_token_id, aligner.sep_token_id]
    assert item["caps"][1, 2:2 + len(tokens[1])].tolist() == tokens[1]


@pytest.mark.parametrize("row,message", [
    ("video0\ta\tb\tc\td\te\t0", r"vid_key 'video0' is not 'msr<number>'"),
    ("msr0\ta\tb\tc\td\te\t5", r"answer '5' is not a candidate index 0..4"),
    ("msr0\ta\tb\tc\td\te\tNA", r"answer 'NA' is not a candidate index"),
    ("msr0\ta\t\tc\td\te\t1", r"empty a2; fix the row"),
    ("msr0\ta\tb\tc\td\t1", r"6 fields for the 7 columns"),
])
def test_malformed_qa_rows_name_the_file_and_the_row(files, vocab_dir, row, message):
    (files / "bad.csv").write_text(QA.splitlines()[0] + "\n" + row + "\n")
    with pytest.raises(ValueError, match=rf"{files / 'bad.csv'}, row 2: {message}"):
        MSRVTTQAMetaProcessor(config(files, vocab_dir, test_path=str(files / "bad.csv")))
    (files / "comma.csv").write_text(QA.replace("\t", ","))
    with pytest.raises(ValueError, match=r"lacks the column\(s\) vid_key, a1, .* \(fields separated by tab\)"):
        MSRVTTQAMetaProcessor(config(files, vocab_dir, test_path=str(files / "comma.csv")))


def test_t2v_and_v2t_losses_match_a_plain_computation():
    torch.manual_seed(0)
    video, text = torch.randn(6, 4), torch.randn(6, 4)

    def direction(queries, keys):
        total = 0.0
        for i in range(len(queries)):
            logits = [float(queries[i] @ keys[j]) for j in range(len(keys))]
            top = max(logits)
            total += -(logits[i] - top - np.log(sum(np.exp(v - top) for v in logits)))
        return total / len(queries)

    assert float(T2VContraLoss()(video, text)) == pytest.approx(direction(text, video), rel=1e-5)
    assert float(V2TContraLoss()(pooled_video=video, pooled_text=text)) == pytest.approx(direction(video, text),
                                                                                          rel=1e-5)
    assert float(T2VContraLoss()(video, text)) != pytest.approx(float(V2TContraLoss()(video, text)))
    assert float(V2TContraLoss()(video, text)) == pytest.approx(float(F.cross_entropy(video @ text.t(),
                                                                                      torch.arange(6))))


# ------------------------------------------------------------------------------------------------ demo, end to end


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("msrvtt_demo") / "msrvtt"
    return out, write_msrvtt_set(World(0), str(out), seed=0, train_per_task=2, test_per_task=2)


def test_demo_writer_edge_cases_and_determinism(demo, tmp_path, vocab_dir):
    out, summary = demo
    assert summary["test_videos"] == 16 and summary["questions"] == 17
    rows = (out / "MSR_MC_test.csv").read_text().splitlines()
    fields = {row.split("\t")[0]: row.split("\t") for row in rows[1:]}
    na = fields["msr" + summary["na_question"][5:]]
    assert "NA" in na[1:6]
    repeated = fields["msr" + summary["repeated_answer_question"][5:]]
    answer = int(repeated[6])
    assert repeated[1 + answer] in repeated[1:1 + answer]          # the answer's text sits earlier too
    assert not (out / "features" / f"{summary['missing_video']}.npy").exists()
    again = tmp_path / "again"
    write_msrvtt_set(World(0), str(again), seed=0, train_per_task=2, test_per_task=2)
    for path in out.rglob("*"):
        if path.is_file():
            assert path.read_bytes() == (again / path.relative_to(out)).read_bytes(), path
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "x").write_text("x")
    with pytest.raises(FileExistsError, match="not a demo MSR-VTT set"):
        write_msrvtt_set(World(0), str(foreign))


def demo_config(tmp_path, small_demo, out, name, checkpoint):
    test = {"test_vtt_zs": "MSRVTT_JSFUSION_test.csv", "test_vttqa_zs": "MSR_MC_test.csv"}[name]
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"""includes: {ROOT}/configs/demo/{name}.yaml
dataset:
  bert_name: {small_demo}/bert
  test_path: {out}/{test}
  vfeat_dir: {out}/features
fairseq:
  common_eval:
    path: {checkpoint}
eval:
  save_path: {tmp_path / name / 'eval'}
""")
    return str(path)


def save_random_checkpoint(config_path, checkpoint):
    from tempclr.tasks.task import Task
    from tempclr.utils.load_config import load_config

    torch.manual_seed(0)
    model = Task.config_task(load_config(config_file=config_path)).build_model()
    os.makedirs(os.path.dirname(checkpoint), exist_ok=True)
    torch.save({"model": model.state_dict()}, checkpoint)


@pytest.mark.parametrize("name,line", [("test_vtt_zs", "R@1: "), ("test_vttqa_zs", "acc: ")])
def test_demo_zero_shot_configs_end_to_end(demo, small_demo, tmp_path, capsys, monkeypatch, name, line):
    """locallaunch.py's predict command for the demo config, run in this process (a new process costs ~8 s of
    imports): drops the video without features by name, prints the metrics, saves the predictions."""
    from tempclr_cli import predict
    from tempclr_cli.localjob import LocalJob
    from tempclr.evaluators.evaluator import Evaluator
    from tempclr.utils.load_config import load_config

    out, summary = demo
    checkpoint = tmp_path / "ckpt" / "checkpoint_best.pt"
    path = demo_config(tmp_path, small_demo, out, name, checkpoint)
    save_random_checkpoint(path, str(checkpoint))
    monkeypatch.chdir(ROOT)
    command = LocalJob(path, None, dryrun=True).command()
    assert " ".join(map(shlex.quote, command)) == f"{shlex.quote(sys.executable)} tempclr_cli/predict.py {path}"
    assert predict.main(command[2:]) == 0
    printed = capsys.readouterr().out
    assert f"dropped: 1 video(s) have no feature file in {out}/features (first: {summary['missing_video']})" in printed
    metrics = [row for row in printed.splitlines() if row.startswith(line)]
    assert len(metrics) == 1
    saved = Evaluator(load_config(config_file=path))()["results"]   # re-scored from the saved predictions
    if name == "test_vttqa_zs":
        assert metrics[0] == "acc: {:.4f}".format(saved["acc"])
        assert sorted(os.listdir(tmp_path / name / "eval")) == ["merged.pkl"]
    else:
        assert metrics[0].startswith("R@1: {:.4f}".format(saved["R1"]))
        assert sorted(os.listdir(tmp_path / name / "eval")) == ["merged.npy"]


def test_qa_predictor_scores_each_candidate_against_its_video(demo, small_demo, tmp_path):
    from torch.utils.data import DataLoader

    from tempclr.evaluators.qa import QAPredictor
    from tempclr.tasks.task import Task
    from tempclr.utils.load_config import load_config

    out, summary = demo
    checkpoint = tmp_path / "ckpt" / "checkpoint_best.pt"
    path = demo_config(tmp_path, small_demo, out, "test_vttqa_zs", checkpoint)
    config = load_config(config_file=path)
    task = Task.config_task(config)
    task.build_dataset()
    model = task.build_model().eval()
    loader = DataLoader(task.test_data, batch_size=3, collate_fn=task.test_data.collater)
    result = QAPredictor(config).predict_loop(model, loader, output_file=None)
    n = len(task.test_data)
    assert result["outputs"].shape == (n, 5) and result["targets"].shape == (n,) and len(result["candidates"]) == n
    item = task.test_data[4]
    with torch.no_grad():
        caps = torch.from_numpy(item["caps"])
        text = model.forward_text(caps, torch.from_numpy(item["cmasks"]))
        video = model.forward_video(torch.from_numpy(item["vfeats"])[None], torch.from_numpy(item["vmasks"])[None],
                                    caps[:1], torch.from_numpy(item["cmasks"])[:1])
    np.testing.assert_allclose(result["outputs"][4], (text @ video[0]).numpy(), rtol=1e-4, atol=1e-5)
    assert result["targets"][4] == item["answers"][0]
    repeated = next(i for i in range(n) if task.test_data.meta_processor[i][0] == summary["repeated_answer_question"])
    groups = [tuple(c) for c in result["candidates"][repeated]]
    assert len(set(groups)) == 4          # the answer's text twice


# ------------------------------------------------------------------------------------------------ MMPT signatures

MMPT_PARAMETERS = {
    ("QAMetric", "__init__"): ["config", "metric_names"],
    ("QAMetric", "compute_metrics"): ["outputs", "targets", "kwargs"],
    ("QAPredictor", "__init__"): ["config"],
    ("QAPredictor", "predict_loop"): ["model", "eval_dataloader", "output_file"],
    ("QAPredictor", "__call__"): ["sample"],
    ("QAPredictor", "finalize"): ["output_file"],
    ("MSRVTTQAAligner", "__call__"): ["video_id", "video_feature", "text_feature", "wps"],
    ("MSRVTTTextProcessor", "__call__"): ["text_id"],
    ("MSRVTTQATextProcessor", "__call__"): ["text_ans"],
    ("MSRVTTMetaProcessor", "__getitem__"): ["idx"],
    ("T2VContraLoss", "__call__"): ["pooled_video", "pooled_text", "kwargs"],
    ("V2TContraLoss", "__call__"): ["pooled_video", "pooled_text", "kwargs"],
}


@pytest.mark.parametrize("cls, method", list(MMPT_PARAMETERS), ids=[f"{c}.{m}" for c, m in MMPT_PARAMETERS])
def test_mmpt_module_paths_and_parameters(cls, method):
    """The classes import from MMPT's module paths and keep the original's parameters (optional ones may follow)."""
    import importlib
    import inspect

    module = {"QAMetric": "tempclr.evaluators.metric", "QAPredictor": "tempclr.evaluators.predictor",
              "T2VContraLoss": "tempclr.losses.nce", "V2TContraLoss": "tempclr.losses.nce"}.get(
                  cls, "tempclr.processors.dsprocessor")
    parameters = [p for p in inspect.signature(getattr(getattr(importlib.import_module(module), cls), method))
                  .parameters.values() if p.name != "self"]
    expected = [n for n in MMPT_PARAMETERS[(cls, method)] if n != "kwargs"]
    assert [p.name for p in parameters][:len(expected)] == expected
    if "kwargs" in MMPT_PARAMETERS[(cls, method)]:
        assert parameters[-1].kind is inspect.Parameter.VAR_KEYWORD
    assert all(p.default is not inspect.Parameter.empty or p.kind is inspect.Parameter.VAR_KEYWORD
               for p in parameters[len(expected):])


def test_make_demo_msrvtt_script_writes_the_set(tmp_path, capsys):
    from conftest import load_script

    load_script("make_demo_msrvtt").main(["--out", str(tmp_path / "msrvtt")])
    summary = json.loads((tmp_path / "msrvtt" / "demo_msrvtt.json").read_text())
    assert summary["test_videos"] == 24 and summary["train_videos"] == 48 and summary["extra_videos"] == 8
    assert f"demo MSR-VTT set in {tmp_path / 'msrvtt'}" in capsys.readouterr().out
    assert len(os.listdir(tmp_path / "msrvtt" / "features")) == 80
