"""The leaderboard's cyclical rows: a constant-step task (mnist-mlp, mnist-logreg, digits-mlp) runs
the cyclical protocol (benchmarks/tasks/cyclical.py) for a row that sets ``cycles``; the constant
rows stay as they were."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import sgmcmc
from benchmarks.grid import build_grid, load_configs
from benchmarks.records import RunSpec
from benchmarks.tasks import get_task
from benchmarks.tasks import mnist as mnist_task
from benchmarks.tasks import reference as R
from benchmarks.tasks.base import RunContext
from tests.test_mnist_task import tiny_task

RESULTS = Path(__file__).resolve().parent.parent / "results"

#: the cyclical rows of the configs: task -> sampler -> the row's own keys
CYCLICAL_ROWS = {
    "mnist-mlp": {"sgld": {"cycles": 5, "lr": 0.5}, "sghmc": {"cycles": 5, "lr": 0.1, "friction": 0.1}},
    "mnist-logreg": {"sgld": {"cycles": 5, "lr": 3.0}, "sghmc": {"cycles": 5, "lr": 0.3, "friction": 0.1}},
    "digits-mlp": {"sgld": {"cycles": 5, "lr": 0.3}, "sghmc": {"cycles": 5, "lr": 0.03, "friction": 0.1}},
}
SUITE = {"mnist-mlp": "mnist", "mnist-logreg": "reference", "digits-mlp": "reference"}


def spy(name: str) -> type:
    """The sampler ``name``, logging for every step its step size, temperature, the Gaussian draws
    it made, and how far the step was from the plain gradient step theta - lr g."""
    base = sgmcmc.get(name)

    class Spy(base):
        log: list[dict] = []

        def step(self, closure=None):
            group = self.param_groups[0]
            params = list(group["params"])
            before = [p.detach().clone() for p in params]
            grads = [p.grad.detach().clone() for p in params]
            self.draws = 0
            out = super().step(closure)
            off = max(float((p.detach() - (b - group["lr"] * g)).abs().max()) for p, b, g in zip(params, before, grads))
            type(self).log.append({"lr": group["lr"], "temperature": group["temperature"], "draws": self.draws,
                                   "off_gradient_step": off})
            return out

        def _noise(self, params, std=1.0):
            self.draws += 1
            return super()._noise(params, std)

    Spy.log = []
    return Spy


def consumed(monkeypatch, loop_cls: type) -> list[int]:
    """The steps after which ``loop_cls`` folds a kept sample in (filled as the run goes)."""
    steps: list[int] = []
    original = loop_cls.consume

    def record(self, t):
        steps.append(t)
        return original(self, t)

    monkeypatch.setattr(loop_cls, "consume", record)
    return steps


def check_cycles(log: list[dict], kept: list[int], lr: float, cycle_len: int, explore_steps: int, thin: int,
                 temperature: float = 1.0, off_gradient: bool = True) -> None:
    """Every step's size on the cosine, T = 0 and no noise while exploring, samples only from the sampling stage."""
    for t, step in enumerate(log):
        pos = t % cycle_len
        assert step["lr"] == pytest.approx(lr * (1 + np.cos(np.pi * pos / cycle_len)) / 2, rel=1e-9, abs=1e-12), t
        exploring = pos < explore_steps
        assert step["temperature"] == (0.0 if exploring else temperature), t
        assert (step["draws"] == 0) == exploring, t  # a Gaussian draw exactly in the sampling steps
        if off_gradient:  # sgld: exploring, the step is the gradient step exactly; sampling, noise moves it
            assert (step["off_gradient_step"] < 1e-6) == exploring, (t, step)
    expected = [t for t in range(len(log)) if t % cycle_len >= explore_steps
                and (cycle_len - 1 - t % cycle_len) % thin == 0]
    assert kept == expected
    assert all(t % cycle_len >= explore_steps for t in kept) and kept[-1] == len(log) - 1


# ------------------------------------------------------------------------------------ the grid


@pytest.mark.parametrize("task", sorted(CYCLICAL_ROWS))
def test_the_grid_holds_the_labelled_cyclical_rows(task):
    for profile in ("quick", "default", "full"):  # 5 cycles divide every profile's steps
        specs = build_grid(SUITE[task], profile, samplers=["sgld", "sghmc"], seeds=2, sweep=False, tasks=[task])
        cyclical = [s for s in specs if s.variant == "cyclical"]
        assert sorted((s.sampler, s.seed) for s in cyclical) == [("sghmc", 0), ("sghmc", 1), ("sgld", 0), ("sgld", 1)]
        tuned = {s.sampler: s.hyper_dict for s in specs if s.variant == "tuned"}
        for spec in cyclical:
            hyper, own = spec.hyper_dict, CYCLICAL_ROWS[task][spec.sampler]
            assert {k: hyper[k] for k in own} == own
            # the rest is the constant row's (the task-wide keys, e.g. the prior)
            assert {k: v for k, v in hyper.items() if k not in own} == {k: v for k, v in tuned[spec.sampler].items()
                                                                      if k not in own}
        assert all("cycles" not in h and "explore" not in h for h in tuned.values())


def test_the_constant_rows_keep_their_record_keys():
    """A constant row's spec holds its config entry and nothing else (no cycles / explore, no
    defaults), so its record key is the one it had; the cyclical study's specs are still those its
    published records were made from."""
    configs = load_configs()
    for task in CYCLICAL_ROWS:
        cfg = configs[task]
        task_wide = {k: v for k, v in cfg.items() if not isinstance(v, (dict, list))}
        for spec in build_grid(SUITE[task], "default", samplers=["sgld", "sghmc"], sweep=False, tasks=[task]):
            if spec.variant == "tuned":
                entry = {k: v for k, v in cfg[spec.sampler].items() if k != "tuning"}
                assert spec == RunSpec.make(task, spec.sampler, {**task_wide, **entry}, spec.seed, "default")
    assert RunSpec.make("mnist-mlp", "sgld", {"prior": "isotropic", "prior_sd": 1.0, "lr": 0.3}, 0,
                        "default").key == "8eeaf7ba292b038e6fe4"  # a published record's
    study = build_grid("cyclical", "default", samplers=["sgd", "sgld", "psgld", "sghmc", "underdamped"], sweep=False)
    assert len(study) == 15
    for spec in study:
        assert (RESULTS / "studies" / "cyclical" / "records" / f"{spec.key}.json").is_file(), spec.label()


def test_the_constant_trajectories_do_not_change():
    """Numbers made by the code before the task keys ``cycles`` / ``explore`` reached these tasks (to 1e-6:
    the thread count and the CPU's vector units move the last digits)."""
    torch.manual_seed(0)
    run = tiny_task().run(sgmcmc.get("sgld"), {"lr": 0.05}, RunContext(seed=0, profile="quick"))
    trace = run.artifacts["weight_trace"]["values"]
    assert run.metrics["nll"] == pytest.approx(0.09467727142366954, rel=1e-6)
    assert (sum(trace), trace[-1]) == (pytest.approx(-0.46429800000000004, rel=1e-5), pytest.approx(0.020819, abs=2e-6))
    torch.manual_seed(0)
    run = tiny_task().run(sgmcmc.get("sghmc"), {"lr": 0.01, "friction": 0.1}, RunContext(seed=0, profile="quick"))
    assert run.metrics["nll"] == pytest.approx(0.060282719982570517, rel=1e-6)
    torch.manual_seed(0)
    run = get_task("digits-mlp").run(sgmcmc.get("sgld"), {"lr": 1.0, "evaluate_on": "validation"},
                                     RunContext(seed=0, profile="quick"))
    assert run.metrics["nll"] == pytest.approx(0.1766483714512042, rel=1e-6) and run.metrics["samples"] == 40


# ------------------------------------------------------------------- a cyclical row, run


def test_a_cyclical_row_of_a_constant_mnist_task(monkeypatch):
    # 10 epochs of 20 steps; cycles = 2: 2 cycles of 100 steps, the study's thinning (50) and
    # exploration (0.8 unless the row says otherwise)
    task = tiny_task(epochs=10)
    kept = consumed(monkeypatch, mnist_task.MNISTLoop)
    cls = spy("sgld")
    torch.manual_seed(0)
    result = task.run(cls, {"lr": 0.05, "cycles": 2}, RunContext(seed=0, profile="quick"))
    assert len(cls.log) == 200 and result.grad_evals == 200
    check_cycles(cls.log, kept, 0.05, 100, 80, 50)
    assert kept == [99, 199] and result.metrics["samples"] == 2
    # explore = 0.2: 20 noiseless steps a cycle, samples after positions 49 and 99
    kept.clear()
    cls = spy("sgld")
    result = task.run(cls, {"lr": 0.05, "cycles": 2, "explore": 0.2, "temperature": 0.5},
                      RunContext(seed=0, profile="quick"))
    check_cycles(cls.log, kept, 0.05, 100, 20, 50, temperature=0.5)
    assert kept == [49, 99, 149, 199] and result.metrics["samples"] == 4


def test_a_cyclical_row_is_the_cyclical_tasks_run():
    """``cycles = k`` on a constant-step task runs the cyclical task's protocol: the same numbers."""
    row = tiny_task(epochs=10)
    study = tiny_task(epochs=10, **{**mnist_task.CYCLICAL, "cycles": 2})
    runs = []
    for task, hyper in ((row, {"lr": 0.05, "cycles": 2}), (study, {"lr": 0.05})):
        torch.manual_seed(0)
        runs.append(task.run(sgmcmc.get("sgld"), hyper, RunContext(seed=0, profile="quick")))
    assert runs[0].metrics == {**runs[1].metrics, "train_time_s": runs[0].metrics["train_time_s"],
                               "eval_time_s": runs[0].metrics["eval_time_s"]}
    assert json.dumps(runs[0].artifacts, sort_keys=True) == json.dumps(runs[1].artifacts, sort_keys=True)  # NaN too


@pytest.mark.parametrize("sampler,lr", [("sgld", 0.3), ("sghmc", 0.03)])
def test_a_cyclical_row_of_a_reference_task(monkeypatch, sampler, lr):
    # digits-mlp, quick: 500 steps; 5 cycles of 100, 80 noiseless, a sample every 10 steps of the rest
    kept = consumed(monkeypatch, R.ReferenceLoop)
    cls = spy(sampler)
    hyper = {"lr": lr, "cycles": 5, "evaluate_on": "validation", **({"friction": 0.1} if sampler == "sghmc" else {})}
    result = get_task("digits-mlp").run(cls, hyper, RunContext(seed=0, profile="quick"))
    assert len(cls.log) == 500 and result.grad_evals == 500
    check_cycles(cls.log, kept, lr, 100, 80, R.THIN, off_gradient=sampler == "sgld")
    assert result.metrics["samples"] == 5 * 2 and result.metrics["accuracy"] > 0.5
    kept.clear()
    cls = spy(sampler)
    result = get_task("digits-mlp").run(cls, {**hyper, "explore": 0.5}, RunContext(seed=0, profile="quick"))
    check_cycles(cls.log, kept, lr, 100, 50, R.THIN, off_gradient=sampler == "sgld")
    assert result.metrics["samples"] == 5 * 5


# ---------------------------------------------------------------------------- bad values


BAD = [
    ({"cycles": 0}, r"cycles=0 is out of range; valid: an integer >= 1"),
    ({"cycles": 2.5}, r"cycles=2.5 is out of range; valid: an integer >= 1"),
    ({"cycles": True}, r"cycles=True is out of range; valid: an integer >= 1"),
    ({"cycles": "5"}, r"cycles='5' is out of range; valid: an integer >= 1"),
    ({"cycles": 3}, r"cycles=3 does not divide the 500 steps of {task}'s quick profile; valid: a divisor of 500"),
    ({"cycles": 5, "explore": 1.0}, r"explore=1.0 is out of range; valid: \[0, 1\)"),
    ({"cycles": 5, "explore": -0.1}, r"explore=-0.1 is out of range; valid: \[0, 1\)"),
    ({"explore": 0.5}, r"explore=0.5 applies to the cyclical protocol only, and {task} runs a constant step "
                       r"unless the row sets cycles; valid: explore with cycles"),
]


@pytest.mark.parametrize("task", ["mnist-mlp", "mnist-logreg", "digits-mlp"])
@pytest.mark.parametrize("opts,message", BAD)
def test_a_bad_cycles_or_explore_is_named_with_its_valid_range(task, opts, message):
    with pytest.raises(ValueError, match=message.format(task=task)):
        get_task(task).check_task_keys(opts)


@pytest.mark.parametrize("task", ["mnist-mlp", "mnist-logreg", "digits-mlp"])
def test_good_cycles_and_explore_pass(task):
    for opts in ({"cycles": 5}, {"cycles": 10.0, "explore": 0}, {"cycles": 4, "explore": 0.5}):
        get_task(task).check_task_keys(opts)


def test_what_cycles_cannot_combine_with():
    with pytest.raises(ValueError, match=r"lr_decay_to=0.1 cannot combine with the cyclical protocol \(cycles=5\)"):
        get_task("mnist-mlp").check_task_keys({"cycles": 5, "lr_decay_to": 0.1})
    with pytest.raises(ValueError, match=r"gradient='cv' runs with a constant step on mnist-logreg; valid with it: "
                                         r"no cycles \(cycles=5 given\)"):
        get_task("mnist-logreg").check_task_keys({"cycles": 5, "gradient": "cv"})
    get_task("mnist-logreg").check_task_keys({"gradient": "cv"})
    with pytest.raises(ValueError, match="cycles=7 does not divide the run's 60 steps"):  # checked at run time too
        tiny_task().run(sgmcmc.get("sgld"), {"lr": 0.05, "cycles": 7}, RunContext(seed=0, profile="quick"))


def test_bad_values_stop_the_grid_before_any_run():
    with pytest.raises(ValueError, match=r"--hyper on digits-mlp: cycles=3 does not divide the 500 steps"):
        build_grid("reference", "quick", samplers=["sgld"], overrides={"cycles": 3}, tasks=["digits-mlp"])
    configs = load_configs()
    configs["digits-mlp"] = {**configs["digits-mlp"],
                             "extra": [{"sampler": "sgld", "label": "cyclical", "cycles": 5, "explore": 1.5}]}
    with pytest.raises(ValueError, match=r"\[digits-mlp\] sgld: explore=1.5 is out of range; valid: \[0, 1\)"):
        build_grid("reference", "quick", samplers=["sgld"], configs=configs, tasks=["digits-mlp"])
