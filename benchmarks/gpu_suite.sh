#!/usr/bin/env bash
# The README's GPU figures in one run (a lent GPU machine has minutes, not hours): many fits
# (10^6 and 10^7 Gaussians, f32), the big-data gd step and landscape, and fit_along against
# xarray's curvefit with gradfit on the GPU. Each part has its own time limit; the outputs
# go to $OUT (or ./gpu-out). On a machine without the extras installed: PYTHONPATH=src.
#
#   bash benchmarks/gpu_suite.sh                 # on the GPU machine, about 6 minutes
#   DEVICE=cpu SMALL=1 bash benchmarks/gpu_suite.sh   # a dry run of the same commands here
set -u
cd "$(dirname "$0")/.."
out=${OUT:-gpu-out}
mkdir -p "$out"
export PYTHONPATH=${PYTHONPATH:-src}
py=${PYTHON:-python3}
dev=${DEVICE:-cuda}
if [ -n "${SMALL:-}" ]; then m1=2000 m2=4000 n=100000 px=500 cf=20; else
  m1=1000000 m2=10000000 n=100000000 px=100000 cf=500; fi
run() {   # name, limit in seconds, command...
  local name=$1 limit=$2; shift 2
  echo "== $name: $*" | tee "$out/$name.txt"
  timeout "$limit" "$@" 2>&1 | tee -a "$out/$name.txt"
  echo "rc=${PIPESTATUS[0]}" | tee -a "$out/$name.txt"
}
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total \
  --format=csv | tee "$out/gpu.txt"
"$py" -c "import torch; print('torch', torch.__version__)" | tee -a "$out/gpu.txt"
run many-1e6 150 "$py" benchmarks/bench_many.py --device "$dev" --dtype float32 \
  --problems "$m1" --rounds 3 --scipy-sample 200 --threads 0
run many-1e7 150 "$py" benchmarks/bench_many.py --device "$dev" --dtype float32 \
  --problems "$m2" --rounds 1 --scipy-sample 50 --check 10 --threads 0
run big 120 "$py" benchmarks/bench_big.py --device "$dev" --dtype float32 --n "$n" \
  --skip-exact --rounds 3
run xarray 120 "$py" benchmarks/bench_dask.py --only xarray --device "$dev" \
  --pixels "$px" --curvefit "$cf"
