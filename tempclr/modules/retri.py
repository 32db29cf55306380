"""faiss nearest-neighbour search over a vector pool."""
from __future__ import annotations

import logging
from typing import List, Sequence

import numpy as np

from tempclr.utils.registry import register


@register("retriever")
class VectorRetriever:
    """L2 search over ``[N, D]`` float32 vectors.

    ``db_type="flatl2"`` is the original's ``IndexIVFFlat(IndexFlatL2(D), centroids)`` (nprobe 1), trained on the
    first ``centroids * examples_per_cent_to_train`` vectors; ``db_type="exact"`` is a brute-force
    ``IndexFlatL2``.  An IVF index needs at least ``centroids`` training vectors: fewer is an error naming the
    config key to lower, never a silent switch to another index.
    """

    def __init__(self, hidden_size: int, centroids: int = 512, db_type: str = "flatl2",
                 examples_per_cent_to_train: int = 48, nprobe: int = 1):
        logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # it logs each CPU-feature probe at INFO
        import faiss

        self.faiss = faiss
        self.hidden_size = hidden_size
        self.centroids = centroids
        self.db_type = db_type
        self.train_size = centroids * examples_per_cent_to_train
        if db_type == "flatl2":
            self.quantizer = faiss.IndexFlatL2(hidden_size)
            self.index = faiss.IndexIVFFlat(self.quantizer, hidden_size, centroids, faiss.METRIC_L2)
            self.index.nprobe = nprobe
        elif db_type == "exact":
            self.index = faiss.IndexFlatL2(hidden_size)
        else:
            raise ValueError(f"unknown retriever db_type {db_type!r} (use 'flatl2' or 'exact')")
        self.ids: List[str] = []

    def build(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Train (IVF) and add all vectors."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.hidden_size:
            raise ValueError(f"expected vectors [N, {self.hidden_size}], got {list(vectors.shape)}")
        if self.db_type == "flatl2":
            if len(vectors) < self.centroids:
                raise ValueError(
                    f"the IVF index needs at least {self.centroids} vectors to train {self.centroids} centroids, "
                    f"got {len(vectors)}; lower 'retri_centroids' in the config")
            self.index.train(vectors[: self.train_size])
            self.index.make_direct_map()
        self.index.add(vectors)
        self.ids = list(ids)

    def search_ids(self, query_rows: Sequence[int], k: int) -> List[List[str]]:
        """For each pool row in ``query_rows``: the ids of its ``k`` nearest neighbours (itself and faiss's
        ``-1`` fillers excluded), nearest first."""
        queries = np.stack([self.index.reconstruct(int(r)) for r in query_rows]).astype(np.float32)
        _, neighbours = self.index.search(queries, k)
        results = []
        for row, hits in zip(query_rows, neighbours):
            results.append([self.ids[h] for h in hits if h != -1 and h != row])
        return results
