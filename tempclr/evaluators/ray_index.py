"""``tempclr-index --engine ray``: the window vectors of :mod:`tempclr.evaluators.video_index` computed by an actor
pool on a Ray cluster (one VideoCLIP load per actor, GPUs when asked), the shards and the faiss index written by the
driver, as the local engine writes them.

Rows are videos (``<id>.npy`` paths: the feature folder, the config, the checkpoints must be readable at the same
paths on every node: a shared filesystem); each actor embeds one video at a time with
:func:`tempclr.evaluators.video_search.embed_windows` (a video alone, so its vectors do not depend on which actor
did it).  Shards already complete are skipped (resume); a shard is written once all its videos have arrived; a
result that arrives twice (a retried task) is kept once.  Ray is the optional extra ``tempclr[ray]``.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Callable, Optional

import numpy as np

from tempclr.evaluators.video_index import IndexParams

__all__ = ["WindowEmbedder", "ray_index_features"]


class WindowEmbedder:
    """Ray Data actor: the VideoCLIP model of ``config`` / ``checkpoint`` loaded once; each row ``{video, path}`` ->
    ``{video, pooled (float32 [W, H] bytes), shape, starts (json), error}``."""

    def __init__(self, config: str, checkpoint: str, s3d_checkpoint: str, cwd: str) -> None:
        import ray
        import torch

        from tempclr.models import MMPTModel

        os.chdir(cwd)       # relative paths in the config (eval.save_path, the BERT folder) as the driver reads them
        model, _, _ = MMPTModel.from_pretrained(config, checkpoint=checkpoint, s3d_checkpoint=s3d_checkpoint)
        device = torch.device("cuda" if torch.cuda.is_available() and ray.get_gpu_ids() else "cpu")
        self.model = model.to(device)

    def __call__(self, batch: dict) -> dict:
        from tempclr.evaluators.video_search import embed_windows
        from tempclr.utils.fileio import load_npy

        out: dict = {"video": [], "pooled": [], "shape": [], "starts": [], "error": []}
        for video, path in zip(batch["video"], batch["path"]):
            video, path = str(video), str(path)
            try:
                pooled, starts, _ = embed_windows(self.model, load_npy(path), path)
                out["pooled"].append(np.ascontiguousarray(pooled, dtype=np.float32).tobytes())
                out["shape"].append(list(pooled.shape))
                out["starts"].append(json.dumps(starts))
                out["error"].append("")
            except Exception as error:  # reported by the driver, naming the file
                out["pooled"].append(b"")
                out["shape"].append([0, 0])
                out["starts"].append("[]")
                out["error"].append(f"{path}: {type(error).__name__}: {error}")
            out["video"].append(video)
        return {key: np.array(value, dtype=object if key != "shape" else np.int64) for key, value in out.items()}


def ray_index_features(feature_dir: str, config: str, out_dir: str, checkpoint: str = "checkpoint_best.pt",
                       s3d_checkpoint: Optional[str] = None, params: Optional[IndexParams] = None,
                       shard_videos: int = 1000, address: Optional[str] = None, num_model_actors: int = 1,
                       gpus_per_actor: float = 0, cpus_per_actor: float = 1,
                       log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
                       extra: Optional[dict] = None) -> dict:
    """``tempclr-index --engine ray``: the shards and the index of :func:`~tempclr.evaluators.video_index.
    index_features`, the videos embedded by ``num_model_actors`` Ray actors.  Returns the manifest."""
    from tempclr.evaluators.video_index import build_index, list_features, shard_complete, shard_groups, write_shard
    from tempclr.models.mmptmodel import DEFAULT_S3D_CHECKPOINT
    from tempclr.processors.ray_extraction import connect
    from tempclr.utils.load_config import recursive_config
    from tempclr.utils.config_schema import setting

    params = params or IndexParams()
    s3d_checkpoint = os.path.abspath(s3d_checkpoint or DEFAULT_S3D_CHECKPOINT)
    for path, what in ((config, "config"), (s3d_checkpoint, "S3D checkpoint")):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{what} not found: {path}")
    window = int(setting(recursive_config(config), "dataset.max_video_len"))
    features = list_features(feature_dir)
    groups = shard_groups(features, shard_videos)
    todo = {shard: group for shard, group in enumerate(groups) if not shard_complete(out_dir, shard, group)}
    log(f"{len(features)} feature files in {feature_dir} -> {out_dir}: {len(todo)} of {len(groups)} shards to "
        f"embed on Ray ({num_model_actors} actor(s), {gpus_per_actor:g} GPU each)")
    if todo:
        ray = connect(address)
        gpus = ray.cluster_resources().get("GPU", 0)
        if num_model_actors * gpus_per_actor > gpus:
            raise ValueError(f"--num-model-actors {num_model_actors} x --gpus-per-actor {gpus_per_actor:g} needs "
                             f"{num_model_actors * gpus_per_actor:g} GPUs; the cluster has {gpus:g}")
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        owner = {video: shard for shard, group in todo.items() for video, _ in group}
        items = [{"video": video, "path": os.path.abspath(path)} for group in todo.values() for video, path in group]
        dataset = ray.data.from_items(items, override_num_blocks=min(len(items), 4 * num_model_actors * 8))
        dataset = dataset.map_batches(WindowEmbedder, batch_size=1, num_cpus=cpus_per_actor, num_gpus=gpus_per_actor,
                                      compute=ray.data.ActorPoolStrategy(size=num_model_actors),
                                      fn_constructor_kwargs={"config": os.path.abspath(config),
                                                             "checkpoint": checkpoint,
                                                             "s3d_checkpoint": s3d_checkpoint,
                                                             "cwd": os.getcwd()})
        embedded: dict[int, dict] = {shard: {} for shard in todo}
        for row in dataset.iter_rows():
            video = str(row["video"])
            if row["error"]:
                raise ValueError(f"tempclr-index: {row['error']}; fix or remove that file and run again (shards "
                                 "already written are kept)")
            shard = owner[video]
            if shard not in embedded:       # the shard was written already: a retried task's duplicate
                continue
            shape = tuple(int(v) for v in row["shape"])
            embedded[shard][video] = (np.frombuffer(row["pooled"], dtype=np.float32).reshape(shape),
                                      json.loads(row["starts"]))
            if len(embedded[shard]) == len(todo[shard]):
                count = write_shard(out_dir, shard, todo[shard], embedded.pop(shard))
                log(f"shard {shard}: {len(todo[shard])} videos, {count} windows")
        if embedded:
            raise RuntimeError(f"shards {sorted(embedded)} did not get all their videos from Ray; run again")
    manifest_extra = {"feature_dir": os.path.abspath(feature_dir), "window": window, "videos": len(features),
                      **(extra or {})}
    return build_index(out_dir, list(range(len(groups))), params, extra=manifest_extra, log=log)
