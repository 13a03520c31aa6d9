"""Speed of the project's runner against blackjax's SGLD on the 100-d isotropic Gaussian, 64 chains.

Run (a benchmark, not a test; blackjax is an optional benchmark dependency, ``pip install -e .[blackjax]``):

    python perf/bench_blackjax.py                 # the table of perf/README_blackjax.md
    python perf/bench_blackjax.py --profile       # + where the project's per-step time goes

What is compared, in one process and one run:

* the target: the task ``gauss-iso-100`` (d = 100, Sigma = I, its own mean), float32, the task's
  over-dispersed start (``task.init`` with the run's seed) for both;
* the protocol: 64 chains, 10,000 steps, the first 2,000 discarded, then every 10th state kept
  (800 draws a chain);
* the update: SGLD with h = 0.1 (the toy config's lr). The project's contract with N = 1, T = 1 is
  theta <- theta - h grad U + sqrt(2 h) xi. blackjax's ``overdamped_langevin`` is
  theta <- theta + step_size grad log p + sqrt(2 T step_size) xi, and log p = -U, so
  step_size = h = 0.1 and temperature = 1 give the same update (same chain law, other random numbers);
* blackjax: ``blackjax.sgld(grad_estimator)`` with ``blackjax.sgmcmc.gradients.grad_estimator``
  (log prior = the Gaussian, no likelihood, data_size 1: the exact gradient, as the task's),
  ``jax.vmap`` over the chains (one key per chain per step, ``jax.random.split``), ``lax.scan`` over
  the steps (burn-in scan, then an outer scan over the kept draws of an inner scan of ``thin`` steps),
  the whole run one ``jax.jit``; compiled by a first call, timed on later calls, clock stopped at
  ``block_until_ready``;
* the project: ``GaussianTask.run`` (the path ``benchmarks.executors.run_one`` takes, minus writing the
  record), the runner's seeding, through ``sgmcmc.get(name)`` and ``Sampler.step``; its own
  ``sampling_time_s`` (the sampling loop only);
* the metrics: both traces go through the task's ``evaluate`` (so min bulk ESS = ``metrics.ess_geyer``
  on [chains, draws, dim], min over coordinates, and ESS/s = min ESS / sampling seconds, are defined
  once for both).

steps/s counts steps of the whole 64-chain batch (one gradient for each of the 64 chains);
chain-steps/s = 64 x that. Every case is run ``--repeats`` times round-robin (a busy machine then
skews every case alike) with seeds 0, 1, 2, ...; the table shows the medians. Both sides get one
core: the runner sets torch to one thread per run, XLA is given
``--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1`` (``--jax-threads default``
leaves XLA alone), and the whole process is pinned to one CPU (``--cpu``; ``--cpu none`` does not
pin: XLA's runtime threads then hop between cores, which made blackjax about 2x slower here).
Besides wall time (the project's ``sampling_time_s`` and ESS/s), the process CPU time over the same
span is reported: on a machine shared with other jobs it is the steadier measure of the work itself.

``--profile`` adds (a) per-step costs of the layers of the project's step, each timed in isolation on
the same [64, 100] tensors, round-robin, median of blocks, and (b) a cProfile of one project run.
Rows marked "prototype" are not the project's code: they measure what a leaner path would give.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, field

PROTOCOL = dict(chains=64, steps=10_000, burn_in=2_000, thin=10)
LR = 0.1  # the toy config's sgld lr on gauss-iso-100; blackjax step_size (see the docstring)
SAMPLERS = {  # benchmarks/configs/toy.toml, [gauss-iso-100]
    "sgld": {"lr": 0.1},
    "psgld": {"lr": 0.1, "alpha": 0.99},
    "sghmc": {"lr": 0.01, "friction": 0.1},
    "underdamped": {"lr": 0.01, "friction": 0.1},
}
XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="runs of every case (median reported); default 3")
    ap.add_argument("--steps", type=int, default=PROTOCOL["steps"])
    ap.add_argument("--chains", type=int, default=PROTOCOL["chains"])
    ap.add_argument("--jax-threads", choices=("1", "default"), default="1",
                    help="XLA CPU threads: 1 (as the runner's torch) or XLA's default")
    ap.add_argument("--cpu", default="auto",
                    help="pin the whole process (torch and XLA threads) to this one CPU id; 'auto': the last CPU "
                         "this process may use; 'none': no pinning")
    ap.add_argument("--no-prototypes", action="store_true", help="skip the prototype rows")
    ap.add_argument("--profile", action="store_true", help="also time the layers of the project's step and cProfile one run")
    ap.add_argument("--max-load", type=float, default=None,
                    help="wait (up to --wait-s) until the 1-minute load average is below this before measuring")
    ap.add_argument("--wait-s", type=float, default=600.0)
    return ap.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else parse_args([])
if ARGS.jax_threads == "1":  # before jax is imported
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + XLA_ONE_THREAD).strip()
PINNED = None
if __name__ == "__main__" and ARGS.cpu != "none" and hasattr(os, "sched_setaffinity"):
    # before torch and jax start their threads, which inherit the mask: XLA's runtime keeps helper
    # threads even with the flags above, and unpinned they hop between cores (measured: blackjax
    # ~2x slower in wall time, with more CPU time than wall time)
    PINNED = max(os.sched_getaffinity(0)) if ARGS.cpu == "auto" else int(ARGS.cpu)
    os.sched_setaffinity(0, {PINNED})

import numpy as np  # noqa: E402
import torch  # noqa: E402

import sgmcmc  # noqa: E402
from benchmarks.executors import seed_everything  # noqa: E402
from benchmarks.tasks import base as task_base  # noqa: E402
from benchmarks.tasks.base import RunContext, Stopwatch  # noqa: E402
from benchmarks.tasks.gaussian import IsotropicGaussian  # noqa: E402


class CPUStopwatch(Stopwatch):
    """The task's Stopwatch (wall time, unchanged) that also adds up the process's CPU time over the
    same span: on a machine shared with other jobs the CPU time is what the work itself cost."""

    last: "CPUStopwatch | None" = None

    def __init__(self):
        super().__init__()
        self.cpu_total = 0.0
        CPUStopwatch.last = self

    def __enter__(self):
        self._c0 = time.process_time()
        return super().__enter__()

    def __exit__(self, *exc):
        super().__exit__(*exc)
        self.cpu_total += time.process_time() - self._c0


task_base.Stopwatch = CPUStopwatch  # this process only: the SamplingLoop times its loop with it (created last)


class Iso64(IsotropicGaussian):
    """gauss-iso-100 under this benchmark's protocol (64 chains); everything else is the task's."""

    def __init__(self, protocol: dict):
        super().__init__()
        self._protocol = dict(protocol)

    def protocol(self, profile):
        return dict(self._protocol)


@dataclass
class Case:
    label: str
    fn: object  # seed -> (seconds, metrics)
    note: str = ""
    rows: list = field(default_factory=list)


# ------------------------------------------------------------------------------------------ project
def project_case(task: Iso64, name, hyper: dict):
    sampler_cls = sgmcmc.get(name) if isinstance(name, str) else name

    def run(seed):
        seed_everything(seed)  # as benchmarks.executors.run_one
        res = task.run(sampler_cls, dict(hyper), RunContext(seed=seed, profile="default"))
        return res.sampling_time_s, CPUStopwatch.last.cpu_total, res.metrics

    return run


# ------------------------------------------------------------------------------------------ prototypes
def hand_loop_case(task: Iso64):
    """Prototype: the task's loop with the SGLD update written inline (no Sampler): the floor."""
    proto = task.protocol("default")
    chains, steps, burn_in, thin = proto["chains"], proto["steps"], proto["burn_in"], proto["thin"]
    std = math.sqrt(2.0 * LR)

    def run(seed):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            seed_everything(seed)
            gen = torch.Generator().manual_seed(seed)
            task.prepare(torch.device("cpu"), torch.float32)
            theta = task.init(chains, gen).to(torch.float32)
            grad = torch.empty_like(theta)
            noise = torch.empty_like(theta)
            keep = (steps - burn_in) // thin
            trace = torch.empty(keep, chains, task.target.dim)
            kept = 0
            c0 = time.process_time()
            t0 = time.perf_counter()
            with torch.no_grad():
                for t in range(steps):
                    task.grad_(theta, grad, gen)
                    theta.add_(grad, alpha=-LR)
                    theta.add_(noise.normal_(0.0, std))
                    if t >= burn_in and (t - burn_in + 1) % thin == 0:
                        trace[kept] = theta
                        kept += 1
            seconds = time.perf_counter() - t0
            cpu = time.process_time() - c0
        finally:
            torch.set_num_threads(threads)
        return seconds, cpu, task.evaluate(trace, seconds, steps * chains)

    return run


# ------------------------------------------------------------------------------------------ blackjax
def blackjax_case(task: Iso64):
    import jax
    import jax.numpy as jnp

    import blackjax
    from blackjax.sgmcmc.gradients import grad_estimator

    proto = task.protocol("default")
    chains, steps, burn_in, thin = proto["chains"], proto["steps"], proto["burn_in"], proto["thin"]
    keep = (steps - burn_in) // thin
    assert burn_in + keep * thin == steps
    target = task.target
    mean = jnp.asarray(target.mean.numpy(), dtype=jnp.float32)
    prec = jnp.asarray(np.diag(target.precision.numpy()), dtype=jnp.float32)

    def logprior(x):  # log N(mean, diag(1 / prec)) up to a constant: -U
        return -0.5 * jnp.sum((x - mean) ** 2 * prec)

    grad_fn = grad_estimator(logprior, lambda x, datum: jnp.zeros(()), data_size=1)
    sgld = blackjax.sgld(grad_fn)
    minibatch = jnp.zeros((1,), dtype=jnp.float32)  # N = 1: no data, exact gradient

    def one_step(carry, _):
        key, positions = carry
        key, sub = jax.random.split(key)
        keys = jax.random.split(sub, chains)
        positions = jax.vmap(lambda k, x: sgld.step(k, x, minibatch, LR, 1.0))(keys, positions)
        return (key, positions), None

    @jax.jit
    def sample(key, init):
        carry, _ = jax.lax.scan(one_step, (key, init), None, length=burn_in)

        def kept_draw(carry, _):
            carry, _ = jax.lax.scan(one_step, carry, None, length=thin)
            return carry, carry[1]

        _, trace = jax.lax.scan(kept_draw, carry, None, length=keep)
        return trace  # [draws, chains, d]

    def start(seed):
        gen = torch.Generator().manual_seed(seed)
        return jnp.asarray(task.init(chains, gen).to(torch.float32).numpy())

    t0 = time.perf_counter()
    sample(jax.random.key(12345), start(0)).block_until_ready()  # compile
    compile_s = time.perf_counter() - t0

    def run(seed):
        init = start(seed)
        key = jax.random.key(seed)
        init.block_until_ready()
        c0 = time.process_time()
        t0 = time.perf_counter()
        trace = sample(key, init).block_until_ready()
        seconds = time.perf_counter() - t0
        cpu = time.process_time() - c0
        draws = torch.from_numpy(np.array(trace))  # a writable copy, after the clock
        return seconds, cpu, task.evaluate(draws, seconds, steps * chains)

    versions = f"jax {jax.__version__}, blackjax {blackjax.__version__}, PRNG {jax.config.jax_default_prng_impl}"
    return run, compile_s, versions


# ------------------------------------------------------------------------------------------ driver
def load1() -> float:
    return os.getloadavg()[0]


def wait_for_load(max_load: float, wait_s: float) -> None:
    t_end = time.time() + wait_s
    while load1() > max_load and time.time() < t_end:
        print(f"  load {load1():.2f} > {max_load}: waiting 30 s", file=sys.stderr, flush=True)
        time.sleep(30)


def measure(cases: list[Case], repeats: int, steps: int) -> list[float]:
    loads = []
    for rep in range(repeats):
        for case in cases:
            loads.append(load1())
            seconds, cpu, metrics = case.fn(rep)
            case.rows.append(dict(seconds=seconds, cpu=cpu, steps_per_s=steps / seconds, ess_min=metrics["ess_min"],
                                  ess_per_s=metrics["ess_per_second"], ess_per_cpu_s=metrics["ess_min"] / cpu,
                                  cpu_steps_per_s=steps / cpu,
                                  var_error=metrics["var_error"], rhat_max=metrics["rhat_max"]))
            print(f"  [{rep}] {case.label}: {seconds:.3f} s (CPU {cpu:.3f} s), {steps / seconds:,.0f} steps/s, "
                  f"ESS {metrics['ess_min']:,.0f}, ESS/s {metrics['ess_per_second']:,.0f}", file=sys.stderr, flush=True)
    return loads


def med(case: Case, key: str) -> float:
    return statistics.median(r[key] for r in case.rows)


def table(cases: list[Case], chains: int, ref: Case | None) -> str:
    lines = [
        f"| runner | steps/s ({chains}-chain batch) | chain-steps/s | min bulk ESS | ESS/s | ESS/s vs blackjax "
        "| sampling s (CPU s) | ESS per CPU s | vs blackjax | var err | max R-hat |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ref_ess = med(ref, "ess_per_s") if ref else float("nan")
    ref_cpu = med(ref, "ess_per_cpu_s") if ref else float("nan")
    for c in cases:
        sps = med(c, "steps_per_s")
        lines.append(
            f"| {c.label} | {sps:,.0f} | {sps * chains:,.0f} | {med(c, 'ess_min'):,.0f} | {med(c, 'ess_per_s'):,.0f} | "
            f"**{med(c, 'ess_per_s') / ref_ess:.2f}x** | {med(c, 'seconds'):.3f} ({med(c, 'cpu'):.3f}) | "
            f"{med(c, 'ess_per_cpu_s'):,.0f} | {med(c, 'ess_per_cpu_s') / ref_cpu:.2f}x | "
            f"{med(c, 'var_error'):.3f} | {med(c, 'rhat_max'):.3f} |"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ profile
def layer_costs(task: Iso64, chains: int, blocks: int = 15, n: int = 2000) -> list[tuple[str, float]]:
    """Per-step cost (us) of each layer of the project's SGLD step, [chains, 100] float32, 1 thread."""
    torch.set_num_threads(1)
    task.prepare(torch.device("cpu"), torch.float32)
    gen = torch.Generator().manual_seed(0)
    theta = task.init(chains, gen).to(torch.float32).requires_grad_(True)
    theta0 = theta.detach().clone()
    # the layers that move theta read a fixed small gradient (theta is reset before every block, so
    # it stays finite); the gradient layer writes a scratch buffer
    theta.grad = 0.01 * torch.randn(theta.shape, generator=gen)
    g = theta.grad
    g_scratch = torch.empty_like(g)
    sgld_cls = sgmcmc.get("sgld")
    opt = sgld_cls([theta], LR, num_data=1)
    opt_nf = sgld_cls([theta], LR, num_data=1, check_finite=False)
    group = opt.param_groups[0]
    noise = torch.empty_like(theta)
    std = math.sqrt(2 * LR)
    trace = torch.empty(10, chains, theta.shape[1])

    def grad_only():
        task.grad_(theta, g_scratch, gen)

    def normal_only():
        noise.normal_(0.0, std)

    def hand_update():
        theta.add_(g, alpha=-LR)
        theta.add_(noise.normal_(0.0, std))

    prepare = getattr(opt, "_prepare", None)

    def math_only():  # the sampler's own update, none of step()'s machinery
        if prepare is not None:
            witness = prepare(group, [theta], [g])
            if witness is not None:
                math.isfinite(witness.item())
        opt._update(group, [theta], [g])

    def raw_no_check():
        opt_nf._step()

    def raw_check():
        opt._step()

    def full_step():
        opt.step()

    mu, prec = task._mu, task._prec

    def grad_no_temp():
        torch.sub(theta, mu, out=g_scratch)
        g_scratch.mul_(prec)

    def sum_check():
        math.isfinite(g.sum().item())

    def trace_copy():
        trace[3] = theta

    layers = [
        ("task grad_ (theta - mu) * prec", grad_only),
        ("normal_ [64, 100] (the noise alone)", normal_only),
        ("hand SGLD update: add_ + normal_ + add_", hand_update),
        ("SGLD math alone: _prepare + witness.item() + _update", math_only),
        ("Sampler._step (the body), check_finite=False", raw_no_check),
        ("Sampler._step (the body), check_finite=True", raw_check),
        ("opt.step() (+ the hook and profiler test)", full_step),
        ("trace[k] = theta (every 10th step)", trace_copy),
        ("prototype: grad_ without the temporary (sub out=, mul_)", grad_no_temp),
        ("prototype: finite check as g.sum().item()", sum_check),
    ]
    samples = {name: [] for name, _ in layers}
    with torch.no_grad():
        for _, fn in layers:
            for _ in range(200):
                fn()
        for _ in range(blocks):
            for name, fn in layers:
                theta.copy_(theta0)
                t0 = time.perf_counter()
                for _ in range(n):
                    fn()
                samples[name].append((time.perf_counter() - t0) / n * 1e6)
    return [(name, statistics.median(samples[name])) for name, _ in layers]


def cprofile_run(task: Iso64) -> str:
    """cProfile of one project sgld run, the sampling loop only (the profiler stops at evaluate)."""
    import cProfile
    import io
    import pstats

    prof = cProfile.Profile()

    class Profiled(Iso64):
        def evaluate(self, trace, seconds, grad_evals):
            prof.disable()
            return super().evaluate(trace, seconds, grad_evals)

    run = project_case(Profiled(task.protocol("default")), "sgld", SAMPLERS["sgld"])
    run(1000)  # imports (tqdm, ...) and warm-up, outside the profile
    prof.enable()
    run(0)
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(16)
    return out.getvalue()


# ------------------------------------------------------------------------------------------ main
def main(args=ARGS) -> None:
    protocol = dict(PROTOCOL, steps=args.steps, chains=args.chains)
    protocol["burn_in"] = args.steps // 5
    task = Iso64(protocol)
    versions = [f"torch {torch.__version__}", f"numpy {np.__version__}"]
    cases: list[Case] = []
    ref = None
    try:
        bj_run, compile_s, bj_versions = blackjax_case(task)
        ref = Case(f"blackjax {bj_versions.split(',')[1].split()[-1]} sgld (vmap + lax.scan, jit)", bj_run,
                   note=f"compile {compile_s:.1f} s, excluded")
        cases.append(ref)
        versions.insert(0, bj_versions)
    except ImportError as exc:
        print(f"blackjax/jax not installed ({exc}): pip install -e .[blackjax]; project rows only", file=sys.stderr)
    for name, hyper in SAMPLERS.items():
        cases.append(Case(f"project {name} (runner, Sampler.step)", project_case(task, name, hyper)))
    if not args.no_prototypes:
        cases.append(Case("prototype: project sgld, check_finite=False", project_case(task, "sgld", {**SAMPLERS["sgld"], "check_finite": False})))
        cases.append(Case("prototype: hand-written torch SGLD loop (no Sampler)", hand_loop_case(task)))
    # a warm-up of every torch case (allocator, caches); blackjax was warmed by its compile
    for case in cases[1 if ref else 0:]:
        case.fn(1000)
    if args.max_load is not None:
        wait_for_load(args.max_load, args.wait_s)
    t0 = time.time()
    loads = measure(cases, args.repeats, protocol["steps"])
    elapsed = time.time() - t0

    pin_note = f"process pinned to CPU {PINNED}" if PINNED is not None else "process not pinned"
    print(f"\ngauss-iso-100, {protocol['chains']} chains, {protocol['steps']:,} steps (burn-in {protocol['burn_in']:,}, "
          f"thin {protocol['thin']}, {(protocol['steps'] - protocol['burn_in']) // protocol['thin']} draws a chain), "
          f"float32, one CPU thread each (XLA: {args.jax_threads}), {pin_note}; median of {args.repeats} round-robin runs\n")
    print(table(cases, protocol["chains"], ref))
    print(f"\n{'; '.join(versions)}; {os.cpu_count()} CPUs; 1-min load average during the runs: "
          f"min {min(loads):.2f}, median {statistics.median(loads):.2f}, max {max(loads):.2f} ({elapsed:.0f} s)")
    if ref:
        print(f"blackjax: {ref.note}")
        sgld = next(c for c in cases if c.label.startswith("project sgld"))
        ratio = med(sgld, "ess_per_s") / med(ref, "ess_per_s")
        ratio_cpu = med(sgld, "ess_per_cpu_s") / med(ref, "ess_per_cpu_s")
        print(f"goal ESS/s >= 2x blackjax: project sgld {ratio:.2f}x (wall), {ratio_cpu:.2f}x (CPU time) -> "
              f"{'met' if min(ratio, ratio_cpu) >= 2 else 'NOT met'}")

    if args.profile:
        print("\nper-step cost of the layers of the project's sgld step (us, median of 15 blocks of 2,000, one thread):\n")
        print("| layer | us / step |\n|---|---|")
        for name, us in layer_costs(task, protocol["chains"]):
            print(f"| {name} | {us:.1f} |")
        print("\ncProfile of one project sgld run (tottime):\n")
        print(cprofile_run(task))


if __name__ == "__main__":
    main()
