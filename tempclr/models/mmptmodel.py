"""``MMPTModel``: raw video frames and captions in, VideoCLIP / TempCLR embeddings (or their score) out.

As the original: ``model, tokenizer, aligner = MMPTModel.from_pretrained(config)`` builds the task's model from the
config, loads ``<eval.save_path>/checkpoint_best.pt``, loads S3D from ``pretrained_models/s3d_howto100m.pth`` and
returns the tokenizer of ``dataset.bert_name`` and an ``Aligner`` for ``aligner._build_text_seq(token_ids)``::

    model, tokenizer, aligner = MMPTModel.from_pretrained("configs/how2.yaml")
    video_frames = torch.rand(1, 2, 30, 224, 224, 3)         # B, seconds, 30 fps, H, W, RGB in [0, 1]
    caps, cmasks = aligner._build_text_seq(tokenizer("crack the eggs", add_special_tokens=False)["input_ids"])
    caps, cmasks = torch.as_tensor(caps)[None], torch.as_tensor(cmasks)[None]
    with torch.no_grad():
        score = model(video_frames, caps, cmasks, return_score=True)["score"]     # [B]

Differences from the original: the S3D embeddings are L2-normalised per second, as the feature extractor writes
them (the original fed unnormalised ones, so its inputs did not match what the model was trained on); batches of
several videos work (the original asserted a batch of 1 and built its padding on the CPU); ``forward_video`` and
``forward_text`` give one side alone; the model comes back in eval mode and S3D stays in eval mode (its
BatchNorm statistics are fixed); the encoders are built from the BERT config alone (the checkpoint holds every
weight), so ``dataset.bert_name`` needs only ``config.json`` and the vocabulary.
"""
from __future__ import annotations

import os
from typing import Any, Optional, Union

import torch
from torch import nn
from torch.nn import functional as F

from tempclr.utils.config_schema import cfg_get, setting, validate_config

__all__ = ["MMPTModel"]

DEFAULT_S3D_CHECKPOINT = os.path.join("pretrained_models", "s3d_howto100m.pth")


class MMPTModel(nn.Module):
    """S3D (``video_encoder``) in front of a separate-encoder fusion model (``model``, e.g. ``MMFusionSeparate``).

    Args:
        config: the run config (reads ``dataset.max_video_len``, 32).
        model: the fusion model; needs ``forward_video(vfeats, vmasks, caps, cmasks)``,
            ``forward_text(caps, cmasks)`` and ``tokenizer``.
        video_encoder: S3D (:class:`tempclr.processors.models.S3D`).
    """

    def __init__(self, config: Any, model: nn.Module, video_encoder: nn.Module, **kwargs: Any) -> None:
        super().__init__()
        self.max_video_len = int(setting(config, "dataset.max_video_len"))
        self.video_encoder = video_encoder
        self.model = model
        self.video_encoder.eval()

    @classmethod
    def from_pretrained(cls, config: Union[str, Any], checkpoint: str = "checkpoint_best.pt",
                        s3d_checkpoint: str = DEFAULT_S3D_CHECKPOINT, s3d_dict: Optional[str] = None) -> tuple:
        """``(MMPTModel, tokenizer, aligner)`` for ``config`` (a YAML path or a loaded config).

        ``checkpoint`` is joined to ``eval.save_path`` (an absolute path stays as it is) and loaded strictly into
        the model ``Task.build_model`` builds from the BERT config alone; ``s3d_checkpoint`` is loaded strictly
        (:func:`tempclr.processors.models.load_s3d`); ``s3d_dict`` is the release's word dictionary for S3D's
        unused text module (not needed).  Everything is on the CPU, in eval mode."""
        from tempclr.processors.models.s3dg import load_s3d
        from tempclr.processors.processor import Aligner, get_tokenizer
        from tempclr.tasks.task import Task
        from tempclr.utils.load_config import recursive_config

        if isinstance(config, (str, os.PathLike)):
            source = str(config)
            config = recursive_config(source)
            validate_config(config, source=source)  # a misspelt key is an error, not a silent default
        save_path = cfg_get(config, "eval.save_path")
        checkpoint_path = os.path.join(str(save_path), checkpoint) if save_path is not None else checkpoint
        if not os.path.isfile(checkpoint_path):
            raise FileNotFoundError(f"checkpoint not found: {checkpoint_path} (eval.save_path + checkpoint); put the "
                                    "released or trained checkpoint there or pass checkpoint=<path>")
        task = Task.config_task(config)
        model = task.build_model(checkpoint=checkpoint_path)
        video_encoder = load_s3d(s3d_checkpoint, dict_path=s3d_dict)
        bert_name = str(cfg_get(config, "dataset.bert_name"))
        tokenizer = get_tokenizer(bert_name, cfg_get(config, "dataset.use_fast"))
        aligner = Aligner(config.dataset)
        return cls(config, model, video_encoder).eval(), tokenizer, aligner

    def train(self, mode: bool = True) -> "MMPTModel":
        """As ``nn.Module.train``, except that S3D stays in eval mode."""
        super().train(mode)
        self.video_encoder.eval()
        return self

    def video_features(self, video_frames: torch.Tensor) -> torch.Tensor:
        """``video_frames [B, T, F, H, W, 3]`` (F = 30 frames per second, RGB in [0, 1]) -> the L2-normalised S3D
        embedding of every second, ``[B, T, 512]`` (what the feature extractor writes for these frames)."""
        if video_frames.dim() != 6 or video_frames.size(-1) != 3:
            raise ValueError(f"video_frames must be [B, T, 30, H, W, 3] (RGB in [0, 1]), got shape "
                             f"{tuple(video_frames.shape)}")
        bsz, seconds = video_frames.shape[:2]
        clips = video_frames.reshape(bsz * seconds, *video_frames.shape[2:]).permute(0, 4, 1, 2, 3)
        embedding = self.video_encoder(clips.float())["video_embedding"]
        return F.normalize(embedding, dim=1).view(bsz, seconds, -1)

    def _padded(self, vfeats: torch.Tensor, vmasks: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        bsz, seconds = vfeats.shape[:2]
        if seconds > self.max_video_len:
            raise ValueError(f"{seconds} seconds of video, the model takes at most dataset.max_video_len = "
                             f"{self.max_video_len}; cut the video into windows")
        if vmasks is None:
            vmasks = torch.ones(bsz, seconds, dtype=torch.bool, device=vfeats.device)
        elif vmasks.shape != (bsz, seconds):
            raise ValueError(f"vmasks {tuple(vmasks.shape)} must be [B, T] = {(bsz, seconds)}")
        pad = self.max_video_len - seconds
        vfeats = torch.cat([vfeats, vfeats.new_zeros(bsz, pad, vfeats.size(-1))], dim=1)
        vmasks = torch.cat([vmasks.to(torch.bool), vmasks.new_zeros(bsz, pad, dtype=torch.bool)], dim=1)
        return vfeats, vmasks

    def _video_ids(self, bsz: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        tokenizer = self.model.tokenizer
        caps = torch.tensor([[tokenizer.cls_token_id, tokenizer.sep_token_id]], device=device).expand(bsz, -1)
        return caps, torch.ones(bsz, 2, dtype=torch.bool, device=device)

    def forward_video(self, video_frames: torch.Tensor, vmasks: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``pooled_video [B, H]`` of ``video_frames [B, T, 30, H, W, 3]`` (``vmasks [B, T]``: seconds to use,
        default all), on ``[CLS] v_1..v_T [SEP]`` as in pretraining."""
        vfeats, vmasks = self._padded(self.video_features(video_frames), vmasks)
        caps, cmasks = self._video_ids(vfeats.size(0), vfeats.device)
        return self.model.forward_video(vfeats, vmasks, caps, cmasks)

    def forward_text(self, caps: torch.Tensor, cmasks: torch.Tensor) -> torch.Tensor:
        """``pooled_text [B, H]`` of ``caps, cmasks [B, L]`` from ``aligner._build_text_seq``."""
        return self.model.forward_text(caps, cmasks)

    def forward(self, video_frames: torch.Tensor, caps: torch.Tensor, cmasks: torch.Tensor,
                return_score: bool = False, vmasks: Optional[torch.Tensor] = None) -> dict:
        """``video_frames [B, T, 30, H, W, 3]`` in [0, 1] (T <= 32 seconds), ``caps, cmasks [B, L]`` ->
        ``{"pooled_video": [B, H], "pooled_text": [B, H]}``, or with ``return_score`` ``{"score": [B]}``, the dot
        product of the two (VideoCLIP's similarity)."""
        vfeats, vmasks = self._padded(self.video_features(video_frames), vmasks)
        if caps.size(0) != vfeats.size(0):
            raise ValueError(f"{vfeats.size(0)} videos but {caps.size(0)} captions; give one caption per video")
        output = self.model(caps, cmasks, vfeats, vmasks)
        if return_score:
            return {"score": (output["pooled_video"] * output["pooled_text"]).sum(dim=-1)}
        return output
