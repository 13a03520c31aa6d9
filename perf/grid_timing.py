"""Wall time of one 12-run grid run three ways: sequential, a local process pool, a dask LocalCluster.

    python perf/grid_timing.py                 # one round of the three
    python perf/grid_timing.py --repeat 3      # three rounds (order rotated each round), medians
    python perf/grid_timing.py --max-load 1.5  # first wait (up to --wait-max s) for a quiet machine
    python perf/grid_timing.py --profile default  # the same 12 runs, each ~4x longer

Every invocation is the real command line, in a subprocess, into a fresh temporary results
directory (so nothing is skipped):

    python -m benchmarks run toy --profile quick --tasks gauss-iso-100,gauss-corr-2d \\
        --samplers sgld,psgld,sghmc --seeds 2 --no-sweep --no-report --results-dir TMP  [EXTRA]

with EXTRA = nothing (sequential: 1 process, torch's default threads = the cores),
``--jobs 2`` (2 spawned processes, cores // 2 threads each) and ``--executor dask --jobs 2``
(a LocalCluster of 2 single-threaded worker processes on loopback, cores // 2 torch threads per run).

Reported per way: the command's wall time (Python start-up and imports included), the grid's wall
time as the runner prints it (``... in X s``: from the first submission to the end, so the start-up
and shutdown of the pool or the cluster are included), and the sum of the runs' own ``wall_time_s`` from the
records (the work itself, whatever executes it). The 1-minute load average is printed before and
after each invocation: on a shared machine the numbers mean little without it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GRID = ["run", "toy", "--tasks", "gauss-iso-100,gauss-corr-2d",
        "--samplers", "sgld,psgld,sghmc", "--seeds", "2", "--no-sweep", "--no-report"]
WAYS = {
    "sequential (--jobs 1)": [],
    "local pool (--jobs 2)": ["--jobs", "2"],
    "dask LocalCluster (--executor dask --jobs 2)": ["--executor", "dask", "--jobs", "2"],
}
SUMMARY = re.compile(r"(\d+) runs: .* in ([0-9.]+) s")


def load1() -> float:
    return os.getloadavg()[0]


def wait_for_quiet(max_load: float, wait_max: float) -> None:
    deadline = time.time() + wait_max
    while load1() > max_load and time.time() < deadline:
        print(f"load {load1():.2f} > {max_load}: waiting ...", flush=True)
        time.sleep(30)
    print(f"load average now {os.getloadavg()}", flush=True)


def one(extra: list[str], profile: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="grid-timing-") as tmp:
        cmd = [sys.executable, "-m", "benchmarks", *GRID, "--profile", profile, "--results-dir", tmp, *extra]
        load_before = load1()
        t0 = time.perf_counter()
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if out.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
        match = SUMMARY.search(out.stdout)
        records = [json.loads(p.read_text()) for p in Path(tmp, "records").glob("*.json")]
        assert len(records) == 12 and all(r["status"] == "ok" for r in records), out.stdout
        return {"command_s": wall, "grid_s": float(match.group(2)),
                "runs_s": sum(r["wall_time_s"] for r in records),
                "threads": sorted({r["provenance"]["torch_threads"] for r in records}),
                "load_before": load_before, "load_after": load1()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="quick", choices=("quick", "default"), help="toy profile (default quick)")
    ap.add_argument("--repeat", type=int, default=1, help="rounds of the three ways (default 1)")
    ap.add_argument("--max-load", type=float, default=None, help="wait for the 1-minute load to drop below this")
    ap.add_argument("--wait-max", type=float, default=600, help="longest wait for --max-load, seconds (default 600)")
    args = ap.parse_args()
    if args.max_load is not None:
        wait_for_quiet(args.max_load, args.wait_max)
    print(f"profile {args.profile}; cores: {os.cpu_count()}; load average at start: {os.getloadavg()}", flush=True)
    results: dict[str, list[dict]] = {name: [] for name in WAYS}
    names = list(WAYS)
    for r in range(args.repeat):
        for name in names[r % len(names):] + names[:r % len(names)]:  # rotate the order each round
            res = one(WAYS[name], args.profile)
            results[name].append(res)
            print(f"round {r + 1}  {name:45s} command {res['command_s']:6.1f} s  grid {res['grid_s']:6.1f} s  "
                  f"runs' own {res['runs_s']:6.1f} s  torch threads {res['threads']}  "
                  f"load {res['load_before']:.2f} -> {res['load_after']:.2f}", flush=True)
    print(f"load average at end: {os.getloadavg()}\n")
    seq = statistics.median(x["grid_s"] for x in results[names[0]])
    print("| executor | grid wall (runner) | speed-up | command wall | sum of runs' own wall | torch threads/run |")
    print("|---|---|---|---|---|---|")
    for name in names:
        rs = results[name]
        grid = statistics.median(x["grid_s"] for x in rs)
        cmd = statistics.median(x["command_s"] for x in rs)
        own = statistics.median(x["runs_s"] for x in rs)
        every = " (" + ", ".join(f"{x['grid_s']:.1f}" for x in rs) + ")" if len(rs) > 1 else ""
        print(f"| {name} | {grid:.1f} s{every} | {seq / grid:.2f}x | {cmd:.1f} s | {own:.1f} s | "
              f"{', '.join(map(str, rs[0]['threads']))} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
