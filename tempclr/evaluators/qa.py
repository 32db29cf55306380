"""MSR-VTT multiple-choice QA: :class:`QAPredictor` scores every candidate caption against its video,
:class:`QAMetric` turns the scores into accuracy.

A question is answered right when the candidate text of the answer scores strictly higher than every candidate
with another text.  Candidates with the same token ids are the same model input (they score the same up to
rounding), so one of them being the answer makes all of them right; a tie between different texts counts as
wrong (pessimistic, as the retrieval ranks).  ``eval.metric_compat: original`` gives the original's accuracy of
``argmax(scores) == answer``, where the first of equal scores wins: a question whose answer text also appears at an
earlier position was scored wrong.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from tempclr.utils.registry import register

from .metric_base import Metric, metric_compat
from .predictor_base import Predictor, model_device_dtype, move_to

__all__ = ["QAMetric", "QAPredictor", "candidate_groups", "qa_correct"]


def candidate_groups(candidates: Sequence[Sequence[Any]]) -> np.ndarray:
    """``groups [N, C]`` int64: ``groups[n, c]`` is the first position in row ``n`` whose candidate equals
    candidate ``c`` (strings or token-id sequences, compared by value)."""
    rows = [list(row) for row in candidates]
    lengths = {len(row) for row in rows}
    if len(lengths) > 1:
        raise ValueError(f"QAMetric: candidates rows have different lengths {sorted(lengths)}")
    codes: Dict[Any, int] = {}
    flat = [codes.setdefault(c if isinstance(c, str) else tuple(c), len(codes)) for row in rows for c in row]
    coded = np.asarray(flat, dtype=np.int64).reshape(len(rows), lengths.pop() if lengths else 0)
    return np.argmax(coded[:, :, None] == coded[:, None, :], axis=2).astype(np.int64)


def qa_correct(scores: np.ndarray, targets: np.ndarray, groups: Optional[np.ndarray] = None) -> np.ndarray:
    """``correct [N]`` bool: the best score among the candidates in the answer's group (``groups`` as
    :func:`candidate_groups`; None: every candidate its own group) is strictly above every other candidate's.

    scores [N, C] finite, targets [N] in ``0..C-1``."""
    n, c = scores.shape
    if groups is None:
        groups = np.broadcast_to(np.arange(c), (n, c))
    answer_group = groups[np.arange(n), targets]
    same = groups == answer_group[:, None]
    best_answer = np.where(same, scores, -np.inf).max(axis=1)
    best_other = np.where(same, -np.inf, scores).max(axis=1)
    return best_answer > best_other


def _targets(targets: Any, n: int, n_candidates: int) -> np.ndarray:
    values = np.asarray(targets)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.shape != (n,):
        raise ValueError(f"QAMetric: targets has shape {values.shape}; expected [{n}] (one answer index per "
                         "question)")
    if not np.issubdtype(values.dtype, np.integer) or (values.size and (values.min() < 0
                                                                         or values.max() >= n_candidates)):
        raise ValueError(f"QAMetric: targets must be integer answer indices in 0..{n_candidates - 1}")
    return values.astype(np.int64)


@register("metric")
class QAMetric(Metric):
    """Multiple-choice accuracy ``acc`` (see the module docstring for ties and repeated candidates)."""

    def __init__(self, config: Any, metric_names: Sequence[str] = ("acc",)):
        super().__init__(config, metric_names)
        self.compat = metric_compat(config)

    def compute_metrics(self, outputs: Any, targets: Any, candidates: Optional[Sequence[Sequence[Any]]] = None,
                        **kwargs: Any) -> dict:
        """``outputs``: scores ``[N, C]`` (question x candidate) or, as the original predictor gave them, the
        chosen candidate per question ``[N]`` (integers); ``targets [N]`` the answer indices; ``candidates``
        ``[N][C]`` the candidate texts or token ids (what :class:`QAPredictor` returns; without them every
        candidate counts as distinct).  Returns ``{"acc": float}``."""
        name = type(self).__name__
        outputs = np.asarray(outputs)
        if outputs.ndim not in (1, 2) or outputs.shape[0] == 0:
            raise ValueError(f"{name}: outputs must be scores [N, C] or chosen indices [N] with N >= 1 questions, "
                             f"got shape {outputs.shape}")
        if outputs.ndim == 2 and outputs.shape[1] == 0:
            raise ValueError(f"{name}: outputs has no candidate column")
        if not (np.issubdtype(outputs.dtype, np.floating) or np.issubdtype(outputs.dtype, np.integer)):
            raise ValueError(f"{name}: outputs must hold numbers, got dtype {outputs.dtype}")
        if outputs.ndim == 2 and np.isnan(outputs).any():
            row = int(np.argwhere(np.isnan(outputs))[0, 0])
            raise ValueError(f"{name}: the scores of {int(np.isnan(outputs).any(axis=1).sum())} question(s) hold "
                             f"NaN (first: row {row}); the answer is undefined")
        n = outputs.shape[0]
        groups = None if candidates is None or self.compat == "original" else candidate_groups(candidates)
        n_candidates = outputs.shape[1] if outputs.ndim == 2 else (groups.shape[1] if groups is not None else None)
        if groups is not None and groups.shape != (n, n_candidates):
            raise ValueError(f"{name}: candidates is {list(groups.shape)} but outputs has {n} questions x "
                             f"{n_candidates} candidates")
        if outputs.ndim == 1:
            if not np.issubdtype(outputs.dtype, np.integer):
                raise ValueError(f"{name}: 1-D outputs are the chosen candidate indices and must be integers")
            targets = _targets(targets, n, int(max(outputs.max(), np.asarray(targets).max())) + 1
                               if n_candidates is None else n_candidates)
            if self.compat == "original" or groups is None:
                return {"acc": float(np.mean(outputs == targets))}
            rows = np.arange(n)
            return {"acc": float(np.mean(groups[rows, outputs] == groups[rows, targets]))}
        targets = _targets(targets, n, n_candidates)
        if self.compat == "original":
            return {"acc": float(np.mean(np.argmax(outputs, axis=1) == targets))}
        return {"acc": float(np.mean(qa_correct(outputs.astype(np.float64), targets, groups)))}

    def print_computed_metrics(self, metrics: Mapping[str, Any]) -> None:
        print("acc: {:.4f}".format(metrics["acc"]))


@register("predictor")
class QAPredictor(Predictor):
    """Scores of the five candidates of every question against its video.

    A batch holds ``vfeats [B, Lv, D]`` / ``vmasks`` and ``caps [B, C, T]`` / ``cmasks`` (the
    :class:`~tempclr.processors.msrvtt.MSRVTTQAAligner`); the video is repeated C times so the model sees
    ``B * C`` pairs, as in the original.  :meth:`finalize` returns ``outputs [N, C]`` float32 (``pooled_text ·
    pooled_video``), ``targets [N]`` int64 and ``candidates [N][C]`` (each candidate's token ids, what
    :class:`QAMetric` groups repeated texts by); with ``output_file`` that dict is pickled to
    ``<eval.save_path>/<output_file>.pkl`` (the original saved only the argmax, to ``qa.npy.npy``).
    """

    def __init__(self, config: Any):
        super().__init__(config)
        self.full_scores: List[list] = []

    @torch.no_grad()
    def predict_loop(self, model, eval_dataloader, output_file: Optional[str] = "qa") -> Dict[str, Any]:
        self.full_scores = []
        model.eval()
        device, dtype = model_device_dtype(model)
        for data in eval_dataloader:
            if data["caps"].dim() != 3:
                raise ValueError(f"{type(self).__name__}: caps must be [B, C, T] (C candidates per question), got "
                                 f"{tuple(data['caps'].shape)}; use dataset.aligner: MSRVTTQAAligner")
            n_candidates = data["caps"].size(1)
            candidates = [[tuple(int(t) for t in row[mask].tolist()) for row, mask in zip(caps, cmasks)]
                          for caps, cmasks in zip(data["caps"], data["cmasks"].to(torch.bool))]
            batch = dict(data)
            v_len, hidden = batch["vfeats"].shape[1:]
            batch["vfeats"] = batch["vfeats"].unsqueeze(1).repeat(1, n_candidates, 1, 1).view(-1, v_len, hidden)
            batch["vmasks"] = batch["vmasks"].unsqueeze(1).repeat(1, n_candidates, 1).view(-1, v_len)
            batch["caps"] = batch["caps"].reshape(-1, batch["caps"].size(-1))
            batch["cmasks"] = batch["cmasks"].reshape(-1, batch["cmasks"].size(-1))
            batch = move_to(batch, device, dtype)
            outputs = dict(model(**batch))
            outputs.update(batch)
            outputs["n_candidates"] = n_candidates
            self(outputs)
            self.full_scores[2].extend(candidates)
        return self.finalize(output_file)

    def __call__(self, sample: Dict[str, Any]) -> None:
        n_candidates = int(sample.get("n_candidates", 5))
        hidden = sample["pooled_video"].size(-1)
        video = sample["pooled_video"].view(-1, n_candidates, hidden)[:, 0]
        text = sample["pooled_text"].view(-1, n_candidates, hidden)
        scores = torch.bmm(text, video.unsqueeze(-1)).squeeze(-1)
        if not self.full_scores:
            self.full_scores = [[], [], []]
        self.full_scores[0].append(scores.detach().to("cpu", torch.float32).numpy())
        self.full_scores[1].append(sample["answers"].detach().to("cpu").reshape(-1).numpy().astype(np.int64))

    def finalize(self, output_file: Optional[str] = None) -> Dict[str, Any]:
        """``{"outputs": [N, C], "targets": [N], "candidates": [N][C]}``."""
        if not self.full_scores or not self.full_scores[0]:
            raise ValueError(f"{type(self).__name__}: the evaluation loader gave no batch")
        outputs = np.concatenate(self.full_scores[0], axis=0)
        targets = np.concatenate(self.full_scores[1], axis=0)
        candidates = list(self.full_scores[2]) if len(self.full_scores) > 2 else None
        self.full_scores = []
        if not np.isfinite(outputs).all():
            raise ValueError(f"{type(self).__name__}: {int((~np.isfinite(outputs)).any(axis=1).sum())} question(s) "
                             "have NaN or inf scores (the model's pooled outputs are not finite)")
        result = {"outputs": outputs, "targets": targets}
        if candidates is not None:
            result["candidates"] = candidates
        if output_file is not None:
            self.save_predictions(output_file, result)
        return result
