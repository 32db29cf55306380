"""fairseq model ``mmmodel`` / arch ``mmarch``: wraps the tempclr model as attribute ``mmmodel`` (so every
parameter key is prefixed ``mmmodel.``)."""
from __future__ import annotations

from fairseq.models import BaseFairseqModel, register_model, register_model_architecture

POSITION_IDS_SUFFIX = "embeddings.position_ids"


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
        """Loading stays strict (the original silently dropped and added keys).  The one known difference:
        checkpoints from transformers 3.x carry ``*.embeddings.position_ids`` buffers that current
        transformers does not save; those (and only those) are taken from this model."""
        own = self.state_dict()
        for key in [k for k in state_dict if k.endswith(POSITION_IDS_SUFFIX)]:
            if key not in own:
                del state_dict[key]
        for key in [k for k in own if k.endswith(POSITION_IDS_SUFFIX)]:
            state_dict.setdefault(key, own[key])
        return state_dict


@register_model_architecture("mmmodel", "mmarch")
def mmarch(args):
    """No architecture hyper-parameters: the YAML config defines the model."""
