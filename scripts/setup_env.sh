#!/usr/bin/env bash
# Create .venv/ at the repo root (when missing) and install tempclr into it, in the one order
# that works on Python 3.11 (see README "Install"):
#   1. torch==2.13.0 (CPU wheel) unless a torch is already importable,
#   2. fairseq-fixed with --no-build-isolation --no-deps (PyPI fairseq 0.12.2 does not build on 3.11),
#   3. the project, editable, with fairseq's other deps (never torchaudio).
# Re-running is cheap: a stamp records the hash of pyproject.toml that was installed.
# Usage: scripts/setup_env.sh [EXTRAS]     e.g. scripts/setup_env.sh test
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-}"
PY="${PYTHON:-python3}"
VENV=.venv
PIP="$VENV/bin/python -m pip"
TORCH_SPEC="${TEMPCLR_TORCH_SPEC:-torch==2.13.0}"
FAIRSEQ_SPEC="fairseq-fixed==0.12.3.1"

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
stamp="$VENV/.tempclr-installed"
want="$(cat pyproject.toml scripts/setup_env.sh | sha256sum | cut -c1-16) extras=$EXTRAS"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
$PIP install -q --upgrade "pip>=23" setuptools wheel
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    echo "[setup] installing $TORCH_SPEC"
    $PIP install -q "$TORCH_SPEC"
fi
if ! "$VENV/bin/python" -c "import fairseq" 2>/dev/null; then
    echo "[setup] building $FAIRSEQ_SPEC (about 2.5 min on 2 cores the first time, then from pip's wheel cache)"
    $PIP install -q cython "numpy>=1.24"
    $PIP install -q --no-build-isolation --no-deps "$FAIRSEQ_SPEC"
fi
target="."
[ -n "$EXTRAS" ] && target=".[$EXTRAS]"
echo "[setup] installing tempclr (editable) and its dependencies"
$PIP install -q -e "$target"
if "$VENV/bin/python" -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('torchaudio') is None)"; then
    echo "[setup] error: torchaudio is installed in $VENV; it breaks 'from transformers import BertModel'." >&2
    echo "        remove it: $VENV/bin/python -m pip uninstall -y torchaudio" >&2
    exit 1
fi
echo "$want" > "$stamp"
echo "[setup] done: $VENV"
