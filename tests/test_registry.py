"""The one class registry: every class name in every shipped config resolves; errors name the key and the
valid names; two classes cannot share a name."""
import glob
import os

import pytest
from omegaconf import OmegaConf

from tempclr.tasks.task import Task
from tempclr.utils.load_config import cfg_get, recursive_config
from tempclr.utils.registry import CONFIG_KEYS, KIND_PACKAGES, lookup, register, registered

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "configs", "**", "*.yaml"),
                                                             recursive=True))

# Class names that shipped configs hold but that are not built yet (none today: YouCook2 retrieval landed).
# Listed here, not skipped: this test fails when one of them starts to resolve, so the entry must then go.
NOT_BUILT: dict = {}


def class_names(path):
    """``{config key: class name}`` for every registry kind the config names."""
    config = recursive_config(os.path.join(ROOT, path))
    return {CONFIG_KEYS[kind]: (kind, str(cfg_get(config, CONFIG_KEYS[kind])))
            for kind in KIND_PACKAGES if cfg_get(config, CONFIG_KEYS[kind]) is not None}


def test_configs_found():
    assert len(CONFIGS) >= 13 and "configs/how2.yaml" in CONFIGS and "configs/demo/how2.yaml" in CONFIGS
    assert set(NOT_BUILT) <= set(CONFIGS)


def assert_classes_resolve(path):
    """Every class name ``path`` holds resolves, except the ones listed in NOT_BUILT, which must fail."""
    names = class_names(path)
    assert {"model.model_cls", "dataset.meta_processor", "dataset.aligner"} <= set(names), path
    pending = NOT_BUILT.get(path, {})
    for key, (kind, name) in names.items():
        if key in pending:
            assert pending[key] == name, f"{path}: NOT_BUILT lists {pending[key]} for {key}, the config has {name}"
            with pytest.raises(ValueError, match=f"^{key}: {name} names no "):
                lookup(kind, name)
        else:
            cls = lookup(kind, name)
            assert cls.__name__ == name
    assert set(pending) <= set(names), f"{path}: NOT_BUILT lists keys the config does not hold"


@pytest.mark.parametrize("path", CONFIGS)
def test_every_class_name_in_every_config_resolves(path):
    assert_classes_resolve(path)


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError) as error:
        lookup("aligner", "CrossTaskAlignr")
    assert str(error.value) == ("dataset.aligner: CrossTaskAlignr names no aligner; valid: "
                                "COINActionSegmentationAligner, CrossTaskAligner, DSAligner, DiDeMoAligner, "
                                "MSRVTTQAAligner, OverlappedAligner, VariedLenAligner, VideoRetriAligner, "
                                "VideoRetriOverlappedAligner, YoucookFullVideoBGAligner")
    with pytest.raises(ValueError, match=r"^metric: CrossTaskPredictor names no metric; valid: "
                                         r"COINActionSegmentationMetric, CrossTaskMetric, "):
        lookup("metric", "CrossTaskPredictor")  # a class of another kind is not a metric
    with pytest.raises(ValueError, match=r"^my.key: Aligner names no aligner"):
        lookup("aligner", "Aligner", key="my.key")  # base classes are not nameable
    with pytest.raises(ValueError, match="unknown registry kind 'aligners'; kinds: aligner, loss, "):
        lookup("aligners", "CrossTaskAligner")


def test_kinds_hold_what_their_package_defines():
    assert set(registered("task")) == {"Task", "RetriTask", "VideoRetriTask", "AlignRetriTask", "AlignLocalTask"}
    assert set(registered("model")) == {"MMFusionSeparate", "MMFusionSeparateActionLocalization",
                                        "MMFusionSeparateFullVideoBGRetrieval", "MMFusionSeparateActionSegmentation"}
    assert set(registered("loss")) == {"BCE", "CrossEntropy", "MMContraLoss", "T2VContraLoss", "V2TContraLoss"}
    for kind, package in KIND_PACKAGES.items():
        for name, cls in registered(kind).items():
            assert cls.__module__.startswith(package), (kind, name, cls.__module__)


def test_a_second_class_cannot_take_a_registered_name():
    with pytest.raises(ValueError, match=r"^loss 'BCE' is registered twice: tempclr.losses.loss.BCE and "
                                         r"(tests\.)?test_registry\.test_a_second_class_cannot_take_a_"
                                         r"registered_name\.<locals>\.BCE$"):
        @register("loss")
        class BCE:  # noqa: F811
            pass
    assert registered("loss")["BCE"].__module__ == "tempclr.losses.loss"
    with pytest.raises(ValueError, match="unknown registry kind 'lossy'"):
        register("lossy")


def test_task_config_uses_the_registry():
    config = OmegaConf.create({"task": "AlignRetriTsk"})
    with pytest.raises(ValueError, match=r"^task: AlignRetriTsk names no task; valid: AlignLocalTask, "
                                         r"AlignRetriTask, RetriTask, Task, VideoRetriTask$"):
        Task.config_task(config)
    assert type(Task.config_task(OmegaConf.create({}))) is Task
    assert type(Task.config_task(OmegaConf.create({"task": "VideoRetriTask"}))).__name__ == "VideoRetriTask"
