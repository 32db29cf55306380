"""A faiss index of a folder of S3D features, for text-to-video search over a corpus (``tempclr-index``).

``tempclr-index FEATURE_DIR --config CFG [--checkpoint checkpoint_best.pt] --out INDEX_DIR``:

1. every ``<id>.npy`` of ``FEATURE_DIR`` (``[T, 512]``, as ``tempclr-extract`` writes them; sorted by name) goes
   through the VideoCLIP video branch in windows of ``dataset.max_video_len`` (32) seconds
   (:func:`tempclr.evaluators.video_search.embed_windows`, the one place videos are embedded for search): one pooled
   vector ``[H]`` per window;
2. the vectors are written in shards of ``--shard_videos`` videos: ``vectors-KKKKK.npy`` (float32 ``[n, H]``)
   then ``ids-KKKKK.json`` (``[[id, first second], ...]``, one per row), each through a temp file and a rename; a
   shard whose two files exist is kept, so a killed run resumes where it stopped;
3. the index: exact inner product (``IndexFlatIP``) below ``--exact_below`` windows; above it IVF-PQ
   (``IndexIVFPQ``, inner product: ``nlist`` lists, ``m`` sub-quantizers of ``nbits`` bits, searched with
   ``nprobe`` lists), trained on a random sample of the windows; its recall@10 against exact search is measured on
   a held-out sample of windows (left out of the training sample; exact search streams over the shards) and, with
   the parameters, printed and stored;
4. ``index.faiss`` and ``index.json`` (kind, parameters, recall, counts, the feature folder) are written last,
   atomically: a folder with ``index.json`` is complete.

``tempclr-search-videos --index INDEX_DIR --config CFG "text"`` searches it (:class:`FaissVideoIndex`): the text
branch's pooled vector, the ``topk * max_windows`` nearest windows, their videos re-scored exactly from their
features (a video's score is its best window's dot product, as on a plain folder) with the best-matching seconds.
"""
from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

__all__ = ["list_features", "write_vector_shards", "shard_groups", "shard_complete", "write_shard", "build_index",
           "FaissVideoIndex", "exact_topk",
           "index_features", "search_index", "IndexParams", "MANIFEST_NAME", "INDEX_NAME"]

MANIFEST_NAME = "index.json"
INDEX_NAME = "index.faiss"
FORMAT_VERSION = 1


@dataclass
class IndexParams:
    """How the index is built.  ``exact_below``: windows under which the index is exact; ``nlist`` (None: about
    ``4 * sqrt(n)``), ``m`` (None: ``H / 4`` when it divides ``H``), ``nbits``, ``nprobe`` (None: ``nlist / 8``),
    ``train_size`` (None: ``max(64 * nlist, 2**nbits * 40)`` capped at the windows left after the queries),
    ``n_queries`` (held-out windows for recall@10), ``seed`` (samples); ``refine``: ``"fp16"`` re-ranks the
    ``k_factor * k`` IVF-PQ candidates with float16 copies of the vectors (``IndexRefine``: 2 bytes per dimension
    more, much higher recall), ``"none"`` keeps the PQ scores alone."""

    exact_below: int = 100_000
    nlist: Optional[int] = None
    m: Optional[int] = None
    nbits: int = 8
    nprobe: Optional[int] = None
    train_size: Optional[int] = None
    n_queries: int = 1000
    seed: int = 0
    refine: str = "fp16"
    k_factor: int = 4


def list_features(feature_dir: str) -> list[tuple[str, str]]:
    """``[(id, path)]`` for the ``<id>.npy`` files of ``feature_dir`` (hidden files excluded), sorted by id."""
    from tempclr.utils.fileio import check_name

    if not os.path.isdir(feature_dir):
        raise FileNotFoundError(f"{feature_dir}: not a folder of feature files (<id>.npy from tempclr-extract)")
    found = []
    for name in sorted(os.listdir(feature_dir)):
        if name.endswith(".npy") and not name.startswith("."):
            found.append((check_name(name[:-4], feature_dir, None, what="feature file id"),
                          os.path.join(feature_dir, name)))
    if not found:
        raise FileNotFoundError(f"{feature_dir}: no <id>.npy feature files in it; run tempclr-extract first")
    return found


def _shard_paths(out_dir: str, shard: int) -> tuple[str, str]:
    return (os.path.join(out_dir, f"vectors-{shard:05d}.npy"), os.path.join(out_dir, f"ids-{shard:05d}.json"))


def shard_complete(out_dir: str, shard: int, group: Sequence[tuple[str, str]]) -> bool:
    """Whether shard ``shard`` of ``out_dir`` is written (both files) for the videos ``group``; a written shard of
    other videos (the feature folder changed since) is a ``ValueError`` naming it."""
    vectors_path, ids_path = _shard_paths(out_dir, shard)
    if not (os.path.isfile(ids_path) and os.path.isfile(vectors_path)):
        return False
    with open(ids_path, encoding="utf-8") as f:
        stored = json.load(f)
    have = list(dict.fromkeys(row[0] for row in stored))
    if have != [video for video, _ in group]:
        raise ValueError(f"{ids_path}: holds other videos than the {len(group)} videos from {group[0][0]} on; the "
                         "feature folder changed since it was written: index into a new --out folder")
    return True


def write_shard(out_dir: str, shard: int, group: Sequence[tuple[str, str]],
                embedded: dict[str, tuple[np.ndarray, list[int]]]) -> int:
    """Write shard ``shard``: the windows ``embedded[id] = (pooled [W, H], starts [W])`` of the videos of ``group``
    in its order (vectors, then ids: the shard is complete when its ids file exists).  Returns its window count."""
    from tempclr.utils.fileio import save_npy_atomic, write_json_atomic

    vectors_path, ids_path = _shard_paths(out_dir, shard)
    rows, ids = [], []
    for video, path in group:
        pooled, starts = embedded[video]
        pooled = np.asarray(pooled, dtype=np.float32)
        if pooled.ndim != 2 or len(pooled) != len(starts) or not np.isfinite(pooled).all():
            raise FloatingPointError(f"{path}: the video branch gave NaN/inf or misshapen embeddings "
                                     f"{pooled.shape}; check the checkpoint and the features")
        rows.append(pooled)
        ids.extend([video, int(start)] for start in starts)
    save_npy_atomic(vectors_path, np.concatenate(rows, axis=0))
    write_json_atomic(ids_path, ids)
    return len(ids)


def shard_groups(features: Sequence[tuple[str, str]], shard_videos: int) -> list[list[tuple[str, str]]]:
    """``features`` cut into shards of ``shard_videos`` videos, in order."""
    if shard_videos < 1:
        raise ValueError(f"shard_videos must be >= 1, got {shard_videos}")
    return [list(features[first:first + shard_videos]) for first in range(0, len(features), shard_videos)]


def write_vector_shards(features: Sequence[tuple[str, str]],
                        embed: Callable[[str, np.ndarray], tuple[np.ndarray, list[int]]], out_dir: str,
                        shard_videos: int = 1000, log: Callable[[str], None] = print) -> list[int]:
    """Embed ``features`` (``[(id, path)]``) with ``embed(id, feats [T, 512]) -> (pooled [W, H], window starts
    [W])`` into shards of ``shard_videos`` videos; shards already complete are kept (see :func:`shard_complete`).
    Returns the shard numbers."""
    from tempclr.utils.fileio import load_npy

    groups = shard_groups(features, shard_videos)
    for shard, group in enumerate(groups):
        if shard_complete(out_dir, shard, group):
            continue
        embedded = {video: embed(video, load_npy(path)) for video, path in group}
        count = write_shard(out_dir, shard, group, embedded)
        log(f"shard {shard}: {len(group)} videos, {count} windows")
    return list(range(len(groups)))


def _load_shard(out_dir: str, shard: int) -> tuple[np.ndarray, list]:
    from tempclr.utils.fileio import load_npy

    vectors_path, ids_path = _shard_paths(out_dir, shard)
    with open(ids_path, encoding="utf-8") as f:
        ids = json.load(f)
    vectors = load_npy(vectors_path, mmap_mode="r")
    if vectors.ndim != 2 or vectors.shape[0] != len(ids):
        raise ValueError(f"{vectors_path}: {vectors.shape} rows for {len(ids)} ids in {ids_path}; delete both and "
                         "run again")
    return vectors, ids


def exact_topk(out_dir: str, shards: Sequence[int], queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top ``k`` of ``queries [Q, H]`` over the shards' vectors, streamed one shard at a time:
    ``(scores [Q, k], global row numbers [Q, k])`` (-1 where fewer than ``k`` rows exist)."""
    import faiss

    best_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_rows = np.full((len(queries), k), -1, dtype=np.int64)
    offset = 0
    for shard in shards:
        vectors, _ = _load_shard(out_dir, shard)
        flat = faiss.IndexFlatIP(vectors.shape[1])
        flat.add(np.ascontiguousarray(vectors, dtype=np.float32))
        scores, rows = flat.search(queries, min(k, flat.ntotal))
        rows = np.where(rows >= 0, rows + offset, -1)
        scores = np.concatenate([best_scores, scores], axis=1)
        rows = np.concatenate([best_rows, rows], axis=1)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        best_scores = np.take_along_axis(scores, order, axis=1)
        best_rows = np.take_along_axis(rows, order, axis=1)
        offset += flat.ntotal
    return best_scores, best_rows


def _ivfpq_params(n: int, dim: int, params: IndexParams, n_train_pool: int) -> dict:
    nlist = params.nlist or max(1, min(65536, int(4 * math.sqrt(n))))
    m = params.m
    if m is None:
        m = next(c for c in (dim // 4, dim // 2, dim) if c >= 1 and dim % c == 0)
    if dim % m:
        raise ValueError(f"--pq_m {m} must divide the vector size {dim}")
    nprobe = params.nprobe or max(1, nlist // 8)
    train = params.train_size or max(64 * nlist, (2 ** params.nbits) * 40)
    train = min(train, n_train_pool)
    if train < max(nlist, 2 ** params.nbits):
        raise ValueError(f"{n} windows are too few to train IVF-PQ with nlist {nlist} and {params.nbits} bits "
                         f"({train} training vectors); raise --exact_below or lower --nlist / --pq_nbits")
    return {"nlist": nlist, "m": m, "nbits": params.nbits, "nprobe": min(nprobe, nlist), "train_size": train}


def _gather(out_dir: str, shards: Sequence[int], rows: np.ndarray) -> np.ndarray:
    """The vectors at global row numbers ``rows`` (sorted), read shard by shard."""
    out, offset, parts = np.sort(rows), 0, []
    for shard in shards:
        vectors, _ = _load_shard(out_dir, shard)
        mine = out[(out >= offset) & (out < offset + len(vectors))] - offset
        if len(mine):
            parts.append(np.asarray(vectors[mine], dtype=np.float32))
        offset += len(vectors)
    return np.ascontiguousarray(np.concatenate(parts, axis=0))


def build_index(out_dir: str, shards: Sequence[int], params: IndexParams, extra: Optional[dict] = None,
                log: Callable[[str], None] = print) -> dict:
    """Build the faiss index over the shards of ``out_dir`` (see the module's description) and write
    ``index.faiss`` and ``index.json``; returns the manifest (``extra`` is merged into it)."""
    import faiss

    from tempclr.utils.fileio import atomic_path, write_json_atomic

    counts, dim, max_windows = [], None, 1
    for shard in shards:
        vectors, ids = _load_shard(out_dir, shard)
        counts.append(len(ids))
        dim = vectors.shape[1]
        per_video: dict[str, int] = {}
        for video, _ in ids:
            per_video[video] = per_video.get(video, 0) + 1
        max_windows = max([max_windows, *per_video.values()])
    n = int(sum(counts))
    manifest = {"format": FORMAT_VERSION, "count": n, "dim": int(dim), "max_windows": int(max_windows),
                "shards": list(shards), **(extra or {})}
    rng = np.random.default_rng(params.seed)
    if n < params.exact_below:
        index = faiss.IndexFlatIP(dim)
        for shard in shards:
            index.add(np.ascontiguousarray(_load_shard(out_dir, shard)[0], dtype=np.float32))
        manifest.update(kind="flat", recall_at_10=1.0)
        log(f"index: exact inner product (IndexFlatIP), {n} windows of {dim} dims (under --exact_below "
            f"{params.exact_below})")
    else:
        order = rng.permutation(n)
        n_queries = min(params.n_queries, n // 10)
        held_out, pool = order[:n_queries], order[n_queries:]
        chosen = _ivfpq_params(n, dim, params, len(pool))
        train = _gather(out_dir, shards, pool[:chosen["train_size"]])
        quantizer = faiss.IndexFlatIP(dim)
        ivf = faiss.IndexIVFPQ(quantizer, dim, chosen["nlist"], chosen["m"], chosen["nbits"],
                               faiss.METRIC_INNER_PRODUCT)
        ivf.nprobe = chosen["nprobe"]
        if params.refine == "fp16":
            index = faiss.IndexRefine(ivf, faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16,
                                                                      faiss.METRIC_INNER_PRODUCT))
            index.k_factor = params.k_factor
            chosen.update(refine="fp16", k_factor=params.k_factor)
        elif params.refine == "none":
            index = ivf
            chosen.update(refine="none")
        else:
            raise ValueError(f"refine must be fp16 or none, got {params.refine!r}")
        index.train(train)
        del train
        for shard in shards:
            index.add(np.ascontiguousarray(_load_shard(out_dir, shard)[0], dtype=np.float32))
        queries = _gather(out_dir, shards, held_out)
        k = min(10, n)
        _, exact = exact_topk(out_dir, shards, queries, k)
        _, approx = index.search(queries, k)
        recall = float(np.mean([len(set(a) & set(e)) / k for a, e in zip(approx.tolist(), exact.tolist())]))
        manifest.update(kind="ivfpq", ivfpq=chosen, recall_at_10=recall, recall_queries=int(n_queries))
        log(f"index: IVF-PQ (IndexIVFPQ, inner product), {n} windows of {dim} dims: nlist {chosen['nlist']}, "
            f"m {chosen['m']} x {chosen['nbits']} bits, nprobe {chosen['nprobe']}, refine {chosen['refine']}, "
            f"trained on "
            f"{chosen['train_size']} windows; recall@10 against exact search {recall:.3f} on {n_queries} held-out "
            "windows")
    with atomic_path(os.path.join(out_dir, INDEX_NAME), suffix=".faiss") as tmp:
        faiss.write_index(index, tmp)
    write_json_atomic(os.path.join(out_dir, MANIFEST_NAME), manifest)     # last: the folder is complete
    return manifest


class FaissVideoIndex:
    """An index folder written by ``tempclr-index``: ``query`` gives the top videos for a pooled text vector,
    re-scored exactly from their features with ``model`` (as :class:`~tempclr.evaluators.video_search.VideoIndex`
    scores a plain folder) with their best-matching seconds."""

    def __init__(self, index_dir: str) -> None:
        import faiss

        manifest_path = os.path.join(index_dir, MANIFEST_NAME)
        if not os.path.isfile(manifest_path):
            raise FileNotFoundError(f"{index_dir}: no {MANIFEST_NAME}; not a finished tempclr-index folder (run "
                                    "tempclr-index again with the same --out to finish it)")
        with open(manifest_path, encoding="utf-8") as f:
            self.manifest = json.load(f)
        if self.manifest.get("format") != FORMAT_VERSION:
            raise ValueError(f"{manifest_path}: format {self.manifest.get('format')}, this tempclr reads "
                             f"{FORMAT_VERSION}; rebuild the index")
        self.index = faiss.read_index(os.path.join(index_dir, INDEX_NAME))
        if self.manifest["kind"] == "ivfpq":
            ivf = faiss.extract_index_ivf(self.index)
            ivf.nprobe = int(self.manifest["ivfpq"]["nprobe"])
            if self.manifest["ivfpq"]["refine"] != "none":
                self.index.k_factor = int(self.manifest["ivfpq"]["k_factor"])
        self.ids: list = []
        for shard in self.manifest["shards"]:
            with open(_shard_paths(index_dir, shard)[1], encoding="utf-8") as f:
                self.ids.extend(json.load(f))
        if len(self.ids) != self.index.ntotal:
            raise ValueError(f"{index_dir}: {len(self.ids)} ids for {self.index.ntotal} indexed vectors; rebuild it")
        self.feature_dir = self.manifest["feature_dir"]

    def candidates(self, pooled_text: np.ndarray, topk: int) -> list[str]:
        """The videos of the ``topk * max_windows`` nearest windows, nearest first, each once."""
        text = np.ascontiguousarray(pooled_text, dtype=np.float32)[None]
        k = int(min(self.index.ntotal, topk * int(self.manifest["max_windows"])))
        _, rows = self.index.search(text, k)
        return list(dict.fromkeys(self.ids[row][0] for row in rows[0] if row >= 0))

    def query(self, model, pooled_text: np.ndarray, topk: int = 5, n_seconds: int = 3) -> list:
        from tempclr.evaluators.video_search import VideoHit, best_seconds, embed_windows
        from tempclr.utils.fileio import contained_path, load_npy

        hits = []
        for video in self.candidates(pooled_text, topk):
            path = contained_path(self.feature_dir, video + ".npy", MANIFEST_NAME, None, what="video id")
            pooled, _, states = embed_windows(model, load_npy(path), path)
            score = float(np.max(pooled @ np.asarray(pooled_text, dtype=np.float32)))
            hits.append(VideoHit(video, score, best_seconds(states, pooled_text, n_seconds)))
        hits.sort(key=lambda hit: -hit.score)
        return hits[:topk]


def index_features(feature_dir: str, model, out_dir: str, params: Optional[IndexParams] = None,
                   shard_videos: int = 1000, log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
                   extra: Optional[dict] = None) -> dict:
    """``tempclr-index`` with a loaded ``model`` (an :class:`~tempclr.models.MMPTModel`) on this machine."""
    from tempclr.evaluators.video_search import embed_windows

    params = params or IndexParams()
    features = list_features(feature_dir)

    def embed(video: str, feats: np.ndarray) -> tuple[np.ndarray, list[int]]:
        pooled, starts, _ = embed_windows(model, feats, video)
        return pooled, starts

    window = int(model.max_video_len)
    log(f"{len(features)} feature files in {feature_dir} -> {out_dir} (windows of {window} s, shards of "
        f"{shard_videos} videos)")
    shards = write_vector_shards(features, embed, out_dir, shard_videos=shard_videos, log=log)
    manifest_extra = {"feature_dir": os.path.abspath(feature_dir), "window": window, "videos": len(features),
                      **(extra or {})}
    return build_index(out_dir, shards, params, extra=manifest_extra, log=log)


def search_index(index_dir: str, config: str, queries: Sequence[str], checkpoint: str = "checkpoint_best.pt",
                 s3d_checkpoint: Optional[str] = None, topk: int = 5, device: str = "auto") -> dict:
    """``{query: [VideoHit, ...]}`` from an index folder of ``tempclr-index`` (hits name videos by their feature id),
    with the model of ``config`` / ``checkpoint`` (the one the index was built with)."""
    from tempclr.evaluators.video_search import embed_queries
    from tempclr.models import MMPTModel
    from tempclr.models.mmptmodel import DEFAULT_S3D_CHECKPOINT
    from tempclr.processors.extraction import resolve_device

    index = FaissVideoIndex(index_dir)
    model, tokenizer, aligner = MMPTModel.from_pretrained(config, checkpoint=checkpoint,
                                                          s3d_checkpoint=s3d_checkpoint or DEFAULT_S3D_CHECKPOINT)
    model.to(resolve_device(device))
    texts = embed_queries(model, tokenizer, aligner, queries)
    return {query: index.query(model, vector, topk) for query, vector in zip(queries, texts)}
