"""``Task``: builds datasets, model and loss from a run config and computes the training loss."""
from __future__ import annotations

import copy
import inspect
import os
from typing import Any, Dict, Optional

import torch

from tempclr.processors.processor import SPLIT_PATH_KEYS
from tempclr.utils.bert_name import check_bert_name
from tempclr.utils.load_config import cfg_get
from tempclr.utils.registry import lookup, register


# dataset keys that name files or folders, and how each is produced
DATA_PATH_HINTS = {
    "train_path": "{split_file}",
    "val_path": "{split_file}",
    "test_path": "{split_file}",
    "vfeat_dir": "S3D features, one float16 [T, 512] .npy per video, 1 vector per second "
                 "(HowTo100M: then shard them with scripts/shard_feature.py)",
    "tfeat_dir": "pretokenise captions with scripts/pretokenization.py (a path prefix inside vfeat_dir)",
    "train_csv_path": "the CrossTask release (crosstask_release/videos.csv)",
    "val_csv_path": "the CrossTask release (crosstask_release/videos_val.csv)",
    "primary_path": "the CrossTask release (crosstask_release/tasks_primary.txt)",
    "related_path": "the CrossTask release (crosstask_release/tasks_related.txt)",
    "annotation_path": "the CrossTask release (crosstask_release/annotations/)",
    "trainval_annotation": "the YouCook2 release (youcookii_annotations_trainval.json)",
}


SPLIT_FILE_HINTS = {
    "How2": "a HowTo100M split list, one video id per line (how2_s3d_train.lst / how2_s3d_val.lst)",
    "CrossTask": "the CrossTask release (crosstask_release/videos.csv, videos_val.csv)",
    "Youcook": "youcook_val.pkl from the HowTo100M evaluation data (fairseq#5049)",
}


def check_dataset_paths(dataset_config, split: str) -> None:
    """Fail early, naming the config key, the missing path and how to produce it (README 'Real data and checkpoints')."""
    other_splits = {key for name, key in SPLIT_PATH_KEYS.items() if name != split}
    for key, hint in DATA_PATH_HINTS.items():
        if key in other_splits:
            continue
        path = cfg_get(dataset_config, key)
        if path is None:
            continue
        target = os.path.dirname(str(path)) if key == "tfeat_dir" else str(path)
        if target and not os.path.exists(target):
            meta = str(cfg_get(dataset_config, "meta_processor", ""))
            hint = hint.format(split_file=next((h for k, h in SPLIT_FILE_HINTS.items() if k in meta),
                                               "the dataset's split file"))
            raise FileNotFoundError(
                f"dataset.{key}: {path} does not exist. Produce it: {hint}; see README 'Real data and checkpoints'. "
                "For the embedded demo run `make demo-data` and use configs/demo/.")


def bert_config_only(config):
    """The ``BertConfig`` of ``dataset.bert_name`` (its ``config.json``; no weights are read)."""
    from transformers import AutoConfig

    bert_name = cfg_get(config, "dataset.bert_name")
    if bert_name is None:
        raise ValueError("config.dataset.bert_name is required (a hub name such as 'bert-base-uncased' or a folder "
                         "holding the BERT's config.json and vocabulary)")
    fix = "to load a full checkpoint the folder needs config.json and the vocabulary (vocab.txt), no weights"
    check_bert_name(str(bert_name))
    if os.path.isdir(str(bert_name)) and not os.path.isfile(os.path.join(str(bert_name), "config.json")):
        raise FileNotFoundError(f"dataset.bert_name: {bert_name} gives no BERT config.json; {fix}")
    try:
        return AutoConfig.from_pretrained(str(bert_name))
    except (OSError, ValueError) as error:
        raise FileNotFoundError(f"dataset.bert_name: {bert_name} gives no BERT config.json ({error}); {fix}") from error


@register("task")
class Task:
    """The generic task: ``loss = loss_fn(**sample, **model(**sample))``.

    Methods and parameters as the original's ``Task`` (``config_task``, ``build_dataset``,
    ``build_model(checkpoint=None)``, ``load_checkpoint(checkpoint)``, ``_trim_state_dict``, ``build_loss``,
    ``flat_subsample``, ``reshape_subsample``, ``__call__(model, sample)``), plus :meth:`before_epoch`, the hook
    the fairseq adapter calls before each training epoch.
    """

    def __init__(self, config):
        self.config = config
        self.train_data = None
        self.val_data = None
        self.test_data = None
        self.model = None
        self.loss_fn = None
        self.eval_fn = None

    @classmethod
    def config_task(cls, config) -> "Task":
        """The task class named by ``config.task`` (default: this generic Task)."""
        name = cfg_get(config, "task")
        if name is None:
            return Task(config)
        return lookup("task", name)(config)

    # ---- datasets ----
    def build_dataset(self) -> None:
        """Train/valid sets where ``train_path``/``val_path`` are set; the test set when ``split: test``."""
        dataset_config = self.config.dataset
        if cfg_get(dataset_config, "train_path") is not None and cfg_get(dataset_config, "split") != "test":
            self.train_data = self.build_mmdataset("train")
        if cfg_get(dataset_config, "val_path") is not None and cfg_get(dataset_config, "split") != "test":
            self.val_data = self.build_mmdataset("valid")
        if cfg_get(dataset_config, "split") == "test":
            self.test_data = self.build_mmdataset("test")

    def build_mmdataset(self, split: str, **overrides):
        """An :class:`MMDataset` for ``split`` from the processors the config names (each built on its own copy
        of ``config.dataset`` with ``split`` set, plus ``overrides``)."""
        from tempclr.datasets import MMDataset

        dataset_config = copy.deepcopy(self.config.dataset)
        dataset_config.split = split
        for key, value in overrides.items():
            dataset_config[key] = value
        check_dataset_paths(dataset_config, split)
        parts = []
        for key in ("meta_processor", "video_processor", "text_processor", "aligner"):
            name = cfg_get(dataset_config, key)
            if name is None:
                raise ValueError(f"config needs 'dataset.{key}'")
            parts.append(lookup(key, name)(dataset_config))
        return MMDataset(*parts)

    def before_epoch(self, epoch: int) -> bool:
        """Called before the batches of training epoch ``epoch`` (1-based) are drawn.  Returns whether the
        training set changed (then batches must not come from a cache).  The generic task changes nothing."""
        return False

    # ---- model and loss ----
    def build_model(self, checkpoint: Optional[str] = None):
        """The model named by ``model.model_cls`` (built once: a second call returns the same model), with the
        weights of ``checkpoint`` when given.

        With a ``checkpoint`` the encoders are built from the BERT *config* alone (``config.json`` of
        ``dataset.bert_name``) and every weight comes from the checkpoint, loaded strictly: a BERT folder holding
        ``config.json`` and the vocabulary is enough, BERT's own weights are never read.  Without one (training
        from scratch) the encoders start from BERT's pretrained weights, as in the original."""
        if self.model is None:
            name = cfg_get(self.config, "model.model_cls")
            if name is None:
                raise ValueError("config needs 'model.model_cls' (e.g. MMFusionSeparate)")
            model_cls = lookup("model", name)
            if checkpoint is not None and "bert_config" in inspect.signature(model_cls).parameters:
                self.model = model_cls(self.config, bert_config=bert_config_only(self.config))
            else:
                self.model = model_cls(self.config)
        if checkpoint is not None:
            self.load_checkpoint(checkpoint)
        return self.model

    def load_checkpoint(self, checkpoint: str, strict: bool = True):
        """Load a fairseq-format checkpoint (``model`` dict, ``mmmodel.`` prefix, fp16 cast back) onto CPU
        into ``self.model``; strict: missing/unexpected keys are an error naming them."""
        from tempclr.utils.checkpoint import load_checkpoint_state, load_model_weights

        if self.model is None:
            raise RuntimeError("build_model() before load_checkpoint()")
        load_model_weights(self.model, load_checkpoint_state(checkpoint), strict=strict)
        return self.model

    def _trim_state_dict(self, state_dict: Dict[str, Any]) -> Dict[str, Any]:
        """A checkpoint's model weights: ``state_dict["state_dict"]`` or ``["model"]`` when present, with the
        fairseq wrapper's ``mmmodel.`` prefix removed."""
        from tempclr.utils.checkpoint import _strip_prefix

        for key in ("state_dict", "model"):
            if isinstance(state_dict, dict) and key in state_dict:
                state_dict = state_dict[key]
        return _strip_prefix(state_dict, model_keys=set())

    def build_loss(self):
        name = cfg_get(self.config, "loss.loss_cls")
        self.loss_fn = None if name is None else lookup("loss", name)(self.config)
        return self.loss_fn

    # ---- batches ----
    def flat_subsample(self, tensor: torch.Tensor) -> torch.Tensor:
        """Squeeze fairseq's leading batch dim of 1."""
        return tensor.squeeze(0) if tensor.dim() > 0 and tensor.size(0) == 1 else tensor

    def reshape_subsample(self, sample: Dict[str, Any]) -> Dict[str, Any]:
        """With ``dataset.subsampling > 1`` each item holds several clips: ``[1, S, ...] -> [S, ...]``."""
        subsampling = cfg_get(self.config, "dataset.subsampling")
        if subsampling is None or subsampling <= 1:
            return sample
        return {k: self.flat_subsample(v) if torch.is_tensor(v) else v for k, v in sample.items()}

    def __call__(self, model, sample: Dict[str, Any]) -> Dict[str, Any]:
        if self.loss_fn is None:
            raise ValueError("training needs 'loss.loss_cls' in the config")
        sample = self.reshape_subsample(sample)
        outputs = model(**sample)
        loss = self.loss_fn(**{**sample, **outputs})
        return {"loss": loss, **{k: v for k, v in outputs.items() if k.endswith("_loss")}}
