#!/usr/bin/env bash
# Create .venv and install xsweep into it. Installs torch first, so pip never resolves a bare
# `torch` requirement on its own (that pulls a multi-GB CUDA build on CPU-only machines).
#   TORCH_SPEC   torch requirement to install first (default: torch==2.13.0, the CPU build here;
#                on a GPU machine use e.g. TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128")
#   XSWEEP_EXTRAS  extras to install, comma-separated (default: test; `make test` adds submit,
#                  the job client and dashboard of ray[default] that xsweep submit needs)
set -euo pipefail
cd "$(dirname "$0")/.."
# This machine's pip configuration warns about every missing local index entry; keep real errors.
quiet() { "$@" 2> >(grep -v "^WARNING: Location" >&2); }
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
XSWEEP_EXTRAS=${XSWEEP_EXTRAS:-test}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  echo "setup: installing $TORCH_SPEC"
  # shellcheck disable=SC2086
  quiet .venv/bin/python -m pip install -q $TORCH_SPEC
fi
echo "setup: installing xsweep[$XSWEEP_EXTRAS] and its dependencies"
quiet .venv/bin/python -m pip install -q -e ".[$XSWEEP_EXTRAS]"
