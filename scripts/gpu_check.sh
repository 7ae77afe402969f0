#!/usr/bin/env bash
# The GPU checks of the Light GRU kernel, as run on a lent GPU machine (python3 with torch there):
# the rnnlib tests (CUDA ones included) and the benchmark against cuDNN. Results go to $OUT.
set -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-gpu_check}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
python3 -m pytest --noconftest -q tests/test_rnnlib_fast_kernel.py \
  tests/test_rnnlib_lean_memory.py tests/test_rnnlib_layers.py 2>&1 | tail -4 | tee "$OUT/tests.txt"
python3 scripts/bench_rnn.py --device cuda --config both --types torch.nn.LSTM ligru sligru \
  --json "$OUT/bench_cuda.json" 2>&1 | tee "$OUT/bench_cuda.txt"
