import contextlib
import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

pytest_plugins = ["pytester"]

# Default-tier time limit (seconds) for one test's call; TEMPCLR_TEST_TIME_LIMIT changes it, 0 turns the guard off.
TIME_LIMIT = float(os.environ.get("TEMPCLR_TEST_TIME_LIMIT", "10"))


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (user + system)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    started = _cpu_seconds()
    yield
    item.user_properties.append(("cpu_seconds", _cpu_seconds() - started))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Fail a default-tier test (no ``slow`` mark) that took longer than :data:`TIME_LIMIT`: such a test belongs
    in the slow tier, or needs a faster replacement that still fails when the behaviour breaks.  A test's time is
    the smaller of its wall time and its CPU time (this process and the processes it ran): other work on the
    machine stretches the first, threads the second, and neither alone should fail a test."""
    outcome = yield
    report = outcome.get_result()
    if call.when != "call" or TIME_LIMIT <= 0 or not report.passed or item.get_closest_marker("slow") is not None:
        return
    cpu = dict(item.user_properties).get("cpu_seconds", call.duration)
    seconds = min(call.duration, cpu)
    if seconds > TIME_LIMIT:
        report.outcome = "failed"
        report.longrepr = (f"{item.nodeid} took {seconds:.1f} s (wall {call.duration:.1f} s, CPU {cpu:.1f} s), over "
                           f"the default tier's limit of {TIME_LIMIT:g} s: mark it @pytest.mark.slow or make it faster "
                           "(TEMPCLR_TEST_TIME_LIMIT changes the limit, 0 turns it off)")


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_WARMUP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "numba_warmup.py")
_warmups: list = []


def pytest_sessionstart(session):
    """Compile the numba alignment kernels (one process per dtype, numba_warmup.py) while pytest collects: on a
    fresh clone that takes minutes, which would otherwise land on the first test that calls a kernel.  Later
    sessions load them from numba's cache.  TEMPCLR_NUMBA_WARMUP=0 skips it."""
    import subprocess
    import sys

    if os.environ.get("TEMPCLR_NUMBA_WARMUP", "1") == "0" or not os.path.isfile(_WARMUP):
        return
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
    for dtype in ("float32", "float64"):
        _warmups.append(subprocess.Popen([sys.executable, _WARMUP, dtype], cwd=ROOT, env=env,
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT))


@pytest.fixture(scope="session", autouse=True)
def _numba_kernels_compiled():
    """Wait for the warm-up of :func:`pytest_sessionstart` (a session fixture: not part of any test's time)."""
    for process in _warmups:
        output = process.communicate()[0].decode(errors="replace")
        if process.returncode != 0:
            raise RuntimeError(f"compiling the alignment kernels failed ({' '.join(process.args)}):\n{output}")
    _warmups.clear()
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


@pytest.fixture
def demo_copy(tmp_path, small_demo):
    """A private copy of the small demo data (16 train videos in shards of 8), safe to break."""
    target = tmp_path / "demo"
    shutil.copytree(small_demo, target)
    return target


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
