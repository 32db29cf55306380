"""fairseq criterion ``mmloss``: the tempclr task computes the loss; this only adapts."""
from __future__ import annotations

from fairseq import metrics
from fairseq.criterions import FairseqCriterion, register_criterion


@register_criterion("mmloss")
class MMCriterion(FairseqCriterion):
    """Returns ``(loss, 1, logging_output)``; extra scalar terms a task returns (e.g. ``align_loss``) are
    logged too."""

    def __init__(self, task):
        super().__init__(task)
        self.mmtask = task.mmtask

    def forward(self, model, sample):
        outputs = self.mmtask(model, sample)
        loss = outputs["loss"]
        batch_size = sample["caps"].size(0) if "caps" in sample else 1
        logging_output = {"loss": loss.detach().item(), "ntokens": batch_size, "nsentences": batch_size,
                          "sample_size": 1}
        for key, value in outputs.items():
            if key.endswith("_loss") and value is not None:
                logging_output[key] = float(value.detach().item() if hasattr(value, "detach") else value)
        return loss, 1, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        sample_size = sum(log.get("sample_size", 0) for log in logging_outputs) or 1
        keys = {k for log in logging_outputs for k in log if k == "loss" or k.endswith("_loss")}
        for key in sorted(keys):
            total = sum(log.get(key, 0.0) for log in logging_outputs)
            metrics.log_scalar(key, total / sample_size, round=4)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
