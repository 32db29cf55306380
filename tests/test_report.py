"""tempclr-report on a data root built from the demo writers in the real data layout: the benchmarks whose files
are there are evaluated through the configs of configs/ (re-rooted), the others are skipped and named with the file
they lack; the table carries the published numbers with their sources and the JSON holds the same numbers."""
from __future__ import annotations

import json
import os

import pytest
import torch

from conftest import ROOT
from tempclr.demo.msrvtt import write_msrvtt_set
from tempclr.demo.world import World
from tempclr.evaluators.published import PUBLISHED
from tempclr.evaluators.report import BENCHMARKS


@pytest.fixture(scope="module")
def vtt_root(tmp_path_factory):
    """MSR-VTT and MSR-VTT QA from the demo writer, linked into the layout of configs/videoclip/test_vtt*_zs.yaml
    (data/msrvtt/..., data/msrvtt-qa/..., data/feat/feat_vtt_s3d); nothing else."""
    base = tmp_path_factory.mktemp("report")
    demo = base / "msrvtt_demo"
    write_msrvtt_set(World(0), str(demo), seed=0, train_per_task=2, test_per_task=2)
    root = base / "data"
    for target, link in (("MSRVTT_JSFUSION_test.csv", "msrvtt/MSRVTT_JSFUSION_test.csv"),
                         ("MSR_MC_test.csv", "msrvtt-qa/MSR_MC_test.csv"), ("features", "feat/feat_vtt_s3d")):
        os.makedirs(os.path.dirname(root / link), exist_ok=True)
        os.symlink(demo / target, root / link)
    return base, root


def model_config(tmp_path, small_demo):
    path = tmp_path / "train_config.yaml"
    path.write_text(f"includes: {ROOT}/configs/demo/how2.yaml\ndataset:\n  bert_name: {small_demo}/bert\n")
    return str(path)


def random_checkpoint(path, train_config):
    from tempclr.tasks.task import Task
    from tempclr.utils.checkpoint import save_untrained_checkpoint
    from tempclr.utils.load_config import read_config

    torch.manual_seed(0)
    config = read_config(config_file=train_config)
    config.dataset.split = "test"          # only the architecture is used: build, save
    return save_untrained_checkpoint(Task.config_task(config).build_model(), str(path))


def test_published_numbers_name_their_source():
    names = {b.name for b in BENCHMARKS}
    for (benchmark, metric), entries in PUBLISHED.items():
        assert benchmark in names, benchmark
        for entry in entries:
            assert entry.source.startswith(("VideoCLIP (Xu et al.", "TempCLR (Yang et al.")), entry
            assert 0 < entry.value <= 100 and entry.setting in ("zero-shot", "fine-tuned")


def test_report_evaluates_present_benchmarks_and_names_absent_ones(vtt_root, small_demo, tmp_path, capsys,
                                                                   monkeypatch):
    from tempclr.evaluators.evaluate import evaluate_checkpoints
    from tempclr_cli import report

    base, root = vtt_root
    train_config = model_config(tmp_path, small_demo)
    checkpoint = random_checkpoint(tmp_path / "ckpt" / "checkpoint_untrained.pt", train_config)
    out = tmp_path / "out" / "report.json"
    monkeypatch.chdir(tmp_path)          # the configs are found from the package, not the working directory
    assert report.main([checkpoint, "--data-root", str(root), "--out", str(out), "--work-dir",
                        str(tmp_path / "work"), "--model-config", train_config]) == 0
    printed = capsys.readouterr().out
    saved = json.loads(out.read_text())
    assert sorted(saved["evaluated"]) == ["msrvtt", "msrvtt_qa"]
    assert saved["skipped"]["crosstask"] == f"missing {root}/crosstask/crosstask_release/videos_val.csv"
    assert saved["skipped"]["youcook"] == f"missing {root}/youcook2data/youcook_val.pkl"
    assert set(saved["skipped"]) | set(saved["evaluated"]) == {b.name for b in BENCHMARKS}
    for name, reason in saved["skipped"].items():
        assert f"skipped {name}: {reason}" in printed

    # the same numbers as the demo config pointed at the same files, evaluated directly
    direct = tmp_path / "test_direct.yaml"
    direct.write_text(f"""includes: {ROOT}/configs/demo/test_vtt_zs.yaml
dataset:
  bert_name: {small_demo}/bert
  test_path: {base}/msrvtt_demo/MSRVTT_JSFUSION_test.csv
  vfeat_dir: {base}/msrvtt_demo/features
fairseq:
  common_eval:
    path: {checkpoint}
eval:
  save_path: {tmp_path / 'direct' / 'eval'}
""")
    expected = evaluate_checkpoints(str(direct))[-1][1]
    got = saved["evaluated"]["msrvtt"]["metrics"]
    assert got == {name: pytest.approx(float(expected[name])) for name in ("R1", "R5", "R10", "MR")}
    assert 0.0 <= saved["evaluated"]["msrvtt_qa"]["metrics"]["acc"] <= 1.0

    rows = {(r["benchmark"], r["metric"]): r for r in saved["rows"]}
    assert rows[("msrvtt", "R1")]["ours"] == pytest.approx(100 * got["R1"])
    assert rows[("msrvtt", "MR")]["ours"] == pytest.approx(got["MR"])        # a rank, not a percentage
    assert rows[("msrvtt", "R1")]["VideoCLIP"]["value"] == 10.4
    assert rows[("msrvtt_qa", "acc")]["VideoCLIP"] is None                 # no checked number: none shown
    line = next(row for row in printed.splitlines() if row.startswith("MSR-VTT retrieval (1k-A) R1 "))
    assert f"{100 * got['R1']:.1f}" in line and "10.4 [1]" in line
    assert "[1] VideoCLIP (Xu et al., EMNLP 2021, arXiv 2109.14084), as listed by paperswithcode" in printed


def test_report_refuses_a_missing_data_root_before_writing(tmp_path, small_demo):
    from tempclr_cli import report

    train_config = model_config(tmp_path, small_demo)
    checkpoint = random_checkpoint(tmp_path / "ckpt" / "checkpoint_untrained.pt", train_config)
    with pytest.raises(FileNotFoundError, match="--data-root .*nowhere is not a folder"):
        report.main([checkpoint, "--data-root", str(tmp_path / "nowhere"), "--work-dir", str(tmp_path / "work")])
    assert not (tmp_path / "work").exists()


def test_report_checks_every_present_benchmark_before_evaluating(vtt_root, small_demo, tmp_path):
    """A malformed file of one present benchmark stops the report before any evaluation, naming the benchmark and
    the loader's message; --skip leaves a benchmark out by name and refuses an unknown one."""
    from tempclr_cli import report

    base, good = vtt_root
    root = tmp_path / "data"
    (root / "msrvtt").mkdir(parents=True)
    (root / "msrvtt" / "MSRVTT_JSFUSION_test.csv").write_text("key,video_id\nret0,video0\n")   # no sentence column
    (root / "msrvtt-qa").mkdir()
    os.symlink(good / "msrvtt-qa" / "MSR_MC_test.csv", root / "msrvtt-qa" / "MSR_MC_test.csv")
    os.symlink(good / "feat", root / "feat")
    train_config = model_config(tmp_path, small_demo)
    checkpoint = random_checkpoint(tmp_path / "ckpt" / "checkpoint_untrained.pt", train_config)
    work = tmp_path / "work"
    argv = [checkpoint, "--data-root", str(root), "--work-dir", str(work), "--model-config", train_config]
    with pytest.raises(ValueError, match=r"(?s)cannot be evaluated.*--skip NAME.*\nmsrvtt \(configs/videoclip/"
                                         r"test_vtt_zs.yaml re-rooted as .*MSRVTT_JSFUSION_test.csv"):
        report.main(argv)
    assert not (work / "msrvtt_qa" / "eval").exists() and not (work / "report.json").exists()
    with pytest.raises(ValueError, match="--skip msrvt: no such benchmark; valid: crosstask, youcook"):
        report.main(argv + ["--skip", "msrvt"])
    assert report.main(argv + ["--skip", "msrvtt"]) == 0
    saved = json.loads((work / "report.json").read_text())
    assert sorted(saved["evaluated"]) == ["msrvtt_qa"] and saved["skipped"]["msrvtt"] == "left out (--skip)"
