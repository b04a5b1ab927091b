#!/usr/bin/env bash
# Creates (once) the Python environment the reference scripts use, under the
# ignored build/ folder, and prints its python path. PyPI only.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
venv=$root/build/venv
if ! "$venv/bin/python" -c 'import torch, transformers, peft, tokenizers, numpy' 2>/dev/null; then
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q -r "$root/tests/ref/requirements.txt" >&2
fi
echo "$venv/bin/python"
