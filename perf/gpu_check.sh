#!/usr/bin/env bash
# The prepared GPU check: everything the suite does on a CUDA GPU, in one command, from the
# repository root of a machine with a GPU and the datasets (SGMCMC_DATA_DIR / SGMCMC_CACHE_DIR,
# see the README's "Data"):
#
#   bash perf/gpu_check.sh OUTDIR
#
# 1. the CUDA tests (tests/test_cuda.py: samplers' state and noise on the device, resume bit for
#    bit, toy and MNIST tasks end to end against the CPU);
# 2. seconds per training epoch and per evaluation pass of the MLP and the CNN, every sampler
#    (perf/gpu_epochs.py);
# 3. the MLP's default profile on the GPU, one seed per row (whole-run wall times);
# 4. the CNN's step sizes tuned on the validation set (scripts/tune_mnist.py --task mnist-cnn), then
#    each sampler's chosen step size run on the test set with the full profile's 5 seeds.
# Logs go to OUTDIR/log.txt, the epoch table to OUTDIR/gpu_epochs.md, every record to
# OUTDIR/records.tgz (refreshed after each stage, so a stage cut short loses only itself).
set -uo pipefail
out=${1:?usage: bash perf/gpu_check.sh OUTDIR}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
py=${PYTHON:-python3}
log="$out/log.txt"
stage() { echo; echo "=== $(date -u +%H:%M:%S) $*"; }
pack() { (cd "$out" && tar czf records.tgz --ignore-failed-read mlp-cuda tuning-cnn cnn-full 2>/dev/null) || true; }
{
  stage environment
  nvidia-smi -L
  nproc
  $py -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
  $py -m benchmarks data fetch || exit 1

  stage "CUDA tests"
  $py -m pytest -q -p no:cacheprovider tests/test_cuda.py

  stage "epoch times"
  $py perf/gpu_epochs.py --device cuda --epochs 3 --samplers sgd,sgld,psgld,sghmc,underdamped | tee "$out/gpu_epochs.md"

  stage "MLP default profile on cuda, one seed a row"
  $py -m benchmarks run mnist --tasks mnist-mlp --seeds 1 --device cuda --jobs 4 --no-report --results-dir "$out/mlp-cuda"
  $py -c "
import json, glob
for f in sorted(glob.glob('$out/mlp-cuda/records/*.json')):
    r = json.load(open(f)); m = r['metrics']
    print(r['config']['sampler'], r['config']['hyper'].get('temperature', 1), r['status'],
          'wall %.1f s, train %.1f s, eval %.1f s, error %.2f' % (r['wall_time_s'], m.get('train_time_s', 0), m.get('eval_time_s', 0), m.get('error', 0)))"
  pack

  stage "CNN: tune on validation, then the chosen step sizes on test (full profile)"
  $py scripts/tune_mnist.py --task mnist-cnn --device cuda --jobs 4 --results-dir "$out/tuning-cnn" --then-test "$out/cnn-full" &
  pid=$!
  while kill -0 $pid 2>/dev/null; do sleep 20; pack; done  # what is done comes back even if the call is cut
  wait $pid
  pack
  stage done
} 2>&1 | tee "$log"
