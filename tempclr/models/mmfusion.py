"""VideoCLIP / TempCLR fusion models.

``MMFusion(config)`` builds the two encoders from ``config.dataset.bert_name`` (a hub name or a local folder
written by ``BertModel.save_pretrained``):

* ``video_encoder``: :class:`MMBertForEncoder` with ``max_video_len = config.dataset.max_video_len`` (32) and
  ``num_hidden_layers = config.model.num_hidden_video_layers`` (6): BERT embeddings, the first layers and the
  pooler come from the checkpoint, ``videomlp`` is random.
* ``text_encoder``: a plain ``transformers.BertModel``.

``MMFusion(config, bert_config=BertConfig(...))`` builds the same tree with random weights and no download
(tests, or before loading a full fairseq checkpoint).  Config keys ``num_iso_layer`` and ``mm_encoder_cls`` only
matter to the joint-encoder models of MMPT and are not read here.
"""
from __future__ import annotations

import copy
from typing import Any, Optional

import torch
from torch import nn
from transformers.utils import logging as hf_logging
from transformers import AutoConfig, AutoTokenizer, BertConfig, BertModel

from ..utils.bert_name import load_pretrained
from ..utils.config_schema import cfg_get, setting
from ..utils.registry import register
from .transformermodel import MMBertForEncoder, MMBertForTokenClassification

__all__ = ["masked_mean", "MMFusion", "MMFusionSeparate", "MMFusionSeparateActionLocalization",
           "MMFusionSeparateFullVideoBGRetrieval", "MMFusionSeparateActionSegmentation"]

VIDEO_ENCODER_CLASSES = {"MMBertForEncoder": MMBertForEncoder,
                         "MMBertForTokenClassification": MMBertForTokenClassification}
TEXT_ENCODER_CLASSES = {"BertModel": BertModel}
# buffers that transformers rebuilds itself and never stores: absent from a checkpoint is fine
_REBUILT_BUFFERS = ("position_ids", "token_type_ids")


def masked_mean(hidden: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden [B, L, H]`` over the rows where ``weights [B, L]`` (bool or 0/1) is set -> ``[B, H]``.

    A row with no set weight gives NaN (0/0), as in the original; the sequence builders always set the final
    ``[SEP]``, so this does not happen for their outputs.
    """
    weights = weights.to(hidden.dtype)
    summed = torch.einsum("blh,bl->bh", hidden, weights)
    return summed / weights.sum(dim=1, keepdim=True)


def _pick_class(table: dict, name: Optional[str], key: str) -> type:
    if name not in table:
        raise ValueError(f"config.{key} = {name!r} is not supported by MMFusion; use one of {sorted(table)}")
    return table[name]


def _check_loaded(info: dict, allowed_missing: tuple, what: str, source: str) -> None:
    """Fail when ``from_pretrained`` left weights other than ``allowed_missing`` prefixes at random init."""
    missing = sorted(
        key for key in info.get("missing_keys", ())
        if not key.startswith(allowed_missing) and not key.endswith(_REBUILT_BUFFERS))
    mismatched = sorted(str(item) for item in info.get("mismatched_keys", ()))
    if missing or mismatched:
        raise ValueError(
            f"{what} from {source!r}: checkpoint lacks {missing} and has wrong shapes for {mismatched}; "
            "is bert_name a BERT checkpoint with at least model.num_hidden_video_layers layers?")


class MMFusion(nn.Module):
    """Base of the fusion models: holds ``config`` and builds ``video_encoder`` / ``text_encoder``.

    Args:
        config: the whole run config (``dataset``, ``model`` sections).  Reads ``dataset.bert_name``,
            ``dataset.train_path``, ``dataset.max_video_len`` (32), ``model.num_hidden_video_layers`` (6),
            ``model.video_encoder_cls`` (``MMBertForEncoder``), ``model.text_encoder_cls`` (``BertModel``).
        bert_config: build both encoders from this ``BertConfig`` with random weights instead of
            ``from_pretrained(bert_name)``; nothing is read from disk or the hub.
        tokenizer: tokenizer giving the special token ids to models that need them; default
            ``AutoTokenizer.from_pretrained(bert_name)``, loaded only by such models.
    """

    def __init__(self, config: Any, bert_config: Optional[BertConfig] = None, tokenizer: Any = None,
                 **kwargs: Any) -> None:
        super().__init__()
        self.config = config
        self.bert_name = cfg_get(config, "dataset.bert_name")
        if bert_config is None and self.bert_name is None:
            raise ValueError("config.dataset.bert_name is required (a hub name such as 'bert-base-uncased' "
                             "or a folder written by BertModel.save_pretrained)")
        self._tokenizer = tokenizer
        self.is_train = cfg_get(config, "dataset.train_path") is not None
        self.max_video_len = int(setting(config, "dataset.max_video_len"))
        self.num_hidden_video_layers = int(setting(config, "model.num_hidden_video_layers"))
        video_cls = _pick_class(VIDEO_ENCODER_CLASSES, setting(config, "model.video_encoder_cls"),
                                "model.video_encoder_cls")
        text_cls = _pick_class(TEXT_ENCODER_CLASSES, setting(config, "model.text_encoder_cls"),
                               "model.text_encoder_cls")
        base_config = copy.deepcopy(bert_config) if bert_config is not None else load_pretrained(
            AutoConfig, self.bert_name)
        self.hidden_size = base_config.hidden_size
        video_config = self._video_config(base_config)
        if bert_config is not None:
            self.video_encoder = video_cls(video_config)
            self.text_encoder = text_cls(copy.deepcopy(bert_config))
        else:
            self.video_encoder = self._load_video_encoder(video_cls, video_config)
            self.text_encoder = self._load_text_encoder(text_cls)

    def _video_config(self, base_config: BertConfig) -> BertConfig:
        video_config = copy.deepcopy(base_config)
        video_config.max_video_len = self.max_video_len
        if self.num_hidden_video_layers > base_config.num_hidden_layers:
            raise ValueError(
                f"model.num_hidden_video_layers = {self.num_hidden_video_layers} but {self.bert_name!r} has only "
                f"{base_config.num_hidden_layers} layers")
        video_config.num_hidden_layers = self.num_hidden_video_layers
        video_config.token_classes = int(setting(self.config, "model.num_labels"))
        return video_config

    def _load_video_encoder(self, video_cls: type, video_config: BertConfig) -> nn.Module:
        # transformers reports the (expected) fresh videomlp weights as a warning; _check_loaded checks instead
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            encoder, info = video_cls.from_pretrained(self.bert_name, config=video_config, output_loading_info=True)
        finally:
            hf_logging.set_verbosity(verbosity)
        _check_loaded(info, tuple(video_cls.fresh_prefixes), "video encoder", self.bert_name)
        return encoder

    def _load_text_encoder(self, text_cls: type) -> nn.Module:
        encoder, info = text_cls.from_pretrained(self.bert_name, output_loading_info=True)
        _check_loaded(info, (), "text encoder", self.bert_name)
        return encoder

    @property
    def tokenizer(self) -> Any:
        """The tokenizer of ``dataset.bert_name`` (or the one given to the constructor)."""
        if self._tokenizer is None:
            if self.bert_name is None:
                raise ValueError("no tokenizer: pass tokenizer=... or set config.dataset.bert_name")
            self._tokenizer = AutoTokenizer.from_pretrained(self.bert_name)
        return self._tokenizer

    def forward(self, caps: torch.Tensor, cmasks: torch.Tensor, vfeats: torch.Tensor, vmasks: torch.Tensor,
                **kwargs: Any) -> dict:
        raise TypeError(f"{type(self).__name__} is a base class; use MMFusionSeparate or a subclass of it")


@register("model")
class MMFusionSeparate(MMFusion):
    """VideoCLIP / TempCLR: separate video and text encoders, masked-mean pooling, dot-product similarity.

    ``caps [B, T]`` is ``[CLS] [SEP] tokens [SEP] [PAD]...`` (T = 64) with ``cmasks [B, T]``; the first
    ``[SEP]`` belongs to the video branch.  ``vfeats [B, Lv, 512]`` with ``vmasks [B, Lv]`` (Lv = 32).
    """

    def forward(self, caps: torch.Tensor, cmasks: torch.Tensor, vfeats: torch.Tensor, vmasks: torch.Tensor,
                attention_mask: Optional[torch.Tensor] = None, video_label: Optional[torch.Tensor] = None,
                text_label: Optional[torch.Tensor] = None, output_hidden_states: bool = False, **kwargs: Any) -> dict:
        """-> ``{"pooled_video": [B, H], "pooled_text": [B, H]}`` (with ``output_hidden_states``, the last hidden
        states of each branch instead).  ``attention_mask``, ``video_label`` and ``text_label`` are the original's
        parameters for its joint/MLM models; the separate encoders ignore them, as the original does."""
        return {"pooled_video": self.forward_video(vfeats, vmasks, caps, cmasks, output_hidden_states),
                "pooled_text": self.forward_text(caps, cmasks, output_hidden_states)}

    def forward_video(self, vfeats: torch.Tensor, vmasks: torch.Tensor, caps: torch.Tensor, cmasks: torch.Tensor,
                      output_hidden_states: bool = False, **kwargs: Any) -> torch.Tensor:
        """Video branch on ``[CLS] v_1..v_Lv [SEP]`` with ids ``caps[:, :2]`` and mask
        ``[cmasks[:, 0], vmasks, cmasks[:, 1]]``.

        Returns ``pooled_video [B, H]``, the mean of the last hidden states over valid video tokens and the
        video ``[SEP]`` (``[CLS]`` excluded); with ``output_hidden_states`` (MMPT's name), the last hidden states
        ``[B, Lv + 2, H]`` instead.
        """
        self._check_pair(caps, cmasks, "caps", "cmasks")
        self._check_pair(vfeats[..., 0], vmasks, "vfeats", "vmasks")
        expected = self.video_encoder.videomlp.linear1.in_features
        if vfeats.size(-1) != expected:
            raise ValueError(f"video features have {vfeats.size(-1)} values per second but the model's video MLP "
                             f"takes {expected} (S3D video_embedding): the features in dataset.vfeat_dir were made "
                             "by another extractor; extract them with scripts/video_feature_extractor")
        attention_mask = torch.cat([cmasks[:, :1], vmasks, cmasks[:, 1:2]], dim=1)
        token_type_ids = torch.zeros(attention_mask.shape, dtype=torch.long, device=caps.device)
        hidden = self.video_encoder(caps[:, :2], vfeats, attention_mask, token_type_ids)[0]
        if output_hidden_states:
            return hidden
        edge = torch.ones_like(vmasks[:, :1], dtype=torch.bool)
        weights = torch.cat([~edge, vmasks.to(torch.bool), edge], dim=1)
        return masked_mean(hidden, weights)

    def forward_text(self, caps: torch.Tensor, cmasks: torch.Tensor, output_hidden_states: bool = False,
                     **kwargs: Any) -> torch.Tensor:
        """Text branch on ``[caps[:, 0]] ++ caps[:, 2:]`` (``[CLS] tokens [SEP] pad``, length T-1) with mask
        ``[cmasks[:, 0]] ++ cmasks[:, 2:]``.

        Returns ``pooled_text [B, H]``, the mean over text tokens and the final ``[SEP]`` (``[CLS]`` and padding
        excluded); with ``output_hidden_states``, the last hidden states ``[B, T-1, H]``.
        """
        self._check_pair(caps, cmasks, "caps", "cmasks")
        input_ids = torch.cat([caps[:, :1], caps[:, 2:]], dim=1)
        attention_mask = torch.cat([cmasks[:, :1], cmasks[:, 2:]], dim=1).to(torch.long)
        token_type_ids = torch.zeros_like(input_ids)
        hidden = self.text_encoder(input_ids=input_ids, attention_mask=attention_mask,
                                   token_type_ids=token_type_ids).last_hidden_state
        if output_hidden_states:
            return hidden
        weights = torch.cat([torch.zeros_like(cmasks[:, :1], dtype=torch.bool), cmasks[:, 2:].to(torch.bool)], dim=1)
        return masked_mean(hidden, weights)

    @staticmethod
    def _check_pair(values: torch.Tensor, mask: torch.Tensor, values_name: str, mask_name: str) -> None:
        if values.dim() != 2 or mask.shape != values.shape:
            raise ValueError(f"{values_name} {tuple(values.shape)} and {mask_name} {tuple(mask.shape)} must both be "
                             f"[B, L] (features [B, L, D]) with the same B and L")


class _MMFusionSeparateWindows(MMFusionSeparate):
    """Base of the one-video-per-batch models that encode a video as W windows.

    Each window is encoded with dummy caps ``[CLS, SEP, PAD, SEP]`` and cmasks ``[0, 1, 0, 1]`` (so ``[CLS]`` is
    masked out), ids from the tokenizer; inputs arrive with the loader's leading batch dim of 1, which
    :meth:`_squeeze_video` removes.
    """

    def __init__(self, config: Any, bert_config: Optional[BertConfig] = None, tokenizer: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(config, bert_config=bert_config, tokenizer=tokenizer, **kwargs)
        ids = [self.tokenizer.cls_token_id, self.tokenizer.sep_token_id, self.tokenizer.pad_token_id]
        if any(token_id is None for token_id in ids):
            raise ValueError(f"tokenizer of {self.bert_name!r} lacks [CLS]/[SEP]/[PAD] (ids {ids})")
        cls_id, sep_id, pad_id = ids
        self.register_buffer("dummy_caps", torch.tensor([[cls_id, sep_id, pad_id, sep_id]]), persistent=False)
        self.register_buffer("dummy_cmasks", torch.tensor([[False, True, False, True]]), persistent=False)

    def _squeeze_video(self, caps: torch.Tensor, cmasks: torch.Tensor, vfeats: torch.Tensor,
                       vmasks: torch.Tensor) -> tuple:
        """``[1, K, T]``, ``[1, K, T]``, ``[1, W, Lv, D]``, ``[1, W, Lv]`` -> the same without the batch dim."""
        if vfeats.dim() == 4 and vfeats.size(0) != 1:
            raise ValueError(f"{type(self).__name__} takes one video per batch, got {vfeats.size(0)}; "
                             "set fairseq.dataset.batch_size: 1")
        return tuple(t.squeeze(0) for t in (caps, cmasks, vfeats, vmasks))

    def forward_windows(self, vfeats: torch.Tensor, vmasks: torch.Tensor,
                        output_hidden_states: bool = False) -> torch.Tensor:
        """Video branch over the windows ``vfeats [W, Lv, D]`` / ``vmasks [W, Lv]`` with the dummy caps:
        ``pooled_video [W, H]``, or the last hidden states ``[W, Lv + 2, H]`` with ``output_hidden_states``."""
        windows = vfeats.size(0)
        dummy_caps = self.dummy_caps.to(vfeats.device).expand(windows, -1)
        dummy_cmasks = self.dummy_cmasks.to(vfeats.device).expand(windows, -1)
        return self.forward_video(vfeats, vmasks, dummy_caps, dummy_cmasks, output_hidden_states=output_hidden_states)


@register("model")
class MMFusionSeparateActionLocalization(_MMFusionSeparateWindows):
    """CrossTask step localisation, one video per batch.

    The video is cut into W windows ``vfeats [1, W, Lv, 512]`` / ``vmasks [1, W, Lv]``; the K step texts are
    ``caps [1, K, T]`` / ``cmasks [1, K, T]``.  Each window is encoded with dummy caps
    ``[CLS, SEP, PAD, SEP]`` and cmasks ``[0, 1, 0, 1]`` (so ``[CLS]`` is masked out), ids from the tokenizer.
    """

    def forward(self, caps: torch.Tensor, cmasks: torch.Tensor, vfeats: torch.Tensor, vmasks: torch.Tensor,
                **kwargs: Any) -> dict:
        """-> ``{"logits": [S, K], "pooled_text": [K, H], "video_seq": [S, H]}`` where S = ``vmasks.sum()``:
        ``video_seq`` holds the per-second hidden states window by window, ``logits = video_seq @ pooled_text.T``.
        """
        caps, cmasks, vfeats, vmasks = self._squeeze_video(caps, cmasks, vfeats, vmasks)
        hidden = self.forward_windows(vfeats, vmasks, output_hidden_states=True)
        video_seq = hidden[:, 1:1 + vmasks.size(1)][vmasks.to(torch.bool)]
        pooled_text = self.forward_text(caps, cmasks)
        logits = video_seq @ pooled_text.transpose(0, 1)
        return {"logits": logits, "pooled_text": pooled_text, "video_seq": video_seq}


@register("model")
class MMFusionSeparateFullVideoBGRetrieval(_MMFusionSeparateWindows):
    """YouCook2 full-video retrieval with background kept, one video per batch.

    Input as :class:`MMFusionSeparateActionLocalization` (W windows of the whole video, its Ncap captions);
    each window is pooled like a clip (mean over its valid seconds and the video ``[SEP]``, with the dummy caps).
    """

    def forward(self, caps: torch.Tensor, cmasks: torch.Tensor, vfeats: torch.Tensor, vmasks: torch.Tensor,
                **kwargs: Any) -> dict:
        """-> ``{"pooled_video": [W, H], "pooled_text": [Ncap, H]}``."""
        caps, cmasks, vfeats, vmasks = self._squeeze_video(caps, cmasks, vfeats, vmasks)
        return {"pooled_video": self.forward_windows(vfeats, vmasks),
                "pooled_text": self.forward_text(caps, cmasks)}


@register("model")
class MMFusionSeparateActionSegmentation(MMFusionSeparate):
    """COIN action segmentation fine-tuning, one video per batch: the video encoder
    (``model.video_encoder_cls: MMBertForTokenClassification``) classifies every second of every window.

    Its checkpoint keys are those of :class:`MMFusionSeparate` plus ``video_encoder.classifier.*``; fine-tuning
    starts from a VideoCLIP checkpoint without them (the fairseq adapter keeps the new classifier at its
    initialisation and says so, see :meth:`new_head_prefixes`).
    """

    @staticmethod
    def new_head_prefixes() -> tuple:
        """Key prefixes that a pretrained (retrieval) checkpoint lacks and fine-tuning initialises."""
        return ("video_encoder.classifier.",)

    def forward(self, caps: torch.Tensor, cmasks: torch.Tensor, vfeats: torch.Tensor, vmasks: torch.Tensor,
                attention_mask: Optional[torch.Tensor] = None, **kwargs: Any) -> dict:
        """``caps [1, W, 4]``, ``cmasks [1, W, 4]``, ``vfeats [1, W, Lv, D]``, ``vmasks [1, W, Lv]`` (any leading
        shape is flattened into the W windows) -> ``{"logits": [W, Lv, num_classes]}``, one row per window
        position (padding included; its targets are ``-100``)."""
        caps = caps.reshape(-1, caps.size(-1))
        cmasks = cmasks.reshape(-1, cmasks.size(-1))
        vfeats = vfeats.reshape(-1, vfeats.size(-2), vfeats.size(-1))
        vmasks = vmasks.reshape(-1, vmasks.size(-1))
        logits = self.forward_video(vfeats, vmasks, caps, cmasks, output_hidden_states=True)
        return {"logits": logits[:, 1:vmasks.size(1) + 1]}
