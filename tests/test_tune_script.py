"""scripts/tune_mnist.py --then-test: each sampler's lowest-validation-NLL candidate, run on the test
set as the config rows that name it would be (task-wide keys + the candidate, variant "tuned")."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from benchmarks import executors, grid, records
from tests.conftest import load_script


def test_then_test_runs_each_samplers_best_validation_candidate(monkeypatch, capsys):
    mod = load_script("tune_mnist")
    cands = [("sgd", {"lr": 0.1}), ("sgd", {"lr": 0.3}), ("sgd", {"lr": 1.0}),
             ("sghmc", {"lr": 0.01, "friction": 0.1}), ("sghmc", {"lr": 0.03, "friction": 0.1})]
    nll = {0.1: 0.05, 0.3: 0.04, 1.0: 2.3, 0.01: 0.037, 0.03: 0.036}
    specs = [records.RunSpec.make("mnist-cnn", s, {**h, "evaluate_on": "validation"}, 100, "full", "tuning")
             for s, h in cands]
    recs = [{"key": spec.key, "config": spec.config(), "status": "ok", "metrics": {"nll": nll[spec.hyper_dict["lr"]]}}
               for spec in specs]
    recs.append({**recs[2], "status": "diverged", "metrics": {}})  # a failed run is never chosen
    ran = []
    monkeypatch.setattr(executors, "execute", lambda test_specs, opts, jobs, log: (
        ran.append((test_specs, opts)), executors.GridSummary())[1])
    args = SimpleNamespace(task="mnist-cnn", profile="full", then_test="/tmp/x", threads=None, device="cpu", jobs=1)
    assert mod.then_test(args, specs, recs) == 0
    test_specs, opts = ran[0]
    assert opts.results_dir == "/tmp/x"
    chosen = {(s.sampler, s.hyper_dict["lr"]) for s in test_specs}
    assert chosen == {("sgd", 0.3), ("sghmc", 0.03)}
    assert sorted({s.seed for s in test_specs}) == list(range(grid.DEFAULT_SEEDS["full"]))
    # the records are the ones `run mnist --profile full` makes once the config names these candidates
    config_rows = {s.key for s in grid.build_grid("mnist", "full", ["sgd", "sghmc"], tasks=["mnist-cnn"],
                                                    configs={"mnist-cnn": {"prior": "isotropic", "prior_sd": 1.0,
                                                                           "sgd": {"lr": 0.3},
                                                                           "sghmc": {"lr": 0.03, "friction": 0.1}}})}
    assert {s.key for s in test_specs} == config_rows
    out = capsys.readouterr().out
    assert "sghmc: {'friction': 0.1, 'lr': 0.03}, validation NLL 0.0360  (at the edge of its candidates" in out
    assert "sgd: {'lr': 0.3}, validation NLL 0.0400\n" in out  # bracketed by 0.1 and 1.0


@pytest.mark.parametrize("script, argv, message", [
    ("tune_mnist", ["--task", "gauss-corr-2d"], "is not an MNIST task"),
    ("tune_mnist", ["--task", "nosuch"], "unknown task 'nosuch'"),
    ("tune_mnist", ["--profile", "bogus"], "--profile 'bogus' is not one of mnist-mlp's; valid: quick, default, full"),
    ("tune_mnist", ["--only", "nosuch"], "unknown or no sampler(s) nosuch; valid: psgld, sgd"),
    ("tune_mnist", ["--jobs", "0"], "each must be an integer >= 1"),
    ("tune_mnist", ["--threads", "-3"], "each must be an integer >= 1"),
    ("tune_toy", ["--task", "mnist-mlp"], "is not a toy task"),
    ("tune_toy", ["--task", "mixture-2d", "--only", "nosuch"], "unknown sampler 'nosuch'"),
    ("tune_toy", ["--task", "mixture-2d", "--lrs", "-1"], "every step size must be a finite number > 0"),
    ("tune_toy", ["--task", "mixture-2d", "--profile", "bogus"], "--profile 'bogus' is not one of mixture-2d's"),
    ("tune_toy", ["--task", "mixture-2d", "--jobs", "0"], "--jobs=0"),
])
def test_bad_arguments_exit_2_before_any_run(script, argv, message, monkeypatch, capsys, tmp_path):
    mod = load_script(script)
    monkeypatch.setattr(executors, "execute", lambda *a, **k: pytest.fail("a run started"))
    with pytest.raises(SystemExit) as exc:
        mod.main([*argv, "--results-dir", str(tmp_path)])
    assert exc.value.code == 2 and message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
