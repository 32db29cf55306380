"""The public methods research code written for MMPT / TempCLR calls keep the original's parameter names and
order, and work when called the way the original's callers call them (positionally, or with the predictor's
output dict unpacked into the metric)."""
import inspect
import os
import pickle

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from test_model import CAPS_LEN, make_batch, run_config, tiny_bert_config
from test_model import bert_dir  # noqa: F401  (the tiny BERT folder fixture)
from transformers import AutoTokenizer

from tempclr.evaluators import (COINActionSegmentationMetric, COINPredictor, COINZSPredictor, CrossTaskMetric,
                                CrossTaskPredictor, DiDeMoMetric, DiDeMoPredictor, Evaluator, Metric, Predictor,
                                RetrievalMetric)
from tempclr.models import MMFusionSeparate, MMFusionSeparateActionLocalization, MMFusionSeparateActionSegmentation
from tempclr.processors import (COINActionSegmentationAligner, COINActionSegmentationMetaProcessor,
                                DiDeMoAligner, DiDeMoTextProcessor)
from tempclr.tasks import AlignLocalTask, AlignRetriTask, RetriTask, Task, VideoRetriTask

# (class, method) -> the original's parameters after self, in order; we may add keyword parameters at the end
ORIGINAL = {
    (Metric, "__init__"): ["config", "metric_names"],
    (Metric, "best_metric"): ["metric"],
    (Metric, "save_metrics"): ["fn", "metrics"],
    (Metric, "print_computed_metrics"): ["metrics"],
    (RetrievalMetric, "__init__"): ["config", "metric_names"],
    (RetrievalMetric, "compute_metrics"): ["outputs", "texts", "kwargs"],
    (CrossTaskMetric, "__init__"): ["config", "metric_names"],
    (CrossTaskMetric, "compute_metrics"): ["outputs", "targets", "kwargs"],
    (Predictor, "__init__"): ["config"],
    (Predictor, "__call__"): ["outputs"],
    (Predictor, "predict_loop"): ["model", "eval_dataloader", "output_file"],
    (Predictor, "finalize"): ["output_file"],
    (Predictor, "to_ctx"): ["data", "ctx", "dtype"],
    (CrossTaskPredictor, "predict_loop"): ["model", "eval_dataloader", "output_file"],
    (CrossTaskPredictor, "__call__"): ["sample", "model", "Y_pred", "Y_true"],
    (CrossTaskPredictor, "finalize"): ["Y_pred", "Y_true", "output_file"],
    (CrossTaskPredictor, "_read_assignment"): ["T", "K", "path"],
    (Evaluator, "__init__"): ["config", "eval_dataloader"],
    (Evaluator, "__call__"): [],
    (Evaluator, "evaluate"): ["model", "eval_dataloader", "output_file"],
    (Task, "config_task"): ["config"],
    (Task, "__init__"): ["config"],
    (Task, "build_dataset"): [],
    (Task, "build_model"): ["checkpoint"],
    (Task, "load_checkpoint"): ["checkpoint"],
    (Task, "_trim_state_dict"): ["state_dict"],
    (Task, "build_loss"): [],
    (Task, "flat_subsample"): ["tensor"],
    (Task, "reshape_subsample"): ["sample"],
    (Task, "__call__"): ["model", "sample"],
    (RetriTask, "retrive_candidates"): ["epoch", "model"],
    (VideoRetriTask, "reshape_subsample"): ["sample"],
    (AlignRetriTask, "__call__"): ["model", "sample"],
    (AlignLocalTask, "__call__"): ["model", "sample"],
    (MMFusionSeparate, "forward"): ["caps", "cmasks", "vfeats", "vmasks", "attention_mask", "video_label",
                                    "text_label", "output_hidden_states", "kwargs"],
    (MMFusionSeparate, "forward_video"): ["vfeats", "vmasks", "caps", "cmasks", "output_hidden_states", "kwargs"],
    (MMFusionSeparate, "forward_text"): ["caps", "cmasks", "output_hidden_states", "kwargs"],
    (MMFusionSeparateActionLocalization, "forward"): ["caps", "cmasks", "vfeats", "vmasks", "kwargs"],
    (MMFusionSeparateActionSegmentation, "forward"): ["caps", "cmasks", "vfeats", "vmasks", "attention_mask",
                                                      "kwargs"],
    (COINActionSegmentationMetric, "__init__"): ["config", "metric_name"],
    (COINActionSegmentationMetric, "compute_metrics"): ["outputs", "targets"],
    (COINPredictor, "predict_loop"): ["model", "eval_dataloader", "output_file"],
    (COINPredictor, "__call__"): ["sample", "model", "Y_pred", "Y_true"],
    (COINPredictor, "finalize"): ["Y_pred", "Y_true", "output_file"],
    (COINZSPredictor, "predict_loop"): ["model", "eval_dataloader", "output_file"],
    (COINZSPredictor, "__call__"): ["sample", "label_hidden_states", "model", "lbd", "Y_pred", "Y_true"],
    (COINZSPredictor, "reshape_subsample"): ["sample"],
    (COINZSPredictor, "flat_subsample"): ["tensor"],
    (COINActionSegmentationMetaProcessor, "meta_text_labels"): ["config"],
    (COINActionSegmentationAligner, "__call__"): ["video_id", "video_feature", "text_feature"],
    (DiDeMoMetric, "__init__"): ["config", "metric_names"],
    (DiDeMoMetric, "compute_metrics"): ["outputs", "targets", "kwargs"],
    (DiDeMoPredictor, "predict_loop"): ["model", "eval_dataloader", "output_file"],
    (DiDeMoPredictor, "__call__"): ["sample"],
    (DiDeMoPredictor, "finalize"): ["output_file"],
    (DiDeMoPredictor, "_aggregate_scores"): ["scores"],
    (DiDeMoTextProcessor, "__call__"): ["text"],
    (DiDeMoAligner, "__call__"): ["video_id", "video_feature", "text_feature"],
}


@pytest.mark.parametrize("cls, method", list(ORIGINAL), ids=[f"{c.__name__}.{m}" for c, m in ORIGINAL])
def test_parameters_match_the_original(cls, method):
    parameters = [p for p in inspect.signature(getattr(cls, method)).parameters.values() if p.name not in ("self",
                                                                                                             "cls")]
    names = [p.name for p in parameters]
    expected = ORIGINAL[(cls, method)]
    expected_positional = [n for n in expected if n != "kwargs"]
    assert names[:len(expected_positional)] == expected_positional, names
    if "kwargs" in expected:
        assert parameters[-1].kind is inspect.Parameter.VAR_KEYWORD, names
    extra = parameters[len(expected_positional):]
    assert all(p.default is not inspect.Parameter.empty or p.kind is inspect.Parameter.VAR_KEYWORD for p in extra), \
        f"{cls.__name__}.{method}: added parameters must be optional: {names}"


def test_metrics_called_as_the_original_callers_do(capsys):
    scores = np.array([[3.0, 1.0], [0.0, 2.0]])
    assert RetrievalMetric(None).compute_metrics(scores, ["a cat", "a dog"]) == \
        {"R1": 1.0, "R5": 1.0, "R10": 1.0, "MR": 1.0}
    assert RetrievalMetric(None, metric_names=["R5", "R1"]).best_metric({"R1": 0.25, "R5": 0.5}) == 0.5
    y_pred = {"t": {"v": np.array([[1, 0], [0, 1]], np.float32)}}
    y_true = {"t": {"v": np.array([[1, 1], [1, 0]], np.uint8)}}  # step 1 true at t=0, predicted at t=1
    metric = CrossTaskMetric(None)
    assert metric.compute_metrics(y_pred, y_true) == {"t": 0.5, "recall": 0.5}           # positional
    assert metric.compute_metrics(**{"outputs": y_pred, "targets": y_true}) == {"t": 0.5, "recall": 0.5}


class MeanPredictor(Predictor):
    """A predictor written against the original base class: ``__call__(outputs)`` and ``finalize(output_file)``."""

    def __init__(self, config):
        super().__init__(config)
        self.seen = []

    def __call__(self, outputs):
        self.seen.append((outputs["pooled_video"].mean().item(), outputs["caps"].shape[0]))

    def finalize(self, output_file=None):
        return {"outputs": np.array(self.seen)}


def test_a_predictor_written_for_the_original_base_runs(bert_dir):
    tokenizer = AutoTokenizer.from_pretrained(bert_dir)
    torch.manual_seed(0)
    model = MMFusionSeparate(run_config("unused"), bert_config=tiny_bert_config(), tokenizer=tokenizer).eval()
    caps, cmasks, vfeats, vmasks = make_batch()
    batches = [{"caps": caps[:2], "cmasks": cmasks[:2], "vfeats": vfeats[:2], "vmasks": vmasks[:2]},
               {"caps": caps[2:], "cmasks": cmasks[2:], "vfeats": vfeats[2:], "vmasks": vmasks[2:]}]
    outputs = MeanPredictor(None).predict_loop(model, batches)
    with torch.no_grad():
        expected = [model(**b)["pooled_video"].mean().item() for b in batches]
    np.testing.assert_allclose(outputs["outputs"], [[expected[0], 2], [expected[1], 2]], rtol=1e-6)
    assert caps.shape[1] == CAPS_LEN


def test_crosstask_predictor_and_evaluator_as_the_original(tmp_path):
    """``predictor(sample, model, Y_pred, Y_true)`` fills the dicts; ``finalize(Y_pred, Y_true, output_file)``
    returns the metric's arguments and pickles the original's ``{Y_pred, Y_true}``; ``Evaluator()`` re-scores it."""
    annotations = tmp_path / "annotations"
    annotations.mkdir()
    (annotations / "t1_v1.csv").write_text("1,0.0,1.5\n2,2.0,3.0\n")
    config = OmegaConf.create({"dataset": {"annotation_path": str(annotations), "sliding_window": 16,
                                           "sliding_window_size": 32},
                               "eval": {"save_path": str(tmp_path / "eval")},
                               "metric": "CrossTaskMetric", "predictor": "CrossTaskPredictor"})
    predictor = CrossTaskPredictor(config)
    assert predictor._read_assignment(4, 2, str(annotations / "t1_v1.csv")).tolist() == [[1, 0], [1, 0], [0, 1],
                                                                                       [0, 0]]

    class Localizer(torch.nn.Module):
        def forward(self, logits, **kwargs):
            return {"logits": logits[0]}

    sample = {"caps": torch.zeros(1, 2, 4), "task": ["t1"], "video_id": ["v1"], "video_len": torch.tensor([4]),
              "logits": torch.tensor([[[5.0, 0.0], [0.0, 0.0], [0.0, 5.0], [0.0, 0.0]]])}
    Y_pred, Y_true = {}, {}
    predictor(sample, Localizer(), Y_pred, Y_true)
    assert Y_pred["t1"]["v1"].tolist() == [[1, 0], [0, 0], [0, 1], [0, 0]]
    outputs = predictor.finalize(Y_pred, Y_true, "merged")
    assert set(outputs) == {"outputs", "targets"} and outputs["outputs"] is Y_pred
    with open(tmp_path / "eval" / "merged.pkl", "rb") as f:
        assert set(pickle.load(f)) == {"Y_pred", "Y_true"}
    assert predictor.finalize(Y_pred, Y_true) == outputs and sorted(os.listdir(tmp_path / "eval")) == ["merged.pkl"]
    evaluator = Evaluator(config)
    rescored = evaluator()
    assert rescored["results"] == {"t1": 1.0, "recall": 1.0} and rescored["metric"] is evaluator.metric
    os.remove(tmp_path / "eval" / "merged.pkl")
    with pytest.raises(FileNotFoundError, match=r"no saved predictions merged.pkl / merged.npy in .*eval "
                                                 r"\(eval.save_path\)"):
        evaluator()
    with pytest.raises(ValueError, match="needs an eval_dataloader"):
        evaluator.evaluate(Localizer())


def test_task_methods_as_the_original(tmp_path, bert_dir):
    config = run_config(bert_dir)
    config.dataset.bert_name = bert_dir
    task = Task.config_task(config)
    assert type(task) is Task and task.eval_fn is None and task.before_epoch(1) is False
    state = {"model": {"mmmodel.video_encoder.w": torch.ones(1), "text_encoder.b": torch.zeros(1)}}
    assert task._trim_state_dict(state) == {"video_encoder.w": torch.ones(1), "text_encoder.b": torch.zeros(1)}
    assert list(task._trim_state_dict({"state_dict": {"mmmodel.x": 1}})) == ["x"]
    source = MMFusionSeparate(config, bert_config=tiny_bert_config(),
                              tokenizer=AutoTokenizer.from_pretrained(bert_dir))
    torch.save({"model": {"mmmodel." + k: v for k, v in source.state_dict().items()}}, tmp_path / "c.pt")
    task.model = MMFusionSeparate(config, bert_config=tiny_bert_config(),
                                  tokenizer=AutoTokenizer.from_pretrained(bert_dir))
    assert task.build_model(str(tmp_path / "c.pt")) is task.model          # built once, weights loaded
    for key, value in source.state_dict().items():
        assert torch.equal(task.model.state_dict()[key], value), key


def test_mmfusion_forward_as_the_original(bert_dir):
    torch.manual_seed(0)
    model = MMFusionSeparate(run_config("unused"), bert_config=tiny_bert_config(),
                             tokenizer=AutoTokenizer.from_pretrained(bert_dir)).eval()
    caps, cmasks, vfeats, vmasks = make_batch()
    with torch.no_grad():
        plain = model(caps, cmasks, vfeats, vmasks)
        keyword = model(caps, cmasks, vfeats, vmasks, attention_mask=None, video_label=None, text_label=None,
                        video_id=["a", "b", "c", "d"])
        hidden = model(caps, cmasks, vfeats, vmasks, output_hidden_states=True)
        video = model.forward_video(vfeats, vmasks, caps, cmasks, output_hidden_states=False, video_id=None)
        text = model.forward_text(caps, cmasks, False, extra=1)
    assert torch.equal(plain["pooled_video"], keyword["pooled_video"]) and torch.equal(plain["pooled_video"], video)
    assert torch.equal(plain["pooled_text"], text)
    assert hidden["pooled_video"].shape == (4, 34, 32) and hidden["pooled_text"].shape == (4, CAPS_LEN - 1, 32)
