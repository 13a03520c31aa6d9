"""Reference posteriors on real data: each sampler scored against a shipped HMC reference.

Two tasks (suite ``reference``; the problems are defined in :mod:`.reference_data`):

- ``mnist-logreg``: Bayesian multinomial logistic regression on 30 whitened principal components
  of 10,000 MNIST training images (310 parameters, a log-concave posterior). Scored in function
  space (total variation and agreement with HMC's predictive on the 10,000 test images) and in
  parameter space (each parameter's mean error in reference sds, and its sd ratio).
- ``digits-mlp``: a 64-16-10 tanh MLP on scikit-learn's 8 x 8 digits (1,210 parameters, a
  multimodal posterior): function space only, as Izmailov et al. (2021) compare.

Protocol (the same for every sampler; ``default`` profile): 10,000 minibatch gradients (batch 100
of the 10,000 logreg points, 100 epochs; batch 50 of the 1,000 digits, 500 epochs), the first 20 %
burn-in, then a sample every 10 steps (800 samples) folded into a running posterior predictive
(and, for the logistic regression, running parameter moments). T = 1 always: the reference is the
Bayesian posterior. Step sizes are chosen on the validation split by NLL (``evaluate_on =
"validation"``), never on the reference metrics; then the test split is scored.

Task-wide key ``gradient``: ``"minibatch"`` (the default) or ``"cv"``, control variates
(:class:`sgmcmc.ControlVariates`; Baker et al. 2019): grad_hat(theta) = g_B(theta) - g_B(theta_hat) +
g_full(theta_hat). The budget stays the same number of batch gradients, split as (all counted in
the record's ``grad_evals``): 10 % of it on SGD from the run's initial point (the task's tuned sgd
lr, :data:`CENTRE_LR`), theta_hat = the average of SGD's second half; the full gradient at theta_hat,
one pass over the training data (N / batch = 100 batch gradients); the rest on sampler steps of two
batch gradients each (the same batch at theta and at theta_hat), starting at theta_hat, with the same
20 % burn-in and thinning by 10. Default profile on mnist-logreg: 1,000 + 100 + 2 x 4,450 of 10,000.

Task-wide keys ``cycles`` and ``explore``: the cyclical protocol (Zhang et al. 2020; :mod:`.cyclical`,
the same as the MNIST tasks'), per row. ``cycles = k`` cuts the same budget into k equal cycles; within
each the step size follows a cosine from ``lr`` down to 0, the first ``explore`` fraction (default
0.8) runs at temperature 0 (no noise), and the rest samples at T = 1, keeping a sample every 10
steps (the task's thinning), the last at the cycle's end; no separate burn-in. ``cycles`` must divide
every profile's steps, ``explore`` needs ``cycles``, and neither combines with ``gradient = "cv"``
(control variates take a constant step). Default profile, 5 cycles: 5 x 40 = 200 samples.

The reference (``benchmarks/references/<task>.npz``, computed by ``scripts/make_reference.py``
with NumPyro's NUTS) is checked against the sha256 in its JSON provenance when it loads; the
JSON also holds HMC's own chain-against-chain agreement and TV: the ceiling any sampler can reach.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .. import metrics as M
from ..data import Batches
from . import cyclical as C
from . import reference_data as RD
from .base import (Diverged, Metric, RunContext, RunResult, SamplingLoop, Task, build_sampler, check_profile,
                   keep_every, sampler_label)

REFERENCE_DIR = Path(__file__).resolve().parents[1] / "references"

#: per task: batch size and the epochs of each profile (the same number of gradients everywhere)
PROTOCOLS = {
    "mnist-logreg": {"batch_size": 100, "epochs": {"quick": 5, "default": 100, "full": 300}},
    "digits-mlp": {"batch_size": 50, "epochs": {"quick": 25, "default": 500, "full": 1500}},
}
BURN_IN_FRACTION = 0.2
THIN = 10
TASK_KEYS = {"evaluate_on": "test", "gradient": "minibatch", "cycles": None, "explore": None}
#: the training-set size of each task (its steps per epoch: this over the batch size)
TRAIN_SIZES = {"mnist-logreg": RD.LOGREG_TRAIN, "digits-mlp": RD.DIGITS_SPLIT[0]}
#: the gradient estimators (task-wide key ``gradient``): plain minibatch gradients, or control variates
GRADIENTS = ("minibatch", "cv")
#: with gradient = "cv": the share of the budget spent on SGD to the centre, and SGD's step per task
#: (each task's tuned sgd lr, benchmarks/configs/reference.toml)
CENTRE_SHARE = 0.1
CENTRE_LR = {"mnist-logreg": 3.0, "digits-mlp": 1.0}


class ReferenceError(RuntimeError):
    """The shipped reference is missing or does not match its recorded digest."""


@lru_cache(maxsize=None)
def load_reference(name: str, directory: str | None = None) -> tuple[dict, dict]:
    """(arrays, provenance) of the shipped reference of task ``name``, its sha256 checked."""
    folder = Path(directory) if directory else REFERENCE_DIR
    npz, meta_path = folder / f"{name}.npz", folder / f"{name}.json"
    if not npz.is_file() or not meta_path.is_file():
        raise ReferenceError(f"no reference for {name} in {folder} (expected {npz.name} and {meta_path.name}); "
                             f"compute it with: python scripts/make_reference.py {name}")
    meta = json.loads(meta_path.read_text())
    data = npz.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != meta.get("npz_sha256"):
        raise ReferenceError(f"{npz}: sha256 {digest} does not match {meta_path.name}'s {meta.get('npz_sha256')}; "
                             f"restore it (git checkout -- {npz}) or recompute it with scripts/make_reference.py")
    with np.load(npz) as f:
        arrays = {k: f[k] for k in f.files}
    return arrays, meta


@lru_cache(maxsize=2)
def _problem(name: str, data_dir: str | None, offline: bool | None) -> RD.Problem:
    return RD.load_problem(name, data_dir, offline)


def minibatch_loss(name: str, params: list[torch.Tensor], num_data: int, batch: Any) -> torch.Tensor:
    """L_hat = mean cross-entropy over the batch + |theta|^2 / (2 N sd^2)."""
    x, y = batch
    prior = sum((p * p).sum() for p in params) / (2.0 * num_data * RD.PRIOR_SD**2)
    return F.cross_entropy(RD.logits(name, params, x), y) + prior


def find_centre(name: str, params: list[torch.Tensor], num_data: int, stream, steps: int, lr: float) -> None:
    """``steps`` steps of SGD (step ``lr`` on L) on batches from ``stream``; the parameters end at the
    average of the second half's iterates (Polyak-Ruppert averaging)."""
    start = steps // 2
    avg = [torch.zeros_like(p) for p in params]
    for t in range(steps):
        grads = torch.autograd.grad(minibatch_loss(name, params, num_data, next(stream)), params)
        with torch.no_grad():
            for p, g, a in zip(params, grads, avg):
                p.sub_(g, alpha=lr)
                if t >= start:
                    a.add_(p)
    with torch.no_grad():
        for p, a in zip(params, avg):
            p.copy_(a / max(steps - start, 1))


class ReferenceLoop(SamplingLoop):
    """Minibatch gradients of L_hat = mean cross-entropy + |theta|^2 / (2 N sd^2); each kept
    sample adds its class probabilities on the evaluation inputs (and its parameters' moments)."""

    autograd = True

    def __init__(self, name: str, params: list[torch.Tensor], num_data: int, eval_x: torch.Tensor, *args, **kw):
        super().__init__(*args, **kw)
        self.name, self.params, self.num_data, self.eval_x = name, params, num_data, eval_x
        self.prob_sum = torch.zeros(eval_x.shape[0], RD.NUM_CLASSES, dtype=torch.float64)
        numel = sum(p.numel() for p in params)
        self.moment1 = torch.zeros(numel, dtype=torch.float64)
        self.moment2 = torch.zeros(numel, dtype=torch.float64)

    #: a :class:`sgmcmc.ControlVariates` with its centre set (gradient = "cv"), or None
    control_variates = None
    #: the cyclical protocol's temperature switch (:class:`.cyclical.NoiseSwitch`), or None
    noise_switch = None

    def before_step(self, t: int) -> None:
        if self.noise_switch is not None:
            self.noise_switch(t)

    def gradient(self, t: int, batch: Any) -> None:
        if self.control_variates is not None:
            self.control_variates.backward(batch)
            return
        for p in self.params:
            p.grad = None
        minibatch_loss(self.name, self.params, self.num_data, batch).backward()

    def consume(self, t: int) -> None:
        with torch.no_grad():
            probs = torch.softmax(RD.logits(self.name, self.params, self.eval_x), dim=1).double()
            if not torch.isfinite(probs).all():
                raise Diverged(t + 1, "non-finite class probabilities")
            self.prob_sum += probs
            flat = torch.cat([p.reshape(-1) for p in self.params]).double()
            self.moment1 += flat
            self.moment2 += flat * flat


class ReferenceTask(Task):
    suite = "reference"
    task_keys = TASK_KEYS
    sweep_keys = ("tv", "agreement", "nll")
    relative_cost = 8.0
    #: tuning (benchmarks.tuning): NLL on the validation split, never the test points the
    #: reference scores
    tuning_keys = {"evaluate_on": "validation"}
    tuning_metric = "nll"
    tune_lr_max = 10.0

    def __init__(self, name: str, description: str, metrics: tuple[Metric, ...]):
        self.name, self._description, self.metrics = name, description, metrics
        self.summary_keys = ("tv",)

    @property
    def description(self) -> str:
        try:
            meta = load_reference(self.name)[1]
        except ReferenceError:
            return self._description
        cc = meta["chain_against_chain"]
        return (f"{self._description} HMC reference: NumPyro NUTS, {meta['settings']['chains']} chains x "
                f"{meta['settings']['draws']} draws; HMC chain against the other chains (the ceiling): "
                f"TV {cc['tv_mean']:.4f}, agreement {cc['agreement_mean']:.4f}.")

    def protocol(self, profile: str) -> dict:
        proto = PROTOCOLS[self.name]
        epochs = proto["epochs"][check_profile(profile)]
        return {"batch_size": proto["batch_size"], "epochs": epochs, "burn_in_fraction": BURN_IN_FRACTION, "thin": THIN}

    def check_task_keys(self, opts: dict[str, Any]) -> None:
        where = opts.get("evaluate_on", "test")
        if where not in ("test", "validation"):
            raise ValueError(f"evaluate_on={where!r}; valid: test, validation")
        gradient = opts.get("gradient", "minibatch")
        if gradient not in GRADIENTS:
            raise ValueError(f"gradient={gradient!r} is not a gradient estimator of {self.name}; valid: "
                             f"{', '.join(GRADIENTS)}")
        C.check_keys(opts)
        cycles, explore = opts.get("cycles"), opts.get("explore")
        if explore is not None and cycles is None:
            raise ValueError(f"explore={explore!r} applies to the cyclical protocol only, and {self.name} runs a "
                             "constant step unless the row sets cycles; valid: explore with cycles = an integer "
                             ">= 1 (or no explore)")
        if cycles is not None and gradient == "cv":
            raise ValueError(f"gradient='cv' runs with a constant step on {self.name}; valid with it: no cycles "
                             f"(cycles={cycles!r} given)")
        C.check_divides(cycles, {profile: self.steps(profile) for profile in self.profiles}, self.name)

    def steps(self, profile: str) -> int:
        """The sampler steps of a plain (minibatch) run under ``profile``."""
        proto = self.protocol(profile)
        return proto["epochs"] * (TRAIN_SIZES[self.name] // proto["batch_size"])

    def check_ready(self, ctx: RunContext) -> None:
        load_reference(self.name)
        if self.name == "mnist-logreg":
            from .. import data as D

            for split in ("train", "validation", "test"):
                D.load_mnist(split, data_dir=ctx.data_dir, offline=ctx.offline)

    def run(self, sampler_cls: type, hyper: dict, ctx: RunContext) -> RunResult:
        hyper = dict(hyper)
        opts = {k: hyper.pop(k, v) for k, v in TASK_KEYS.items()}
        self.check_task_keys(opts)
        if hyper.get("temperature", 1.0) != 1.0:
            raise ValueError(f"{self.name} scores the T = 1 posterior; temperature={hyper['temperature']} is not allowed")
        proto = self.protocol(ctx.profile)
        problem = _problem(self.name, ctx.data_dir, ctx.offline)
        ctx.datasets.update({k: {"sha256": v} for k, v in problem.datasets.items()})
        validation = opts["evaluate_on"] == "validation"
        eval_x, eval_y = (problem.x_valid, problem.y_valid) if validation else (problem.x_test, problem.y_test)
        device = ctx.device
        x = torch.from_numpy(problem.x_train).to(device)
        y = torch.from_numpy(problem.y_train).to(device)
        gen = torch.Generator().manual_seed(ctx.seed)
        # the initial point: N(0, 0.1^2) from the run's seed (torch's default linear init would
        # tie the task to a model class)
        theta0 = 0.1 * torch.randn(problem.num_params, generator=gen, dtype=torch.float32)
        params = [p.clone().to(device).requires_grad_(True) for p in RD.unflatten(self.name, theta0, x.shape[1])]
        num_data = x.shape[0]
        sampler = build_sampler(sampler_cls, params, hyper, num_data)
        bs = proto["batch_size"]
        steps_per_epoch = num_data // bs
        total = proto["epochs"] * steps_per_epoch
        keep = keep_every(total, int(BURN_IN_FRACTION * total), THIN)
        schedule = switch = None
        if opts["cycles"] is not None:  # the cyclical protocol: no burn-in, samples from each sampling stage
            explore = C.EXPLORE if opts["explore"] is None else float(opts["explore"])
            cycle_len, explore_steps = C.plan(int(opts["cycles"]), explore, total)
            schedule = C.cosine_schedule(sampler, cycle_len)
            switch = C.NoiseSwitch(sampler, cycle_len, explore_steps)
            keep = C.keep_plan(total, cycle_len, explore_steps, THIN)
        batches = Batches(x, y, bs, generator=gen)
        stream = (b for _ in range(proto["epochs"]) for b in batches)
        cv, setup = None, 0
        if opts["gradient"] == "cv":
            from sgmcmc import ControlVariates

            stream = (b for _ in itertools.count() for b in batches)
            sgd_steps = int(CENTRE_SHARE * total)
            with torch.enable_grad():
                find_centre(self.name, params, num_data, stream, sgd_steps, CENTRE_LR[self.name])
            cv = ControlVariates(params, lambda b: minibatch_loss(self.name, params, num_data, b), batch_size=bs)
            cv.set_centre(Batches(x, y, bs, shuffle=False, drop_last=False))
            setup = sgd_steps + math.ceil(cv.grad_evals)
            total = (total - setup) // 2
            keep = keep_every(total, int(BURN_IN_FRACTION * total), THIN)
            stream = itertools.islice(stream, total)
        loop = ReferenceLoop(self.name, params, num_data, torch.from_numpy(eval_x).to(device), sampler, keep, ctx,
                             f"{self.name} {sampler_label(sampler_cls)}", batches=stream,
                             progress_every=steps_per_epoch, grads_per_step=2 if cv is not None else 1,
                             schedule=schedule)
        loop.control_variates, loop.noise_switch = cv, switch
        done = loop.run()
        predictive = (loop.prob_sum / done.kept).cpu().numpy()
        if not np.isfinite(predictive).all():
            raise Diverged(done.steps, "non-finite predictive probabilities")
        cls = M.classification_metrics(predictive, eval_y)
        metrics = {"accuracy": float(cls["accuracy"]), "error": 100.0 * (1.0 - float(cls["accuracy"])),
                   "nll": float(cls["nll"]), "ece": float(cls["ece"])}
        if not validation:
            ref, _ = load_reference(self.name)
            metrics["tv"] = M.total_variation(predictive, ref["probs"])
            metrics["agreement"] = M.agreement(predictive, ref["probs"])
            if "param_mean" in ref:
                mean = (loop.moment1 / done.kept).numpy()
                sd = np.sqrt(np.maximum((loop.moment2 / done.kept).numpy() - mean**2, 0.0))
                z = M.standardized_mean_error(mean, ref["param_mean"], ref["param_sd"])
                r = M.log_sd_ratio(sd, ref["param_sd"])
                metrics.update(mean_error_median=float(np.median(z)), mean_error_max=float(np.max(z)),
                               log_sd_ratio_median=float(np.median(r)), log_sd_ratio_max=float(np.max(r)))
        metrics.update(train_time_s=done.sampling_time_s, eval_time_s=done.eval_time_s, samples=done.kept)
        return RunResult(metrics=metrics, grad_evals=done.grad_evals + setup, sampling_time_s=done.sampling_time_s)


_FUNCTION = (Metric("tv", "TV to HMC", "min"), Metric("agreement", "agreement", "max"),
             Metric("error", "test error %", "min", ".3g"), Metric("nll", "NLL", "min"), Metric("ece", "ECE", "min"))
_PARAMS = (Metric("mean_error_median", "mean err (sd) med", "min"), Metric("mean_error_max", "mean err (sd) max", "min"),
           Metric("log_sd_ratio_median", "|log sd ratio| med", "min"), Metric("log_sd_ratio_max", "|log sd ratio| max", "min"))
_COST = (Metric("train_time_s", "train s", "none", ".3g"),)

REFERENCE_TASKS = (
    ReferenceTask("mnist-logreg", "Bayesian multinomial logistic regression, 30 whitened PCA features of 10,000 MNIST "
                  "images, N(0, 1) prior; 10,000 gradients of batch 100; scored on the 10,000 test images.",
                  _FUNCTION + _PARAMS + _COST),
    ReferenceTask("digits-mlp", "Bayesian 64-16-10 tanh MLP on 1,000 of scikit-learn's 8 x 8 digits, N(0, 1) prior; "
                  "10,000 gradients of batch 50; scored on 500 held-out digits.", _FUNCTION + _COST),
)
