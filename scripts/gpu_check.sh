#!/usr/bin/env bash
# Every GPU check of the project in one call, on a lent GPU machine (python3 with torch and Triton
# there, but not the recipe's Hydra or soundfile: scripts/gpu_wheels.sh puts their wheels in .whl/,
# which the call carries). Each stage has its own time limit, so one that hangs cannot starve the
# rest (about 7 minutes in all), and everything lands in $OUT:
#   tests   tests.txt         the rnnlib tests on CUDA: Triton kernels compiled, cuDNN padding
#   bench   bench_ieee.*      the layer benchmark against cuDNN, every product IEEE float32
#   tf32    bench_tf32.*      the same with TF32 products for every type (cuDNN's default)
#   recipe  recipe.txt        the recipe on trainer=gpu, 2 epochs each of sligru (the default),
#                             ligru and gru: training seconds
#
#   bash scripts/gpu_check.sh [stage ...]   (default: all four; device run: carry [".whl"])
set -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-gpu_check}
STAGES=${*:-tests bench tf32 recipe}
TYPES="torch.nn.LSTM ligru ligru@torch sligru sligru@torch"
mkdir -p "$OUT"

device() {
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
}

tests() {
  timeout 140 python3 -m pytest --noconftest -q -p no:cacheprovider \
    tests/test_rnnlib_triton.py tests/test_rnnlib_fast_kernel.py \
    tests/test_rnnlib_torch_unpacked.py tests/test_rnnlib_lean_memory.py \
    tests/test_rnnlib_layers.py 2>&1 | tail -20
}

bench() {
  timeout 120 python3 scripts/bench_rnn.py --device cuda --config both --types $TYPES \
    --json "$OUT/bench_ieee.json"
}

tf32() {
  timeout 60 python3 scripts/bench_rnn.py --device cuda --config both --types $TYPES --tf32 \
    --no-memory --json "$OUT/bench_tf32.json"
}

recipe() {
  if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site"
  fi
  limit=100  # the first run also writes the corpus and its features
  for rnn in sligru ligru gru; do
    timeout $limit python3 -m recipes.timit.train rnn=$rnn trainer=gpu trainer.max_epochs=2 \
      eval_splits=[test] hydra.run.dir="/tmp/recipe_$rnn" 2>&1 | tail -12
    python3 -c "import json, sys; r = json.load(open(sys.argv[1])); print(r['rnn'], \
      r['train_seconds'], 's for', r['epochs'], 'epochs; best dev PER', r['best_dev_per'])" \
      "/tmp/recipe_$rnn/results.json"
    limit=70
  done
}

device 2>&1 | tee "$OUT/device.txt"
for stage in $STAGES; do
  echo "== $stage"
  start=$SECONDS
  $stage 2>&1 | tee "$OUT/$stage.txt"
  echo "== $stage: $((SECONDS - start)) s"
done
