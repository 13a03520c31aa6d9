"""MNIST accuracy and calibration, and MNIST-vs-notMNIST (and Fashion-MNIST) OOD detection.

One run trains (samples) a network on the 50,000 MNIST training images and computes every number
from the same posterior predictive, so the `mnist` and `ood` suites never train twice.

Model: U(theta) = -sum_i log p(y_i | x_i, theta) - log p(theta) with a Gaussian prior on every
weight and bias. The minibatch loss handed to the sampler is the docs/contract.md contract
``L_hat = mean_batch CE + (-log p(theta)) / N``; the prior term's gradient theta / (sigma^2 N) is added
to ``p.grad`` with one in-place add per parameter tensor rather than through autograd. Two priors, recorded in every row:
``prior = "isotropic"``: N(0, prior_sd^2) on every parameter (docs/contract.md's baseline, prior_sd = 1);
``prior = "fanin"``: N(0, prior_sd^2 / fan_in) per layer (a He-style prior: the same scale in
function space whatever the layer width; biases get prior_sd^2).

Protocol (the same for every sampler, SGD included): ``epochs`` of batch-100 steps (a randperm per
epoch), the first ``burn_in_epochs`` discarded, then one kept sample every ``thin`` steps. The
posterior predictive is the running average of the softmax of the kept samples over the MNIST test
set, notMNIST_small and Fashion-MNIST test (samples are never stored). The last kept sample's own
predictions give the ``single_*`` metrics (one network, no averaging). ``evaluate_on =
"validation"`` swaps the MNIST test set for the 10,000 validation images: configs are tuned so.

The cyclical protocol (task ``mnist-mlp-cyclical``; Zhang et al. 2020, "Cyclical stochastic gradient
MCMC for Bayesian deep learning"; the schedule, noise switch and keep plan are :mod:`.cyclical`'s): the
same budget cut into ``cycles`` equal cycles. Within a cycle the step size follows a cosine from ``lr``
down to 0 (``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts``, stepped every iteration). The
first ``explore`` fraction of a cycle is exploration: the sampler runs with temperature 0 (no noise:
its optimiser, e.g. sgld is SGD, sghmc SGD with momentum). The rest is sampling, at the row's
temperature (1 unless a config says otherwise), and a sample is kept every ``thin`` steps of it, the
last at the cycle's end. There is no separate burn-in: every cycle's sampling stage counts. Every
sampler, SGD included, runs the same schedule; its step size ``lr`` is tuned on validation like the
constant protocol's. The task key ``explore`` (``--hyper explore=0``) overrides the exploration
fraction and ``cycles`` (``--hyper cycles=10``) the number of cycles, for ablations and for tuning
the protocol on validation.

On a constant-step task (``mnist-mlp``, ``mnist-cnn``) a row that sets ``cycles = k`` runs the
cyclical protocol instead (:data:`CYCLICAL`'s overrides with ``k`` cycles: no burn-in, a sample every
50 steps of each sampling stage, ``explore`` 0.8 unless the row sets it), within the same epochs:
the leaderboard's ``cyclical`` rows. ``explore`` without ``cycles`` is refused there.

``lr_decay_to`` (default 1: a constant step) decays the step size geometrically over the run, from
``lr`` at the first step to ``lr * lr_decay_to`` at the last (``torch.optim.lr_scheduler.LambdaLR``
stepped every iteration; every kept sample weighs the same in the predictive).

The steps run in the loop every family shares (:class:`.base.SamplingLoop`); :class:`MNISTLoop`
supplies this family's hooks (the minibatch gradient, the cyclical temperature, the weight trace and
the running predictive).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from .. import metrics as M
from ..data import Batches
from ..models import build_model
from . import cyclical as C
from .base import (Diverged, Metric, RunContext, RunResult, SamplingLoop, Task, build_sampler, check_profile, keep_every,
                   sampler_label)

#: ``eval_size``: each evaluation set (MNIST test, notMNIST, Fashion) cut to at most this many images,
#: evenly strided (notMNIST is ordered by letter); None: all of them. quick is a smoke test (every
#: metric and figure in seconds; its records are not published): one epoch, no burn-in, 2,000 images
MNIST_PROFILES = {
    "quick": dict(epochs=1, burn_in_epochs=0, thin=100, batch_size=100, cycles=0, explore=0.0, eval_size=2_000),
    "default": dict(epochs=20, burn_in_epochs=10, thin=100, batch_size=100, cycles=0, explore=0.0),
    "full": dict(epochs=20, burn_in_epochs=10, thin=100, batch_size=100, cycles=0, explore=0.0),
}

#: the cyclical protocol (Zhang et al. 2020, cSG-MCMC): a task variant's overrides of the profile, and a
#: constant-step task's for a row that sets ``cycles`` (with the row's count)
CYCLICAL = dict(cycles=4, explore=C.EXPLORE, burn_in_epochs=0, thin=50)

#: task-level keys a config row may set beside the sampler's hyperparameters
TASK_KEYS = {"prior": "isotropic", "prior_sd": 1.0, "evaluate_on": "test", "lr_decay_to": 1.0, "explore": None,
             "cycles": None}

#: the training-set size of the real data (50,000 of MNIST's 60,000 training images; the rest validate)
TRAIN_SIZE = 50_000

CONFIDENT = 0.9  # the "confidently wrong on letters" threshold of max probability
#: a kept sample whose class probabilities vary less than this (standard deviation over every test and
#: OOD input, largest over the classes) gives every input the same prediction: the network is dead
#: (every unit of a layer off, typically after a step size too large), and the run is ``diverged``
COLLAPSED_STD = 1e-6
#: a kept sample is *saturated* (its weights blown up, e.g. psgld at lr 1e6 on the real data: 88.8 %
#: error, entropy 0 on every input) when its mean predictive entropy over the MNIST evaluation inputs
#: is below SATURATED_ENTROPY nats (every softmax one-hot) AND it calls at least SATURATED_SHARE of them
#: one class: a network that is sure of everything and says (nearly) one digit. The run is
#: ``diverged``. A saturated network that is right (classes spread) is not flagged. No published ``ok``
#: record comes near: their last samples' test error is at most 7.4 % (a share of one class >= 0.5
#: means an error >= 39 %) and their entropy on MNIST at least 0.02 nats.
SATURATED_ENTROPY = 1e-3
SATURATED_SHARE = 0.5

MNIST_METRICS = (
    Metric("error", "test error %", "min", ".2f"),
    Metric("nll", "NLL", "min", ".4f"),
    Metric("ece", "ECE", "min", ".4f"),
    Metric("brier", "Brier", "min", ".4f"),
    Metric("auroc_entropy", "notMNIST AUROC (entropy)", "max", ".3f"),
    Metric("aupr_entropy", "notMNIST AUPR (entropy)", "max", ".3f"),
    Metric("auroc_maxprob", "notMNIST AUROC (max p)", "max", ".3f"),
    Metric("notmnist_confident", f"notMNIST p>{CONFIDENT}", "min", ".3f"),
    Metric("entropy_in", "entropy MNIST", "none", ".3f"),
    Metric("entropy_out", "entropy notMNIST", "max", ".3f"),
    Metric("fashion_auroc_entropy", "Fashion AUROC (entropy)", "max", ".3f"),
    Metric("single_error", "1-sample error %", "min", ".2f"),
    Metric("single_auroc_entropy", "1-sample notMNIST AUROC", "max", ".3f"),
    Metric("train_time_s", "train s", "min", ".1f"),
)


@dataclass
class ImageData:
    """Float images on the run's device, flattened [N, 784] in [0, 1], and labels."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    ood: dict[str, torch.Tensor]  # name -> images; "notmnist" first, then "fashion"
    provenance: dict[str, Any] = field(default_factory=dict)


_DATA_CACHE: dict[tuple, ImageData] = {}


def load_real_data(ctx: RunContext, evaluate_on: str = "test") -> ImageData:
    """MNIST train (50k) and test (or validation, for tuning), notMNIST_small and Fashion-MNIST test."""
    check_task_keys({"evaluate_on": evaluate_on})
    key = (ctx.data_dir, ctx.offline, str(ctx.device), evaluate_on)
    if key not in _DATA_CACHE:
        from .. import data as D

        opts = dict(data_dir=ctx.data_dir, offline=ctx.offline)
        train, test = D.load_mnist("train", **opts), D.load_mnist(evaluate_on, **opts)
        notmnist, fashion = D.load_notmnist(**opts), D.load_fashion_mnist("test", **opts)
        f = lambda d: D.to_float(d.images, ctx.device)  # noqa: E731
        _DATA_CACHE[key] = ImageData(
            train_x=f(train), train_y=train.labels.long().to(ctx.device),
            test_x=f(test), test_y=test.labels.long().to(ctx.device),
            ood={"notmnist": f(notmnist), "fashion": f(fashion)},
            provenance={f"{d.provenance.dataset}/{d.provenance.split}": d.provenance.to_dict()
                        for d in (train, test, notmnist, fashion)},
        )
    return _DATA_CACHE[key]


#: the splits a run on the real data reads: (dataset, split)
REAL_SPLITS = (("mnist", "train"), ("mnist", "test"), ("notmnist", "test"), ("fashion_mnist", "test"))


def check_real_data(ctx: RunContext) -> None:
    """Try every split of :data:`REAL_SPLITS` (each verified once per process: the loader keeps
    what it verified); raise one DataUnavailableError naming all that failed, each dataset once
    with the loader's message and its fix, rather than the first missing one only."""
    from .. import data as D

    failed: dict[str, list[tuple[str, Exception]]] = {}
    for dataset, split in REAL_SPLITS:
        try:
            D.load(dataset, split, data_dir=ctx.data_dir, offline=ctx.offline)
        except D.DataError as exc:
            failed.setdefault(dataset, []).append((split, exc))
    if failed:
        parts = [f"{len(failed)} dataset(s) missing: " + ", ".join(
            f"{dataset} ({', '.join(split for split, _ in errs)})" for dataset, errs in failed.items())]
        parts += [f"[{dataset}] {errs[0][1]}" for dataset, errs in failed.items()]
        raise D.DataUnavailableError("\n".join(parts))


def check_task_keys(opts: dict[str, Any]) -> None:
    """Raise ValueError naming a bad value of a task-wide key and its valid ones."""
    prior, sd = opts.get("prior", "isotropic"), opts.get("prior_sd", 1.0)
    if prior not in ("isotropic", "fanin"):
        raise ValueError(f"prior={prior!r}; valid: isotropic, fanin")
    if isinstance(sd, bool) or not isinstance(sd, (int, float)) or not (0 < sd < math.inf):
        raise ValueError(f"prior_sd={sd!r} is out of range; valid: (0, inf)")
    where = opts.get("evaluate_on", "test")
    if where not in ("test", "validation"):
        raise ValueError(f"evaluate_on={where!r}; valid: test, validation")
    C.check_keys(opts)
    decay_to = opts.get("lr_decay_to", 1.0)
    if isinstance(decay_to, bool) or not isinstance(decay_to, (int, float)) or not 0.0 < decay_to <= 1.0:
        raise ValueError(f"lr_decay_to={decay_to!r} is out of range; valid: (0, 1] (1: a constant step size)")


def _cycle_plan(proto: dict, total: int) -> tuple[int, int]:
    """(steps per cycle, exploration steps per cycle) of a cyclical protocol; (0, 0) for a constant one."""
    return C.plan(proto.get("cycles", 0), proto.get("explore", 0.0), total)


def _prior_precisions(model: torch.nn.Module, prior: str, prior_sd: float) -> list[float]:
    """1 / sigma^2 for every parameter tensor under the named prior."""
    check_task_keys({"prior": prior, "prior_sd": prior_sd})
    out = []
    for p in model.parameters():
        fan_in = p[0].numel() if (prior == "fanin" and p.dim() > 1) else 1
        out.append(fan_in / prior_sd**2)
    return out


class MNISTLoop(SamplingLoop):
    """The MNIST family's hooks of the shared loop (:class:`SamplingLoop`).

    ``gradient``: the minibatch loss ``mean_batch CE + (-log p(theta)) / N`` by autograd for the
    cross-entropy, the prior's gradient theta / (sigma^2 N) added with one op per tensor;
    ``before_step``: the cyclical protocol's temperature switch (0 in a cycle's exploration stage,
    the row's own in its sampling stage); ``after_step``: one traced weight every ``trace_every``
    steps; ``consume``: a kept sample's softmax on every evaluation input (timed apart) added to the
    running posterior predictive ``prob_sum``, its own predictions kept as ``last_probs``; a
    collapsed network raises :class:`Diverged`.
    """

    autograd = True

    def __init__(self, model: torch.nn.Module, params: list[torch.Tensor], precisions: list[float], num_data: int,
                 eval_x: torch.Tensor, sampler, keep: list[bool], ctx: RunContext, desc: str, *,
                 cycle: tuple[int, int] = (0, 0), traced: tuple[torch.Tensor, int, int] | None = None,
                 n_test: int | None = None, **loop_options) -> None:
        super().__init__(sampler, keep, ctx, desc, **loop_options)
        self.model, self.params, self.precisions, self.num_data = model, params, precisions, num_data
        self.shape = (-1, *model.input_shape)
        self.eval_x = eval_x
        self.n_test = len(eval_x) if n_test is None else n_test  # the MNIST inputs come first in eval_x
        self.cycle_len, self.explore_steps = cycle
        self.noise_switch = C.NoiseSwitch(sampler, *cycle) if self.cycle_len else None
        self.traced, self.trace_every, length = traced if traced is not None else (None, 1, 0)
        self.weight_trace = torch.empty(length, device=eval_x.device)
        self.prob_sum = torch.zeros(len(eval_x), 10, dtype=torch.float64, device=eval_x.device)
        self.last_probs: torch.Tensor | None = None

    def gradient(self, t, batch):
        xb, yb = batch
        params = self.params
        for p in params:
            p.grad = None
        loss = F.cross_entropy(self.model(xb.reshape(self.shape)), yb)
        loss.backward()
        grads = [p.grad for p in params]
        for g, p, prec in zip(grads, params, self.precisions):
            g.add_(p.detach(), alpha=prec / self.num_data)  # grad of -log p(theta) / N

    def before_step(self, t):
        if self.noise_switch is not None:
            self.noise_switch(t)

    def after_step(self, t):
        if self.traced is not None and t % self.trace_every == 0:
            self.weight_trace[t // self.trace_every] = self.traced.detach().reshape(-1)[0]

    def consume(self, t):
        with self.eval_watch:
            self.last_probs = probs = MNISTTask._predict(self.model, self.eval_x)
            spread = float(probs.std(0).max())
            if spread < COLLAPSED_STD:
                raise Diverged(t + 1, f"collapsed: the network gives every input the same class "
                                      f"probabilities (largest std over inputs {spread:.1e} < "
                                      f"{COLLAPSED_STD:.0e}): its units are dead, typically "
                                      f"after a step size too large")
            self.check_saturated(t, probs[: self.n_test])
            self.prob_sum += probs

    @staticmethod
    def check_saturated(t: int, probs: torch.Tensor) -> None:
        """Raise :class:`Diverged` if a kept sample's predictions on the MNIST inputs are saturated
        (see :data:`SATURATED_ENTROPY`): entropy ~0 on every input and (nearly) one class."""
        if not len(probs):
            return
        entropy = float(-(probs * probs.clamp_min(1e-30).log()).sum(1).mean())
        share = float(probs.argmax(1).bincount(minlength=probs.shape[1]).max()) / len(probs)
        if entropy < SATURATED_ENTROPY and share >= SATURATED_SHARE:
            raise Diverged(t + 1, f"saturated: the network is certain of every input (mean entropy {entropy:.1e} "
                                  f"< {SATURATED_ENTROPY:.0e} nats) and calls {100 * share:.1f} % of them one class "
                                  f"(>= {100 * SATURATED_SHARE:.0f} %): its weights blew up, typically after a "
                                  f"step size too large")


class MNISTTask(Task):
    """A network on MNIST; accuracy, calibration and OOD detection from one posterior predictive."""

    suite = "mnist"
    metrics = MNIST_METRICS
    task_keys = TASK_KEYS
    #: tuning (benchmarks.tuning): validation NLL on the 10,000 MNIST validation images
    tuning_keys = {"evaluate_on": "validation"}
    tuning_metric = "nll"
    tune_lr_max = 3.0
    summary_keys = ("error", "auroc_entropy")

    def __init__(self, name: str, model: str, profiles: tuple[str, ...], description: str,
                 data: Callable[[RunContext, str], ImageData] = load_real_data, protocol_overrides: dict | None = None,
                 relative_cost: float = 1.0, suite: str = "mnist", in_all: bool = True):
        self.name, self.model, self.profiles, self.description = name, model, profiles, description
        self.suite, self.in_all = suite, in_all
        self.relative_cost = relative_cost
        self.data = data
        self.protocol_overrides = protocol_overrides or {}

    @property
    def cyclical(self) -> bool:
        """Whether the task's own protocol is the cyclical one (``mnist-mlp-cyclical``)."""
        return bool(self.protocol_overrides.get("cycles"))

    def check_task_keys(self, opts: dict[str, Any]) -> None:
        """The module's checks, plus the keys that depend on this task's protocol: ``cycles`` sets the
        cycle count of a cyclical protocol, or switches a constant-step task's row to the cyclical
        protocol (on the real data it must divide every profile's steps); ``explore`` sets the
        exploration fraction (on a constant-step task only beside ``cycles``); ``lr_decay_to``
        cannot reshape a cyclical protocol's step sizes."""
        check_task_keys(opts)
        cycles, explore = opts.get("cycles"), opts.get("explore")
        if explore is not None and cycles is None and not self.cyclical:
            raise ValueError(f"explore={explore!r} applies to the cyclical protocol only, and {self.name} runs a "
                             f"constant step unless the row sets cycles; valid: explore with cycles = an integer "
                             f">= 1 (or no explore)")
        if cycles is not None and self.data is load_real_data:
            steps = {}
            for profile in self.profiles:
                proto = self.protocol(profile)
                steps[profile] = proto["epochs"] * (TRAIN_SIZE // proto["batch_size"])
            C.check_divides(cycles, steps, self.name)
        decay_to = opts.get("lr_decay_to", 1.0)
        if (self.cyclical or cycles is not None) and decay_to != 1.0:
            what = f"the cyclical protocol of {self.name}" if self.cyclical else f"the cyclical protocol (cycles={cycles!r})"
            raise ValueError(f"lr_decay_to={decay_to!r} cannot combine with {what} (its step size already "
                             "follows a cosine within each cycle); valid: 1")

    def check_ready(self, ctx: RunContext) -> None:
        """Load (and cache) every dataset now, so a missing one stops the suite before any run; every
        split that cannot be loaded is named in one message, each dataset with the loader's account
        (each source tried, why it failed) and the command that fixes it."""
        if self.data is load_real_data:
            check_real_data(ctx)
        self.data(ctx, "test")

    def protocol(self, profile: str) -> dict:
        return {**MNIST_PROFILES[check_profile(profile)], **self.protocol_overrides}

    def run(self, sampler_cls: type, hyper: dict, ctx: RunContext) -> RunResult:
        proto = self.protocol(ctx.profile)
        hyper = dict(hyper)
        task_opts = {k: hyper.pop(k, v) for k, v in TASK_KEYS.items()}
        self.check_task_keys(task_opts)
        data = self.data(ctx, task_opts["evaluate_on"])
        ctx.datasets.update({name: dict(prov) for name, prov in data.provenance.items()})
        device = ctx.device
        gen = torch.Generator().manual_seed(ctx.seed)
        model = build_model(self.model).to(device)
        shape = (-1, *model.input_shape)
        params = [p for p in model.parameters()]
        num_data = len(data.train_x)
        precisions = _prior_precisions(model, task_opts["prior"], float(task_opts["prior_sd"]))
        sampler = build_sampler(sampler_cls, params, hyper, num_data)
        decay_to = task_opts["lr_decay_to"]
        if task_opts["cycles"] is not None and not self.cyclical:  # a cyclical row of a constant-step task
            proto = {**proto, **CYCLICAL}
        if task_opts["explore"] is not None:  # an ablation of the cyclical protocol (see the module docstring)
            proto = {**proto, "explore": float(task_opts["explore"])}
        if task_opts["cycles"] is not None:
            proto = {**proto, "cycles": int(task_opts["cycles"])}

        # one weight of the second layer, traced every step for the weight-distribution figure
        traced = params[2] if len(params) > 2 else params[0]
        trace_every = 10
        bs, thin = proto["batch_size"], proto["thin"]
        steps_per_epoch = num_data // bs
        total = proto["epochs"] * steps_per_epoch
        burn_in = proto["burn_in_epochs"] * steps_per_epoch

        test_x, test_y, ood = data.test_x, data.test_y, dict(data.ood)
        if proto.get("eval_size"):  # a smaller evaluation (the quick profile): every k-th image of each set
            cut = lambda x: x[::math.ceil(len(x) / proto["eval_size"])]  # noqa: E731
            test_x, test_y, ood = cut(test_x), cut(test_y), {name: cut(x) for name, x in ood.items()}
        eval_x = torch.cat([test_x, *ood.values()]).reshape(shape)
        sizes = [len(test_x)] + [len(v) for v in ood.values()]
        batches = Batches(data.train_x, data.train_y, bs, generator=gen)
        schedule = None
        cycle_len, explore_steps = _cycle_plan(proto, total)
        if cycle_len:
            schedule = C.cosine_schedule(sampler, cycle_len)
            # a sample every thin steps of each cycle's sampling stage, the last at the cycle's end
            keep = C.keep_plan(total, cycle_len, explore_steps, thin)
        else:
            if decay_to != 1.0:
                rate = math.log(decay_to) / max(total - 1, 1)
                schedule = torch.optim.lr_scheduler.LambdaLR(sampler, lambda t: math.exp(rate * min(t, total - 1)))
            keep = keep_every(total, burn_in, thin)
        loop = MNISTLoop(model, params, precisions, num_data, eval_x, sampler, keep, ctx,
                         f"{self.name} {sampler_label(sampler_cls)}", schedule=schedule,
                         batches=itertools.chain.from_iterable(batches for _epoch in range(proto["epochs"])),
                         progress_every=steps_per_epoch, cycle=(cycle_len, explore_steps),
                         traced=(traced, trace_every, total // trace_every), n_test=len(test_x))
        done = loop.run()
        if done.kept == 0:
            raise ValueError(f"protocol keeps no sample: {proto}")
        predictive = (loop.prob_sum / done.kept).cpu().numpy()
        if not np.isfinite(predictive).all():
            raise Diverged(done.steps, "non-finite predictive probabilities")
        metrics = self.evaluate(predictive, loop.last_probs.double().cpu().numpy(), test_y.cpu().numpy(), sizes,
                                list(ood))
        metrics.update(train_time_s=done.sampling_time_s, eval_time_s=done.eval_time_s, samples=done.kept)
        artifacts = self.artifacts(predictive, test_y.cpu().numpy(), sizes, list(ood),
                                   loop.weight_trace.cpu().numpy(), trace_every)
        return RunResult(metrics=metrics, grad_evals=done.grad_evals, sampling_time_s=done.sampling_time_s,
                         artifacts=artifacts)

    @staticmethod
    @torch.inference_mode()
    def _predict(model: torch.nn.Module, x: torch.Tensor, chunk: int = 10_000) -> torch.Tensor:
        return torch.cat([F.softmax(model(x[i:i + chunk]), dim=1) for i in range(0, len(x), chunk)]).double()

    @staticmethod
    def _split(probs: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
        return np.split(probs, np.cumsum(sizes)[:-1])

    def evaluate(self, predictive, single, labels, sizes, ood_names) -> dict[str, float]:
        out: dict[str, float] = {}
        for prefix, probs in (("", predictive), ("single_", single)):
            test, *oods = self._split(probs, sizes)
            cls = M.classification_metrics(test, labels)
            cls["error"] = 100.0 * (1.0 - cls["accuracy"])
            ood = M.ood_metrics(test, oods[0])
            out.update({prefix + k: float(v) for k, v in {**cls, **ood}.items()})
            for name, probs_out in zip(ood_names[1:], oods[1:]):
                extra = M.ood_metrics(test, probs_out)
                out.update({f"{prefix}{name}_{k}": float(v) for k, v in extra.items() if k != "entropy_in"})
            maxp = M.max_probability(oods[0])
            out[prefix + "notmnist_confident"] = float(np.mean(maxp > CONFIDENT))
            out[prefix + "notmnist_maxprob_mean"] = float(np.mean(maxp))
        return out

    def artifacts(self, predictive, labels, sizes, ood_names, weight_trace, trace_every) -> dict:
        test, *oods = self._split(predictive, sizes)
        bins = np.linspace(0.1, 1.0, 37)
        hist = {name: np.histogram(M.max_probability(p), bins=bins)[0].tolist() for name, p in zip(ood_names, oods)}
        hist["mnist"] = np.histogram(M.max_probability(test), bins=bins)[0].tolist()
        rel = M.reliability_curve(test, labels)
        fpr, tpr = M.roc_curve_ood(test, oods[0])
        grid = np.linspace(0, 1, 101)
        return {
            "maxprob_hist": {"bins": bins.round(4).tolist(), "counts": hist},
            "reliability": {k: np.asarray(v).round(5).tolist() for k, v in rel.items()},
            "roc_notmnist": {"fpr": grid.tolist(), "tpr": np.interp(grid, fpr, tpr).round(5).tolist()},
            "weight_trace": {"every": trace_every, "values": np.asarray(weight_trace, dtype=np.float64).round(6).tolist()},
        }


MNIST_TASKS: tuple[MNISTTask, ...] = (
    MNISTTask("mnist-mlp", "mlp", ("quick", "default", "full"),
              "MLP 784-400-400-10 on MNIST (50k train), batch 100; test accuracy and calibration; "
              "OOD: notMNIST_small and Fashion-MNIST test", relative_cost=20.0),  # ~80 s against ~4 s a toy run
    MNISTTask("mnist-mlp-cyclical", "mlp", ("quick", "default", "full"),
              "the MLP under the cyclical protocol (cSG-MCMC: cosine cycles, 4 unless the config or --hyper "
              "cycles=K says otherwise (the published config: 5), the first 80 % of each without noise, samples "
              "from the last 20 %); same data, budget and evaluation",
              protocol_overrides=CYCLICAL, relative_cost=20.0, suite="cyclical", in_all=False),
    MNISTTask("mnist-cnn", "cnn", ("full",),
              "LeNet-style CNN (conv32-pool-conv64-pool-fc200) on MNIST; same protocol and evaluation",
              relative_cost=200.0),  # ~13 min
)
