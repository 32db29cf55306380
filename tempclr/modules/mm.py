"""Building blocks of the VideoCLIP video encoder, written against transformers 5.x.

* :class:`VideoTokenMLP` projects S3D features ``[B, Lv, 512]`` to BERT width ``[B, Lv, H]``.
* :class:`MMBertEmbeddings` splices the projected video tokens after ``[CLS]`` and gives them the position ids
  of the original MMPT model.

State-dict keys match the released fairseq checkpoints (``videomlp.linear1/LayerNorm/linear2`` and the BERT
embedding names).  ``position_ids`` is a *non-persistent* buffer here, as in transformers 5.x ``BertEmbeddings``:
it is rebuilt as ``arange`` at construction, so it never appears in ``state_dict()``; the checkpoint loader
(:mod:`tempclr.utils.checkpoint`) accepts the persistent copy that transformers 3.x wrote into old checkpoints.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from transformers.activations import ACT2FN
from transformers.models.bert.modeling_bert import BertEmbeddings

__all__ = ["VideoTokenMLP", "MMBertEmbeddings"]

DEFAULT_VIDEO_FEATURE_DIM = 512


class VideoTokenMLP(nn.Module):
    """``Linear(D→H)``, config activation (``gelu`` is the erf form), ``LayerNorm(H, eps=1e-5)``, ``Linear(H→H)``.

    The LayerNorm keeps PyTorch's default eps (1e-5), not BERT's 1e-12, exactly as the original.  ``D`` is
    ``config.input_dim`` when the config has it, else 512 (S3D features).
    """

    def __init__(self, config) -> None:
        super().__init__()
        input_dim = getattr(config, "input_dim", None) or DEFAULT_VIDEO_FEATURE_DIM
        self.linear1 = nn.Linear(input_dim, config.hidden_size)
        self.activation = ACT2FN[config.hidden_act]
        self.LayerNorm = nn.LayerNorm(config.hidden_size)
        self.linear2 = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, video_features: torch.Tensor) -> torch.Tensor:
        """``video_features [B, Lv, D]`` -> video tokens ``[B, Lv, H]`` (applied per time step)."""
        hidden = self.activation(self.linear1(video_features))
        return self.linear2(self.LayerNorm(hidden))


class MMBertEmbeddings(BertEmbeddings):
    """BERT embeddings with video tokens spliced after ``[CLS]``.

    Inherits ``word_embeddings``, ``position_embeddings``, ``token_type_embeddings``, ``LayerNorm`` (eps from
    the config), ``dropout`` and the non-persistent ``position_ids``/``token_type_ids`` buffers from
    ``BertEmbeddings``, so ``BertPreTrainedModel._init_weights`` also rebuilds the buffers after
    ``from_pretrained`` (which creates modules on the meta device).  Needs ``config.max_video_len``.
    """

    def __init__(self, config) -> None:
        super().__init__(config)
        max_video_len = getattr(config, "max_video_len", None)
        if max_video_len is None or int(max_video_len) <= 0:
            raise ValueError(
                f"MMBertEmbeddings needs a positive config.max_video_len (got {max_video_len!r}); "
                "MMFusion sets it from config.dataset.max_video_len")
        self.max_video_len = int(max_video_len)

    def build_position_ids(self, num_ids: int, video_len: Optional[int]) -> torch.Tensor:
        """Position ids ``[1, L]`` of the original model.

        With video (``video_len`` = Lv, ``L = Lv + num_ids``): ``pos[0 : Lv+1] ++ pos[M+1 : M+num_ids]`` where
        ``M = max_video_len``, so ``[CLS] v_1..v_Lv`` get ``0..Lv`` and the ids after ``[CLS]`` start at
        ``M+1`` whatever Lv is.  Text only (``video_len=None``, ``L = num_ids``):
        ``pos[0:1] ++ pos[M+2 : M+1+num_ids]``, skipping the video ``[SEP]`` slot.
        """
        if video_len is not None and video_len > self.max_video_len:
            raise ValueError(
                f"{video_len} video tokens but config.max_video_len is {self.max_video_len}; the video "
                "positions would run into the [SEP] position (cut the video or raise dataset.max_video_len)")
        if video_len is None:
            start, end, head = self.max_video_len + 2, self.max_video_len + 1 + num_ids, 1
        else:
            start, end, head = self.max_video_len + 1, self.max_video_len + num_ids, video_len + 1
        if end > self.position_ids.size(1):
            raise ValueError(
                f"sequence needs position {end - 1} but config.max_position_embeddings is "
                f"{self.position_ids.size(1)} (max_video_len {self.max_video_len}, {num_ids} token ids)")
        return torch.cat([self.position_ids[:, :head], self.position_ids[:, start:end]], dim=1)

    def forward(
        self,
        input_ids: torch.Tensor,
        input_video_embeds: Optional[torch.Tensor] = None,
        token_type_ids: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """``input_ids [B, N]`` (``[CLS] [SEP] ...``), ``input_video_embeds [B, Lv, H]`` or None
        -> embeddings ``[B, Lv + N, H]`` ordered ``[CLS] v_1..v_Lv ids[1:]``.  Token types default to 0."""
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [B, N], got shape {tuple(input_ids.shape)}")
        word = self.word_embeddings(input_ids)
        video_len = None
        if input_video_embeds is not None:
            if input_video_embeds.dim() != 3 or input_video_embeds.size(0) != input_ids.size(0):
                raise ValueError(
                    f"input_video_embeds must be [B, Lv, H] with B = {input_ids.size(0)}, "
                    f"got {tuple(input_video_embeds.shape)}")
            video_len = input_video_embeds.size(1)
            word = torch.cat([word[:, :1], input_video_embeds.to(word.dtype), word[:, 1:]], dim=1)
        position_ids = self.build_position_ids(input_ids.size(1), video_len)
        if token_type_ids is None:
            token_type_ids = torch.zeros(word.shape[:2], dtype=torch.long, device=word.device)
        embeddings = word + self.position_embeddings(position_ids) + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(embeddings))
