#!/usr/bin/env bash
# The GPU checks of the alignment kernels (issue 3), as one prepared script for a session that is lent a GPU.
#
#   bash benchmarks/gpu_checks.sh prepare   # here, before asking for the machine: omegaconf's wheels -> .whl/
#   bash benchmarks/gpu_checks.sh run       # on the GPU machine, from the repo root, with .whl carried:
#                                           #   run(command="bash benchmarks/gpu_checks.sh run", carry=[".whl"],
#                                           #       timeout_s=600)
#
# The GPU machine's python3 already holds CUDA torch, triton, numba, transformers and tokenizers; of what the
# alignment code, the demo data script and bench_align_share.py import, only omegaconf (and its antlr4 runtime)
# is missing, and nothing can be downloaded there, so `prepare` puts both as wheels into .whl/ (git-ignored).
# fairseq and faiss are not needed for these checks.
#
# `run` writes each step's output to $OUT/<step>.txt (the device tool brings $OUT back) and a line per step to
# $OUT/summary.txt: both Triton schedules against the CPU path (tests/test_alignment_triton.py, on CUDA), the
# alignment loss's share of a demo training step on the GPU, and the benchmark's GPU table.  The steps' limits
# add up to 590 s, inside one 600 s device command.
set -uo pipefail
PY=${PY:-python3}
OUT=${OUT:-/tmp/tempclr-gpu-checks}

prepare() {
    mkdir -p .whl
    "$PY" -m pip download --no-deps -q -d .whl omegaconf==2.3.0
    "$PY" -m pip wheel --no-deps -q -w .whl antlr4-python3-runtime==4.9.3
    ls -l .whl
}

step() {  # step NAME SECONDS COMMAND...: run with a time limit, keep the output, note the exit status
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    echo "== $name: $*"
    timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.txt"
    local status=${PIPESTATUS[0]}
    echo "$name: exit $status after $((SECONDS - start)) s (limit $limit s)" | tee -a "$OUT/summary.txt"
}

run() {
    mkdir -p "$OUT"
    : > "$OUT/summary.txt"
    export PYTHONUNBUFFERED=1
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    if ls .whl/*.whl > /dev/null 2>&1; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
            .whl/*.whl || exit 1
        export PYTHONPATH="$PYTHONPATH:/tmp/site"
    fi
    step env 30 "$PY" -c "import torch, triton, numba; print('torch', torch.__version__, 'triton', triton.__version__,
'numba', numba.__version__, 'cuda', torch.cuda.is_available() and torch.cuda.get_device_name())"
    # plugin autoload off: the GPU image carries many pytest plugins (and hydra's) that these tests do not use
    # the CUDA tests only: both GPU schedules against the CPU kernels (the interpreter test runs on any machine)
    step triton_tests 120 env PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 "$PY" -m pytest -q -p no:cacheprovider \
        tests/test_alignment_triton.py -k "on_gpu"
    step demo_data 60 "$PY" scripts/make_demo_data.py --out data/demo
    step share_dtw 90 "$PY" benchmarks/bench_align_share.py --config configs/demo/how2_dtw.yaml
    step share_otam 90 "$PY" benchmarks/bench_align_share.py --config configs/demo/how2_otam.yaml
    # last: the longest step; its rows are printed as they are measured, so a timeout still returns them
    step bench_gpu 200 "$PY" benchmarks/bench_alignment.py --device cuda --min-run-time 0.3
    cat "$OUT/summary.txt"
}

# `ray` (a separate device command: `run` already fills one): the extractor's engines with S3D on the GPU, local
# vs Ray with one GPU actor (benchmarks/bench_extract.py --engines, crop 224, the files compared byte for byte).
# Ray is not on the GPU image and its wheels (ray, pyarrow, pandas) exceed the 64 MiB a device command may carry,
# so this step runs only where `import ray.data` works there; otherwise it says so in summary.txt.
ray_checks() {
    mkdir -p "$OUT"
    export PYTHONUNBUFFERED=1
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    if "$PY" -c "import ray.data, av" 2>/dev/null; then
        step ray_extract 500 "$PY" benchmarks/bench_extract.py --engines --videos 8 --seconds 30 --size 224 \
            --batch 32 --workers 1 --worker-cpus 8 --gpus-per-actor 1 --decode-threads 8 --device cuda
    else
        echo "ray_extract: skipped: ray[data] or av is not importable on this machine" | tee -a "$OUT/summary.txt"
    fi
}

case "${1:-}" in
    prepare) prepare ;;
    run) run ;;
    ray) ray_checks ;;
    *) echo "usage: bash benchmarks/gpu_checks.sh prepare|run|ray (see the comments at the top)" >&2; exit 2 ;;
esac
