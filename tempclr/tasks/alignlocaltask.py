"""``AlignLocalTask``: CrossTask fine-tuning with a sequence alignment loss (TempCLR).

Loss of one video: ``L = (1 - c) * BCE + c * L_seq`` with ``c = alignment.alignment_loss_coeff`` (0.12).

* ``BCE``: the configured loss (``loss.loss_cls: BCE``) on ``logits [Σlen, K]`` and ``targets [1, Σlen, K]``.
* ``L_seq`` (training only, when the annotated step order ``A`` has more than one step and more than one
  window row carries a label; 0 otherwise, so validation reports ``(1 - c) * BCE``):

  1. ``keys = video_seq[rows with a label]`` ``[N', H]``, each row's label the first step marked on it;
     ``A = unique_consecutive(sequence_targets)``.
  2. ``n = min(N', |A| * video_sampling_multiplier)`` rows at ``floor(linspace(0, N' - 1, n))`` (with labels).
  3. ``D = 1 - cos_sim(pooled_text, keys)`` ``[K, n]``; the positive is ``D[A]`` ``[|A|, n]``.
  4. ``S - 1`` negatives (``S = total_sample_size`` = 32): ``D[A']`` for reorderings ``A'`` of ``A``
     (:func:`negative_orders`); with ``inner_shuffling`` the columns of each negative are also shuffled inside
     each run of equal labels (:func:`inner_shuffle_columns`).
  5. ``[1, S, |A|, n]`` → soft DTW (``metric: dtw``) or OTAM both ways (``metric: otam``), ``logits = -cum``,
     ``L_seq = CE(logits, 0)``.

Changes from TempCLR: works on any device (the original moved its tensors to CUDA by hand); the negatives are distinct
reorderings of ``A`` while enough exist (the original drew with replacement, so duplicates were common for short
``A``), cycling through all of them when fewer than ``S - 1`` exist; the inner shuffles are drawn in one
vectorised step.  As in the original, ``video_seq`` concatenates the overlapping windows, so the frame sequence
revisits seconds.
"""
from __future__ import annotations

from typing import Any, Dict

import numpy as np
import torch
import torch.nn.functional as F

from tempclr.modules.similarity import cos_sim
from tempclr.utils.registry import register

from .seqalign import AlignmentSettings, inner_shuffle_columns, negative_orders, sequence_scores
from .task import Task

__all__ = ["AlignLocalTask", "subsample_rows"]


def subsample_rows(n_rows: int, n_steps: int, multiplier: int) -> torch.Tensor:
    """int64 ``floor(linspace(0, n_rows - 1, min(n_rows, n_steps * multiplier)))`` (numpy's linspace, as the
    original)."""
    num = min(n_rows, n_steps * multiplier)
    return torch.from_numpy(np.linspace(0, n_rows - 1, num=num).astype(np.int64))


@register("task")
class AlignLocalTask(Task):
    """CrossTask fine-tuning task (see the module docstring).  ``self.alignment`` holds the ``alignment.*`` keys
    (:class:`~tempclr.tasks.seqalign.AlignmentSettings`): ``metric`` (dtw | otam), ``total_sample_size`` (32),
    ``alignment_loss_coeff`` (0.12), ``gamma`` (0.1), ``video_sampling_multiplier`` (10), ``inner_shuffling``
    (true)."""

    def __init__(self, config: Any):
        super().__init__(config)
        self.alignment = AlignmentSettings.from_config(config, alignment_loss_coeff=0.12)

    def __call__(self, model, sample: Dict[str, Any]) -> Dict[str, Any]:
        """-> ``{"loss": (1 - c) * BCE + c * L_seq, "bce_loss": BCE, "align_loss": L_seq}`` (the last two
        detached, for logging)."""
        if self.loss_fn is None:
            raise ValueError("AlignLocalTask needs 'loss.loss_cls: BCE' in the config")
        sample = self.reshape_subsample(sample)
        outputs = model(**sample)
        bce_loss = self.loss_fn(**{**sample, **outputs})
        align_loss = self.sequence_loss(outputs, sample, training=model.training)
        coeff = self.alignment.alignment_loss_coeff
        loss = (1.0 - coeff) * bce_loss + coeff * align_loss
        return {"loss": loss, "bce_loss": bce_loss.detach(), "align_loss": align_loss.detach()}

    def sequence_loss(self, outputs: Dict[str, torch.Tensor], sample: Dict[str, Any], training: bool
                      ) -> torch.Tensor:
        """``L_seq`` (a scalar; exactly 0 unless ``training`` and ``|A| > 1`` and ``N' > 1``)."""
        video_seq = outputs["video_seq"]
        targets = sample["targets"].reshape(-1, sample["targets"].size(-1))
        labelled = targets.abs().sum(dim=1) > 0
        steps = torch.unique_consecutive(sample["sequence_targets"].reshape(-1))
        keys = video_seq[labelled]
        if not (training and steps.numel() > 1 and keys.size(0) > 1):
            return torch.zeros((), dtype=video_seq.dtype, device=video_seq.device)
        frame_labels = torch.argmax(targets[labelled], dim=1)
        logits = self.query_to_logits(outputs["pooled_text"], keys, steps, frame_labels)
        return F.cross_entropy(logits, torch.zeros(1, dtype=torch.long, device=logits.device))

    def query_to_logits(self, query: torch.Tensor, keys: torch.Tensor, steps: torch.Tensor,
                        frame_labels: torch.Tensor) -> torch.Tensor:
        """``query [K, H]`` (step texts), ``keys [N', H]`` (labelled rows), ``steps [|A|]``, ``frame_labels
        [N']`` → ``logits [1, S]`` = ``-cum_dist`` of the positive (index 0) and ``S - 1`` negatives."""
        settings = self.alignment
        rows = subsample_rows(keys.size(0), steps.numel(), settings.video_sampling_multiplier).to(keys.device)
        keys, frame_labels = keys[rows], frame_labels[rows]
        _, run_lengths = torch.unique_consecutive(frame_labels, return_counts=True)
        segment_ids = torch.repeat_interleave(torch.arange(run_lengths.numel(), device=keys.device), run_lengths)
        dists = 1 - cos_sim(query, keys)                                  # [K, n]
        n_negatives = settings.total_sample_size - 1
        orders = negative_orders(steps, n_negatives, cycle=True)          # [S-1, |A|]
        negatives = dists[orders]                                         # [S-1, |A|, n]
        if settings.inner_shuffling:
            columns = inner_shuffle_columns(segment_ids, n_negatives)     # [S-1, n]
            negatives = negatives.gather(2, columns.unsqueeze(1).expand_as(negatives))
        stacked = torch.cat([dists[steps].unsqueeze(0), negatives], dim=0).unsqueeze(0)  # [1, S, |A|, n]
        return -sequence_scores(stacked, settings.metric, settings.gamma)
