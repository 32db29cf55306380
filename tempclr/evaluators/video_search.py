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

__all__ = ["VideoHit", "VideoIndex", "search"]


@dataclass
class VideoHit:
    """One retrieved video: its path, its score (best window's dot product) and its best seconds
    ``[(second, score), ...]``, highest first."""

    video: str
    score: float
    seconds: list[tuple[int, float]]


class VideoIndex:
    """The windows of a set of videos, embedded by ``model`` (an :class:`~tempclr.models.MMPTModel`), in a faiss
    inner-product index.

    Args:
        model: gives ``model.model.forward_video`` (the fusion model) and ``max_video_len``.
        features: ``{video_path: float [T, 512]}`` S3D features (L2-normalised, as the extractor writes them).
    """

    def __init__(self, model, features: dict[str, np.ndarray]) -> None:
        import faiss

        from tempclr.models.mmfusion import masked_mean

        self.model = model
        self.window = int(model.max_video_len)
        self.videos: list[str] = []
        self.window_owner: list[int] = []        # window -> index into self.videos
        self.window_start: list[int] = []        # window -> first second
        self.second_states: list[torch.Tensor] = []   # per video: [T, H] last hidden states of its seconds
        vectors = []
        device = next(model.parameters()).device
        with torch.no_grad():
            for path, feats in features.items():
                feats = torch.as_tensor(np.asarray(feats, dtype=np.float32), device=device)
                if feats.dim() != 2 or feats.size(0) == 0:
                    raise ValueError(f"{path}: features must be [T >= 1, D], got shape {tuple(feats.shape)}")
                starts = list(range(0, feats.size(0), self.window))
                vfeats = feats.new_zeros(len(starts), self.window, feats.size(1))
                vmasks = torch.zeros(len(starts), self.window, dtype=torch.bool, device=device)
                for row, start in enumerate(starts):
                    piece = feats[start:start + self.window]
                    vfeats[row, :len(piece)] = piece
                    vmasks[row, :len(piece)] = True
                caps, cmasks = model._video_ids(len(starts), device)
                hidden = model.model.forward_video(vfeats, vmasks, caps, cmasks, output_hidden_states=True)
                edge = torch.ones_like(vmasks[:, :1])
                pooled = masked_mean(hidden, torch.cat([~edge, vmasks, edge], dim=1))
                self.second_states.append(hidden[:, 1:1 + self.window][vmasks].float().cpu())
                vectors.append(pooled.float().cpu().numpy())
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
        hits = []
        text_vector = torch.from_numpy(text[0])
        for owner, score in ranked:
            per_second = self.second_states[owner] @ text_vector
            order = torch.argsort(per_second, descending=True)[:n_seconds]
            hits.append(VideoHit(self.videos[owner], score, [(int(s), float(per_second[s])) for s in order]))
        return hits


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
