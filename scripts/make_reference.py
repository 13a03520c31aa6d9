"""Compute (or check) an HMC reference posterior for the reference track, with NumPyro's NUTS.

    python scripts/make_reference.py mnist-logreg            # the shipped reference (~15-25 min, 2 cores)
    python scripts/make_reference.py digits-mlp
    python scripts/make_reference.py mnist-logreg --check    # a short chain against the shipped file

Needs the optional extra ``pip install -e ".[reference]"`` (jax, numpyro); the suite itself never
imports jax. The problem (data, features, prior, likelihood) comes from
``benchmarks/tasks/reference_data.py``, the same code the task uses; ``log_density`` below is the
same potential written in jax, and tests/test_reference.py checks that the two agree.

Writes ``benchmarks/references/<name>.npz`` (float32 arrays):
    probs_chains [chains, n_test, 10]   each chain's posterior predictive on the test inputs
    probs        [n_test, 10]           the pooled predictive (mean over chains)
    param_mean, param_sd [P]            pooled posterior mean and sd of every parameter (logreg)
    draws        [chains, k, P]         a thinned set of draws (logreg: k = 100 a chain)
and ``<name>.json``: library versions, sampler settings, chains, warm-up, draws, wall time, the
diagnostics (max rank R-hat and min bulk ESS over parameters and over every test-point class
probability), HMC's own chain-against-chain agreement and total variation (the ceiling any sampler
can reach), and the npz's sha256 that the task checks when it loads the file.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import metrics as M  # noqa: E402
from benchmarks.records import atomic_write  # noqa: E402
from benchmarks.tasks import reference_data as RD  # noqa: E402
from sgmcmc.diagnostics import mixing_diagnostics  # noqa: E402

OUT_DIR = ROOT / "benchmarks" / "references"
SETTINGS = {
    "mnist-logreg": {"chains": 4, "warmup": 500, "draws": 1000, "thin_keep": 100, "max_tree_depth": 10,
                     "target_accept": 0.8, "dense_mass": False},
    "digits-mlp": {"chains": 4, "warmup": 300, "draws": 600, "thin_keep": 0, "max_tree_depth": 10,
                   "target_accept": 0.8, "dense_mass": False},
}


def log_density(name: str, x, y):
    """-U(theta) in jax: the same potential as ``reference_data.potential``."""
    import jax
    import jax.numpy as jnp

    d = x.shape[1]

    def fn(theta):
        if name == "mnist-logreg":
            w = theta[: d * 10].reshape(d, 10)
            b = theta[d * 10 :]
            logits = x @ w + b
        else:
            h = RD.DIGITS_HIDDEN
            i = 0
            w1 = theta[i : i + d * h].reshape(d, h); i += d * h  # noqa: E702
            b1 = theta[i : i + h]; i += h  # noqa: E702
            w2 = theta[i : i + h * 10].reshape(h, 10); i += h * 10  # noqa: E702
            b2 = theta[i : i + 10]
            logits = jnp.tanh(x @ w1 + b1) @ w2 + b2
        ll = jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1).sum()
        return ll - 0.5 * jnp.sum(theta * theta) / RD.PRIOR_SD**2

    return fn


def run_nuts(problem: RD.Problem, chains: int, warmup: int, draws: int, seed: int, settings: dict,
             log=print) -> tuple[np.ndarray, dict]:
    """[chains, draws, P] NUTS draws, chains one after another (each from N(0, 0.1^2) inits)."""
    import jax
    import jax.numpy as jnp
    from numpyro.infer import MCMC, NUTS

    x = jnp.asarray(problem.x_train)
    y = jnp.asarray(problem.y_train)
    logp = log_density(problem.name, x, y)
    kernel = NUTS(potential_fn=lambda t: -logp(t), dense_mass=settings["dense_mass"],
                  target_accept_prob=settings["target_accept"], max_tree_depth=settings["max_tree_depth"])
    out, steps, divergences = [], [], 0
    key = jax.random.PRNGKey(seed)
    for c in range(chains):
        key, k_init, k_run = jax.random.split(key, 3)
        init = 0.1 * jax.random.normal(k_init, (problem.num_params,))
        mcmc = MCMC(kernel, num_warmup=warmup, num_samples=draws, num_chains=1, progress_bar=False)
        t0 = time.perf_counter()
        mcmc.run(k_run, init_params=init, extra_fields=("num_steps", "diverging"))
        samples = np.asarray(mcmc.get_samples(), dtype=np.float64)
        extra = mcmc.get_extra_fields()
        steps.append(float(np.mean(np.asarray(extra["num_steps"]))))
        divergences += int(np.asarray(extra["diverging"]).sum())
        log(f"  chain {c + 1}/{chains}: {time.perf_counter() - t0:.0f} s, {steps[-1]:.0f} leapfrog steps a draw")
        out.append(samples)
    return np.stack(out), {"leapfrog_steps_per_draw": steps, "divergences": divergences}


def predictive(problem: RD.Problem, draws: np.ndarray, x: np.ndarray, chunk: int = 100) -> np.ndarray:
    """Class probabilities [chains, draws, n, 10] (float32) of every draw on inputs ``x``."""
    import torch

    xt = torch.from_numpy(x).double()
    chains, n_draws, _ = draws.shape
    out = np.empty((chains, n_draws, x.shape[0], 10), dtype=np.float32)
    for c in range(chains):
        for s in range(0, n_draws, chunk):
            theta = torch.from_numpy(draws[c, s : s + chunk])
            for j in range(theta.shape[0]):
                params = RD.unflatten(problem.name, theta[j], x.shape[1])
                out[c, s + j] = torch.softmax(RD.logits(problem.name, params, xt), dim=1).numpy()
    return out


def chain_against_chain(probs_chains: np.ndarray) -> dict:
    """Each chain's predictive against the pooled predictive of the other chains: the agreement
    and TV that HMC itself reaches (the ceiling), mean and range over chains."""
    agree, tv = [], []
    for c in range(probs_chains.shape[0]):
        others = np.delete(probs_chains, c, axis=0).mean(axis=0)
        agree.append(M.agreement(probs_chains[c], others))
        tv.append(M.total_variation(probs_chains[c], others))
    return {"agreement_mean": float(np.mean(agree)), "agreement_min": float(np.min(agree)),
            "tv_mean": float(np.mean(tv)), "tv_max": float(np.max(tv))}


def diagnostics(draws: np.ndarray, probs_all: np.ndarray, chunk: int = 500) -> dict:
    """Max rank R-hat and min bulk ESS over the parameters and over every test-point class
    probability (chunked over test points to bound memory)."""
    out = {}
    if draws is not None:
        ess_p, rhat_p = mixing_diagnostics(draws)
        out["params"] = {"rhat_max": float(np.nanmax(rhat_p)), "ess_bulk_min": float(np.nanmin(ess_p))}
    ess_min, rhat_max = np.inf, 0.0
    for s in range(0, probs_all.shape[2], chunk):
        block = probs_all[:, :, s : s + chunk].reshape(probs_all.shape[0], probs_all.shape[1], -1)
        e, r = mixing_diagnostics(block.astype(np.float64))
        ess_min = min(ess_min, float(np.nanmin(e)))
        rhat_max = max(rhat_max, float(np.nanmax(r)))
    out["test_probs"] = {"rhat_max": rhat_max, "ess_bulk_min": ess_min}
    return out


def _versions() -> dict:
    from importlib.metadata import version

    return {pkg: version(pkg) for pkg in ("jax", "jaxlib", "numpyro", "numpy", "torch")}


def make(name: str, seed: int, out_dir: Path, log=print) -> int:
    settings = SETTINGS[name]
    problem = RD.load_problem(name)
    log(f"{name}: {problem.x_train.shape[0]} training points, {problem.num_params} parameters; "
        f"NUTS, {settings['chains']} chains x ({settings['warmup']} warm-up + {settings['draws']} draws)")
    t0 = time.perf_counter()
    draws, info = run_nuts(problem, settings["chains"], settings["warmup"], settings["draws"], seed, settings, log)
    wall = time.perf_counter() - t0
    probs_all = predictive(problem, draws, problem.x_test)
    probs_chains = probs_all.mean(axis=1)
    # the MLP's posterior is multimodal: its parameters are not compared, and its chains need not agree
    diag = diagnostics(draws if name == "mnist-logreg" else None, probs_all)
    arrays = {"probs_chains": probs_chains.astype(np.float32), "probs": probs_chains.mean(0).astype(np.float32)}
    if name == "mnist-logreg":
        flat = draws.reshape(-1, draws.shape[-1])
        arrays["param_mean"] = flat.mean(0).astype(np.float32)
        arrays["param_sd"] = flat.std(0).astype(np.float32)
        step = draws.shape[1] // settings["thin_keep"]
        arrays["draws"] = draws[:, ::step][:, : settings["thin_keep"]].astype(np.float32)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    data = buf.getvalue()
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / f"{name}.npz", data)
    pooled = arrays["probs"]
    meta = {
        "task": name, "library": "numpyro", "versions": _versions(), "sampler": "NUTS",
        "settings": settings, "seed": seed, "wall_time_s": round(wall, 1), **info,
        "diagnostics": diag, "chain_against_chain": chain_against_chain(probs_chains),
        "test_accuracy": M.accuracy(pooled, problem.y_test),
        "test_nll": M.nll(pooled, problem.y_test),
        "datasets": problem.datasets, "npz_sha256": hashlib.sha256(data).hexdigest(),
        "command": f"python scripts/make_reference.py {name}",
    }
    atomic_write(out_dir / f"{name}.json", json.dumps(meta, indent=2) + "\n")
    log(json.dumps({k: meta[k] for k in ("wall_time_s", "diagnostics", "chain_against_chain", "test_accuracy")}, indent=1))
    ok = name != "mnist-logreg" or (diag["params"]["rhat_max"] <= 1.01 and diag["test_probs"]["rhat_max"] <= 1.01
                                    and diag["params"]["ess_bulk_min"] >= 400 and diag["test_probs"]["ess_bulk_min"] >= 400)
    if not ok:
        log("warning: the diagnostics miss rank R-hat <= 1.01 or bulk ESS >= 400; rerun with more draws")
    return 0 if ok else 1


def check(name: str, seed: int, out_dir: Path, log=print) -> int:
    """A short independent chain must agree with the shipped reference within Monte-Carlo error:
    logreg parameters' means within 5 Monte-Carlo standard errors (over 310, about 1 in 3 million
    by chance), and the short chain's predictive as close to the reference as one of the
    reference's own chains is to the others, within a factor 3 (the short chain is shorter)."""
    meta = json.loads((out_dir / f"{name}.json").read_text())
    with np.load(out_dir / f"{name}.npz") as f:
        ref = {k: f[k] for k in f.files}
    problem = RD.load_problem(name)
    draws, _ = run_nuts(problem, 1, 300, 500, seed + 1000, SETTINGS[name], log)
    probs = predictive(problem, draws, problem.x_test).mean(axis=1)[0]
    tv = M.total_variation(probs, ref["probs"])
    ceiling = meta["chain_against_chain"]["tv_mean"]
    failures = []
    if tv > 3 * ceiling:
        failures.append(f"TV to the reference {tv:.4f} > 3 x HMC's chain-against-chain TV {ceiling:.4f}")
    if name == "mnist-logreg":
        ess, _ = mixing_diagnostics(draws)
        z = np.abs(draws[0].mean(0) - ref["param_mean"]) / (ref["param_sd"] / np.sqrt(ess))
        log(f"max |z| of the parameter means: {z.max():.2f}")
        if z.max() > 5:
            failures.append(f"parameter {int(z.argmax())}: mean {z.max():.1f} Monte-Carlo se from the reference")
    log(f"TV to the reference {tv:.4f} (HMC chain against chain {ceiling:.4f})")
    for f in failures:
        log("FAILED: " + f)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", choices=sorted(SETTINGS))
    p.add_argument("--check", action="store_true", help="run a short chain and compare it with the shipped reference")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = p.parse_args(argv)
    try:
        import numpyro  # noqa: F401
    except ImportError:
        p.exit(2, 'make_reference needs jax and numpyro: pip install -e ".[reference]"\n')
    if args.check:
        return check(args.task, args.seed, args.out_dir)
    return make(args.task, args.seed, args.out_dir)


if __name__ == "__main__":
    raise SystemExit(main())
