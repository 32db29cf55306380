"""Retrieval-augmented batch building on the demo data, in one process."""
import os
import pickle

import numpy as np
import pytest
import torch

from tempclr.tasks.task import Task
from tempclr.utils.load_config import load_config

from conftest import small_demo_config


def build_task(tmp_path, small_demo, extra=""):
    config = load_config(config_file=small_demo_config(tmp_path, small_demo, tmp_path / "save", extra))
    task = Task.config_task(config)
    task.build_dataset()
    task.build_model()
    task.build_loss()
    return task


def test_groups_are_seed_plus_nearest_neighbours(tmp_path, small_demo):
    task = build_task(tmp_path, small_demo, "retri_db_type: exact\nnum_cands: 3\n")
    torch.manual_seed(0)
    pool = task.embed_videos(1, task.model)
    assert len(pool) == 16 and pool.matrix().shape == (16, task.model.hidden_size)
    groups = task.retrive_candidates(1)
    assert os.path.isfile(tmp_path / "save" / "retri" / "batched_e1_videos0.pkl")
    with open(tmp_path / "save" / "retri" / "batched_e1_videos0.pkl", "rb") as f:
        assert pickle.load(f) == groups
    assert len(groups) == 16 // 2 and all(1 <= len(g) <= 2 for g in groups)
    # brute force: a group is drawn from some seed plus the 2 nearest neighbours the k=3 search returns
    # besides the seed itself (L2); the random cut to 2 may drop the seed
    vectors = dict(zip(pool.ids, pool.matrix()))

    def neighbourhood(seed):
        distances = sorted((float(np.sum((vectors[seed] - v) ** 2)), other)
                           for other, v in vectors.items() if other != seed)
        return {seed} | {other for _, other in distances[:2]}

    for group in groups:
        assert any(set(group) <= neighbourhood(seed) for seed in vectors), group
    # the training set now iterates over the retrieved groups
    meta = task.train_data.meta_processor
    assert [[v[0] for v in g] for g in meta.cands] == groups
    item = task.train_data[0]
    assert tuple(item["caps"].shape) == (len(groups[0]), 4, 64)


def test_existing_group_file_skips_embedding(tmp_path, small_demo):
    task = build_task(tmp_path, small_demo)
    first = task.retrive_candidates(1)
    task.model = None  # an embedding pass would now fail: the file must be reused
    assert task.retrive_candidates(1) == first


def test_ivf_index_with_too_few_vectors_is_a_clear_error(tmp_path, small_demo):
    task = build_task(tmp_path, small_demo, "")
    task.config.retri_centroids = 64
    try:
        task.retrive_candidates(2)
    except ValueError as error:
        assert "retri_centroids" in str(error)
    else:
        raise AssertionError("expected a ValueError naming retri_centroids")


def test_training_batch_shapes_and_loss(tmp_path, small_demo):
    task = build_task(tmp_path, small_demo)
    batch = task.train_data.collater([task.train_data[0]])
    task.model.eval()  # no dropout: the task's forward and the one below see the same model
    outputs = task(task.model, batch)
    flat = task.reshape_subsample(batch)
    with torch.no_grad():
        pooled = task.model(**flat)
    # MMContraLoss by hand: mean CE of each video against all texts plus each text against all videos
    scores = (pooled["pooled_video"].double() @ pooled["pooled_text"].double().T).numpy()
    v2t = np.mean([np.log(np.exp(row).sum()) - row[i] for i, row in enumerate(scores)])
    t2v = np.mean([np.log(np.exp(col).sum()) - col[i] for i, col in enumerate(scores.T)])
    assert outputs["loss"].dim() == 0
    assert outputs["loss"].item() == pytest.approx(v2t + t2v, rel=1e-5)
    assert tuple(flat["caps"].shape) == (8, 64) and tuple(flat["vfeats"].shape) == (8, 32, 512)
    assert tuple(flat["video_start"].shape) == (8,)


def test_before_epoch_regroups_from_retri_epoch_on(tmp_path, small_demo):
    """The hook the fairseq adapter calls before each training epoch: nothing before ``retri_epoch``, then a
    retrieval pass whose groups the training set iterates over."""
    task = build_task(tmp_path, small_demo, "retri_epoch: 2\n")
    before = task.train_data.meta_processor.cands
    assert task.before_epoch(1) is False
    assert not os.path.exists(tmp_path / "save" / "retri")
    assert task.train_data.meta_processor.cands is before
    assert task.before_epoch(2) is True
    with open(tmp_path / "save" / "retri" / "batched_e2_videos0.pkl", "rb") as f:
        groups = pickle.load(f)
    assert [[v[0] for v in g] for g in task.train_data.meta_processor.cands] == groups
    assert Task(task.config).before_epoch(5) is False  # the generic task changes nothing
    last = int(task.config.fairseq.optimization.max_epoch)
    assert task.before_epoch(last + 1) is False  # fairseq's look-ahead past the last epoch: no retrieval pass
    assert not os.path.exists(tmp_path / "save" / "retri" / f"batched_e{last + 1}_videos0.pkl")
