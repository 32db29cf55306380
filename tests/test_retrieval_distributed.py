"""Retrieval-augmented batches across 2 real gloo ranks equal the single-process result.

Each run builds the fairseq task from a demo config (every run loads the same model weights), embeds the training
videos, lets fairseq's ``get_batch_iterator`` run the retrieval pass of epoch 1 and deal the epoch's batches out
to the ranks, and writes what it saw to a pickle: the gathered pool, the groups it trains on, its batches."""
import argparse
import collections
import datetime
import os
import pickle

import numpy as np
import pytest
import torch
import torch.distributed as dist

from tempclr.utils.fileio import write_pickle_atomic

from conftest import make_small_demo, small_demo_config


def run_epoch(rank: int, world_size: int, config: str, state: str, out: str, init_file: str) -> None:
    """One rank (or the only process when ``world_size == 1``) of the run; results in ``<out>.<rank>``."""
    torch.set_num_threads(1)
    if world_size > 1:  # a rank left waiting fails after 120 s instead of hanging the test
        dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(seconds=120))
    try:
        from tempclr.tasks.fairseqmmtask import FairseqMMTask

        fairseq_task = FairseqMMTask.setup_task(argparse.Namespace(taskconfig=config))
        mmtask = fairseq_task.mmtask
        if world_size == 1:
            torch.save(mmtask.model.state_dict(), state)
        else:
            mmtask.model.load_state_dict(torch.load(state))
        pool = mmtask.embed_videos(1, mmtask.model)
        fairseq_task.load_dataset("train")
        iterator = fairseq_task.get_batch_iterator(fairseq_task.datasets["train"], max_sentences=1,
                                                   num_shards=world_size, shard_id=rank, epoch=1)
        batches = [sample["video_id"][0] for sample in iterator.next_epoch_itr(shuffle=True)]
        groups = [[video[0] for video in group] for group in mmtask.train_data.meta_processor.cands]
        timings = dict(mmtask.retrieval_timings)
        mmtask.model = None  # an embedding pass would now fail: every rank must reuse rank 0's group file
        reused = mmtask.retrive_candidates(1)
        # an old per-rank group file for epoch 2: rank 0 refuses it, and the other ranks learn that from rank 0
        if rank == 0:
            with open(mmtask.group_file(2, 1), "wb") as f:
                pickle.dump([], f)
        if world_size > 1:
            dist.barrier()
        try:
            mmtask.retrive_candidates(2)
            error = None
        except (ValueError, RuntimeError) as caught:
            error = (type(caught).__name__, str(caught))
        write_pickle_atomic(f"{out}.{rank}", {"ids": pool.ids, "vectors": pool.matrix(), "groups": groups,
                                               "batches": batches, "timings": timings, "reused": reused,
                                               "error": error, "retri_dir": mmtask.retri_dir()})
    finally:
        if world_size > 1:
            dist.destroy_process_group()


def run(tmp_path, data_dir, name: str, world_size: int, state: str) -> list:
    save = tmp_path / f"save_{name}"
    config = small_demo_config(tmp_path, data_dir, save, "retri_db_type: exact\nnum_cands: 3\n")
    out = str(tmp_path / f"result_{name}")
    if world_size == 1:
        run_epoch(0, 1, config, state, out, "")
    else:
        torch.multiprocessing.spawn(run_epoch, args=(world_size, config, state, out, str(tmp_path / f"init_{name}")),
                                    nprocs=world_size)
    results = []
    for rank in range(world_size):
        with open(f"{out}.{rank}", "rb") as f:
            results.append(pickle.load(f))
    assert sorted(os.listdir(save / "retri")) == ["batched_e1_videos0.pkl", "batched_e2_videos1.pkl"]
    return results


def assert_two_ranks_equal_one_process(tmp_path, data_dir, num_videos: int) -> None:
    state = str(tmp_path / "model.pt")
    [single] = run(tmp_path, data_dir, "single", 1, state)
    ranks = run(tmp_path, data_dir, "ranks", 2, state)
    assert len(single["ids"]) == num_videos
    for result in ranks:
        # the gathered pool: every video once, in dataset order, the vectors the single process computed
        assert result["ids"] == single["ids"]
        np.testing.assert_allclose(result["vectors"], single["vectors"], rtol=0, atol=1e-6)
        # the groups: built once over all videos, the same on every rank and as in one process
        assert result["groups"] == single["groups"]
        assert result["reused"] == single["groups"]
        assert set(result["timings"]) == {"embed", "gather", "retrieval", "total"}
    assert len(single["groups"]) == num_videos // 2
    # fairseq deals the epoch's batches (one group each) out to the ranks: each group on exactly one rank
    assert collections.Counter(map(tuple, single["batches"])) == collections.Counter(map(tuple, single["groups"]))
    dealt = [tuple(group) for result in ranks for group in result["batches"]]
    assert collections.Counter(dealt) == collections.Counter(map(tuple, single["groups"]))
    assert all(ranks[0]["batches"]) and all(ranks[1]["batches"])
    # the old per-rank group file: a clear error on rank 0, the same error quoted on rank 1 (no rank hangs)
    retri_dir = ranks[0]["retri_dir"]
    message = (f"{retri_dir}: batched_e2_videos1.pkl hold groups of epoch 2 built per rank by an older version; "
               "groups now span all ranks, in batched_e2_videos0.pkl alone. Delete batched_e2_videos*.pkl there "
               "to rebuild the epoch's groups")
    assert ranks[0]["error"] == ("ValueError", message)
    assert ranks[1]["error"] == ("RuntimeError", f"rank 0 failed building the retrieval groups: ValueError: {message}")


@pytest.mark.slow
def test_two_ranks_build_the_single_process_groups(tmp_path, small_demo):
    """16 videos: each rank embeds 8 of them."""
    assert_two_ranks_equal_one_process(tmp_path, small_demo, 16)


@pytest.fixture(scope="module")
def odd_demo(tmp_path_factory):
    """17 training videos: 2 ranks embed 9 each, one of them a repeat the gathering must drop."""
    return make_small_demo(tmp_path_factory, "odd_demo", 17, 1)


@pytest.mark.slow
def test_uneven_shares_drop_the_sampler_padding(tmp_path, odd_demo):
    assert_two_ranks_equal_one_process(tmp_path, odd_demo, 17)


def test_gather_orders_by_dataset_index_and_drops_repeats():
    """In one process ``gather`` does what it does after collecting every rank's rows: order them by dataset
    index, keep the first row of a repeated index, and insist on every index exactly once."""
    from tempclr.modules.vectorpool import VideoVectorPool

    pool = VideoVectorPool()
    pool.add(["b", "a", "c", "a"], np.arange(8, dtype=np.float32).reshape(4, 2), indices=[1, 0, 2, 0])
    pool.gather(3)
    assert pool.ids == ["a", "b", "c"] and pool.indices == [0, 1, 2]
    np.testing.assert_array_equal(pool.matrix(), [[2, 3], [0, 1], [4, 5]])
    with pytest.raises(ValueError) as error:
        pool.gather(4)
    assert str(error.value) == ("the gathered pool should hold dataset indices 0..3 once each: 1 missing (first [3]), "
                                "0 outside (first []); every item must be embedded by some rank")
    clash = VideoVectorPool()
    clash.add(["a", "z"], np.zeros((2, 2), np.float32), indices=[0, 0])
    with pytest.raises(ValueError) as error:
        clash.gather(1)
    assert str(error.value) == ("dataset index 0 was embedded as 'a' and as 'z': the ranks do not read the same "
                                "dataset")
