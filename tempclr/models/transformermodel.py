"""The VideoCLIP video encoder on transformers 5.x.

``MMBertForEncoder`` = ``videomlp`` (S3D feature -> BERT width) then ``bert`` (:class:`MMBertModel`:
:class:`~tempclr.modules.mm.MMBertEmbeddings`, ``BertEncoder``, ``BertPooler``).

Attention masks: transformers 5.x removed ``get_extended_attention_mask``, and a 4-D 0/1 float mask given to
its layers is *added* to the scores (silently wrong).  :func:`additive_attention_mask` therefore builds the
4-D additive mask itself: 0 where attention is allowed and ``torch.finfo(dtype).min`` where it is not.  The
original used ``(1 - m) * -10000``; both give exactly zero weight to masked keys after softmax in fp32/fp16/bf16
(``exp(-10000)`` underflows to 0), so results match, and the dtype minimum cannot be outweighed by large scores.
"""
from __future__ import annotations

from typing import Optional

import torch
from transformers import BertPreTrainedModel
from transformers.models.bert.modeling_bert import BertEncoder, BertPooler

from ..modules.mm import MMBertEmbeddings, VideoTokenMLP

__all__ = ["additive_attention_mask", "MMBertModel", "MMBertForEncoder", "MMBertForTokenClassification",
           "COIN_NUM_LABELS"]

# COIN's 778 steps plus the background label 0: the original's fixed classifier width
COIN_NUM_LABELS = 779


def additive_attention_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """0/1 or bool ``mask`` ``[B, L]`` (per key) or ``[B, L, L]`` (per query and key) -> additive mask
    ``[B, 1, 1, L]`` / ``[B, 1, L, L]`` in ``dtype``: 0 where ``mask`` is true, ``finfo(dtype).min`` elsewhere."""
    if mask.dim() == 2:
        mask = mask[:, None, None, :]
    elif mask.dim() == 3:
        mask = mask[:, None, :, :]
    else:
        raise ValueError(
            f"attention_mask must be [B, L] or [B, L, L] (1 = attend), got shape {tuple(mask.shape)}")
    allowed = mask.to(torch.bool)
    blocked = torch.zeros(allowed.shape, dtype=dtype, device=mask.device)
    return blocked.masked_fill(~allowed, torch.finfo(dtype).min)


class MMBertModel(BertPreTrainedModel):
    """BERT over ``[CLS] v_1..v_Lv [SEP] ...``: MMBertEmbeddings, BertEncoder, BertPooler.

    Needs ``config.max_video_len``.  Keys: ``embeddings.*``, ``encoder.layer.{i}.*``, ``pooler.dense.*``.
    """

    def __init__(self, config) -> None:
        super().__init__(config)
        self.embeddings = MMBertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config)
        self.post_init()

    def get_input_embeddings(self) -> torch.nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: torch.nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    def forward(
        self,
        input_ids: torch.Tensor,
        input_video_embeds: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        token_type_ids: Optional[torch.Tensor] = None,
        output_hidden_states: bool = False,
    ) -> tuple:
        """Encode ``[CLS] video ids[1:]``.

        Args:
            input_ids: ``[B, N]`` token ids; video tokens go after ``input_ids[:, 0]``.
            input_video_embeds: ``[B, Lv, H]`` projected video tokens, or None (text only).
            attention_mask: ``[B, L]`` or ``[B, L, L]`` 0/1 or bool, ``L = Lv + N``; None attends everywhere.
            token_type_ids: ``[B, L]``; None means all 0.
            output_hidden_states: also return the embedding output and every layer's output.

        Returns:
            ``(last_hidden [B, L, H], pooled [B, H])``, plus a tuple of ``num_hidden_layers + 1`` tensors
            ``[B, L, H]`` when ``output_hidden_states``.
        """
        hidden = self.embeddings(input_ids, input_video_embeds, token_type_ids)
        if attention_mask is not None:
            if attention_mask.shape[-1] != hidden.size(1):
                raise ValueError(
                    f"attention_mask covers {attention_mask.shape[-1]} positions but the sequence "
                    f"([CLS] + {hidden.size(1) - input_ids.size(1)} video tokens + {input_ids.size(1) - 1} ids) "
                    f"has {hidden.size(1)}")
            attention_mask = additive_attention_mask(attention_mask, hidden.dtype)
        all_hidden = [hidden]
        for layer in self.encoder.layer:
            hidden = layer(hidden, attention_mask)
            all_hidden.append(hidden)
        pooled = self.pooler(hidden)
        if output_hidden_states:
            return hidden, pooled, tuple(all_hidden)
        return hidden, pooled


class MMBertForEncoder(BertPreTrainedModel):
    """The VideoCLIP video encoder: ``videomlp`` then ``bert`` (:class:`MMBertModel`).

    ``MMBertForEncoder.from_pretrained(bert_name_or_dir, config=cfg)`` loads a plain BERT checkpoint (keys
    without the ``bert.`` prefix, as ``BertModel.save_pretrained`` writes them) into ``bert.*`` through
    ``base_model_prefix = "bert"``; checkpoint layers beyond ``cfg.num_hidden_layers`` are ignored and
    ``videomlp`` starts from ``_init_weights``.  ``cfg`` needs ``max_video_len``.
    """

    # weights a BERT checkpoint does not hold (left at their initialisation by ``from_pretrained``)
    fresh_prefixes = ("videomlp.",)

    def __init__(self, config) -> None:
        super().__init__(config)
        self.videomlp = VideoTokenMLP(config)
        self.bert = MMBertModel(config)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,
        input_video_embeds: Optional[torch.Tensor],
        attention_mask: Optional[torch.Tensor] = None,
        token_type_ids: Optional[torch.Tensor] = None,
        output_hidden_states: bool = False,
    ) -> tuple:
        """``input_ids [B, 2]`` (``[CLS] [SEP]``), ``input_video_embeds [B, Lv, 512]`` (raw features, or None),
        ``attention_mask [B, Lv+2]`` -> ``(last_hidden [B, Lv+2, H], pooled [B, H], hidden_states?)``;
        see :meth:`MMBertModel.forward`."""
        video_tokens = None if input_video_embeds is None else self.videomlp(input_video_embeds)
        return self.bert(input_ids, video_tokens, attention_mask, token_type_ids, output_hidden_states)


class MMBertForTokenClassification(MMBertForEncoder):
    """:class:`MMBertForEncoder` plus a per-token classifier ``Linear(H, num_classes)`` over the last hidden states
    (a ``dropout`` module is declared, and not applied, as in the original): the video encoder of COIN action
    segmentation fine-tuning.

    ``num_classes`` is ``config.token_classes`` when the config has it (``model.num_labels`` of the run config),
    else :data:`COIN_NUM_LABELS` (779), the original's fixed width.  Keys: those of :class:`MMBertForEncoder` plus
    ``classifier.weight`` / ``classifier.bias``, as in the original.
    """

    fresh_prefixes = ("videomlp.", "classifier.")

    def __init__(self, config) -> None:
        super().__init__(config)
        self.dropout = torch.nn.Dropout(config.hidden_dropout_prob)
        self.classifier = torch.nn.Linear(config.hidden_size, int(getattr(config, "token_classes", None)
                                                                  or COIN_NUM_LABELS))
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,
        input_video_embeds: Optional[torch.Tensor],
        attention_mask: Optional[torch.Tensor] = None,
        token_type_ids: Optional[torch.Tensor] = None,
        output_hidden_states: bool = False,
    ) -> tuple:
        """As :meth:`MMBertForEncoder.forward` -> ``(logits [B, Lv+2, num_classes],)``: the classifier over every
        position's last hidden state.  The dropout the original declared is not applied before the classifier,
        as in the original."""
        hidden = super().forward(input_ids, input_video_embeds, attention_mask, token_type_ids)[0]
        return (self.classifier(hidden),)
