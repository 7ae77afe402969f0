#!/usr/bin/env bash
# Wheels of the recipe's packages that the lent GPU machine's Python (3.12, with torch, Triton and
# Lightning) lacks, at the versions of requirements.lock, into .whl/ (ignored through
# .git/info/exclude) for scripts/gpu_check.sh's recipe stage. Run here, where pip reaches an index.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
grep -qx "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
pinned() { sed -n "s/^\($1==[^ ]*\).*/\1/p" requirements.lock; }
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
  platforms+=(--platform "$p")
done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d .whl "$(pinned hydra-core)" "$(pinned omegaconf)" "$(pinned soundfile)" \
  "$(pinned cffi)" "$(pinned pycparser)"
# antlr4-python3-runtime (Hydra's parser) is published as a source archive only: build its wheel
"$PY" -m pip wheel -q --no-deps -w .whl "$(pinned antlr4-python3-runtime)"
ls .whl
