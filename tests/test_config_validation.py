"""Config validation before anything runs: unknown keys name the closest known one, wrong types name the key,
the original's unused keys are accepted, --dryrun validates too, nothing is written; and the key table lists
every key the code reads."""
import os
import re

import pytest

from tempclr.utils.config_schema import IGNORED, SCHEMA, ConfigError, validate_config
from tempclr.utils.load_config import load_config
from tempclr_cli.localjob import LocalJob

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write(tmp_path, text, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


TRAIN = """dataset:
  meta_processor: ShardedHow2VideoRetriMetaProcessor
  clip_per_video: 8
fairseq:
  checkpoint:
    save_dir: {save}
"""


@pytest.mark.parametrize("line, message", [
    ("  clip_per_vdeo: 8\n", "dataset.clip_per_vdeo: unknown key; did you mean clip_per_video?"),
    ("  bert_nmae: bert-base-uncased\n", "dataset.bert_nmae: unknown key; did you mean bert_name?"),
    ("  clip_per_video_x: 8\n", "dataset.clip_per_video_x: unknown key; did you mean clip_per_video?"),
])
def test_misspelt_key_is_an_error_and_nothing_is_written(tmp_path, line, message):
    save = tmp_path / "run"
    path = write(tmp_path, TRAIN.format(save=save).replace("  clip_per_video: 8\n", line))
    with pytest.raises(ConfigError, match="^" + re.escape(f"{path}: {message}") + "$"):
        load_config(config_file=path)
    assert not save.exists()
    with pytest.raises(ConfigError, match=re.escape(message)):
        LocalJob(path, "local_single", dryrun=True)          # --dryrun validates too


@pytest.mark.parametrize("yaml, message", [
    ("dataset:\n  clip_per_video: '8'\n", "dataset.clip_per_video: must be an integer, got '8' (str)"),
    ("dataset:\n  max_video_len: true\n", "dataset.max_video_len: must be an integer, got True (bool)"),
    ("dataset:\n  use_annotation_text: 'yes'\n", "dataset.use_annotation_text: must be true/false, got 'yes' (str)"),
    ("alignment:\n  gamma: fast\n", "alignment.gamma: must be a number, got 'fast' (str)"),
    ("model:\n  model_cls: [MMFusionSeparate]\n", "model.model_cls: must be a string, got ['MMFusionSeparate'] "
                                                  "(list)"),
    ("dataset: 3\n", "dataset: must be a section (key: value lines below it), got 3"),
    ("alignmnet:\n  gamma: 0.1\n", "alignmnet: unknown key; did you mean alignment?"),
    ("alignment:\n  sampling_treshold: 5\n", "alignment.sampling_treshold: unknown key; did you mean "
                                            "sampling_threshold?"),
    ("fairseq:\n  optimisation:\n    lr: [0.1]\n", "fairseq.optimisation: unknown section; did you mean optimization?"),
    ("eval:\n  save_pth: x\n", "eval.save_pth: unknown key; did you mean save_path?"),
])
def test_types_and_sections(yaml, message):
    from omegaconf import OmegaConf

    with pytest.raises(ConfigError, match="^" + re.escape(f"x.yaml: {message}") + "$"):
        validate_config(OmegaConf.create(yaml), source="x.yaml")


def test_accepted_and_ignored_keys_and_nulls():
    from omegaconf import OmegaConf

    validate_config(OmegaConf.create({"slurm_config": "big", "dataset": {"mfm_probability": 0.0, "num_iso_layer": 12,
                                                                          "vfeat_dir": None},
                                      "alignment": {"gamma": 1, "metric": "otam"}, "model": {"mm_encoder_cls": None}}))
    assert set(IGNORED["dataset"]) == {"lazy_vfeat_mask", "mfm_probability", "mlm_probability", "mm_prob",
                                       "num_iso_layer"}


def test_every_shipped_config_validates():
    for folder in ("configs", os.path.join("configs", "demo")):
        for name in sorted(os.listdir(os.path.join(ROOT, folder))):
            if name.endswith(".yaml"):
                from tempclr.utils.load_config import recursive_config
                validate_config(recursive_config(os.path.join(ROOT, folder, name)), source=name)


def test_the_table_lists_every_key_the_code_reads():
    """Scan the package for ``cfg_get(<config>, "key")``: dotted keys must be in their section's table; plain keys
    read from a dataset config (processors, evaluators' dataset readers) in ``dataset``, plain keys read by the
    tasks at the top level."""
    pattern = re.compile(r"cfg_get\((\w+(?:\.\w+)?), \"([a-z_\.]+)\"")
    missing = []
    for folder in ("processors", "tasks", "models", "evaluators", "losses", "modules"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, "tempclr", folder)):
            for name in files:
                if not name.endswith(".py"):
                    continue
                text = open(os.path.join(dirpath, name)).read()
                for holder, key in pattern.findall(text):
                    if key.startswith("fairseq.") or holder in ("args", "self.args", "alignment", "node"):
                        continue
                    section, _, sub = key.rpartition(".")
                    if section:
                        if section in SCHEMA and sub not in SCHEMA[section] and section != "alignment":
                            missing.append((name, key))
                    elif folder == "processors" or holder == "dataset_config":
                        if key not in SCHEMA["dataset"]:
                            missing.append((name, f"dataset.{key}"))
                    elif folder == "tasks" and key not in SCHEMA[""]:
                        missing.append((name, key))
    assert missing == []


def test_alignment_settings_and_the_schema_list_the_same_keys_and_defaults():
    from tempclr.utils.alignment_settings import AlignmentSettings
    from tempclr.utils.config_schema import DEFAULTS

    fields = AlignmentSettings.__dataclass_fields__
    assert set(fields) == set(SCHEMA["alignment"])
    assert {name: field.default for name, field in fields.items()} == {
        key.split(".", 1)[1]: value for key, value in DEFAULTS.items() if key.startswith("alignment.")}


def test_every_default_is_written_once_in_the_schema():
    """No ``cfg_get(config, key, default)`` in the code for a key that has a default in ``DEFAULTS`` (it reads
    ``setting`` / ``dataset_setting`` instead); every key in ``DEFAULTS`` is a schema key (or a fairseq key)."""
    import ast

    from tempclr.utils.config_schema import DEFAULTS

    for key in DEFAULTS:
        section, _, sub = key.rpartition(".")
        assert key.startswith("fairseq.") or sub in SCHEMA[section], key
    plain = {key.split(".", 1)[1] for key in DEFAULTS if key.startswith("dataset.")}
    offenders = []
    for folder in ("tempclr", "tempclr_cli", "scripts"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, folder)):
            for name in files:
                if not name.endswith(".py"):
                    continue
                path = os.path.join(dirpath, name)
                for node in ast.walk(ast.parse(open(path).read())):
                    if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "cfg_get"
                            and len(node.args) == 3 and isinstance(node.args[1], ast.Constant)):
                        key = node.args[1].value
                        if key in DEFAULTS or key in plain or f"alignment.{key}" in DEFAULTS:
                            offenders.append(f"{os.path.relpath(path, ROOT)}:{node.lineno} {key}")
    assert offenders == []
