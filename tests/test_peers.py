"""The posteriors peer samplers (benchmarks/peers/posteriors.py): the translation of units, the
names, and the error without posteriors. Skipped (but for the error test) without posteriors:
pip install -e '.[peers]'."""

import importlib
import math
import sys

import numpy as np
import pytest
import torch

import sgmcmc

NAMES = {
    "posteriors-sgld": "PosteriorsSGLD",
    "posteriors-sghmc": "PosteriorsSGHMC",
    "posteriors-sgnht": "PosteriorsSGNHT",
    "posteriors-baoa": "PosteriorsBAOA",
    "posteriors-sglrw": "PosteriorsSGLRW",
}
INSTALL_REASON = "posteriors is not installed: pip install -e '.[peers]'"


@pytest.fixture(scope="module")
def peers():
    pytest.importorskip("posteriors", reason=INSTALL_REASON)
    return importlib.import_module("benchmarks.peers.posteriors")


# a Gaussian with diagonal curvature LAM of L = U / N: grad L = LAM * theta
N = 10
LAM = torch.tensor([0.5, 2.0], dtype=torch.float64)


def _grad(theta):
    return LAM * theta


def _chain(cls, steps, lr, temperature, chains=8, seed=0, start=None, setup=None, **hyper):
    """Positions after every step of ``cls`` on the Gaussian, ``chains`` rows of one tensor."""
    x = torch.nn.Parameter(start.clone() if start is not None else
                           torch.randn(chains, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)))
    opt = cls([x], lr=lr, num_data=N, temperature=temperature, generator=torch.Generator().manual_seed(seed), **hyper)
    if setup is not None:
        setup(opt, x)
    out = []
    for _ in range(steps):
        x.grad = _grad(x.detach())
        opt.step()
        out.append(x.detach().clone())
    return torch.stack(out)


# ---------------------------------------------------------------- names and the missing library
@pytest.mark.parametrize("name", sorted(NAMES))
def test_entry_point_names_resolve(peers, name):
    cls = sgmcmc.get(name)
    assert cls is getattr(peers, NAMES[name])
    assert name in sgmcmc.available()
    assert issubclass(cls, sgmcmc.Sampler)
    assert cls.mirrors in sgmcmc.available()
    assert cls.peer == {"library": "posteriors", "version": importlib.metadata.version("posteriors")}
    # the mirrored built-in's own hyperparameters have the same names
    assert set(cls.hypers) == set(sgmcmc.get(cls.mirrors).hypers) or cls.mirrors == "sgld" and not cls.hypers


def test_clear_error_without_posteriors(monkeypatch):
    for mod in [m for m in sys.modules if m == "posteriors" or m.startswith("posteriors.")
                or m == "benchmarks.peers.posteriors"]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "posteriors", None)  # import posteriors -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'sgmcmc-bench\[peers\]'"):
        importlib.import_module("benchmarks.peers.posteriors")
    # the entry point names the install command too
    with pytest.raises(sgmcmc.UnknownSamplerError, match=r"posteriors.*pip install"):
        sgmcmc.get("benchmarks.peers.posteriors:PosteriorsSGLD")


# ---------------------------------------------------------------- translation at T = 0
def test_sgld_equals_builtin_at_t0(peers):
    ours = _chain(sgmcmc.get("sgld"), 200, lr=0.3, temperature=0.0)
    theirs = _chain(peers.PosteriorsSGLD, 200, lr=0.3, temperature=0.0)
    torch.testing.assert_close(theirs, ours, rtol=1e-13, atol=1e-15)
    assert (ours[-1] - ours[0]).abs().max() > 0.1  # it moved


def test_sghmc_is_the_derived_recurrence_at_t0(peers):
    """theta' = theta + u;  u' = (1 - friction) u - h g(theta): our sghmc's recursion with the gradient
    one step stale (theta moves by the old velocity)."""
    h, f, steps = 0.2, 0.5, 150
    theirs = _chain(peers.PosteriorsSGHMC, steps, lr=h, temperature=0.0, friction=f)
    theta = torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    u = torch.zeros_like(theta)
    ref = []
    for _ in range(steps):
        theta, u = theta + u, (1 - f) * u - h * _grad(theta)
        ref.append(theta)
    torch.testing.assert_close(theirs, torch.stack(ref), rtol=1e-12, atol=1e-14)
    ours = _chain(sgmcmc.get("sghmc"), steps, lr=h, temperature=0.0, friction=f)
    assert (ours - theirs).abs().max() > 1e-3  # a different integrator, not a different unit


def test_sgnht_is_the_derived_recurrence_at_t0(peers):
    """zeta' = zeta + mean(u^2) - h T / N (T = 0), theta' = theta + u, u' = (1 - zeta) u - h g(theta)."""
    h, a, steps = 0.05, 0.2, 150
    theirs = _chain(peers.PosteriorsSGNHT, steps, lr=h, temperature=0.0, A=a)
    theta = torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    u, zeta = torch.zeros_like(theta), a
    ref = []
    for _ in range(steps):
        theta, u, zeta = theta + u, (1 - zeta) * u - h * _grad(theta), zeta + float((u ** 2).mean())
        ref.append(theta)
    torch.testing.assert_close(theirs, torch.stack(ref), rtol=1e-9, atol=1e-12)


def test_baoa_equals_underdamped_at_t0(peers):
    """posteriors' BAOA is our underdamped (BAOAB, one gradient a step, c = exp(-friction)) but for its
    opening kick: a full one. Ours with a half kick pending before its first step gives the same chain."""
    h, f, steps = 0.5, 0.3, 150

    def full_first_kick(opt, x):
        opt.state[x]["velocity"] = torch.zeros_like(x)
        opt.state[x]["pending_half_kick"] = 0.5 * h

    ours = _chain(sgmcmc.get("underdamped"), steps, lr=h, temperature=0.0, friction=f, setup=full_first_kick)
    theirs = _chain(peers.PosteriorsBAOA, steps, lr=h, temperature=0.0, friction=f)
    # posteriors computes exp(-friction) in float32
    torch.testing.assert_close(theirs, ours, rtol=1e-6, atol=1e-8)
    plain = _chain(sgmcmc.get("underdamped"), steps, lr=h, temperature=0.0, friction=f)
    assert (plain - theirs).abs().max() > 1e-3


# ---------------------------------------------------------------- translation with noise: the stationary variance
def _stationary_var(a, b):
    """Per-coordinate stationary covariance of the linear chain X' = A X + B xi (discrete Lyapunov)."""
    from scipy.linalg import solve_discrete_lyapunov

    return solve_discrete_lyapunov(a, b @ b.T)


def _exact_var(kind, h, f, lam, temperature):
    s2 = h * temperature / N
    if kind == "sgld":  # theta' = (1 - h lam) theta + sqrt(2 h T / N) xi
        return 2 * s2 / (1 - (1 - h * lam) ** 2)
    if kind == "sghmc":  # (theta, u)' = [[1, 1], [-h lam, 1 - f]] (theta, u) + (0, sqrt(2 f h T / N)) xi
        return _stationary_var(np.array([[1.0, 1.0], [-h * lam, 1 - f]]), np.array([[0.0], [math.sqrt(2 * f * s2)]]))[0, 0]
    if kind == "baoa":  # BAOAB is exact in position on a Gaussian: T / (N lam)
        return temperature / (N * lam)
    raise ValueError(kind)


@pytest.mark.parametrize("name,kind,hyper", [
    ("PosteriorsSGLD", "sgld", {}),
    ("PosteriorsSGHMC", "sghmc", {"friction": 0.5}),
    ("PosteriorsBAOA", "baoa", {"friction": 0.5}),
])
@pytest.mark.parametrize("temperature", [1.0, 0.25])
def test_stationary_variance(peers, name, kind, hyper, temperature):
    """With noise, the variance each coordinate settles at is the one the derived recurrence has
    exactly (to Monte-Carlo error, 5 %): the noise is translated as T / N."""
    h, chains, burn, keep = 0.05, 2000, 300, 300
    traj = _chain(getattr(peers, name), burn + keep, lr=h, temperature=temperature, chains=chains,
                  start=torch.zeros(chains, 2, dtype=torch.float64), seed=3, **hyper)
    got = traj[burn:].var(dim=1).mean(dim=0)  # across chains, averaged over the kept steps
    want = torch.tensor([_exact_var(kind, h, hyper.get("friction"), float(lam), temperature) for lam in LAM],
                        dtype=torch.float64)
    err = (got / want - 1).abs().max().item()
    assert err < 0.05, f"{name} at T={temperature}: variance {got.tolist()} vs exact {want.tolist()}"
    target = temperature / (N * LAM)
    if kind == "sghmc":  # the stale gradient's step bias: +28 % at h lam = 0.1, friction 0.5
        assert (got / target - 1).max() > 0.15
    else:  # the target's, T / (N lam), up to a small step bias
        assert ((got / target - 1).abs() < 0.1).all()


# ---------------------------------------------------------------- random numbers
@pytest.mark.parametrize("name", ["PosteriorsSGLD", "PosteriorsSGHMC"])
def test_generator_drives_the_noise_and_spares_the_global_one(peers, name):
    cls = getattr(peers, name)
    start = torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(5)
    before = torch.get_rng_state()
    a = _chain(cls, 20, lr=0.1, temperature=1.0, seed=1, start=start)
    assert torch.equal(torch.get_rng_state(), before)  # the global generator is left as it was
    torch.manual_seed(6)
    b = _chain(cls, 20, lr=0.1, temperature=1.0, seed=1, start=start)
    c = _chain(cls, 20, lr=0.1, temperature=1.0, seed=2, start=start)
    assert torch.equal(a, b)  # the same generator seed, another global seed: the same chain
    assert not torch.equal(a, c)  # another generator seed: another chain


def test_state_dict_resume_bit_for_bit(peers):
    cls = peers.PosteriorsSGNHT
    x = torch.nn.Parameter(torch.randn(16, 2, dtype=torch.float64))
    opt = cls([x], lr=0.1, num_data=N, generator=torch.Generator().manual_seed(0), A=0.2)
    for _ in range(5):
        x.grad = _grad(x.detach())
        opt.step()
    saved, start = opt.state_dict(), x.detach().clone()
    import copy

    saved = copy.deepcopy(saved)
    ref = []
    for _ in range(5):
        x.grad = _grad(x.detach())
        opt.step()
        ref.append(x.detach().clone())
    y = torch.nn.Parameter(start.clone())
    fresh = cls([y], lr=0.1, num_data=N, generator=torch.Generator().manual_seed(99), A=0.2)
    fresh.load_state_dict(saved)
    for r in ref:
        y.grad = _grad(y.detach())
        fresh.step()
        assert torch.equal(y.detach(), r)
