"""The fairseq adapter: no training item is dropped by batching, and skip_remainder_batch reaches fairseq."""
import argparse

import pytest

import tempclr
from conftest import small_demo_config


@pytest.fixture(scope="module")
def fairseq_task(tmp_path_factory, small_demo):
    tempclr.register_fairseq()
    from tempclr.tasks.fairseqmmtask import FairseqMMTask

    tmp_path = tmp_path_factory.mktemp("fstask")
    args = argparse.Namespace(taskconfig=small_demo_config(tmp_path, small_demo, tmp_path / "save"))
    task = FairseqMMTask.setup_task(args)
    task.load_dataset("valid")
    return task


@pytest.mark.parametrize("batch_size", [1, 3, 5])
def test_every_item_is_batched(fairseq_task, batch_size):
    dataset = fairseq_task.datasets["valid"]
    # fairseq's default required_batch_size_multiple is 8, which would silently drop items
    iterator = fairseq_task.get_batch_iterator(dataset, max_sentences=batch_size, required_batch_size_multiple=8,
                                               disable_iterator_cache=True)
    batches = list(iterator.frozen_batches)
    seen = sorted(i for batch in batches for i in batch)
    assert seen == list(range(len(dataset))) and len(dataset) == 8
    assert all(len(b) <= batch_size for b in batches)


def test_skip_remainder_batch_is_forwarded(fairseq_task):
    dataset = fairseq_task.datasets["valid"]
    iterator = fairseq_task.get_batch_iterator(dataset, max_sentences=3, skip_remainder_batch=True,
                                               disable_iterator_cache=True)
    assert iterator.skip_remainder_batch is True
    epoch = iterator.next_epoch_itr(shuffle=False)
    assert len(epoch) == 2  # 8 items in batches of 3: the remainder batch of 2 is skipped


def test_adapter_calls_before_epoch_for_the_training_set_only(fairseq_task, monkeypatch):
    """``get_batch_iterator`` asks the task's ``before_epoch`` hook (no isinstance test on the task class); when
    the hook says the training set changed, batches are not served from fairseq's iterator cache."""
    calls = []

    def before_epoch(epoch):
        calls.append(epoch)
        return True

    monkeypatch.setattr(fairseq_task.mmtask, "before_epoch", before_epoch)
    fairseq_task.load_dataset("train")
    train = fairseq_task.datasets["train"]
    first = fairseq_task.get_batch_iterator(train, max_sentences=1, epoch=3)
    again = fairseq_task.get_batch_iterator(train, max_sentences=1, epoch=3)
    assert calls == [3, 3] and first is not again
    fairseq_task.get_batch_iterator(fairseq_task.datasets["valid"], max_sentences=1, epoch=4)
    assert calls == [3, 3]
    monkeypatch.setattr(fairseq_task.mmtask, "before_epoch", lambda epoch: calls.append(epoch) or False)
    cached = fairseq_task.get_batch_iterator(train, max_sentences=1, epoch=5)
    assert fairseq_task.get_batch_iterator(train, max_sentences=1, epoch=5) is cached and calls == [3, 3, 5, 5]
