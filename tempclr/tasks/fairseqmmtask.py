"""fairseq task ``mmtask``: adapts a tempclr :class:`Task` to fairseq-train."""
from __future__ import annotations

from fairseq.tasks import LegacyFairseqTask, register_task

from tempclr.datasets.fairseqmmdataset import FairseqMMDataset
from tempclr.datasets.integrity import config_vocab_size, refuse_faulty_data
from tempclr.utils.checkpoint import prepare_save_dir
from tempclr.utils.load_config import cfg_get, load_config, read_config

from .task import Task


@register_task("mmtask")
class FairseqMMTask(LegacyFairseqTask):
    @staticmethod
    def add_args(parser):
        parser.add_argument("taskconfig", metavar="FILE", help="tempclr YAML run config")

    @classmethod
    def setup_task(cls, args, **kwargs):
        """Before anything is built or written: the config is validated, rank 0 takes the ``save_dir`` lock (a
        second run on it fails here), and the file fairseq resumes from is checked and, after a crash between
        ``checkpointN.pt`` and its copy to ``checkpoint_last.pt``, brought up to date (:func:`~tempclr.utils.checkpoint.prepare_save_dir`)."""
        config = read_config(args)  # read and checked once; a bad config fails before the save_dir is touched
        save_dir = cfg_get(args, "save_dir")
        if save_dir is not None:  # fairseq resumes from <save_dir>/<restore_file> later: settle it now
            prepare_save_dir(str(save_dir), str(cfg_get(args, "restore_file", "checkpoint_last.pt")),
                             str(cfg_get(args, "checkpoint_suffix", "")))
        config = load_config(args, config=config)
        mmtask = Task.config_task(config)
        mmtask.build_dataset()
        # every data fault of the splits trained on stops the run here, before the first update (cheap checks:
        # offsets and two rows per video; tempclr-check runs the same scan over everything)
        splits = [split for split, data in (("train", mmtask.train_data), ("valid", mmtask.val_data))
                  if data is not None]
        refuse_faulty_data(config, splits, str(cfg_get(args, "taskconfig")), config_vocab_size(config))
        mmtask.build_model()
        mmtask.build_loss()
        return cls(args, mmtask)

    def __init__(self, args, mmtask: Task):
        super().__init__(args)
        self.mmtask = mmtask
        self.config = mmtask.config

    def load_dataset(self, split, **kwargs):
        data = {"train": self.mmtask.train_data, "valid": self.mmtask.val_data,
                "test": self.mmtask.test_data}.get(split)
        if data is None:
            raise ValueError(f"split {split!r} has no data: set the matching dataset path "
                             f"(train_path / val_path / test_path) in {cfg_get(self.args, 'taskconfig')}")
        self.datasets[split] = FairseqMMDataset(data, seed=int(cfg_get(self.args, "seed", 1)))

    def get_batch_iterator(self, dataset, max_tokens=None, max_sentences=None, max_positions=None,
                           ignore_invalid_inputs=False, required_batch_size_multiple=1, seed=1, num_shards=1,
                           shard_id=0, num_workers=0, epoch=1, data_buffer_size=0, disable_iterator_cache=False,
                           skip_remainder_batch=False, grouped_shuffling=False, update_epoch_batch_itr=False):
        """Calls the task's :meth:`~tempclr.tasks.task.Task.before_epoch` for the training set (retrieval tasks
        regroup it there, seeded by the epoch; then no iterator cache), and batches with
        ``required_batch_size_multiple=1`` (fairseq's default of 8 would silently drop items).  The items' own
        random draws are seeded per item by :class:`~tempclr.datasets.fairseqmmdataset.FairseqMMDataset`."""
        if dataset.mmdataset is self.mmtask.train_data and self.mmtask.before_epoch(epoch):
            disable_iterator_cache = True
        return super().get_batch_iterator(
            dataset, max_tokens=max_tokens, max_sentences=max_sentences, max_positions=max_positions,
            ignore_invalid_inputs=ignore_invalid_inputs, required_batch_size_multiple=1, seed=seed,
            num_shards=num_shards, shard_id=shard_id, num_workers=num_workers, epoch=epoch,
            data_buffer_size=data_buffer_size, disable_iterator_cache=disable_iterator_cache,
            skip_remainder_batch=skip_remainder_batch, grouped_shuffling=grouped_shuffling,
            update_epoch_batch_itr=update_epoch_batch_itr)

    @property
    def source_dictionary(self):
        return None

    @property
    def target_dictionary(self):
        return None
