import contextlib
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "crack", "the", "eggs", "into", "a", "bowl", "now",
         "whisk", "add", "flour", "and", "milk", "pour", "batter", "pan", "flip", "pancake", "serve", "##s"]


@pytest.fixture(scope="session")
def vocab_dir(tmp_path_factory):
    """A folder holding a small WordPiece vocab.txt and tokenizer_config.json (AutoTokenizer needs the class)."""
    folder = tmp_path_factory.mktemp("vocab")
    (folder / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    (folder / "tokenizer_config.json").write_text('{"tokenizer_class": "BertTokenizer", "do_lower_case": true}')
    return str(folder)


@contextlib.contextmanager
def numba_threads(n: int):
    """numba's thread count set to ``n`` (at most the number it started with) inside the block: how the alignment
    tests run a kernel call serially to compare it with the same call on all threads."""
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        numba.set_num_threads(before)


def load_script(name: str):
    """Import ``scripts/<name>.py`` as a module (scripts/ is not a package)."""
    import importlib.util
    import sys

    scripts = os.path.join(ROOT, "scripts")
    if scripts not in sys.path:
        sys.path.insert(0, scripts)
    spec = importlib.util.spec_from_file_location(f"_script_{name}", os.path.join(scripts, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_small_demo(tmp_path_factory, name: str, n_train: int, youcook_per_task: int) -> str:
    """A demo data set with ``n_train`` training and 16 validation videos in shards of 8, by the real generator."""
    out = tmp_path_factory.mktemp(name) / "demo"
    load_script("make_demo_data").make_demo_data(str(out), seed=0, n_train=n_train, n_val=16, shard_size=8,
                                                 youcook_per_task=youcook_per_task)
    return str(out)


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory):
    """A small demo data set (16 train / 16 val videos, shards of 8) built by the real generator."""
    return make_small_demo(tmp_path_factory, "small_demo", 16, 2)


def small_demo_config(tmp_path, data_dir, save_dir, extra: str = "", base: str = "configs/demo/how2.yaml") -> str:
    """A config that includes ``base`` and points it at ``data_dir`` with 8 groups of 2 videos × 4 clips."""
    path = tmp_path / f"cfg_{abs(hash((str(save_dir), extra))) % 10**8}.yaml"
    shard = f"{data_dir}/feat/feat_how2_s3d_shard"
    path.write_text(f"""includes: {os.path.join(ROOT, base)}
dataset:
  bert_name: {data_dir}/bert
  train_path: {data_dir}/how2/how2_s3d_train.lst
  val_path: {data_dir}/how2/how2_s3d_val.lst
  vfeat_dir: {shard}
  tfeat_dir: {shard}/raw_caption_dedup.demo.
  num_video_per_batch: 2
  clip_per_video: 4
fairseq:
  common:
    log_interval: 1
  dataset:
    num_workers: 0
  checkpoint:
    save_dir: {save_dir}
retri_centroids: 2
{extra}""")
    return str(path)
