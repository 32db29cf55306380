"""fairseq model ``mmmodel`` / arch ``mmarch``: wraps the tempclr model as attribute ``mmmodel`` (so every
parameter key is prefixed ``mmmodel.``)."""
from __future__ import annotations

from fairseq.models import BaseFairseqModel, register_model, register_model_architecture

from tempclr.utils.checkpoint import settle_position_ids


def fill_new_head(state_dict: dict, own: dict, mmmodel, source: str) -> list:
    """Fine-tuning a new head from a pretrained checkpoint: when ``state_dict`` lacks *every* key under one of
    ``mmmodel.new_head_prefixes()`` (e.g. COIN's ``video_encoder.classifier.``), those keys are taken from the
    model's own initialised weights ``own`` and the fact is printed; a head that is only partly missing is left to
    the strict load to report.  Returns the filled keys."""
    prefixes = getattr(mmmodel, "new_head_prefixes", lambda: ())()
    filled = []
    for prefix in prefixes:
        wanted = [key for key in own if key.startswith("mmmodel." + prefix)]
        if wanted and not any(key in state_dict for key in wanted):
            for key in wanted:
                state_dict[key] = own[key]
            filled += wanted
    if filled:
        print(f"{source} has no {', '.join(prefixes)}* weights (a pretrained model): {len(filled)} new-head tensors "
              "start from their initialisation", flush=True)
    return filled


@register_model("mmmodel")
class FairseqMMModel(BaseFairseqModel):
    @classmethod
    def build_model(cls, args, task):
        return cls(task.mmtask.model)

    def __init__(self, mmmodel):
        super().__init__()
        self.mmmodel = mmmodel

    def forward(self, *args, **kwargs):
        return self.mmmodel(*args, **kwargs)

    def upgrade_state_dict_named(self, state_dict, name):
        """Loading stays strict (the original silently dropped and added keys).  The one known difference,
        ``*.embeddings.position_ids``, follows :func:`~tempclr.utils.checkpoint.settle_position_ids`, as every
        other checkpoint load does."""
        own = self.state_dict()
        settle_position_ids(state_dict, own, f"checkpoint ({name or 'model'})")
        fill_new_head(state_dict, own, self.mmmodel, f"checkpoint ({name or 'model'})")
        return state_dict


@register_model_architecture("mmmodel", "mmarch")
def mmarch(args):
    """No architecture hyper-parameters: the YAML config defines the model."""
