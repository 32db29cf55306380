"""S3D-G video network with the module tree of the HowTo100M MIL-NCE release (``s3d_howto100m.pth``).

The state dict of :class:`S3D` has exactly the 537 tensors of the released file (parameters, BatchNorm buffers
including ``num_batches_tracked``, and the unused text module), with the same names and shapes, so the release
loads strictly.  Use :func:`load_s3d` to read it: on CPU, refusing any missing, unexpected or wrongly shaped key
and naming each.

Network, for clips ``[B, 3, T, H, W]`` with pixels in [0, 1] (no mean/std normalisation; T, H, W even):

1. space-to-depth: every 2x2x2 block of pixels becomes 24 channels -> ``[B, 24, T/2, H/2, W/2]``;
2. ``conv1`` (2x4x4 conv, zero padding 1/2/2, the first row of each axis cropped afterwards, which reproduces
   TensorFlow's 'SAME' padding of the TPU model) then max-pool 1x3x3 / 2;
3. ``conv_2b`` (1x1x1), ``conv_2c`` (separable 3x3x3), self-gating, max-pool 1x3x3 / 2;
4. Inception blocks ``mixed_3b``, ``mixed_3c``, max-pool 3x3x3 / 2, ``mixed_4b`` .. ``mixed_4f``, max-pool
   2x2x2 / 2, ``mixed_5b``, ``mixed_5c``;
5. the mean over time and space gives ``mixed_5c [B, 1024]``; ``fc`` gives ``video_embedding [B, 512]``.

The pooling layers pad like TensorFlow's 'SAME' (zeros, more at the end than at the start, ``ceil_mode``); a
30-frame 224x224 clip ends as a 4x7x7 grid before the mean.  Every convolution is followed by BatchNorm (eps
1e-5) and ReLU; every Inception branch ends with a self-gating unit (a sigmoid channel weight computed from the
branch's spatio-temporal mean).  In the release the gating after ``conv_2c`` is always applied: the attribute
holding it replaced the ``gating`` flag, and this module keeps that (the flag only affects the Inception blocks).
"""
from __future__ import annotations

import os
import re
from typing import Iterable, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from tempclr.utils.safe_pickle import RefusedPickleError, load_npy_object_array, load_torch

__all__ = ["S3D", "InceptionBlock", "SelfGating", "STConv3D", "MaxPool3dTFPadding", "Sentence_Embedding",
           "S3D_VOCAB_SIZE", "load_s3d", "load_s3d_state", "check_s3d_state", "s3d_embed"]

S3D_VOCAB_SIZE = 66250          # rows of text_module.word_embd in the release (index 0 = no word)
_MAX_LISTED = 30


def _triple(value: int | Sequence[int]) -> tuple[int, int, int]:
    if isinstance(value, int):
        return (value, value, value)
    if len(value) != 3:
        raise ValueError(f"expected an int or 3 values (t, h, w), got {value!r}")
    return tuple(int(v) for v in value)


class SelfGating(nn.Module):
    """``x [B, C, T, H, W] * sigmoid(fc(mean_{T,H,W}(x)))[:, :, None, None, None]``; parameters ``fc``."""

    def __init__(self, input_dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(input_dim, input_dim)

    def forward(self, input_tensor: torch.Tensor) -> torch.Tensor:
        weights = torch.sigmoid(self.fc(input_tensor.mean(dim=(2, 3, 4))))
        return input_tensor * weights[:, :, None, None, None]


class STConv3D(nn.Module):
    """Conv3d (no bias) + BatchNorm3d + ReLU; ``separable`` splits a t x k x k kernel into a spatial 1 x k x k
    step (``conv1``/``bn1``) followed by a temporal t x 1 x 1 step (``conv2``/``bn2``), each with its own BN and
    ReLU.  ``stride`` and ``padding`` are an int or ``(t, h, w)``; in the separable form the spatial parts go to
    the first step and the temporal part to the second."""

    def __init__(self, input_dim: int, output_dim: int, kernel_size: Sequence[int],
                 stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0, separable: bool = False) -> None:
        super().__init__()
        kernel, strides, pads = _triple(kernel_size), _triple(stride), _triple(padding)
        self.separable = bool(separable) and kernel[0] != 1
        if self.separable:
            self.conv1 = nn.Conv3d(input_dim, output_dim, (1, kernel[1], kernel[2]), (1, strides[1], strides[2]),
                                   (0, pads[1], pads[2]), bias=False)
            self.bn1 = nn.BatchNorm3d(output_dim)
            self.conv2 = nn.Conv3d(output_dim, output_dim, (kernel[0], 1, 1), (strides[0], 1, 1), (pads[0], 0, 0),
                                   bias=False)
            self.bn2 = nn.BatchNorm3d(output_dim)
        else:
            self.conv1 = nn.Conv3d(input_dim, output_dim, kernel, strides, pads, bias=False)
            self.bn1 = nn.BatchNorm3d(output_dim)

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 (the original's name)
        out = F.relu(self.bn1(self.conv1(input)))
        if self.separable:
            out = F.relu(self.bn2(self.conv2(out)))
        return out


class MaxPool3dTFPadding(nn.Module):
    """Max-pool with TensorFlow 'SAME' padding for inputs whose size is a multiple of the stride: on each axis
    ``max(kernel - stride, 0)`` zeros, the smaller half before and the larger half after, then ``ceil_mode``.
    (Zeros, not -inf: the inputs follow a ReLU, so a zero never wins over a real value.)"""

    def __init__(self, kernel_size: Sequence[int], stride: Optional[Sequence[int]] = None,
                 padding: str = "SAME") -> None:
        super().__init__()
        if padding != "SAME":
            raise ValueError(f"MaxPool3dTFPadding supports padding='SAME' only, got {padding!r}")
        kernel = _triple(kernel_size)
        strides = kernel if stride is None else _triple(stride)
        pads = []
        for k, s in zip(kernel, strides):
            total = max(k - s, 0)
            pads.append((total // 2, total - total // 2))
        (t0, t1), (h0, h1), (w0, w1) = pads
        self.padding_shape = (w0, w1, h0, h1, t0, t1)       # F.pad order: last axis first
        self.pool = nn.MaxPool3d(kernel, strides, ceil_mode=True)

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        return self.pool(F.pad(inp, self.padding_shape))


class InceptionBlock(nn.Module):
    """Four branches concatenated on channels: ``b0`` 1x1x1; ``b1`` 1x1x1 then separable 3x3x3; ``b2`` 1x1x1 then
    separable 3x3x3; ``b3`` 3x3x3 max-pool (stride 1) then 1x1x1; each gated when ``gating``.
    Output channels ``num_outputs_0_0a + num_outputs_1_0b + num_outputs_2_0b + num_outputs_3_0b``."""

    def __init__(self, input_dim: int, num_outputs_0_0a: int, num_outputs_1_0a: int, num_outputs_1_0b: int,
                 num_outputs_2_0a: int, num_outputs_2_0b: int, num_outputs_3_0b: int, gating: bool = True) -> None:
        super().__init__()
        self.conv_b0 = STConv3D(input_dim, num_outputs_0_0a, (1, 1, 1))
        self.conv_b1_a = STConv3D(input_dim, num_outputs_1_0a, (1, 1, 1))
        self.conv_b1_b = STConv3D(num_outputs_1_0a, num_outputs_1_0b, (3, 3, 3), padding=1, separable=True)
        self.conv_b2_a = STConv3D(input_dim, num_outputs_2_0a, (1, 1, 1))
        self.conv_b2_b = STConv3D(num_outputs_2_0a, num_outputs_2_0b, (3, 3, 3), padding=1, separable=True)
        self.maxpool_b3 = nn.MaxPool3d((3, 3, 3), stride=1, padding=1)
        self.conv_b3_b = STConv3D(input_dim, num_outputs_3_0b, (1, 1, 1))
        self.gating = bool(gating)
        self.output_dim = num_outputs_0_0a + num_outputs_1_0b + num_outputs_2_0b + num_outputs_3_0b
        if self.gating:
            self.gating_b0 = SelfGating(num_outputs_0_0a)
            self.gating_b1 = SelfGating(num_outputs_1_0b)
            self.gating_b2 = SelfGating(num_outputs_2_0b)
            self.gating_b3 = SelfGating(num_outputs_3_0b)

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002
        branches = [self.conv_b0(input), self.conv_b1_b(self.conv_b1_a(input)),
                    self.conv_b2_b(self.conv_b2_a(input)), self.conv_b3_b(self.maxpool_b3(input))]
        if self.gating:
            gates = (self.gating_b0, self.gating_b1, self.gating_b2, self.gating_b3)
            branches = [gate(branch) for gate, branch in zip(gates, branches)]
        return torch.cat(branches, dim=1)


class Sentence_Embedding(nn.Module):  # noqa: N801 (the release's name)
    """The release's text tower (not used by VideoCLIP/TempCLR, kept so the checkpoint loads strictly).

    Words (``[\\w']+`` of the lower-cased sentence) found in the vocabulary become ids ``index + 1`` (0 pads),
    the first ``max_words`` are kept; ``word_embd`` -> ``fc1`` -> ReLU -> max over words -> ``fc2``.

    Args:
        embd_dim: output size (512).
        num_embeddings: rows of ``word_embd``; the release has 66,250 whatever the vocabulary file holds.
        word_embedding_dim: 300.
        token_to_word_path: the release's ``s3d_dict.npy`` (an array of words), or None to build the layer
            without a vocabulary (then :meth:`forward` raises).
        max_words: 16.
        output_dim: hidden size of ``fc1`` (2048).
    """

    def __init__(self, embd_dim: int, num_embeddings: int = S3D_VOCAB_SIZE, word_embedding_dim: int = 300,
                 token_to_word_path: Optional[str] = "dict.npy", max_words: int = 16, output_dim: int = 2048) -> None:
        super().__init__()
        self.word_embd = nn.Embedding(num_embeddings, word_embedding_dim)
        self.fc1 = nn.Linear(word_embedding_dim, output_dim)
        self.fc2 = nn.Linear(output_dim, embd_dim)
        self.max_words = max_words
        self.word_to_token: Optional[dict[str, int]] = None
        if token_to_word_path is not None:
            self.word_to_token = self._read_vocabulary(token_to_word_path, num_embeddings)

    @staticmethod
    def _read_vocabulary(path: str, num_embeddings: int) -> dict[str, int]:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"S3D word dictionary not found: {path} (the release's s3d_dict.npy); pass "
                                    "dict_path=None to build S3D without it (video features need no dictionary)")
        # the release's dictionary may be an object array: its pickle is read by the restricted unpickler
        words = load_npy_object_array(path)
        if words.ndim != 1:
            raise ValueError(f"{path}: expected a 1-D array of words, got shape {words.shape}")
        if len(words) + 1 > num_embeddings:
            raise ValueError(f"{path}: {len(words)} words need {len(words) + 1} embedding rows, the layer has "
                             f"{num_embeddings}")
        return {str(word): index + 1 for index, word in enumerate(words)}

    def _words_to_ids(self, sentences: Iterable[str]) -> torch.Tensor:
        if self.word_to_token is None:
            raise RuntimeError("this S3D was built without a word dictionary (dict_path=None); build it with the "
                               "release's s3d_dict.npy to embed text")
        rows = []
        for sentence in sentences:
            ids = [self.word_to_token[w] for w in re.findall(r"[\w']+", str(sentence).lower())
                   if w in self.word_to_token][:self.max_words]
            rows.append(ids + [0] * (self.max_words - len(ids)))
        return torch.tensor(rows, dtype=torch.long, device=self.word_embd.weight.device)

    def forward(self, x: Sequence[str]) -> dict:
        """``x``: B sentences -> ``{"text_embedding": [B, embd_dim]}``."""
        hidden = F.relu(self.fc1(self.word_embd(self._words_to_ids(x))))
        return {"text_embedding": self.fc2(hidden.max(dim=1).values)}


# (input, b0, b1a, b1b, b2a, b2b, b3) of each Inception block, in network order
_INCEPTION_WIDTHS = {
    "mixed_3b": (64, 96, 128, 16, 32, 32),
    "mixed_3c": (128, 128, 192, 32, 96, 64),
    "mixed_4b": (192, 96, 208, 16, 48, 64),
    "mixed_4c": (160, 112, 224, 24, 64, 64),
    "mixed_4d": (128, 128, 256, 24, 64, 64),
    "mixed_4e": (112, 144, 288, 32, 64, 64),
    "mixed_4f": (256, 160, 320, 32, 128, 128),
    "mixed_5b": (256, 160, 320, 32, 128, 128),
    "mixed_5c": (384, 192, 384, 48, 128, 128),
}


class S3D(nn.Module):
    """S3D-G of the HowTo100M release.

    Args:
        dict_path: the release's word dictionary (``s3d_dict.npy``) for the text module, or None: the text module
            is then built with the release's 66,250 rows and no vocabulary, so the weights still load strictly.
        num_classes: size of ``video_embedding`` (512).
        gating: self-gating in the Inception blocks.
        space_to_depth: the TPU model's 2x2x2 space-to-depth input (the release); False builds the plain S3D-G
            stem (3x7x7x7 conv, stride 2), which the release's weights do not fit.
    """

    def __init__(self, dict_path: Optional[str] = None, num_classes: int = 512, gating: bool = True,
                 space_to_depth: bool = True) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.space_to_depth = space_to_depth
        if space_to_depth:
            self.conv1 = STConv3D(24, 64, (2, 4, 4), stride=1, padding=(1, 2, 2))
        else:
            self.conv1 = STConv3D(3, 64, (3, 7, 7), stride=2, padding=(1, 3, 3))
        self.conv_2b = STConv3D(64, 64, (1, 1, 1))
        self.conv_2c = STConv3D(64, 192, (3, 3, 3), padding=1, separable=True)
        self.gating = SelfGating(192)
        self.maxpool_2a = MaxPool3dTFPadding((1, 3, 3), (1, 2, 2))
        self.maxpool_3a = MaxPool3dTFPadding((1, 3, 3), (1, 2, 2))
        self.maxpool_4a = MaxPool3dTFPadding((3, 3, 3), (2, 2, 2))
        self.maxpool_5a = MaxPool3dTFPadding((2, 2, 2), (2, 2, 2))
        channels = 192
        for name, widths in _INCEPTION_WIDTHS.items():
            block = InceptionBlock(channels, *widths, gating=gating)
            setattr(self, name, block)
            channels = block.output_dim
        self.fc = nn.Linear(channels, num_classes)
        self.text_module = Sentence_Embedding(num_classes, token_to_word_path=dict_path)

    @property
    def maxPool3d_5a_2x2(self) -> MaxPool3dTFPadding:  # noqa: N802 (the release's second name of maxpool_5a)
        return self.maxpool_5a

    @staticmethod
    def _space_to_depth(input: torch.Tensor) -> torch.Tensor:  # noqa: A002
        """``[B, C, T, H, W] -> [B, 8C, T/2, H/2, W/2]``; channel ``((dt * 2 + dh) * 2 + dw) * C + c`` holds pixel
        ``(2t + dt, 2h + dh, 2w + dw)`` of channel c."""
        b, c, t, h, w = input.shape
        blocks = input.reshape(b, c, t // 2, 2, h // 2, 2, w // 2, 2).permute(0, 3, 5, 7, 1, 2, 4, 6)
        return blocks.reshape(b, 8 * c, t // 2, h // 2, w // 2)

    def _check_input(self, inputs: torch.Tensor) -> None:
        if inputs.dim() != 5 or inputs.size(1) != 3:
            raise ValueError(f"S3D expects clips [B, 3, T, H, W] (RGB in [0, 1]), got shape {tuple(inputs.shape)}")
        if self.space_to_depth and any(n % 2 for n in inputs.shape[2:]):
            raise ValueError(f"S3D (space-to-depth) needs even T, H and W, got {tuple(inputs.shape[2:])}; the "
                             "feature extractor uses 30-frame 224x224 clips")

    def forward(self, inputs: torch.Tensor) -> dict:
        """``inputs [B, 3, T, H, W]`` in [0, 1] -> ``{"video_embedding": [B, num_classes], "mixed_5c": [B, 1024]}``."""
        self._check_input(inputs)
        net = self._space_to_depth(inputs) if self.space_to_depth else inputs
        net = self.conv1(net)
        if self.space_to_depth:
            net = net[:, :, 1:, 1:, 1:]
        net = self.maxpool_2a(net)
        net = self.gating(self.conv_2c(self.conv_2b(net)))
        net = self.maxpool_3a(net)
        net = self.mixed_3c(self.mixed_3b(net))
        net = self.maxpool_4a(net)
        for name in ("mixed_4b", "mixed_4c", "mixed_4d", "mixed_4e", "mixed_4f"):
            net = getattr(self, name)(net)
        net = self.maxpool_5a(net)
        net = self.mixed_5c(self.mixed_5b(net))
        pooled = net.mean(dim=(2, 3, 4))
        return {"video_embedding": self.fc(pooled), "mixed_5c": pooled}


def _listed(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    return shown + (f", ... ({len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else "")


def load_s3d_state(path: str) -> dict:
    """The tensors of an S3D checkpoint file, on CPU: a bare state dict (as the release) or one under
    ``"state_dict"`` / ``"model"``.  Read by torch's weights-only unpickler with tempclr's allowlist
    (:func:`tempclr.utils.safe_pickle.load_torch`): anything else is refused, naming the file and the global."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"S3D checkpoint not found: {path}. The HowTo100M S3D weights (s3d_howto100m.pth, 537 tensors) are no "
            "longer downloadable from their original links; bring a copy (see README 'Raw video') and pass its "
            "path (--s3d_checkpoint)")
    try:
        checkpoint = load_torch(path)
    except RefusedPickleError:
        raise
    except Exception as error:  # UnpicklingError / RuntimeError / EOFError from a damaged or foreign file
        raise ValueError(f"{path}: not a loadable PyTorch state dict ({type(error).__name__}: {error})") from error
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{path}: expected a state dict (name -> tensor), got {type(checkpoint).__name__}")
    for key in ("state_dict", "model"):
        if key in checkpoint and isinstance(checkpoint[key], Mapping):
            checkpoint = checkpoint[key]
            break
    return dict(checkpoint)


def check_s3d_state(model: nn.Module, state: Mapping[str, object], source: str = "S3D checkpoint") -> None:
    """Raise ``ValueError`` naming every missing, unexpected, non-tensor and wrongly shaped key of ``state``
    against ``model.state_dict()``; return quietly when they match exactly."""
    expected = model.state_dict()
    problems = []
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    not_tensors = sorted(k for k in set(state) & set(expected) if not isinstance(state[k], torch.Tensor))
    wrong_shape = [f"{k} {tuple(state[k].shape)} (S3D has {tuple(expected[k].shape)})"
                   for k in sorted(set(state) & set(expected))
                   if isinstance(state[k], torch.Tensor) and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing:
        problems.append(f"{len(missing)} missing keys [{_listed(missing)}]")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys [{_listed(unexpected)}]")
    if not_tensors:
        problems.append(f"{len(not_tensors)} entries that are not tensors [{_listed(not_tensors)}]")
    if wrong_shape:
        problems.append(f"{len(wrong_shape)} tensors with the wrong shape [{_listed(wrong_shape)}]")
    if problems:
        hint = ""
        if unexpected and all(k.startswith("module.") for k in state):
            hint = " (every key starts with 'module.': it was saved from nn.DataParallel; strip that prefix)"
        raise ValueError(f"{source} does not match S3D ({len(expected)} tensors): " + "; ".join(problems) + hint +
                         ". Expected the HowTo100M release s3d_howto100m.pth")


def load_s3d(path: str, dict_path: Optional[str] = None, device: str | torch.device = "cpu",
             num_classes: int = 512) -> S3D:
    """:class:`S3D` with the weights of ``path`` loaded strictly (read on CPU, then moved to ``device``), in eval
    mode.  Any difference from the model's layout raises ``ValueError`` naming the keys (see
    :func:`check_s3d_state`); tensors stored in another float dtype are cast to float32."""
    state = load_s3d_state(path)
    model = S3D(dict_path, num_classes=num_classes)
    check_s3d_state(model, state, source=path)
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def s3d_embed(model: S3D, clips, l2_normalize: bool = True) -> torch.Tensor:
    """Per-clip ``video_embedding`` as the feature extractor computes it: ``clips`` ``[N, T, H, W, 3]`` RGB, uint8
    0..255 (numpy or torch) or float in [0, 1], go to the model's device (uint8 travels as is and is divided by 255
    there), through S3D in inference mode, then, with ``l2_normalize``, are scaled to unit L2 norm.  Returns float32
    ``[N, num_classes]`` on the model's device; raises ``FloatingPointError`` when S3D gives NaN or inf."""
    device = next(model.parameters()).device
    clips = torch.as_tensor(clips)
    if clips.dim() != 5 or clips.size(-1) != 3:
        raise ValueError(f"clips must be [N, T, H, W, 3] RGB, got shape {tuple(clips.shape)}")
    with torch.inference_mode():
        clips = clips.to(device, non_blocking=True)
        pixels = clips.to(torch.float32) / 255.0 if clips.dtype == torch.uint8 else clips.to(torch.float32)
        embedding = model(pixels.permute(0, 4, 1, 2, 3))["video_embedding"].float()
        if not torch.isfinite(embedding).all():
            raise FloatingPointError("S3D gave NaN/inf embeddings; check the S3D checkpoint's weights")
        if l2_normalize:
            embedding = F.normalize(embedding, dim=1)
    return embedding
