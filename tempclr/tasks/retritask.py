"""Retrieval-augmented training (VideoCLIP).

Before each training epoch ≥ ``retri_epoch``: embed every training video (mean over sampled clips of
``(pooled_video + pooled_text)/2``), index them with faiss, and regroup the training set so each batch holds a
seed video and its nearest neighbours — hard negatives for the contrastive loss.

With a process group the result is the single-process one, whatever the number of ranks: each rank embeds its
share of the videos (each video's clips drawn from a seed of its own, so the share does not matter), the vectors
are gathered onto every rank in dataset order, rank 0 builds the groups over all videos, writes them to
``<save_dir>/retri/batched_e<epoch>_videos0.pkl`` and sends them to the other ranks; fairseq then deals the
epoch's batches (one group each) out to the ranks.  The original built groups per rank over that rank's videos.
"""
from __future__ import annotations

import glob
import logging
import os
import random
import time
from typing import Any, Callable, Dict, List, Optional

import torch
from torch.utils.data import DataLoader

from tempclr.modules.vectorpool import VideoVectorPool
from tempclr.utils import broadcast_object, get_rank, get_world_size, set_seed
from tempclr.utils.fileio import write_pickle_atomic
from tempclr.utils.config_schema import cfg_get, setting
from tempclr.utils.registry import lookup, register
from tempclr.utils.safe_pickle import load_pickle

from .task import Task

logger = logging.getLogger(__name__)


@register("task")
class RetriTask(Task):
    """A task whose training groups are rebuilt by retrieval before each epoch.

    ``retrieval_timings``: after each pass, this rank's seconds for ``embed`` (the model over its share of the
    videos), ``gather`` (collecting every rank's vectors), ``retrieval`` (index, search and grouping on rank 0;
    waiting for them elsewhere) and ``total``; rank 0 logs them, one line per pass."""

    def __init__(self, config):
        super().__init__(config)
        self.retrieval_timings: Dict[str, float] = {}

    def reshape_subsample(self, sample: Dict[str, Any]) -> Dict[str, Any]:
        return {k: self.flat_subsample(v) if torch.is_tensor(v) else v for k, v in sample.items()}

    def before_epoch(self, epoch: int) -> bool:
        """From epoch ``retri_epoch`` (default 1) on, regroup the training videos by retrieval; returns whether
        it did (the groups change every epoch, so the adapter must not cache batches).  fairseq asks for the
        iterator of the epoch after ``fairseq.optimization.max_epoch`` before it stops: no retrieval pass then."""
        if epoch < int(setting(self.config, "retri_epoch")):
            return False
        max_epoch = int(setting(self.config, "fairseq.optimization.max_epoch"))
        if 0 < max_epoch < epoch:
            return False
        self.retrive_candidates(epoch)
        return True

    def retri_dir(self) -> str:
        return os.path.join(str(cfg_get(self.config, "fairseq.checkpoint.save_dir")), "retri")

    def group_file(self, epoch: int, rank: int = 0) -> str:
        """The group file of ``epoch`` (only rank 0's, ``rank=0``, is written: the groups span all ranks)."""
        return os.path.join(self.retri_dir(), f"batched_e{epoch}_videos{rank}.pkl")

    def retrive_candidates(self, epoch: int, model=None) -> List[List[str]]:
        """Rebuild the training groups for ``epoch`` and hand them to the training meta processor; returns
        them (the same list on every rank).  All ranks of the default process group call this together.

        Rank 0 decides for all: when its group file of ``epoch`` exists it is reused (resuming a run) and no rank
        embeds; otherwise every rank embeds its share of the videos, rank 0 builds the groups over all of them
        and writes the file.  Either way rank 0 sends the groups to the other ranks, so they need no access to
        the file; an error on rank 0 is raised on every rank."""
        started = time.perf_counter()
        self.retrieval_timings = {"embed": 0.0, "gather": 0.0, "retrieval": 0.0}
        groups = on_rank0(lambda: self.read_group_file(epoch))
        reused = groups is not None
        if not reused:
            pool = self.embed_videos(epoch, model if model is not None else self.model)
            searched = time.perf_counter()
            groups = on_rank0(lambda: self.write_groups(epoch, self.group_by_retrieval(epoch, pool)))
            self.retrieval_timings["retrieval"] = time.perf_counter() - searched
        self.train_data.meta_processor.set_candidates(groups)
        self.retrieval_timings["total"] = time.perf_counter() - started
        if get_rank() == 0:
            timings = self.retrieval_timings
            if reused:
                logger.info("retrieval epoch %d: reused %s (%d groups, %.2fs)", epoch, self.group_file(epoch),
                            len(groups), timings["total"])
            else:
                logger.info("retrieval epoch %d on %d rank(s): %d groups; embed %.2fs, gather %.2fs, "
                            "index+search %.2fs, total %.2fs", epoch, get_world_size(), len(groups),
                            timings["embed"], timings["gather"], timings["retrieval"], timings["total"])
        return groups

    def read_group_file(self, epoch: int) -> Optional[List[List[str]]]:
        """The groups of ``epoch``'s group file, or None when there is none.  Group files of other ranks are an
        error: they come from the per-rank grouping of an older version, and the file of rank 0 alone would
        silently drop the other ranks' groups."""
        path = self.group_file(epoch)
        per_rank = sorted(glob.glob(os.path.join(glob.escape(self.retri_dir()), f"batched_e{epoch}_videos[1-9]*.pkl")))
        if per_rank:
            names = ", ".join(os.path.basename(p) for p in per_rank)
            raise ValueError(f"{self.retri_dir()}: {names} hold groups of epoch {epoch} built per rank by an older "
                             f"version; groups now span all ranks, in {os.path.basename(path)} alone. Delete "
                             f"batched_e{epoch}_videos*.pkl there to rebuild the epoch's groups")
        if not os.path.isfile(path):
            return None
        return load_pickle(path)

    def write_groups(self, epoch: int, groups: List[List[str]]) -> List[List[str]]:
        write_pickle_atomic(self.group_file(epoch), groups)
        return groups

    def build_embedding_dataset(self):
        """Every training video with ``clip_per_video`` caption-span clips each (VariedLenAligner)."""
        clips = int(setting(self.config, "dataset.clip_per_video"))
        return self.build_mmdataset("train", meta_processor="ShardedHow2MetaProcessor",
                                    video_processor="ShardedVideoProcessor", text_processor="ShardedTextProcessor",
                                    aligner="VariedLenAligner", subsampling=clips)

    @torch.no_grad()
    def embed_videos(self, epoch: int, model) -> VideoVectorPool:
        """The pool of every training video, in dataset order, on every rank (all ranks call this together).

        Each rank embeds its share (``DistributedSampler`` without shuffling; the items it repeats to even out
        the shares are dropped when gathering).  Item ``i``'s clips are drawn under
        :func:`~tempclr.datasets.fairseqmmdataset.item_seed` ``(fairseq.common.seed, epoch, i)``, so a video's
        vector does not depend on which rank embeds it or what that rank embedded before."""
        from tempclr.datasets.fairseqmmdataset import FairseqMMDataset

        started = time.perf_counter()
        dataset = FairseqMMDataset(self.build_embedding_dataset(),
                                   seed=int(setting(self.config, "fairseq.common.seed")))
        dataset.set_epoch(epoch)
        world_size = get_world_size()
        if world_size > 1:
            order = list(torch.utils.data.distributed.DistributedSampler(
                dataset, num_replicas=world_size, rank=get_rank(), shuffle=False))
        else:
            order = list(range(len(dataset)))
        batch_size = int(setting(self.config, "dataset.num_video_per_batch"))
        num_workers = int(setting(self.config, "fairseq.dataset.num_workers"))
        # forkserver: a forked worker would inherit fairseq's live epoch iterator and trip over it on exit
        loader = DataLoader(dataset, batch_size=batch_size, sampler=order, shuffle=False,
                            collate_fn=dataset.collater, num_workers=num_workers,
                            multiprocessing_context="forkserver" if num_workers > 0 else None)
        set_seed(epoch)
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        dtype = next(model.parameters()).dtype
        pool = lookup("vectorpool", setting(self.config, "vectorpool_cls"))(self.config)
        try:
            for batch in loader:
                outputs = model(**flatten_video_clips(batch, device, dtype))
                num_videos, clips = batch["caps"].shape[:2]
                pool.add_clips(batch["video_id"], outputs["pooled_video"].view(num_videos, clips, -1),
                               outputs["pooled_text"].view(num_videos, clips, -1),
                               indices=order[len(pool): len(pool) + num_videos])
        finally:
            model.train(was_training)
        gathering = time.perf_counter()
        pool.gather(len(dataset))
        self.retrieval_timings["embed"] = gathering - started
        self.retrieval_timings["gather"] = time.perf_counter() - gathering
        return pool

    def group_by_retrieval(self, epoch: int, pool: VideoVectorPool) -> List[List[str]]:
        """Seeds drawn at random (``N // num_video_per_batch`` of them); each group is the seed plus its
        ``num_cands`` nearest neighbours, randomly cut to ``num_video_per_batch``."""
        per_group = int(setting(self.config, "dataset.num_video_per_batch"))
        vectors = pool.matrix()
        retriever_cls = lookup("retriever", setting(self.config, "retriever_cls"))
        retriever = retriever_cls(vectors.shape[1], centroids=int(setting(self.config, "retri_centroids")),
                                  db_type=str(setting(self.config, "retri_db_type")))
        retriever.build(pool.ids, vectors)
        set_seed(epoch)
        seed_rows = random.sample(range(len(pool.ids)), len(pool.ids) // per_group)
        neighbours = retriever.search_ids(seed_rows, int(setting(self.config, "num_cands")))
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
        clips = int(setting(self.config, "dataset.clip_per_video"))
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


def on_rank0(build: Callable[[], Any]) -> Any:
    """``build()`` run on rank 0, its result on every rank (all ranks call this together; in one process it just
    runs ``build``).  When it raises on rank 0, rank 0 raises that error and every other rank a RuntimeError
    quoting it, instead of waiting for a result that never comes."""
    if get_world_size() == 1:
        return build()
    result, error = None, None
    if get_rank() == 0:
        try:
            result = build()
        except Exception as caught:  # noqa: BLE001 - re-raised below, on every rank
            error = caught
    shared, message = broadcast_object((result, None if error is None else f"{type(error).__name__}: {error}"))
    if error is not None:
        raise error
    if message is not None:
        raise RuntimeError(f"rank 0 failed building the retrieval groups: {message}")
    return shared
