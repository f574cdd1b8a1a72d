#!/usr/bin/env bash
# One-time set-up of a fresh clone: system libraries for headless rendering (optional), a
# virtual environment in .venv with PyTorch (CPU build unless an NVIDIA GPU is present) and lrm.
# Idempotent: a second run only checks. Usage: bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# Headless OpenGL (EGL on Mesa llvmpipe) for `lrm data render`; everything else works without it.
EGL_PKGS="libegl1 libegl-mesa0 libgl1-mesa-dri libgles2"
if command -v dpkg >/dev/null && ! dpkg -s $EGL_PKGS >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo"; else SUDO="none"; fi
    if [ "$SUDO" != none ]; then
        echo "setup: installing $EGL_PKGS (apt)"
        $SUDO apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $EGL_PKGS >/dev/null \
            || echo "setup: warning: could not install EGL packages; dataset rendering will be unavailable" >&2
    else
        echo "setup: warning: not root; install '$EGL_PKGS' for dataset rendering" >&2
    fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
. .venv/bin/activate
stamp=.venv/.lrm-setup-$(sha1sum pyproject.toml | cut -c1-12)
if [ ! -f "$stamp" ]; then
    python -m pip install -q --upgrade pip
    if ! python -c "import torch" 2>/dev/null; then
        if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
            python -m pip install -q torch            # CUDA build from PyPI
        else
            # CPU build: pinned here so pip does not pull the multi-GB CUDA build. Elsewhere, add
            # --index-url https://download.pytorch.org/whl/cpu for a CPU-only wheel.
            python -m pip install -q "torch==2.13.0" ${LRM_TORCH_INDEX:+--index-url "$LRM_TORCH_INDEX"}
        fi
    fi
    python -m pip install -q -e ".[test]"
    touch "$stamp"
fi
echo "setup: ready ($(python -c 'import torch, lrm; print("torch", torch.__version__, "| lrm", lrm.__version__)'))"
