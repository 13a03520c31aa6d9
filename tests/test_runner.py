"""The grid, the executors, the records, the CLI and the leaderboard, end to end on tiny toy grids."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from benchmarks import columns, executors, grid, lineup, records, report
from benchmarks.__main__ import main
from benchmarks.tasks import all_tasks, gaussian

#: each task's leaderboard columns, as `python -m benchmarks report` hands them to report.build
COLUMNS = columns.of_tasks(all_tasks().values())

ROOT = Path(__file__).resolve().parent.parent
TINY = dict(chains=4, steps=400, burn_in=100, thin=5)


@pytest.fixture
def tiny_profile(monkeypatch):
    """The quick profile shrunk to a few hundred steps so a grid runs in seconds."""
    monkeypatch.setitem(gaussian.TOY_PROFILES, "quick", TINY)


def run_cli(*args: str) -> int:
    return main(["run", "toy", "--profile", "quick", *args])


def all_records(results: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((results / "records").glob("*.json"))]


def test_tiny_grid_end_to_end(tmp_path, tiny_profile, capsys):
    rc = run_cli("--tasks", "gauss-corr-2d,blr", "--samplers", "sgld,sghmc", "--no-sweep",
                 "--results-dir", str(tmp_path))
    assert rc == 0
    recs = all_records(tmp_path)
    # 2 tasks x 2 samplers, and blr's two control-variate rows (sgld +cv, sghmc +cv)
    assert len(recs) == 6
    assert sorted(r["config"]["variant"] for r in recs if r["config"]["task"] == "blr") == ["+cv", "+cv", "tuned", "tuned"]
    for rec in recs:
        assert rec["status"] == "ok", rec.get("error")
        assert rec["key"] == Path(tmp_path / "records" / f"{rec['key']}.json").stem
        assert rec["grad_evals"] == TINY["steps"] * TINY["chains"]
        assert rec["wall_time_s"] > 0
        assert set(rec["metrics"]) >= {"kl", "w2", "mean_error", "var_error", "ess_min", "rhat_max",
                                       "ess_per_second", "ess_per_1k_grads"}
        prov = rec["provenance"]
        assert prov["versions"]["torch"] and prov["device"] == "cpu" and "git_commit" in prov
    md = (tmp_path / "leaderboard.md").read_text()
    assert "## gauss-corr-2d" in md and "## blr" in md and "Summary" in md
    assert "**" in md  # best values marked
    csv = (tmp_path / "leaderboard.csv").read_text().splitlines()
    assert csv[0].startswith("task,sampler,variant")
    assert len(csv) > 1


def test_record_round_trip(tmp_path):
    spec = records.RunSpec.make("gauss-corr-2d", "sgld", {"lr": 0.01}, 3, "quick")
    rec = {"key": spec.key, "config": spec.config(), "status": "ok",
           "metrics": {"kl": 0.5, "bad": float("nan"), "w2": float("inf"), "neg": float("-inf")}}
    path = records.write_record(tmp_path, rec)
    assert '"w2": "inf"' in path.read_text()  # strict JSON, and an infinite KL is not a missing one
    back = records.read_record(path)
    assert back["config"] == spec.config()
    # NaN (undefined) is written as null; +-inf round-trips
    assert back["metrics"] == {"kl": 0.5, "bad": None, "w2": float("inf"), "neg": float("-inf")}
    assert not list((tmp_path / "records").glob("*.tmp"))


def test_spec_key_depends_on_every_field():
    base = records.RunSpec.make("t", "sgld", {"lr": 0.1}, 0, "quick")
    others = [records.RunSpec.make("t2", "sgld", {"lr": 0.1}, 0, "quick"),
              records.RunSpec.make("t", "sghmc", {"lr": 0.1}, 0, "quick"),
              records.RunSpec.make("t", "sgld", {"lr": 0.2}, 0, "quick"),
              records.RunSpec.make("t", "sgld", {"lr": 0.1}, 1, "quick"),
              records.RunSpec.make("t", "sgld", {"lr": 0.1}, 0, "default")]
    assert len({base.key, *[o.key for o in others]}) == 6
    assert base.key == records.RunSpec.make("t", "sgld", {"lr": 0.1}, 0, "quick").key


def test_rerun_skips_and_force_reruns(tmp_path, tiny_profile, capsys):
    args = ("--tasks", "gauss-corr-2d", "--samplers", "sgld", "--no-sweep", "--results-dir", str(tmp_path))
    assert run_cli(*args) == 0
    first = {r["key"]: r["started_at"] for r in all_records(tmp_path)}
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "records").glob("*.json")}
    capsys.readouterr()
    assert run_cli(*args) == 0
    assert "1 already recorded" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "records").glob("*.json")} == mtimes
    time.sleep(1.1)
    assert run_cli(*args, "--force") == 0
    again = {r["key"]: r["started_at"] for r in all_records(tmp_path)}
    assert again.keys() == first.keys() and again != first


def test_same_seed_same_metrics(tmp_path, tiny_profile):
    spec = records.RunSpec.make("gauss-corr-2d", "sghmc", {"lr": 0.01, "friction": 0.1}, 7, "quick")
    a = executors.run_one(spec, executors.RunOptions(results_dir=str(tmp_path / "a")))
    b = executors.run_one(spec, executors.RunOptions(results_dir=str(tmp_path / "b")))
    assert a["status"] == b["status"] == "ok"
    for k in ("kl", "w2", "mean_error", "var_error", "ess_min"):
        assert a["metrics"][k] == b["metrics"][k]


def test_corrupt_record_is_reported_and_rerun(tmp_path, tiny_profile, capsys):
    args = ("--tasks", "gauss-corr-2d", "--samplers", "sgld", "--no-sweep", "--results-dir", str(tmp_path))
    assert run_cli(*args) == 0
    (path,) = (tmp_path / "records").glob("*.json")
    path.write_text('{"key": "abc", "config": ')  # truncated
    stray = tmp_path / "records" / "zzz.json"
    stray.write_text("[1, 2, 3]")
    capsys.readouterr()
    assert main(["report", "--results-dir", str(tmp_path)]) == 1  # nothing valid left to report
    err = capsys.readouterr().err
    assert str(path) in err and str(stray) in err
    assert run_cli(*args) == 0  # the corrupt configuration is rerun, the stray file is only reported
    assert records.read_record(path)["status"] == "ok"
    assert main(["report", "--results-dir", str(tmp_path)]) == 0


def test_divergence_is_recorded_and_grid_goes_on(tmp_path, tiny_profile, capsys):
    rc = run_cli("--tasks", "gauss-corr-2d", "--samplers", "sgld,sghmc", "--no-sweep", "--hyper", "lr=50",
                 "--results-dir", str(tmp_path))
    assert rc == 0
    recs = {r["config"]["sampler"]: r for r in all_records(tmp_path)}
    assert set(recs) == {"sgld", "sghmc"}
    for rec in recs.values():
        assert rec["status"] == "diverged"
        assert rec["divergence"]["step"] >= 0
        assert "non-finite" in rec["divergence"]["reason"]
        assert rec["config"]["variant"] == "custom"
    assert "diverged" in (tmp_path / "leaderboard.md").read_text()


def test_failed_run_is_recorded_with_the_error(tmp_path, tiny_profile):
    spec = records.RunSpec.make("gauss-corr-2d", "sghmc", {"lr": 0.01, "friction": 5.0}, 0, "quick")
    rec = executors.run_one(spec, executors.RunOptions(results_dir=str(tmp_path)))
    assert rec["status"] == "failed"
    assert "friction" in rec["error"] and "(0.0, 1.0]" in rec["error"]
    # a failed record is retried by the next run, unlike ok and diverged ones
    todo, done = records.pending([spec], tmp_path)
    assert todo == [spec] and done == []


@pytest.mark.parametrize("argv, needle", [
    (["run", "nosuchsuite"], "invalid choice"),
    (["run", "toy", "--samplers", "nosuch"], "psgld, sgd, sghmc, sgld"),
    (["run", "toy", "--profile", "huge"], "invalid choice: 'huge'"),
    (["run", "toy", "--seeds", "0"], "--seeds must be an integer >= 1"),
    (["run", "toy", "--jobs", "0"], "--jobs must be an integer >= 1"),
    (["run", "toy", "--tasks", "nope"], "valid: gauss-iso-100"),
    (["run", "toy", "--hyper", "lr"], "KEY=VALUE"),
    (["run", "toy", "--samplers", "os:path"], "not a subclass of sgmcmc.Sampler"),
    (["run", "toy", "--samplers", "sgmcmc:Sampler"], "does not implement _update"),
    (["run", "toy", "--samplers", ","], "names no sampler; valid: "),
    (["run", "toy", "--tasks", ","], "--tasks names no task"),
    (["run", "toy", "--tasks", ""], "--tasks names no task"),
    (["run", "toy", "--hyper", "lr=1", "--hyper", "lr=2"], "--hyper lr given more than once"),  # an empty shell variable, not "every task"
    (["run", "toy", "--samplers", ""], "names no sampler; valid: "),
    (["run", "toy", "--tasks", "mixture-2d"], "(mixture-2d is in suite(s) multimodal)"),
    (["run", "toy", "--results-dir", "/proc/no-such-folder"], "--results-dir /proc/no-such-folder: cannot create"),
    (["run", "mnist", "--profile", "quick", "--tasks", "mnist-cnn"], "mnist-cnn runs only in profile(s) full"),
    (["run", "toy", "--hyper", "lr=-1"], "--hyper lr: SGD: lr=-1.0 is out of range; valid: (0.0, inf)"),
    (["run", "toy", "--hyper", "lr=abc"], "lr='abc' is not a number"),
    (["run", "toy", "--hyper", "bogus=1"], "--hyper bogus: not a hyperparameter of sgd on gauss-iso-100; valid: cycles, keep_last, lr, replicate, temperature"),
    (["run", "toy", "--samplers", "sgld,sghmc", "--hyper", "friction=0.2"], "friction: not a hyperparameter of sgld"),
    (["run", "toy", "--samplers", "sghmc", "--hyper", "friction=2"], "friction=2.0 is out of range; valid: (0.0, 1.0]"),
    (["run", "toy", "--hyper", "num_data=10"], "N is set by each task"),
    (["run", "mnist", "--samplers", "sgld", "--hyper", "prior=laplace"], "prior='laplace'; valid: isotropic, fanin"),
    (["run", "all", "--samplers", "sgld", "--hyper", "prior=fanin"], "prior: not a hyperparameter of sgld on gauss-iso-100"),
    (["run", "mnist", "--samplers", "sgld", "--hyper", "explore=0"],
     "explore=0.0 applies to the cyclical protocol only, and mnist-mlp runs a constant step unless the row sets cycles"),
    (["run", "cyclical", "--samplers", "sgld", "--hyper", "explore=1"], "explore=1.0 is out of range; valid: [0, 1)"),
    (["run", "cyclical", "--samplers", "sgld", "--hyper", "cycles=7"],
     "cycles=7.0 does not divide the 500 steps of mnist-mlp-cyclical's quick profile; valid: a divisor of 500"),
    (["run", "cyclical", "--samplers", "sgld", "--hyper", "lr_decay_to=0.1"],
     "lr_decay_to=0.1 cannot combine with the cyclical protocol of mnist-mlp-cyclical"),
    (["run", "toy", "--device", "gpu"], "unknown device 'gpu'; valid: cpu, cuda, cuda:N, auto"),
    (["run", "toy", "--device", "cuda:x"], "unknown device 'cuda:x'"),
    (["run", "toy", "--data-dir", "/nonexistent/data"], "--data-dir /nonexistent/data: no such directory"),
])
def test_cli_errors_exit_2_with_valid_values(argv, needle, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert needle in capsys.readouterr().err


def test_cli_errors_print_the_run_usage(capsys):
    with pytest.raises(SystemExit):
        main(["run", "toy", "--samplers", "nosuch"])
    assert "python -m benchmarks run: error:" in capsys.readouterr().err


def test_a_results_dir_that_is_a_file_is_refused_before_any_run(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    with pytest.raises(SystemExit) as exc:
        main(["run", "toy", "--results-dir", str(afile)])
    assert exc.value.code == 2 and "cannot hold the records folder" in capsys.readouterr().err


def test_hyper_takes_strings_for_task_keys():
    from benchmarks.__main__ import _hyper_pair

    assert _hyper_pair("prior=fanin") == ("prior", "fanin")
    assert _hyper_pair("lr=0.05") == ("lr", 0.05)
    specs = grid.build_grid("mnist", "quick", ["sgld"], overrides={"prior": "fanin", "lr": 0.05})
    assert specs[0].hyper_dict["prior"] == "fanin" and specs[0].variant == "custom"


@pytest.mark.parametrize("edit, problem", [
    (lambda r: r["config"].__setitem__("hyper", None), "config.hyper must be an object"),
    (lambda r: r["config"].__setitem__("hyper", [1, 2]), "config.hyper must be an object"),
    (lambda r: r["config"].__setitem__("profile", None), "config.profile must be a non-empty string"),
    (lambda r: r["config"].__setitem__("sampler", ["a"]), "config.sampler must be a non-empty string"),
    (lambda r: r["config"].__setitem__("seed", "zero"), "config.seed must be an integer"),
    (lambda r: r["config"]["hyper"].__setitem__("temperature", "hot"), "temperature must be a number"),
    (lambda r: r.__setitem__("wall_time_s", "slow"), "wall_time_s must be a number"),
    (lambda r: r["metrics"].__setitem__("kl", "abc"), "metrics must be numbers"),
    (lambda r: r["config"]["hyper"].__setitem__("lr", 0.5), "is not the hash of its configuration"),
])
def test_a_record_of_the_wrong_shape_is_reported_by_path_and_skipped(tmp_path, edit, problem, capsys):
    import json

    from benchmarks import report

    spec = records.RunSpec.make("gauss-corr-2d", "sgld", {"lr": 0.01}, 0, "quick")
    good = records.RunSpec.make("gauss-corr-2d", "sgld", {"lr": 0.02}, 0, "quick")
    for s in (spec, good):
        records.write_record(tmp_path, {"key": s.key, "config": s.config(), "status": "ok", "metrics": {"kl": 0.5},
                                       "wall_time_s": 1.0, "grad_evals": 10})
    path = records.record_path(tmp_path, spec)
    rec = json.loads(path.read_text())
    edit(rec)
    path.write_text(json.dumps(rec))
    with pytest.raises(records.RecordError, match=problem):
        records.read_record(path)
    warnings = []
    assert [r["key"] for r in records.load_records(tmp_path, warn=warnings.append)] == [good.key]
    assert str(path) in warnings[0] and problem.split()[0] in warnings[0]
    assert report.build(tmp_path, columns=COLUMNS, plots=False, log=warnings.append) is not None  # the report goes on
    todo, done = records.pending([spec], tmp_path)
    assert todo == [spec]  # and the run is redone


def test_an_infinite_metric_shows_as_inf_and_ranks_last(tmp_path):
    from benchmarks import report

    for sampler, kl in (("sgd", float("inf")), ("sgld", 0.5), ("sghmc", 0.2)):
        s = records.RunSpec.make("gauss-corr-2d", sampler, {"lr": 0.01}, 0, "quick")
        records.write_record(tmp_path, {"key": s.key, "config": s.config(), "status": "ok",
                                       "metrics": {"kl": kl}, "wall_time_s": 1.0, "grad_evals": 10})
    report.build(tmp_path, columns=COLUMNS, plots=False, log=lambda m: None)
    summary = pd.read_csv(tmp_path / "summary.csv")
    ranks = dict(zip(summary.sampler, summary["rank"]))
    assert ranks == {"sghmc": 1, "sgld": 2, "sgd": 3}
    assert "| inf" in (tmp_path / "leaderboard.md").read_text()


def test_a_diverged_or_missing_task_never_helps_a_row_in_the_summary(tmp_path):
    """A row that diverged on a task ranks last there (all seeds, or only some: '[k/n ok]'); a task
    every row diverged on keeps its column; a row that never ran a task shows '-' there, is not
    ranked on it, and sorts below the rows ranked on more tasks."""
    from benchmarks import report

    def rec(task, sampler, seed, kl, status="ok", variant="tuned"):
        s = records.RunSpec.make(task, sampler, {"lr": 0.01}, seed, "quick", variant)
        r = {"key": s.key, "config": s.config(), "status": status, "wall_time_s": 1.0, "grad_evals": 10,
             "metrics": {"kl": kl} if status == "ok" else {}}
        if status == "diverged":
            r["divergence"] = {"step": 3, "reason": "non-finite"}
        records.write_record(tmp_path, r)

    for seed in (0, 1):
        rec("gauss-corr-2d", "sgld", seed, 0.5)
        rec("gauss-corr-2d", "sghmc", seed, 0.2)
        rec("gauss-corr-2d", "underdamped", seed, None, "diverged")  # would have been the best
        rec("gauss-iso-100", "sgld", seed, 0.3)
        rec("gauss-iso-100", "sghmc", seed, 0.1)
        rec("blr", "sgld", seed, None, "diverged")
        rec("blr", "sghmc", seed, None, "diverged")
    rec("gauss-iso-100", "underdamped", 0, 0.01)  # the best value, but one seed of two diverged
    rec("gauss-iso-100", "underdamped", 1, None, "diverged")
    rec("gauss-corr-2d", "psgld", 0, 0.01, variant="custom")  # a new sampler tried on one task only
    report.build(tmp_path, columns=COLUMNS, plots=False, log=lambda m: None)
    num = pd.read_csv(tmp_path / "summary.csv")
    rank = {(r.sampler, r.task): r.rank for r in num.itertuples()}
    assert rank[("underdamped", "gauss-corr-2d")] == 4 and rank[("psgld [custom]", "gauss-corr-2d")] == 1
    assert rank[("underdamped", "gauss-iso-100")] == 3 and rank[("sghmc", "gauss-iso-100")] == 1
    assert rank[("sgld", "blr")] == rank[("sghmc", "blr")] == 1  # every row diverged: still a column
    assert ("psgld [custom]", "gauss-iso-100") not in rank
    table = (tmp_path / "leaderboard.md").read_text().split("## Summary")[1].split("\n## ")[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "sampler" not in line]
    assert [r.split("|")[1].strip() for r in rows] == ["sghmc", "sgld", "underdamped", "psgld [custom]"]
    under = next(r for r in rows if "underdamped" in r)
    assert "diverged (4)" in under and "[1/2 ok] (3)" in under and "blr" not in under
    custom = next(r for r in rows if "psgld" in r)
    assert "nan" not in custom and "| 1/3 " in custom and "| 0.01 (1)" in custom
    assert "blr: KL" in table


def test_custom_rows_are_ranked_in_the_summary(tmp_path):
    from benchmarks import report

    for sampler, variant, kl in (("sgld", "tuned", 0.5), ("sgld", "custom", 0.1), ("sghmc", "tuned", 0.2)):
        s = records.RunSpec.make("gauss-corr-2d", sampler, {"lr": 0.01 if variant == "tuned" else 0.02}, 0, "quick",
                                variant)
        records.write_record(tmp_path, {"key": s.key, "config": s.config(), "status": "ok",
                                       "metrics": {"kl": kl}, "wall_time_s": 1.0, "grad_evals": 10})
    report.build(tmp_path, columns=COLUMNS, plots=False, log=lambda m: None)
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert dict(zip(summary.sampler, summary["rank"])) == {"sgld [custom]": 1, "sghmc": 2, "sgld": 3}


def test_the_same_configuration_named_twice_runs_once(tmp_path, tiny_profile):
    specs = grid.build_grid("toy", "quick", ["sgld", "sgld"], seeds=1, sweep=False, tasks=["gauss-corr-2d"])
    summary = executors.execute(specs, executors.RunOptions(results_dir=str(tmp_path)), log=lambda m: None)
    assert summary.total == 1 and summary.counts["ok"] == 1


def test_cuda_without_gpu_is_a_clear_error(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(SystemExit) as exc:
        main(["run", "toy", "--device", "cuda"])
    assert exc.value.code == 2
    assert "no CUDA GPU" in capsys.readouterr().err
    assert str(executors.resolve_device("auto")) == "cpu"


def test_user_sampler_as_module_class_joins_the_tables(tmp_path, tiny_profile, monkeypatch):
    (tmp_path / "my_samplers.py").write_text(textwrap.dedent('''
        import math, torch
        from sgmcmc import Sampler

        class NaiveSGLD(Sampler):
            """SGLD written per parameter, the way a user would drop one in."""
            def _update(self, group, params, grads):
                scale = math.sqrt(2 * group["lr"] * group["temperature"] / group["num_data"])
                for p, g in zip(params, grads):
                    p.add_(g, alpha=-group["lr"]).add_(torch.randn_like(p), alpha=scale)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "results"
    assert run_cli("--tasks", "gauss-corr-2d", "--samplers", "sgld,my_samplers:NaiveSGLD", "--no-sweep",
                   "--results-dir", str(out)) == 0
    recs = {r["config"]["sampler"]: r for r in all_records(out)}
    assert recs["my_samplers:NaiveSGLD"]["status"] == "ok"
    # with no config entry of its own, the user's sampler starts from sgld's tuned lr
    assert recs["my_samplers:NaiveSGLD"]["config"]["hyper"] == recs["sgld"]["config"]["hyper"]
    assert "my_samplers:NaiveSGLD" in (out / "leaderboard.md").read_text()


def test_a_user_sampler_with_keyword_only_lr_runs_and_its_defaults_are_recorded(tmp_path, tiny_profile, monkeypatch):
    """The runner passes every hyperparameter by keyword (as torch.optim's optimisers take them),
    and the record's provenance holds the class, its file's digest and every hyperparameter the
    sampler ran with, its own defaults included; the toy task's one torch thread is recorded."""
    (tmp_path / "kw_samplers.py").write_text(textwrap.dedent('''
        import math, torch
        from sgmcmc import Hyper, Sampler

        class KeywordSGLD(Sampler):
            hypers = {"beta": Hyper(0.5, low=0.0, high=1.0)}

            def __init__(self, params, *, lr, num_data, **kw):
                super().__init__(params, lr, num_data=num_data, **kw)

            def _update(self, group, params, grads):
                torch._foreach_add_(params, grads, alpha=-group["lr"])
                std = math.sqrt(2 * group["lr"] * group["temperature"] / group["num_data"])
                torch._foreach_add_(params, self._noise(params), alpha=std)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "results"
    assert run_cli("--tasks", "gauss-corr-2d", "--samplers", "kw_samplers:KeywordSGLD", "--no-sweep",
                   "--results-dir", str(out)) == 0
    (rec,) = all_records(out)
    assert rec["status"] == "ok", rec.get("error")
    prov = rec["provenance"]
    assert prov["sampler"]["class"] == "kw_samplers.KeywordSGLD"
    assert prov["sampler"]["hypers"] == {"beta": 0.5, "lr": rec["config"]["hyper"]["lr"], "temperature": 1.0}
    assert len(prov["sampler"]["file_sha256"]) == 64 and prov["task_threads"] == 1


def test_sweep_runs_each_factor_and_plots(tmp_path, tiny_profile):
    assert run_cli("--tasks", "gauss-corr-2d", "--samplers", "sgld", "--results-dir", str(tmp_path)) == 0
    recs = all_records(tmp_path)
    factors = grid.load_configs()["gauss-corr-2d"]["sweep"]
    assert len(recs) == len(factors)  # the tuned seed-0 run is the sweep's centre point
    lrs = sorted(r["config"]["hyper"]["lr"] for r in recs)
    base = grid.load_configs()["gauss-corr-2d"]["sgld"]["lr"]
    assert lrs == pytest.approx(sorted(base * f for f in factors))
    assert (tmp_path / "sweep_gauss-corr-2d.png").stat().st_size > 1000


def test_report_alone_rebuilds_from_records(tmp_path, tiny_profile):
    assert run_cli("--tasks", "gauss-corr-2d", "--samplers", "sgld,sghmc", "--no-sweep", "--no-report",
                   "--results-dir", str(tmp_path)) == 0
    assert not (tmp_path / "leaderboard.md").exists()
    assert main(["report", "--results-dir", str(tmp_path)]) == 0
    frame = report.records_frame(records.load_records(tmp_path))
    display, long = report.task_table(frame, "gauss-corr-2d", COLUMNS)
    assert list(display.sampler) == ["sgld", "sghmc"]
    summary, numeric = report.summary_table(frame, COLUMNS)
    assert sorted(numeric["rank"]) == [1, 2]


@pytest.mark.slow
def test_jobs_2_gives_the_same_records_as_sequential(tmp_path):
    args = ("--tasks", "gauss-corr-2d", "--samplers", "sgld,psgld", "--no-sweep", "--no-report")
    assert run_cli(*args, "--results-dir", str(tmp_path / "seq")) == 0
    assert run_cli(*args, "--jobs", "2", "--results-dir", str(tmp_path / "par")) == 0
    seq = {r["key"]: r["metrics"] for r in all_records(tmp_path / "seq")}
    par = {r["key"]: r["metrics"] for r in all_records(tmp_path / "par")}
    assert seq.keys() == par.keys() and len(seq) == 2
    for key in seq:
        assert seq[key]["kl"] == par[key]["kl"]
        assert par[key]["ess_per_second"] > 0


def _suite_until_records(tmp_path, n: int, *extra: str, pipe: bool = False):
    """Start ``run toy --profile quick --tasks gauss-corr-2d --no-report`` (plus ``extra``) in a
    subprocess and return (process, its command, the records folder) once ``n`` records exist."""
    cmd = [sys.executable, "-m", "benchmarks", "run", "toy", "--profile", "quick", "--tasks", "gauss-corr-2d",
           *extra, "--no-report", "--results-dir", str(tmp_path)]
    out = subprocess.PIPE if pipe else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=out, text=True)
    folder = tmp_path / "records"
    deadline = time.time() + 180
    while time.time() < deadline and len(list(folder.glob("*.json"))) < n:
        time.sleep(0.05)
    return proc, cmd, folder


@pytest.mark.slow
def test_kill_9_loses_no_finished_record_and_rerun_resumes(tmp_path):
    proc, cmd, folder = _suite_until_records(tmp_path, 2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = list(folder.glob("*.json"))
    assert 2 <= len(done)
    for path in done:
        records.read_record(path)  # every file present is a whole, valid record
    total = len(grid.build_grid("toy", "quick", tasks=["gauss-corr-2d"]))
    assert len(done) < total, "the grid finished before the kill: make it longer"
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert f"{len(done)} already recorded" in out.stdout
    assert len(list(folder.glob("*.json"))) == total
    assert not [p for p in folder.iterdir() if p.suffix != ".json"]


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path):
    proc, _cmd, folder = _suite_until_records(tmp_path, 1, pipe=True)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "resume" in err
    for path in folder.glob("*"):
        assert path.suffix == ".json"
        records.read_record(path)


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_kill_9_of_a_jobs_2_run_takes_its_workers_with_it(tmp_path):
    proc, _cmd, folder = _suite_until_records(tmp_path, 1, "--jobs", "2")
    workers = [c for c in _children(proc.pid) if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text()]
    assert workers, "no worker processes found"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 15
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers), "workers outlived the killed suite"
    for path in folder.iterdir():
        assert path.suffix == ".json"
        records.read_record(path)


@pytest.mark.slow
def test_ctrl_c_of_a_jobs_2_run_counts_every_record_it_leaves(tmp_path):
    proc, _cmd, folder = _suite_until_records(tmp_path, 1, "--jobs", "2", pipe=True)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 130 and "resume" in err
    line = next(l for l in out.splitlines() if "(interrupted)" in l)
    counted = sum(int(w) for w, s in zip(line.split()[:-1], line.split()[1:]) if s.rstrip(",") in records.RECORD_STATUSES)
    assert counted == len(list(folder.glob("*.json"))), (line, err)
    # only the runs in the two workers are waited for, none queued behind them
    waited = [l for l in err.splitlines() if "already started" in l]
    assert not waited or int(waited[0].split("waiting for the ")[1].split()[0]) <= 2, waited


def test_task_wide_config_keys_reach_every_sampler_and_extras_are_labelled():
    cfg = {"prior": "isotropic", "prior_sd": 1.0, "note": "n", "sweep": [0.5, 1.0],
           "sgld": {"lr": 0.1}, "sghmc": {"lr": 0.01, "friction": 0.1},
           "extra": [{"sampler": "sgld", "label": "cold T=0.01", "temperature": 0.01}]}
    assert grid.hyper_for(cfg, "sghmc") == {"prior": "isotropic", "prior_sd": 1.0, "lr": 0.01, "friction": 0.1}
    assert grid.hyper_for(cfg, "pkg:User") == {"prior": "isotropic", "prior_sd": 1.0, "lr": 0.1}
    specs = grid.build_grid("toy", "quick", ["sgld", "sghmc"], seeds=2, configs={"gauss-corr-2d": cfg},
                              tasks=["gauss-corr-2d"])
    variants = [(s.sampler, s.variant, s.seed) for s in specs]
    assert variants.count(("sgld", "cold T=0.01", 0)) == 1 and ("sgld", "cold T=0.01", 1) in variants
    cold = next(s for s in specs if s.variant == "cold T=0.01")
    assert cold.hyper_dict == {"prior": "isotropic", "prior_sd": 1.0, "lr": 0.1, "temperature": 0.01}
    sweep = [s for s in specs if s.variant == "sweep"]
    assert sorted(s.hyper_dict["lr"] for s in sweep) == [0.005, 0.05]  # factor 1 is the tuned run


def test_dask_executor_without_dask_exits_2_naming_the_install(monkeypatch, capsys):
    for mod in ("dask", "dask.distributed", "distributed"):
        monkeypatch.setitem(sys.modules, mod, None)
    with pytest.raises(SystemExit) as exc:
        main(["run", "toy", "--executor", "dask"])
    assert exc.value.code == 2
    assert 'pip install "sgmcmc-bench[dask]"' in capsys.readouterr().err


def test_a_collapsed_sampler_gets_an_infinite_kl_that_survives_its_record(tmp_path, tiny_profile):
    """SGD's chains stop at the mode: the fitted covariance is singular, KL(fit || true) = +inf, which
    the record keeps (as "inf") and the summary ranks last, rather than a missing value."""
    assert run_cli("--tasks", "gauss-diag-1000", "--samplers", "sgd,sgld", "--no-sweep", "--hyper", "lr=0.03",
                   "--no-report", "--results-dir", str(tmp_path)) == 0
    report.build(tmp_path, columns=COLUMNS, plots=False, log=lambda m: None)
    recs = {r["config"]["sampler"]: r for r in records.load_records(tmp_path)}
    assert recs["sgd"]["metrics"]["kl"] == float("inf") and math.isfinite(recs["sgld"]["metrics"]["kl"])
    summary = pd.read_csv(tmp_path / "summary.csv")
    kl = summary[summary.metric == "kl"]
    assert dict(zip(kl.sampler, kl["rank"])) == {"sgld [custom]": 1, "sgd [custom]": 2}


@pytest.mark.slow
def test_a_worker_process_that_dies_leaves_failed_records_that_a_rerun_retries(tmp_path, monkeypatch):
    """A sampler that kills its worker process (a segfault, the OOM killer): with --jobs 2 the parent
    writes a failed record for every run the broken pool could not finish, the exit status is 1, and
    the next invocation reruns exactly those."""
    (tmp_path / "crashing.py").write_text(textwrap.dedent('''
        import os
        from sgmcmc import SGLD

        class Crash(SGLD):
            def _update(self, group, params, grads):
                os._exit(3)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))  # spawned workers get this process's sys.path
    out = tmp_path / "results"
    args = ("--tasks", "gauss-corr-2d", "--samplers", "crashing:Crash", "--no-sweep", "--no-report", "--jobs", "2",
            "--results-dir", str(out))
    assert run_cli(*args) == 1
    recs = all_records(out)
    assert recs and all(r["status"] == "failed" and "worker process died" in r["error"] for r in recs)
    todo, done = records.pending([records.RunSpec.from_config(r["config"]) for r in recs], out)
    assert len(todo) == len(recs) and not done


@pytest.mark.parametrize("env, expected", [
    ({}, {"GOMP_SPINCOUNT": "10000"}),  # the suite's short OpenMP spin-wait (see benchmarks/__init__.py)
    ({"GOMP_SPINCOUNT": "500"}, {"GOMP_SPINCOUNT": "500"}),  # the user's own value wins
    ({"OMP_WAIT_POLICY": "ACTIVE"}, {"OMP_WAIT_POLICY": "ACTIVE"}),  # as does their wait policy
])
def test_the_suite_shortens_openmp_spin_wait_unless_the_user_set_it_and_records_it(tmp_path, env, expected):
    import os

    clean = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    code = textwrap.dedent(f"""
        import json, sys
        from benchmarks.__main__ import main
        try:
            main(["run", "toy", "--tasks", "gauss-corr-2d", "--samplers", "sgld", "--profile", "quick",
                  "--no-sweep", "--results-dir", {str(tmp_path)!r}])
        except SystemExit as exc:
            assert not exc.code, exc.code
    """)
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "records").glob("*.json")]
    assert record["provenance"]["openmp_wait"] == expected


def test_the_suite_leaves_openmp_alone_when_imported_after_torch():
    import os

    # libgomp has read its settings when torch loaded: setting them later would only mislead records
    clean = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    late = subprocess.run([sys.executable, "-c", "import torch, benchmarks, os; print(os.environ.get('GOMP_SPINCOUNT'))"],
                          env=clean, capture_output=True, text=True, timeout=120)
    assert late.stdout.strip() == "None", late.stderr[-2000:]


def test_stale_temporary_files_of_killed_record_writes_are_removed_and_fresh_ones_kept(tmp_path):
    import os

    folder = tmp_path / "records"
    folder.mkdir()
    stale, fresh = folder / ".abc.json.k1x2.tmp", folder / ".def.json.q9z8.tmp"
    stale.write_text("{half a rec")
    fresh.write_text("{being written")
    old = time.time() - records.STALE_TEMP_S - 60
    os.utime(stale, (old, old))
    messages = []
    specs = grid.build_grid("toy", "quick", ["sgld"], seeds=1, sweep=False, tasks=["gauss-corr-2d"])
    summary = executors.execute(specs, executors.RunOptions(results_dir=str(tmp_path)), log=messages.append)
    assert summary.counts["ok"] == 1
    assert not stale.exists() and fresh.exists()  # a write in progress (another suite) is left alone
    assert any("removed 1 temporary file" in m for m in messages)


def test_with_several_jobs_the_costliest_tasks_start_first_and_the_order_is_otherwise_kept():
    from benchmarks.tasks import get_task

    specs = grid.build_grid("all", "full", ["sgld", "sghmc"], seeds=1, sweep=False)
    ordered = grid.longest_first(specs)
    tasks = [s.task for s in ordered]
    assert sorted(ordered, key=lambda s: s.key) == sorted(specs, key=lambda s: s.key)  # the same runs
    costs = [get_task(t).relative_cost for t in tasks]
    assert costs == sorted(costs, reverse=True)  # the costliest first
    assert tasks[0] == "mnist-cnn" and tasks.index("mnist-cnn") < tasks.index("mnist-mlp")
    assert tasks.index("mnist-mlp") < tasks.index("mnist-logreg") < tasks.index("gauss-iso-100")
    for cost in set(costs):  # stable among equals
        assert [s.key for s in ordered if get_task(s.task).relative_cost == cost] == \
            [s.key for s in specs if get_task(s.task).relative_cost == cost]


def test_git_commit_is_dirty_for_edited_code_but_not_for_the_suites_own_results(tmp_path):
    def git(*args):
        subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "results" / "records").mkdir(parents=True)
    (tmp_path / "results" / "records" / "a.json").write_text("{}\n")
    git("add", ".")
    git("commit", "-qm", "init")
    head = records.git_commit(tmp_path)
    assert head and not head.endswith("+dirty")
    (tmp_path / "results" / "records" / "a.json").write_text('{"rerun": 1}\n')
    assert records.git_commit(tmp_path) == head  # a rewritten record is output, not an edit
    (tmp_path / "code.py").write_text("x = 2\n")
    assert records.git_commit(tmp_path) == head + "+dirty"


def test_git_commit_of_a_copy_without_git_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("SGMCMC_GIT_COMMIT", raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # no repository above tmp_path
    assert records.git_commit(tmp_path) is None
    monkeypatch.setenv("SGMCMC_GIT_COMMIT", "abc123")
    assert records.git_commit(tmp_path) == "abc123 (SGMCMC_GIT_COMMIT)"


def test_distinct_custom_overrides_are_ranked_apart_in_the_summary(tmp_path):
    from benchmarks import report

    for lr, kl in ((0.02, 0.1), (0.05, 0.3)):
        for seed in (0, 1):
            s = records.RunSpec.make("gauss-corr-2d", "sgld", {"lr": lr}, seed, "quick", "custom")
            records.write_record(tmp_path, {"key": s.key, "config": s.config(), "status": "ok",
                                           "metrics": {"kl": kl + seed * 0.01}, "wall_time_s": 1.0, "grad_evals": 10})
    report.build(tmp_path, columns=COLUMNS, plots=False, log=lambda m: None)
    summary = pd.read_csv(tmp_path / "summary.csv")
    # two configurations, two rows, each the mean of its own seeds (never 0.2, the mean of both)
    means = dict(zip(summary.sampler, summary.value))
    assert means == pytest.approx({"sgld [custom: lr=0.02]": 0.105, "sgld [custom: lr=0.05]": 0.305})


def test_report_on_a_folder_of_only_corrupt_records_says_they_are_corrupt(tmp_path):
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "0123456789abcdef0123.json").write_text("{bad")
    said: list[str] = []
    assert report.build(tmp_path, columns=COLUMNS, plots=False, log=said.append) is None
    assert "0123456789abcdef0123.json" in said[0] and "(1 corrupt, named above)" in said[-1]


def test_report_says_which_profiles_it_left_out(tmp_path):
    for profile, seed in (("quick", 0), ("quick", 1), ("default", 0)):
        s = records.RunSpec.make("gauss-corr-2d", "sgld", {"lr": 0.01}, seed, profile)
        records.write_record(tmp_path, {"key": s.key, "config": s.config(), "status": "ok",
                                       "metrics": {"kl": 0.1}, "wall_time_s": 1.0, "grad_evals": 10})
    said: list[str] = []
    assert report.build(tmp_path, columns=COLUMNS, plots=False, log=said.append) is not None
    assert any("report of profile 'default'; left out: 2 quick record(s)" in m for m in said), said


def test_report_without_plots_keeps_the_figures_already_drawn_listed(tmp_path):
    s = records.RunSpec.make("gauss-corr-2d", "sgld", {"lr": 0.01}, 0, "default")
    records.write_record(tmp_path, {"key": s.key, "config": s.config(), "status": "ok",
                                   "metrics": {"kl": 0.1}, "wall_time_s": 1.0, "grad_evals": 10})
    (tmp_path / "sweep_gauss-corr-2d.png").write_bytes(b"\x89PNG")
    (tmp_path / "leaderboard.md").write_text("# old\n\n## Figures\n\n![sweep_gauss-corr-2d](sweep_gauss-corr-2d.png)\n"
                                             "![gone](gone.png)\n")
    text = report.build(tmp_path, columns=COLUMNS, plots=False, log=lambda m: None).read_text()
    assert "![sweep_gauss-corr-2d](sweep_gauss-corr-2d.png)" in text and "gone.png" not in text


# --------------------------------------------------------------------------- the sampler lineup
def test_every_builtin_sampler_has_one_lineup_entry_and_no_entry_is_stale():
    """benchmarks/configs/samplers.toml lists the built-ins (those sgmcmc registers itself): a new
    built-in gets its table there, and a table whose sampler is gone is an error."""
    import sgmcmc

    builtins = {n for n in sgmcmc.available() if lineup.is_builtin(n)}
    listed = set(lineup.entries())
    assert builtins == listed, f"built-ins {sorted(builtins)}, samplers.toml lists {sorted(listed)}"
    assert lineup.builtin_samplers()[: len(listed)] == tuple(lineup.entries())  # display order: the file's
    assert "samplers" not in grid.load_configs()  # the lineup is not a task
    assert grid.default_samplers() == lineup.builtin_samplers()


def test_a_sampler_not_in_the_lineup_sorts_last_with_a_colour_of_its_own():
    other = lineup.style("mypkg.mod:Mine")
    assert other == lineup.style("mypkg.mod:Mine") and other["color"] not in {e.color for e in lineup.entries().values()}
    assert lineup.display_rank("mypkg.mod:Mine") == len(lineup.entries()) > lineup.display_rank("sgd")
    assert not lineup.is_builtin("tests.plugin_sampler:Plugin") and lineup.is_builtin("sgld")


def test_list_names_an_entry_point_that_cannot_load_and_goes_on(monkeypatch, capsys):
    """A plug-in registered by entry point whose package is missing (the peers without their extra)
    is listed with why, and the other samplers are still listed."""
    from importlib.metadata import EntryPoint

    from sgmcmc import registry

    ghost = EntryPoint(name="ghost-sampler", value="no_such_package_xyz.samplers:Ghost", group=registry.ENTRY_POINT_GROUP)
    real = registry._entry_points
    monkeypatch.setattr(registry, "_entry_points", lambda: {**real(), "ghost-sampler": ghost})
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "ghost-sampler" in out and "cannot be loaded here" in out and "sgld" in out and "tasks:" in out
