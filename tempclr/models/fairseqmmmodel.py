"""fairseq model ``mmmodel`` / arch ``mmarch``: wraps the tempclr model as attribute ``mmmodel`` (so every
parameter key is prefixed ``mmmodel.``)."""
from __future__ import annotations

from fairseq.models import BaseFairseqModel, register_model, register_model_architecture

from tempclr.utils.checkpoint import settle_position_ids


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
        settle_position_ids(state_dict, self.state_dict(), f"checkpoint ({name or 'model'})")
        return state_dict


@register_model_architecture("mmmodel", "mmarch")
def mmarch(args):
    """No architecture hyper-parameters: the YAML config defines the model."""
