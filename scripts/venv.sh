#!/usr/bin/env bash
# Create (once) and print the path of a pinned virtual environment for vitkit.
#
#   scripts/venv.sh core    # small CPU torch 2.13.0: demo and unit tests
#   scripts/venv.sh peers   # torch 2.14.1 + torchvision + timm/transformers/vit-pytorch: parity tests, benchmarks
#
# Environments live outside the clone, keyed by a hash of the pinned requirements, so a fresh clone (CI)
# reuses them instead of reinstalling gigabytes. Override the location with VITKIT_VENV_ROOT.
set -euo pipefail
# (pip warns about every missing local index folder of this machine: those lines are filtered out.)
name=${1:?usage: scripts/venv.sh core|peers}
repo=$(cd "$(dirname "$0")/.." && pwd)
req="$repo/requirements/$name.txt"
[ -f "$req" ] || { echo "scripts/venv.sh: no requirements file $req" >&2; exit 2; }
python=${PYTHON:-python3}
key=$(cat "$req" "$repo/requirements/nodeps.txt" | sha256sum | cut -c1-12)
root=${VITKIT_VENV_ROOT:-$HOME/.cache/vitkit/venvs}
venv="$root/$name-$key"
if [ ! -f "$venv/.complete" ]; then
  echo "scripts/venv.sh: building $name environment in $venv (first time only)" >&2
  rm -rf "$venv"
  mkdir -p "$root"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet -r "$req" 2> >(grep -v "is ignored" >&2)
  "$venv/bin/python" -m pip install --quiet --no-deps -r "$repo/requirements/nodeps.txt" 2> >(grep -v "is ignored" >&2)
  "$venv/bin/python" -c "import torch, numpy, PIL, safetensors, av" >&2
  touch "$venv/.complete"
fi
echo "$venv"
