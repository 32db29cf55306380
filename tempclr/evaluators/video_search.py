"""Text-to-video search over a folder of videos with a VideoCLIP / TempCLR checkpoint.

``tempclr-search-videos`` (``scripts/search_videos.py``)::

    tempclr-search-videos --videos DIR --config CFG [--checkpoint checkpoint_best.pt] [--topk 5] \\
        [--fdir DIR/.s3d_features] [--s3d_checkpoint pretrained_models/s3d_howto100m.pth] "a text query" ...

1. S3D features of every video of ``DIR`` (as ``tempclr-extract``; features already in ``--fdir`` are reused);
2. each video, cut into windows of ``dataset.max_video_len`` (32) seconds, goes through the video branch: one
   pooled vector per window, and the last hidden state of every second;
3. the windows go into a faiss inner-product index; each query (``aligner._build_text_seq`` of its tokens, the text
   branch) is searched in it, and a video scores its best window's dot product (VideoCLIP's similarity);
4. per query, the top-k videos are printed with their score and the seconds whose hidden state matches the query
   best (the zero-shot localisation of CrossTask: per-second state times the pooled text).

``--index INDEX_DIR`` instead of ``--videos`` searches a corpus indexed by ``tempclr-index``
(:mod:`tempclr.evaluators.video_index`): exact or IVF-PQ candidates, re-scored exactly from their features.

The model comes from ``MMPTModel.from_pretrained(CFG, checkpoint, s3d_checkpoint)``: ``<eval.save_path>/<checkpoint>``
loaded strictly, built from the BERT config alone.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from tempclr.utils.fileio import load_npy

__all__ = ["VideoHit", "VideoIndex", "search", "embed_windows", "embed_queries", "best_seconds"]


@dataclass
class VideoHit:
    """One retrieved video: its path, its score (best window's dot product) and its best seconds
    ``[(second, score), ...]``, highest first."""

    video: str
    score: float
    seconds: list[tuple[int, float]]


def embed_windows(model, feats: np.ndarray, name: str = "features") -> tuple[np.ndarray, list[int], torch.Tensor]:
    """One video through the video branch of ``model`` (an :class:`~tempclr.models.MMPTModel`), in windows of
    ``model.max_video_len`` seconds: ``(pooled [W, H] float32 numpy, window starts [W] (seconds), per-second last
    hidden states [T, H] float32 CPU tensor)`` for S3D features ``feats [T, 512]`` (``name`` names them in errors).
    The one place where videos are embedded for search (``tempclr-search-videos``, ``tempclr-index``)."""
    from tempclr.models.mmfusion import masked_mean

    window = int(model.max_video_len)
    device = next(model.parameters()).device
    with torch.no_grad():
        feats = torch.as_tensor(np.asarray(feats, dtype=np.float32), device=device)
        if feats.dim() != 2 or feats.size(0) == 0:
            raise ValueError(f"{name}: features must be [T >= 1, D], got shape {tuple(feats.shape)}")
        starts = list(range(0, feats.size(0), window))
        vfeats = feats.new_zeros(len(starts), window, feats.size(1))
        vmasks = torch.zeros(len(starts), window, dtype=torch.bool, device=device)
        for row, start in enumerate(starts):
            piece = feats[start:start + window]
            vfeats[row, :len(piece)] = piece
            vmasks[row, :len(piece)] = True
        caps, cmasks = model._video_ids(len(starts), device)
        hidden = model.model.forward_video(vfeats, vmasks, caps, cmasks, output_hidden_states=True)
        edge = torch.ones_like(vmasks[:, :1])
        pooled = masked_mean(hidden, torch.cat([~edge, vmasks, edge], dim=1))
        states = hidden[:, 1:1 + window][vmasks].float().cpu()
    return pooled.float().cpu().numpy(), starts, states


class VideoIndex:
    """The windows of a set of videos, embedded by ``model`` (an :class:`~tempclr.models.MMPTModel`), in a faiss
    inner-product index.

    Args:
        model: gives ``model.model.forward_video`` (the fusion model) and ``max_video_len``.
        features: ``{video_path: float [T, 512]}`` S3D features (L2-normalised, as the extractor writes them).
    """

    def __init__(self, model, features: dict[str, np.ndarray]) -> None:
        import faiss

        self.model = model
        self.window = int(model.max_video_len)
        self.videos: list[str] = []
        self.window_owner: list[int] = []        # window -> index into self.videos
        self.window_start: list[int] = []        # window -> first second
        self.second_states: list[torch.Tensor] = []   # per video: [T, H] last hidden states of its seconds
        vectors = []
        for path, feats in features.items():
            pooled, starts, states = embed_windows(model, feats, path)
            self.second_states.append(states)
            vectors.append(pooled)
            self.window_owner.extend([len(self.videos)] * len(starts))
            self.window_start.extend(starts)
            self.videos.append(path)
        if not vectors:
            raise ValueError("no video features to index")
        matrix = np.ascontiguousarray(np.concatenate(vectors, axis=0), dtype=np.float32)
        if not np.isfinite(matrix).all():
            raise FloatingPointError("the video branch gave NaN/inf embeddings; check the checkpoint")
        self.max_windows = int(np.bincount(self.window_owner).max())
        self.index = faiss.IndexFlatIP(matrix.shape[1])
        self.index.add(matrix)

    def query(self, pooled_text: np.ndarray, topk: int = 5, n_seconds: int = 3) -> list[VideoHit]:
        """Top ``topk`` videos for one pooled text vector ``[H]``.  Searching ``topk * max_windows`` windows is
        enough to find every one of the top-k videos' best windows."""
        text = np.ascontiguousarray(pooled_text, dtype=np.float32)[None]
        k = int(min(self.index.ntotal, topk * self.max_windows))
        scores, windows = self.index.search(text, k)
        best: dict[int, float] = {}
        for score, window in zip(scores[0], windows[0]):
            owner = self.window_owner[window]
            if owner not in best:
                best[owner] = float(score)
        ranked = sorted(best.items(), key=lambda item: -item[1])[:topk]
        return [VideoHit(self.videos[owner], score, best_seconds(self.second_states[owner], text[0], n_seconds))
                for owner, score in ranked]


def best_seconds(states: torch.Tensor, pooled_text: np.ndarray, n_seconds: int = 3) -> list[tuple[int, float]]:
    """``[(second, score)]``, the ``n_seconds`` seconds whose hidden state ``states [T, H]`` has the highest dot
    product with ``pooled_text [H]``, highest first (CrossTask's zero-shot localisation)."""
    per_second = states @ torch.from_numpy(np.ascontiguousarray(pooled_text, dtype=np.float32))
    order = torch.argsort(per_second, descending=True)[:n_seconds]
    return [(int(s), float(per_second[s])) for s in order]


def embed_queries(model, tokenizer, aligner, queries: Sequence[str]) -> np.ndarray:
    """Pooled text vectors ``[len(queries), H]``."""
    pairs = [aligner._build_text_seq(tokenizer(q, add_special_tokens=False)["input_ids"]) for q in queries]
    device = next(model.parameters()).device
    caps = torch.as_tensor(np.stack([p[0] for p in pairs]), device=device)
    cmasks = torch.as_tensor(np.stack([p[1] for p in pairs]), device=device)
    with torch.no_grad():
        return model.forward_text(caps, cmasks).float().cpu().numpy()


def search(videos_dir: str, config: str, queries: Sequence[str], checkpoint: str = "checkpoint_best.pt",
           s3d_checkpoint: Optional[str] = None, fdir: Optional[str] = None, topk: int = 5, size: int = 224,
           batch_size: int = 32, num_decoding_thread: int = 4, device: str = "auto") -> dict[str, list[VideoHit]]:
    """``{query: [VideoHit, ...]}`` for the videos of ``videos_dir`` (see the module's description)."""
    from tempclr.models import MMPTModel
    from tempclr.models.mmptmodel import DEFAULT_S3D_CHECKPOINT
    from tempclr.processors.extraction import extract_features, plan_videos, resolve_device

    empty = [i for i, query in enumerate(queries, 1) if not isinstance(query, str) or not query.strip()]
    if not queries or empty:
        raise ValueError((f"query {empty[0]} is empty" if empty else "no query given")
                         + "; give each query as a non-empty text, e.g. tempclr-search-videos \"crack the eggs\" ...")
    fdir = fdir or os.path.join(videos_dir, ".s3d_features")
    model, tokenizer, aligner = MMPTModel.from_pretrained(config, checkpoint=checkpoint,
                                                          s3d_checkpoint=s3d_checkpoint or DEFAULT_S3D_CHECKPOINT)
    model.to(resolve_device(device))
    plan = plan_videos(videos_dir, fdir)
    summary = extract_features(plan, model.video_encoder, batch_size=batch_size, size=size,
                               num_decoding_thread=num_decoding_thread, progress=False,
                               error_log=os.path.join(fdir, "extract_errors.log"))
    for video, reason in summary.failed.items():
        print(f"skipped (no features): {video}: {reason}", file=sys.stderr)
    features = {video: load_npy(feature, fix=f"it is a cached feature file: delete it and search again to "
                                             f"re-extract it (cache: {fdir})")
                for video, feature in plan if video not in summary.failed}
    index = VideoIndex(model, features)
    texts = embed_queries(model, tokenizer, aligner, queries)
    return {query: index.query(vector, topk) for query, vector in zip(queries, texts)}
