"""Every key a tempclr run config may hold, in one place, and the check that runs before anything else.

A key the code does not know is an error naming it and the closest known key, never a silent default
(``dataset.clip_per_vdeo: 8`` would otherwise train with one clip per video).  Each known key has a type; a value
of another type is an error naming the key.  Keys that the original configs carry but nothing here reads are
accepted and ignored, and listed as such (:data:`IGNORED`).  ``fairseq.*`` is checked by group here (its keys
become ``fairseq-train`` flags, which fairseq itself rejects when unknown).

:func:`validate_config` is called by :func:`~tempclr.utils.load_config.load_config`, so the launcher (also with
``--dryrun``), ``fairseq-train`` and the predict script all check a config before they use it.  A test keeps this
table in step with the code: every key the code reads with ``cfg_get`` must be listed here.
"""
from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Dict, Mapping, Tuple

from omegaconf import DictConfig, OmegaConf

__all__ = ["SCHEMA", "IGNORED", "FAIRSEQ_GROUPS", "ConfigError", "validate_config"]

STR, INT, FLOAT, BOOL = (str,), (int,), (int, float), (bool,)
SECTION = (dict,)
ANY = (object,)

FAIRSEQ_GROUPS = ("common", "dataset", "optimization", "checkpoint", "common_eval", "distributed_training")


def _alignment_keys() -> Dict[str, Tuple[type, ...]]:
    from tempclr.tasks.seqalign import AlignmentSettings  # the dataclass that reads them

    kinds = {bool: BOOL, int: INT, float: FLOAT, str: STR}
    return {f.name: kinds[type(f.default)] for f in dataclasses.fields(AlignmentSettings)}


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
    },
    "model": {
        "model_cls": STR, "mm_encoder_cls": STR, "video_encoder_cls": STR, "text_encoder_cls": STR,
        "num_hidden_video_layers": INT,
    },
    "loss": {"loss_cls": STR},
    "alignment": {},  # filled from AlignmentSettings below
    "eval": {"save_path": STR, "metric_compat": STR},
    # read by tempclr_cli/slurmjob.py, which checks the values
    "slurm": {"nodes": INT, "gpus_per_node": INT, "ranks_per_node": INT, "cpus_per_task": INT, "port": INT,
              "mem": STR, "time": STR, "partition": STR, "account": STR, "qos": STR, "constraint": STR,
              "job_name": STR, "requeue": BOOL, "setup": ANY},
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
    schema = dict(SCHEMA)
    schema["alignment"] = _alignment_keys()
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
        elif key in schema and key != "" and value is not None:
            known, ignored = schema[key], IGNORED.get(key, {})
            for sub, sub_value in value.items():
                if sub in ignored:
                    continue
                if sub not in known:
                    raise _unknown(where, key, sub, set(known) | set(ignored))
                _check_value(where, f"{key}.{sub}", sub_value, known[sub])
