"""Every key a tempclr run config may hold, in one place, and the check that runs before anything else.

A key the code does not know is an error naming it and the closest known key, never a silent default
(``dataset.clip_per_vdeo: 8`` would otherwise train with one clip per video).  Each known key has a type; a value
of another type is an error naming the key.  Keys that the original configs carry but nothing here reads are
accepted and ignored, and listed as such (:data:`IGNORED`).  ``fairseq.*`` is checked by group here (its keys
become ``fairseq-train`` flags, which fairseq itself rejects when unknown).

Each key's default is written once, here (:data:`DEFAULTS`), and read with :func:`setting` (a full key such as
``"dataset.clip_per_video"``) or :func:`dataset_setting` (a key of the ``dataset:`` section, for the processors,
which receive that section).  :func:`cfg_get` reads a key that has no default (``None`` when absent).

:func:`validate_config` is called by :func:`~tempclr.utils.load_config.load_config`, so the launcher (also with
``--dryrun``), ``fairseq-train`` and the predict script all check a config before they use it.  A test keeps this
table in step with the code: every key the code reads with ``cfg_get`` must be listed here.
"""
from __future__ import annotations

import difflib
import functools
from typing import Any, Dict, Mapping, Tuple

from omegaconf import DictConfig, OmegaConf

__all__ = ["SCHEMA", "DEFAULTS", "IGNORED", "FAIRSEQ_GROUPS", "ConfigError", "validate_config", "cfg_get",
           "setting", "dataset_setting"]

STR, INT, FLOAT, BOOL = (str,), (int,), (int, float), (bool,)
SECTION = (dict,)
ANY = (object,)

FAIRSEQ_GROUPS = ("common", "dataset", "optimization", "checkpoint", "common_eval", "distributed_training")


# section -> key -> accepted value types (None, YAML null, is accepted everywhere and means "not set")
SCHEMA: Dict[str, Dict[str, Tuple[type, ...]]] = {
    "": {
        "includes": STR, "task_type": STR, "task": STR, "metric": STR, "predictor": STR,
        "vectorpool_cls": STR, "retriever_cls": STR, "retri_epoch": INT, "retri_centroids": INT,
        "retri_db_type": STR, "num_cands": INT, "slurm_config": STR,
        "dataset": SECTION, "fairseq": SECTION, "model": SECTION, "loss": SECTION, "alignment": SECTION,
        "eval": SECTION, "slurm": SECTION,
    },
    "dataset": {
        # parts and split
        "meta_processor": STR, "video_processor": STR, "text_processor": STR, "aligner": STR, "split": STR,
        "train_path": STR, "val_path": STR, "test_path": STR,
        # features, text
        "vfeat_dir": STR, "tfeat_dir": STR, "bert_name": STR, "use_fast": BOOL,
        "max_video_len": INT, "max_len": INT,
        # HowTo100M pretraining
        "subsampling": INT, "clip_per_video": INT, "num_video_per_batch": INT, "sampled_min_len": INT,
        "sampled_max_len": INT, "sampled_video_min_len": INT, "sampled_video_max_len": INT,
        # CrossTask
        "train_csv_path": STR, "val_csv_path": STR, "primary_path": STR, "related_path": STR,
        "annotation_path": STR, "n_train": INT, "sliding_window": INT, "sliding_window_size": INT,
        # YouCook2
        "trainval_annotation": STR, "use_annotation_text": BOOL,
        # MSR-VTT
        "jsfusion_path": STR, "full_test_path": STR, "dup": INT, "json_path": STR,
    },
    "model": {
        "model_cls": STR, "mm_encoder_cls": STR, "video_encoder_cls": STR, "text_encoder_cls": STR,
        "num_hidden_video_layers": INT,
        # COIN action segmentation: classifier width of MMBertForTokenClassification (steps + background)
        "num_labels": INT,
    },
    "loss": {"loss_cls": STR},
    # TempCLR's sequence-alignment loss (tempclr.utils.alignment_settings.AlignmentSettings reads them)
    "alignment": {"metric": STR, "total_sample_size": INT, "alignment_loss_coeff": FLOAT, "gamma": FLOAT,
                  "sampling_threshold": INT, "video_sampling_multiplier": INT, "inner_shuffling": BOOL,
                  "layernorm_only": BOOL},
    "eval": {"save_path": STR, "metric_compat": STR},
    # read by tempclr_cli/slurmjob.py, which checks the values
    "slurm": {"nodes": INT, "gpus_per_node": INT, "ranks_per_node": INT, "cpus_per_task": INT, "port": INT,
              "mem": STR, "time": STR, "partition": STR, "account": STR, "qos": STR, "constraint": STR,
              "job_name": STR, "requeue": BOOL, "setup": ANY},
}

# The default of every key that has one (the original's value), by full key.  A key missing here has no default:
# the code that reads it says what an absent value means.  fairseq.* keys listed are those tempclr reads itself.
DEFAULTS: Dict[str, Any] = {
    "retri_epoch": 1, "retri_centroids": 512, "retri_db_type": "flatl2", "num_cands": 64,
    "vectorpool_cls": "VideoVectorPool", "retriever_cls": "VectorRetriever",
    "dataset.bert_name": "bert-base-uncased", "dataset.max_video_len": 32, "dataset.max_len": 96,
    "dataset.subsampling": 1, "dataset.clip_per_video": 16, "dataset.num_video_per_batch": 16,
    "dataset.sampled_min_len": 8, "dataset.sampled_max_len": 64,
    "dataset.sampled_video_min_len": 3, "dataset.sampled_video_max_len": 32,
    "dataset.n_train": 30,
    "model.num_hidden_video_layers": 6, "model.video_encoder_cls": "MMBertForEncoder",
    "model.text_encoder_cls": "BertModel", "model.num_labels": 779,
    "eval.save_path": ".",
    # alignment_loss_coeff is 0.7 for pretraining; CrossTask fine-tuning passes 0.12 as its own default
    "alignment.metric": "dtw", "alignment.total_sample_size": 32, "alignment.alignment_loss_coeff": 0.7,
    "alignment.gamma": 0.1, "alignment.sampling_threshold": 5, "alignment.video_sampling_multiplier": 10,
    "alignment.inner_shuffling": True, "alignment.layernorm_only": False,
    "fairseq.common.seed": 1, "fairseq.dataset.batch_size": 1, "fairseq.dataset.num_workers": 0,
    "fairseq.optimization.max_epoch": 0,
}

# keys of the original configs that nothing in tempclr reads: accepted, ignored
IGNORED: Dict[str, Dict[str, str]] = {
    "": {},
    "dataset": {
        "lazy_vfeat_mask": "MMPT masked-frame modelling, not used by VideoCLIP/TempCLR",
        "mfm_probability": "MMPT masked-frame modelling, not used by VideoCLIP/TempCLR",
        "mlm_probability": "MMPT masked-language modelling, not used by VideoCLIP/TempCLR",
        "mm_prob": "MMPT multi-modal masking, not used by VideoCLIP/TempCLR",
        "num_iso_layer": "MMPT joint-encoder models only",
    },
}


class ConfigError(ValueError):
    """A config key that is unknown or has a value of the wrong type; the message names the file and the key."""


def _type_name(types: Tuple[type, ...]) -> str:
    if types == FLOAT:
        return "a number"
    return " or ".join({str: "a string", int: "an integer", bool: "true/false", dict: "a section"}[t] for t in types)


def _check_value(where: str, key: str, value: Any, types: Tuple[type, ...]) -> None:
    if value is None or types == ANY:
        return
    if types == SECTION:
        if not isinstance(value, (DictConfig, Mapping)):
            raise ConfigError(f"{where}{key}: must be a section (key: value lines below it), got {value!r}")
        return
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok:
        raise ConfigError(f"{where}{key}: must be {_type_name(types)}, got {value!r} ({type(value).__name__})")


def _unknown(where: str, section: str, key: str, known) -> ConfigError:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}?" if close else f"known keys: {', '.join(sorted(known))}"
    name = f"{section}.{key}" if section else key
    return ConfigError(f"{where}{name}: unknown key; {hint}")


def validate_config(config: Any, source: str = "") -> None:
    """Raise :class:`ConfigError` for the first unknown key or wrongly typed value of ``config`` (a DictConfig or
    dict); ``source`` (the file) prefixes the message."""
    where = f"{source}: " if source else ""
    if OmegaConf.is_config(config):
        config = OmegaConf.to_container(config, resolve=False)
    if not isinstance(config, Mapping):
        raise ConfigError(f"{where}a config must be a mapping of keys, got {type(config).__name__}")
    schema = SCHEMA
    for key, value in config.items():
        if key in IGNORED[""]:
            continue
        if key not in schema[""]:
            raise _unknown(where, "", key, set(schema[""]) | set(IGNORED[""]))
        _check_value(where, key, value, schema[""][key])
        if key == "fairseq" and value is not None:
            for group, options in value.items():
                if group not in FAIRSEQ_GROUPS:
                    close = difflib.get_close_matches(group, FAIRSEQ_GROUPS, n=1)
                    hint = f"did you mean {close[0]}?" if close else f"known groups: {', '.join(FAIRSEQ_GROUPS)}"
                    raise ConfigError(f"{where}fairseq.{group}: unknown section; {hint}")
                _check_value(where, f"fairseq.{group}", options, SECTION)
                for option in options or ():
                    _check_fairseq_option(where, group, option)
        elif key in schema and key != "" and value is not None:
            known, ignored = schema[key], IGNORED.get(key, {})
            for sub, sub_value in value.items():
                if sub in ignored:
                    continue
                if sub not in known:
                    raise _unknown(where, key, sub, set(known) | set(ignored))
                _check_value(where, f"{key}.{sub}", sub_value, known[sub])
    split = (config.get("dataset") or {}).get("split")
    if split is not None and split not in SPLITS:
        close = difflib.get_close_matches(str(split), SPLITS, n=1, cutoff=0.5)
        raise ConfigError(f"{where}dataset.split: must be one of {', '.join(SPLITS)}, got {split!r}"
                          + (f"; did you mean {close[0]}?" if close else ""))


SPLITS = ("train", "valid", "test")


@functools.lru_cache(maxsize=1)
def fairseq_option_names() -> frozenset:
    """Every option name (argparse ``dest``) fairseq-train and fairseq-validate accept, read from fairseq's own
    parsers, plus the options of every registered optimizer and learning-rate scheduler (fairseq adds those of
    the chosen one when it parses).  Imports fairseq (a few seconds, once per process)."""
    import argparse
    import dataclasses

    from fairseq import options
    from fairseq.registry import REGISTRIES

    names = set()
    for parser in (options.get_training_parser(), options.get_validation_parser()):
        names |= {action.dest for action in parser._actions}
    for registry in ("optimizer", "lr_scheduler"):
        for cls in REGISTRIES[registry]["registry"].values():
            config_class = getattr(cls, "__dataclass", None)
            if config_class is not None:
                names |= {field.name for field in dataclasses.fields(config_class)}
            elif hasattr(cls, "add_args"):
                parser = argparse.ArgumentParser(add_help=False)
                cls.add_args(parser)
                names |= {action.dest for action in parser._actions}
    return frozenset(names)


def _check_fairseq_option(where: str, group: str, option: str) -> None:
    names = fairseq_option_names()
    if option in names:
        return
    close = difflib.get_close_matches(option, sorted(names), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}?" if close else "see `fairseq-train --help` for its options"
    raise ConfigError(f"{where}fairseq.{group}.{option}: not an option of fairseq-train (it would fail there as an "
                      f"unrecognized argument); {hint}")


def cfg_get(cfg: Any, key: str, default: Any = None) -> Any:
    """Read dotted ``key`` (e.g. ``"dataset.use_fast"``) from ``cfg``; a missing key or a null value gives
    ``default``.  Works on DictConfig, plain dicts and attribute objects (argparse.Namespace).  For a key listed
    in :data:`DEFAULTS` use :func:`setting`, which supplies that default."""
    node = cfg
    for part in key.split("."):
        if node is None:
            return default
        if isinstance(node, DictConfig):
            node = node.get(part, None) if part in node else None
        elif isinstance(node, dict):
            node = node.get(part)
        else:
            node = getattr(node, part, None)
    return default if node is None else node


def setting(config: Any, key: str) -> Any:
    """The value of full dotted ``key`` in a run ``config``, or its default from :data:`DEFAULTS` when absent or
    null (a key without a default there is a KeyError: read it with :func:`cfg_get`)."""
    return cfg_get(config, key, DEFAULTS[key])


def dataset_setting(dataset_config: Any, key: str) -> Any:
    """:func:`setting` for ``key`` of the ``dataset:`` section, read from that section itself (what the
    processors and aligners receive)."""
    return cfg_get(dataset_config, key, DEFAULTS[f"dataset.{key}"])
