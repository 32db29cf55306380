"""Retrieval-augmented training (VideoCLIP).

Before each training epoch ≥ ``retri_epoch``: embed every training video (mean over sampled clips of
``(pooled_video + pooled_text)/2``), index them with faiss, and regroup the training set so each batch holds a
seed video and its nearest neighbours — hard negatives for the contrastive loss.  Works in one process; with a
process group each rank embeds its shard, writes its groups and all ranks read all groups.
"""
from __future__ import annotations

import os
import pickle
import random
from typing import Any, Dict, List

import torch
from torch.utils.data import DataLoader

from tempclr.modules.vectorpool import VideoVectorPool
from tempclr.utils import get_rank, get_world_size, set_seed
from tempclr.utils.fileio import write_pickle_atomic
from tempclr.utils.load_config import cfg_get
from tempclr.utils.registry import lookup, register

from .task import Task


@register("task")
class RetriTask(Task):
    """A task whose training groups are rebuilt by retrieval before each epoch."""

    def reshape_subsample(self, sample: Dict[str, Any]) -> Dict[str, Any]:
        return {k: self.flat_subsample(v) if torch.is_tensor(v) else v for k, v in sample.items()}

    def before_epoch(self, epoch: int) -> bool:
        """From epoch ``retri_epoch`` (default 1) on, regroup the training videos by retrieval; returns whether
        it did (the groups change every epoch, so the adapter must not cache batches).  fairseq asks for the
        iterator of the epoch after ``fairseq.optimization.max_epoch`` before it stops: no retrieval pass then."""
        if epoch < int(cfg_get(self.config, "retri_epoch", 1)):
            return False
        max_epoch = int(cfg_get(self.config, "fairseq.optimization.max_epoch", 0))
        if 0 < max_epoch < epoch:
            return False
        self.retrive_candidates(epoch)
        return True

    def retri_dir(self) -> str:
        return os.path.join(str(cfg_get(self.config, "fairseq.checkpoint.save_dir")), "retri")

    def group_file(self, epoch: int, rank: int) -> str:
        return os.path.join(self.retri_dir(), f"batched_e{epoch}_videos{rank}.pkl")

    def retrive_candidates(self, epoch: int, model=None) -> List[List[str]]:
        """Rebuild the training groups for ``epoch`` (skipped when this rank's group file exists) and hand
        them to the training meta processor.  Returns the groups."""
        rank, world_size = get_rank(), get_world_size()
        if not os.path.isfile(self.group_file(epoch, rank)):
            groups = self.build_groups(epoch, model if model is not None else self.model)
            write_pickle_atomic(self.group_file(epoch, rank), groups)
        if world_size > 1:
            torch.distributed.barrier()
        all_groups: List[List[str]] = []
        for r in range(world_size):
            with open(self.group_file(epoch, r), "rb") as f:
                all_groups.extend(pickle.load(f))
        self.train_data.meta_processor.set_candidates(all_groups)
        return all_groups

    def build_groups(self, epoch: int, model) -> List[List[str]]:
        pool = self.embed_videos(epoch, model)
        return self.group_by_retrieval(epoch, pool)

    def build_embedding_dataset(self):
        """Every training video with ``clip_per_video`` caption-span clips each (VariedLenAligner)."""
        clips = int(cfg_get(self.config, "dataset.clip_per_video", 16))
        return self.build_mmdataset("train", meta_processor="ShardedHow2MetaProcessor",
                                    video_processor="ShardedVideoProcessor", text_processor="ShardedTextProcessor",
                                    aligner="VariedLenAligner", subsampling=clips)

    @torch.no_grad()
    def embed_videos(self, epoch: int, model) -> VideoVectorPool:
        dataset = self.build_embedding_dataset()
        sampler = None
        if get_world_size() > 1:
            sampler = torch.utils.data.distributed.DistributedSampler(dataset, shuffle=False)
        num_workers = int(cfg_get(self.config, "fairseq.dataset.num_workers", 0))
        # forkserver: a forked worker would inherit fairseq's live epoch iterator and trip over it on exit
        loader = DataLoader(dataset, batch_size=int(cfg_get(self.config, "dataset.num_video_per_batch", 16)),
                            sampler=sampler, shuffle=False, collate_fn=dataset.collater, num_workers=num_workers,
                            multiprocessing_context="forkserver" if num_workers > 0 else None)
        set_seed(epoch)
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        dtype = next(model.parameters()).dtype
        pool = lookup("vectorpool", cfg_get(self.config, "vectorpool_cls", "VideoVectorPool"))(self.config)
        try:
            for batch in loader:
                outputs = model(**flatten_video_clips(batch, device, dtype))
                num_videos, clips = batch["caps"].shape[:2]
                pool.add_clips(batch["video_id"], outputs["pooled_video"].view(num_videos, clips, -1),
                               outputs["pooled_text"].view(num_videos, clips, -1))
        finally:
            model.train(was_training)
        return pool

    def group_by_retrieval(self, epoch: int, pool: VideoVectorPool) -> List[List[str]]:
        """Seeds drawn at random (``N // num_video_per_batch`` of them); each group is the seed plus its
        ``num_cands`` nearest neighbours, randomly cut to ``num_video_per_batch``."""
        per_group = int(cfg_get(self.config, "dataset.num_video_per_batch", 16))
        vectors = pool.matrix()
        retriever_cls = lookup("retriever", cfg_get(self.config, "retriever_cls", "VectorRetriever"))
        retriever = retriever_cls(vectors.shape[1], centroids=int(cfg_get(self.config, "retri_centroids", 512)),
                                  db_type=str(cfg_get(self.config, "retri_db_type", "flatl2")))
        retriever.build(pool.ids, vectors)
        set_seed(epoch)
        seed_rows = random.sample(range(len(pool.ids)), len(pool.ids) // per_group)
        neighbours = retriever.search_ids(seed_rows, int(cfg_get(self.config, "num_cands", 64)))
        groups = []
        for row, hits in zip(seed_rows, neighbours):
            group = [pool.ids[row]] + hits
            if len(group) > per_group:
                group = random.sample(group, per_group)
            groups.append(group)
        return groups


@register("task")
class VideoRetriTask(RetriTask):
    """VideoCLIP pretraining: groups of videos × clips, flattened to one batch of clips."""

    def reshape_subsample(self, sample: Dict[str, Any]) -> Dict[str, Any]:
        clips = int(cfg_get(self.config, "dataset.clip_per_video", 1))
        if clips <= 1:
            return super().reshape_subsample(sample)
        caps = sample.get("caps")
        if caps is not None and caps.dim() == 4 and caps.size(0) != 1:
            raise ValueError("VideoRetriTask needs fairseq.dataset.batch_size: 1 (one group of videos per batch)")
        out = {}
        for key, value in sample.items():
            if torch.is_tensor(value) and value.dim() >= 3:
                out[key] = value.squeeze(0).flatten(0, 1)
            elif key == "video_id" and isinstance(value, list) and len(value) == 1:
                out[key] = value[0]
            else:
                out[key] = value
        return out


def flatten_video_clips(batch: Dict[str, Any], device: torch.device, dtype: torch.dtype) -> Dict[str, Any]:
    """``[num_videos, clips, ...]`` model inputs → ``[num_videos * clips, ...]`` on ``device``; float
    features cast to the model's dtype."""
    out = {}
    for key in ("caps", "cmasks", "vfeats", "vmasks"):
        value = batch[key].flatten(0, 1).to(device)
        out[key] = value.to(dtype) if value.is_floating_point() else value
    return out
