"""S3D features on a Ray cluster (``tempclr-extract --engine ray``): the same files as the local engine, many machines.

The pipeline is a Ray Data dataset::

    videos to do (one row each) --decode: CPU tasks--> chunks of <= batch_size clips (uint8 [n, 30, size, size, 3])
        --S3D: an actor pool (one model load per actor; GPUs when asked)--> [n, 512] float32 per chunk
        --driver--> <fdir>/<key>.npy, written atomically once every chunk of the video has arrived

* Same bytes as ``--engine local``: a video is cut into the same chunks (:func:`open_video_reader`, ``batch_size``
  clips each, the last one shorter) and each chunk is one S3D forward on its own, as the local engine does, so the
  feature file does not depend on which worker, actor or machine did the work.
* Only the driver writes outputs, each through a temp file and a rename: a worker or actor that dies leaves nothing
  half-written; Ray retries its task (a decode task again from the video's start, an actor restarted with its
  model), and a chunk that arrives twice is kept once (it is the same bytes).
* Resume: videos whose feature file exists are skipped before anything is sent to the cluster.
* A video that fails (unreadable, corrupt, no video stream) is printed with its name, logged in the error log
  (``path<TAB>reason``) and the run goes on, as locally.
* The S3D weights are read and checked once by the driver and shipped to the actors through Ray's object store: the
  checkpoint need not be on the workers' disks; the videos (files or tar shards) must be readable at the same path
  on every node (a shared filesystem), the outputs are written on the driver's machine.

Ray is an optional dependency (``pip install 'tempclr[ray]'``); nothing else in tempclr imports this module.
"""
from __future__ import annotations

import functools
import os
import sys
import time
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import numpy as np

from tempclr.processors.extraction import ExtractError, ExtractSummary

__all__ = ["RayPlan", "plan_ray", "ray_extract_features", "RAY_INSTALL_HINT"]

RAY_INSTALL_HINT = "--engine ray needs Ray Data: pip install 'tempclr[ray]' (or pip install 'ray[data]')"


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401 (the Data library is a separate extra)
    except ImportError as error:
        raise ExtractError(f"{RAY_INSTALL_HINT} ({error})") from None
    return ray


@dataclass
class RayPlan:
    """What a Ray run will do: the videos to extract and skip, and the resources it asks for."""

    todo: list[tuple[str, str]]
    skipped: list[str]
    num_model_actors: int
    gpus_per_actor: float
    cpus_per_actor: float
    cpus_per_decode_task: float
    cluster: dict
    nodes: int = 0

    def lines(self) -> list[str]:
        gpus = self.cluster.get("GPU", 0)
        return [f"videos: {len(self.todo)} to extract, {len(self.skipped)} skipped (features exist)",
                f"S3D: {self.num_model_actors} actor(s), each {self.gpus_per_actor:g} GPU and {self.cpus_per_actor:g} "
                f"CPU, one model load per actor",
                f"decoding: Ray tasks of {self.cpus_per_decode_task:g} CPU, one video each",
                f"cluster: {self.cluster.get('CPU', 0):g} CPUs, {gpus:g} GPUs, {self.nodes} node(s)"]


def connect(address: Optional[str] = None):
    """``ray`` connected to the cluster at ``address`` (``auto``: the one running on this machine; ``HOST:PORT``;
    None: ``RAY_ADDRESS`` when set, else a new single-machine Ray); an existing connection is reused."""
    ray = _import_ray()
    if not ray.is_initialized():
        try:
            ray.init(address=address, logging_level="WARNING", configure_logging=True)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise ExtractError(f"--address {address}: cannot connect to a Ray cluster ({error}); start one with "
                               "`ray start --head` or leave --address out for a single-machine Ray") from error
    return ray


def plan_ray(videos: Sequence[tuple[str, str]], num_model_actors: int = 1, gpus_per_actor: float = 0,
             cpus_per_actor: float = 1, cpus_per_decode_task: float = 1, cluster: Optional[dict] = None) -> RayPlan:
    """Split ``videos`` into to-do and skipped; check the resources asked for against ``cluster`` (Ray's
    ``cluster_resources()``): actors that can never be placed are an :class:`ExtractError` before anything runs."""
    if num_model_actors < 1 or gpus_per_actor < 0 or cpus_per_actor < 0 or cpus_per_decode_task <= 0:
        raise ExtractError(f"--num-model-actors must be >= 1 and --gpus-per-actor >= 0, got {num_model_actors}, "
                           f"{gpus_per_actor}")
    cluster = dict(cluster or {})
    todo, skipped = [], []
    for video, feature in videos:
        (skipped.append(video) if os.path.isfile(feature) else todo.append((video, feature)))
    if cluster:
        gpus, cpus = cluster.get("GPU", 0), cluster.get("CPU", 0)
        if num_model_actors * gpus_per_actor > gpus:
            raise ExtractError(f"--num-model-actors {num_model_actors} x --gpus-per-actor {gpus_per_actor:g} needs "
                               f"{num_model_actors * gpus_per_actor:g} GPUs; the cluster has {gpus:g}: ask for fewer "
                               "or add GPU nodes (--gpus-per-actor 0 runs S3D on CPUs)")
        if num_model_actors * cpus_per_actor + cpus_per_decode_task > cpus:
            need = num_model_actors * cpus_per_actor + cpus_per_decode_task
            raise ExtractError(f"{num_model_actors} S3D actor(s) of {cpus_per_actor:g} CPU and decode tasks of "
                               f"{cpus_per_decode_task:g} CPU need {need:g} CPUs; the cluster has {cpus:g}: lower "
                               "--num-model-actors or add nodes")
    return RayPlan(todo, skipped, num_model_actors, gpus_per_actor, cpus_per_actor, cpus_per_decode_task, cluster)


def _task_resources(num_cpus: float) -> dict:
    return {"num_cpus": num_cpus}


def _error_row(index: int, reason: str) -> dict:
    return {"index": np.array([index]), "chunk": np.array([-1]), "last": np.array([True]),
            "seconds": np.array([0.0]), "error": np.array([reason], dtype=object),
            "shape": np.zeros((1, 5), np.int64), "data": np.array([b""], dtype=object)}


def _chunk_row(index: int, number: int, chunk: np.ndarray, last: bool, seconds: float) -> dict:
    return {"index": np.array([index]), "chunk": np.array([number]), "last": np.array([last]),
            "seconds": np.array([seconds]), "error": np.array([""], dtype=object),
            "shape": np.array([chunk.shape], np.int64), "data": np.array([chunk.tobytes()], dtype=object)}


def decode_videos(batch: dict, size: int, clips_per_chunk: int, colour: str) -> Iterator[dict]:
    """Ray Data map: rows ``{index, video}`` -> one row per chunk of clips (``last`` marks a video's last chunk,
    which carries its seconds) or one row with ``error`` for a video that failed (after any chunks it gave)."""
    from tempclr.processors.extraction import open_video_reader
    from tempclr.processors.videoreader import VideoDecodeError

    for index, video in zip(batch["index"], batch["video"]):
        index, video = int(index), str(video)
        try:
            reader = open_video_reader(video, size=size, clips_per_chunk=clips_per_chunk, threads=0, colour=colour)
            pending, number = None, 0
            for chunk in reader:
                if pending is not None:
                    yield _chunk_row(index, number, pending, False, 0.0)
                    number += 1
                pending = chunk
            yield _chunk_row(index, number, pending, True, reader.seconds)
        except VideoDecodeError as error:
            yield _error_row(index, str(error))
        except Exception as error:  # one file's libav / numpy error must not stop the run
            yield _error_row(index, f"{video}: {type(error).__name__}: {error}")


class S3DActor:
    """Ray Data actor: S3D loaded once from the state dict in the object store; each chunk row -> its per-clip
    embeddings (float32 ``[n, 512]`` bytes), one forward per chunk; error rows pass through."""

    def __init__(self, state_box: list, l2_normalize: bool, num_classes: int = 512) -> None:
        import ray
        import torch

        from tempclr.processors.models.s3dg import S3D

        state = ray.get(state_box[0])
        model = S3D(None, num_classes=num_classes)
        model.load_state_dict(state, strict=True)
        device = torch.device("cuda" if torch.cuda.is_available() and ray.get_gpu_ids() else "cpu")
        self.model = model.to(device).eval()
        self.l2_normalize = l2_normalize

    def __call__(self, batch: dict) -> dict:
        from tempclr.processors.models.s3dg import s3d_embed

        out = {key: batch[key] for key in ("index", "chunk", "last", "seconds", "error")}
        embeddings = []
        for error, shape, data in zip(batch["error"], batch["shape"], batch["data"]):
            if error:
                embeddings.append(b"")
                continue
            clips = np.frombuffer(bytearray(data), dtype=np.uint8).reshape(tuple(int(v) for v in shape))
            embeddings.append(s3d_embed(self.model, clips, l2_normalize=self.l2_normalize).cpu().numpy().tobytes())
        out["embedding"] = np.array(embeddings, dtype=object)
        return out


def ray_extract_features(videos: Sequence[tuple[str, str]], s3d_checkpoint: str, batch_size: int = 32,
                         l2_normalize: bool = True, half_precision: bool = True, size: int = 224,
                         error_log: Optional[str] = None, progress: Optional[bool] = None, colour: str = "ffmpeg",
                         address: Optional[str] = None, num_model_actors: int = 1, gpus_per_actor: float = 0,
                         cpus_per_actor: float = 1, cpus_per_decode_task: float = 1,
                         dryrun: bool = False, stats: Optional[list] = None) -> ExtractSummary:
    """Extract ``videos`` (``[(video, feature_path)]``, from :func:`~tempclr.processors.extraction.plan_videos`) on
    Ray; the arguments mean what they mean for :func:`~tempclr.processors.extraction.extract_features`, and the
    files are the same bytes.  ``dryrun``: print the plan (:class:`RayPlan`) and return without extracting.  ``stats``:
    a list that gets Ray Data's execution statistics (a text: time per operator) appended (benchmarks)."""
    from tqdm import tqdm

    from tempclr.processors.extraction import _ErrorLog, _remove_stale_temp_files
    from tempclr.processors.models.s3dg import S3D, check_s3d_state, load_s3d_state
    from tempclr.processors.videoreader import COLOUR_MODES
    from tempclr.utils.fileio import save_npy_atomic

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if colour not in COLOUR_MODES:
        raise ValueError(f"colour must be one of {', '.join(COLOUR_MODES)}, got {colour!r}")
    state = load_s3d_state(s3d_checkpoint)
    check_s3d_state(S3D(None), state, source=s3d_checkpoint)
    ray = connect(address)
    plan = plan_ray(videos, num_model_actors, gpus_per_actor, cpus_per_actor, cpus_per_decode_task,
                    ray.cluster_resources())
    plan.nodes = len([node for node in ray.nodes() if node.get("Alive")])
    summary = ExtractSummary(skipped=list(plan.skipped))
    if dryrun:
        for line in plan.lines():
            print(line)
        return summary
    start = time.perf_counter()
    todo = plan.todo
    if not todo:
        return summary
    for _, feature in todo:
        _remove_stale_temp_files(feature)
    log = _ErrorLog(error_log) if error_log else None
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.verbose_progress = False
    state_box = [ray.put(state)]
    del state
    items = [{"index": index, "video": video} for index, (video, _) in enumerate(todo)]
    dataset = ray.data.from_items(items, override_num_blocks=len(items))     # one decode task per video
    # a ray_remote_args_fn keeps Ray Data from fusing decoding into the S3D actors: decoding stays in CPU tasks
    # spread over the cluster, the actors only run S3D (deprecated in Ray 2.60, removed in 2.64: pinned below it)
    dataset = dataset.map_batches(decode_videos, batch_size=1,
                                  ray_remote_args_fn=functools.partial(_task_resources, cpus_per_decode_task),
                                  fn_kwargs={"size": size, "clips_per_chunk": batch_size, "colour": colour})
    dataset = dataset.map_batches(S3DActor, batch_size=1, num_cpus=cpus_per_actor, num_gpus=gpus_per_actor,
                                  compute=ray.data.ActorPoolStrategy(size=num_model_actors),
                                  fn_constructor_kwargs={"state_box": state_box, "l2_normalize": l2_normalize})
    # Ray Data's defaults do the fault tolerance: tasks retried without limit on system failures (a dead worker
    # process or node), actors restarted without limit with their tasks retried
    out_dtype = np.float16 if half_precision else np.float32
    parts: dict[int, dict[int, np.ndarray]] = {}
    last_chunk: dict[int, tuple[int, float]] = {}
    finished: set[int] = set()
    bar = tqdm(total=len(todo), unit="video", disable=None if progress is None else not progress,
               dynamic_ncols=True, file=sys.stderr)

    def fail(index: int, reason: str) -> None:
        finished.add(index)
        parts.pop(index, None)
        summary.fail(todo[index][0], reason, bar, log)

    try:
        for row in dataset.iter_rows():
            index = int(row["index"])
            if index in finished:           # a chunk again from a retried task, or after the video failed
                continue
            if row["error"]:
                fail(index, str(row["error"]))
                continue
            chunk = int(row["chunk"])
            parts.setdefault(index, {})[chunk] = np.frombuffer(row["embedding"], dtype=np.float32).reshape(-1, 512)
            if row["last"]:
                last_chunk[index] = (chunk, float(row["seconds"]))
            if index in last_chunk and len(parts[index]) == last_chunk[index][0] + 1:
                video, feature = todo[index]
                pieces = parts.pop(index)
                save_npy_atomic(feature, np.concatenate([pieces[k] for k in range(len(pieces))]).astype(out_dtype))
                finished.add(index)
                summary.done.append(video)
                summary.video_seconds += last_chunk[index][1]
                elapsed = time.perf_counter() - start
                bar.set_postfix_str(f"{summary.video_seconds:.0f} video-s, "
                                    f"{summary.video_seconds / elapsed:.2f} video-s/s", refresh=False)
                bar.update(1)
    finally:
        bar.close()
    if stats is not None:
        stats.append(dataset.stats())
    for index in range(len(todo)):
        if index not in finished:       # Ray gave up on it (its retries ran out): say so, never drop it silently
            fail(index, "no result from the Ray pipeline (its task failed on every retry); run again")
    summary.wall_seconds = time.perf_counter() - start
    return summary
