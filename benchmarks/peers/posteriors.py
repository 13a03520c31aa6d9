"""normal-computing's ``posteriors`` SG-MCMC samplers as samplers of this library.

Each class here is an :class:`sgmcmc.Sampler` whose ``_update`` calls the posteriors module's own
functional ``update`` (``posteriors.sgmcmc.<name>.update(state, batch, log_posterior, ...,
inplace=True)``) on a posteriors state holding this bucket's parameters. Everything around the
update (hyperparameter checks, param groups, schedulers, the finiteness check, ``state_dict``,
pickling) is this library's. The posteriors code itself is not changed.

=============================  ==========================================================
name                           posteriors function                   mirrors (our built-in)
=============================  ==========================================================
``posteriors-sgld``            ``posteriors.sgmcmc.sgld``            ``sgld``
``posteriors-sghmc``           ``posteriors.sgmcmc.sghmc``           ``sghmc``
``posteriors-sgnht``           ``posteriors.sgmcmc.sgnht``           ``sgnht`` (hyperparameter A)
``posteriors-baoa``            ``posteriors.sgmcmc.baoa``            ``underdamped``
``posteriors-sglrw``           ``posteriors.sgmcmc.sglrw``           ``sgld``
=============================  ==========================================================

Translation (derived from the posteriors 0.1.x source of each ``update``)
--------------------------------------------------------------------------

Ours (docs/contract.md): ``p.grad = g = grad L_hat`` with L = U / N, step ``h = lr``, target
exp(-U / T). posteriors: ``update`` differentiates ``log_posterior(params, batch)`` itself
(``torch.func.grad_and_value``), ascends it, and targets exp(log_posterior / tau) with its
``temperature`` tau. The adapter hands posteriors the log posterior normalised per datum, as the
posteriors documentation recommends: ``log_posterior = -L_hat``, whose gradient is exactly ``-g``
(a closure ``-(sum_i <p_i, g_i>)`` over the gradients this step received), so
exp(-L_hat / tau) = exp(-U / T) needs **tau = T / N** for every sampler. posteriors' momentum
scale ``sigma`` is fixed at 1 (any other value is absorbed into lr and alpha), its
gradient-noise estimate ``beta`` at 0 (as in our built-ins), and its momenta start at 0 (as our
velocities do; posteriors' own default draws them from N(0, 1)). With xi ~ N(0, I):

sgld
    theirs: theta += eps grad(log_post) + sqrt(2 eps tau) xi = theta - eps g + sqrt(2 eps tau) xi.
    Ours: theta += -h g + sqrt(2 h T / N) xi. So **eps = h, tau = T / N**: the same update.

sghmc (eps = their lr, a = their alpha)
    theirs: theta += eps m;  m += -eps g(theta_old) - eps a m + sqrt(2 a eps tau) xi
    (the gradient is taken at theta *before* theta moves, and theta moves with the old m).
    With u = eps m (the velocity per step, our units): theta += u;  u <- (1 - eps a) u - eps^2 g
    + sqrt(2 (eps a) eps^2 tau) xi. Ours: v <- (1 - f) v - h g + sqrt(2 f h T / N) xi;
    theta += v. So **eps = sqrt(h), a = friction / sqrt(h), tau = T / N**. The order differs:
    theirs moves theta by the velocity of the previous step, so its position recursion is
    theta' = theta + (1 - f)(theta - theta_prev) - h g(theta_prev) + noise, ours the same with
    g(theta): a gradient one step stale (explicit Euler; ours is symplectic Euler). On a quadratic
    of curvature lambda (of L) it is stable only for h lambda < friction (ours up to about
    h lambda < 4 - 2 friction), and its stationary variance carries a larger step bias.

sgnht
    theirs: as sghmc with a thermostat xi_t in place of a, the injected noise still set by a, and
    xi += eps (mean(m^2) - tau) (mean over every parameter of the bucket, with the old m),
    xi_0 = a. With u = eps m and zeta = eps xi (the friction per step): zeta <- zeta + mean(u^2)
    - h T / N, zeta_0 = A. So **eps = sqrt(h), a = A / sqrt(h), tau = T / N**, with A our
    ``sgnht``'s injected friction per step; the thermostat drives mean(u^2) to h T / N, the
    equipartition value of our velocity per step. Unlike our ``sgnht`` (one thermostat per
    coordinate, reading the velocity at theta's time), posteriors keeps one thermostat per bucket
    (param group, device, dtype: posteriors' whole tree) and reads the old velocity.

baoa (eps = their lr, c = exp(-eps a))
    theirs: m += eps grad(log_post);  theta += (eps / 2) m;  m <- c m + sqrt(tau (1 - c^2)) xi;
    theta += (eps / 2) m. With u = eps m: u <- u - h g;  theta += u / 2;
    u <- c u + sqrt((1 - c^2) h tau) xi;  theta += u / 2, which is our ``underdamped`` (BAOAB with
    the two half kicks of consecutive steps fused) with **eps = sqrt(h), a = friction / sqrt(h)**
    (so c = exp(-friction)), **tau = T / N**. The one difference: theirs opens with a full kick
    h g, ours with a half kick h g / 2. posteriors computes exp(-eps a) and the O-step's noise
    factor as float32 scalars whatever the parameters' dtype.

sglrw (lattice random walk)
    theirs: theta += delta s with s = +-1, delta = sqrt(2 eps tau), P(s = +1) = (1 + clamp(eps
    grad(log_post) / delta, -1, 1)) / 2. Mean -eps g, second moment 2 eps tau, as SGLD's step:
    **eps = h, tau = T / N**. At T = 0, delta = 0: the chain does not move.

Random numbers
--------------

posteriors draws its noise with ``torch.randn_like`` (``torch.rand_like`` for sglrw), that is from
torch's global generator. Without ``generator=`` the adapter leaves it so: seeding
``torch.manual_seed`` reproduces a chain, and a resumed chain needs ``torch.get_rng_state()``
saved beside the state dict, as for every sampler here. With ``generator=`` (which must be on the
parameters' device), the update runs with the global generator of that device temporarily holding
the state of ``generator``: posteriors' draws then come from ``generator``'s stream, which
advances, and the global generator is left as it was. The noise does not use this library's
parallel noise streams, so it depends neither on them nor on the thread count.

In-place update
---------------

``inplace=True`` makes posteriors assign each new value through ``tensor.data = ...``: each
parameter keeps its identity (a model sees the new values) but gets new storage every step, so a
tensor that aliases a parameter's old storage (a view taken before the step) does not follow it.
"""

from __future__ import annotations

import importlib.metadata
import math
import warnings

import torch

from sgmcmc import Hyper, Sampler

INSTALL = "pip install 'sgmcmc-bench[peers]' (in a checkout: pip install -e '.[peers]')"

try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # tensordict's notes on posteriors' state classes
        import posteriors as _posteriors  # noqa: F401
        from posteriors.sgmcmc import baoa as _baoa
        from posteriors.sgmcmc import sghmc as _sghmc
        from posteriors.sgmcmc import sgld as _sgld
        from posteriors.sgmcmc import sglrw as _sglrw
        from posteriors.sgmcmc import sgnht as _sgnht
except ImportError as exc:
    raise ImportError(
        f"the posteriors peer samplers (posteriors-sgld, posteriors-sghmc, ...) need the 'posteriors' package: "
        f"{exc}. Install it with: {INSTALL}"
    ) from exc

__all__ = ["PosteriorsSGLD", "PosteriorsSGHMC", "PosteriorsSGNHT", "PosteriorsBAOA", "PosteriorsSGLRW",
           "VERSION", "INSTALL", "translate"]

#: the installed posteriors version
VERSION = importlib.metadata.version("posteriors")
_PEER = {"library": "posteriors", "version": VERSION}
_NO_AUX = torch.tensor([])


def translate(name: str, lr: float, num_data: int, temperature: float = 1.0, friction: float | None = None) -> dict:
    """posteriors' keyword arguments (``lr``, ``temperature``, ``alpha``) for our ``lr`` (h),
    ``num_data`` (N), ``temperature`` (T) and ``friction``, for the posteriors module ``name``
    (sgld, sglrw, sghmc, sgnht, baoa); see the module docstring for the derivation."""
    tau = temperature / num_data
    if name in ("sgld", "sglrw"):
        return {"lr": lr, "temperature": tau}
    if name in ("sghmc", "sgnht", "baoa"):
        eps = math.sqrt(lr)
        return {"lr": eps, "temperature": tau, "alpha": friction / eps}
    raise ValueError(f"no posteriors sampler {name!r}; valid: sgld, sglrw, sghmc, sgnht, baoa")


class _PosteriorsSampler(Sampler):
    """An :class:`sgmcmc.Sampler` running one posteriors SG-MCMC ``update`` per bucket and step."""

    #: the built-in whose tuned hyperparameters this sampler runs at (same keys, same units)
    mirrors: str = ""
    #: the library and version this sampler runs (shown beside its benchmark rows)
    peer: dict = _PEER
    #: the posteriors module (its ``update`` and state class)
    _module = None
    #: posteriors' name of the module
    _their_name: str = ""
    #: does the posteriors state carry momenta (kept in ``self.state[p]["momenta"]``)?
    _has_momenta: bool = False

    def _init_transient(self) -> None:
        super()._init_transient()
        self._their_states: dict[int, object] = {}  # bucket (its first parameter) -> posteriors state

    def _their_kwargs(self, group: dict) -> dict:
        friction = group.get("A", group.get("friction"))  # sgnht's A is its injected friction
        return translate(self._their_name, group["lr"], group["num_data"], group["temperature"], friction)

    def _extra_state(self, params: list[torch.Tensor], group: dict) -> tuple:
        """State beyond params and momenta, as stored tensors (the sgnht thermostat)."""
        return ()

    def _make_state(self, params, momenta, extra):
        scratch = (torch.tensor(float("nan")), torch.tensor(0))  # log_posterior, step: written in place
        if self._has_momenta:
            return self._module_state(tuple(params), tuple(momenta), *extra, *scratch)
        return self._module_state(tuple(params), *scratch)

    def _their_state(self, group: dict, params: list[torch.Tensor]):
        """The posteriors state of this bucket: built once and kept while it holds the very tensors of
        ``params`` and ``self.state`` (rebuilt after ``load_state_dict``, a copy, a changed bucket)."""
        momenta = self._state_list(params, "momenta", torch.zeros_like) if self._has_momenta else ()
        extra = self._extra_state(params, group)
        key = id(params[0])
        st = self._their_states.get(key)
        if st is not None:
            held = st.params
            if len(held) == len(params) and all(a is b for a, b in zip(held, params)) and (
                not self._has_momenta or all(a is b for a, b in zip(st.momenta, momenta))
            ) and all(getattr(st, k) is v for k, v in zip(self._extra_keys, extra)):
                return st
        st = self._make_state(params, momenta, extra)
        self._their_states[key] = st
        return st

    _extra_keys: tuple = ()

    def _update(self, group, params, grads):
        state = self._their_state(group, params)
        kwargs = self._their_kwargs(group)

        def log_posterior(ps, batch):
            # -L_hat up to a constant: its gradient in ps is exactly -g (g held fixed)
            total = (ps[0] * grads[0]).sum()
            for p, g in zip(ps[1:], grads[1:]):
                total = total + (p * g).sum()
            return -total, _NO_AUX

        def run():
            self._module.update(state, None, log_posterior, inplace=True, **kwargs)

        self._with_generator(params[0].device, run)
        self._after_update(state, params)

    def _after_update(self, state, params) -> None:
        pass

    def _with_generator(self, device: torch.device, run) -> None:
        """Run ``run`` (which draws from torch's global generator) so that, with ``generator=``, its
        draws come from the sampler's generator: the device's global generator holds its state for
        the call, the sampler's generator takes the advanced state, the global one gets its own back."""
        gen = self.generator
        if gen is None:
            run()
            return
        if gen.device.type != device.type:
            raise ValueError(f"{type(self).__name__}: generator= is on {gen.device}, the parameters on {device}; "
                             f"posteriors draws its noise on the parameters' device, so the generator must be there")
        if device.type == "cpu":
            default = torch.default_generator
        else:
            index = device.index if device.index is not None else torch.get_device_module(device.type).current_device()
            default = torch.get_device_module(device.type).default_generators[index]
        saved = default.get_state()
        default.set_state(gen.get_state())
        try:
            run()
        finally:
            gen.set_state(default.get_state())
            default.set_state(saved)


class PosteriorsSGLD(_PosteriorsSampler):
    """posteriors' SGLD (``posteriors.sgmcmc.sgld``): theta += -h g + sqrt(2 h T / N) xi, as ``sgld``."""

    mirrors = "sgld"
    _module = _sgld
    _module_state = _sgld.SGLDState
    _their_name = "sgld"


class PosteriorsSGLRW(_PosteriorsSampler):
    """posteriors' stochastic-gradient lattice random walk (``posteriors.sgmcmc.sglrw``): steps of
    +-sqrt(2 h T / N) whose mean is -h g (clamped). At T = 0 it does not move."""

    mirrors = "sgld"
    _module = _sglrw
    _module_state = _sglrw.SGLRWState
    _their_name = "sglrw"


class PosteriorsSGHMC(_PosteriorsSampler):
    """posteriors' SGHMC (``posteriors.sgmcmc.sghmc``), in sghmc's units: theta += v_prev;
    v = (1 - friction) v_prev - h g + sqrt(2 friction h T / N) xi (theta moves by the old velocity)."""

    hypers = {
        "friction": Hyper(0.1, low=0.0, high=1.0, low_open=True,
                          doc="the fraction of velocity lost per step (posteriors' alpha = friction / sqrt(lr))"),
    }
    mirrors = "sghmc"
    _module = _sghmc
    _module_state = _sghmc.SGHMCState
    _their_name = "sghmc"
    _has_momenta = True


class PosteriorsSGNHT(_PosteriorsSampler):
    """posteriors' SGNHT (``posteriors.sgmcmc.sgnht``), in sghmc's units: a Nose-Hoover thermostat
    zeta (friction per step, starting at ``A``) with zeta += mean(v_old^2) - h T / N, one per bucket."""

    hypers = {
        "A": Hyper(0.1, low=0.0, high=1.0, low_open=True,
                   doc="injected diffusion as a per-step friction, and the thermostat's start, as sgnht's A "
                       "(posteriors' alpha = A / sqrt(lr))"),
    }
    mirrors = "sgnht"
    _module = _sgnht
    _module_state = _sgnht.SGNHTState
    _their_name = "sgnht"
    _has_momenta = True
    _extra_keys = ("xi",)

    def _extra_state(self, params, group):
        # posteriors' thermostat xi (its units: xi sqrt(lr) is the friction per step), one per bucket,
        # kept in the state of each of the bucket's parameters so that state_dict carries it
        first = self.state[params[0]]
        if "xi" not in first:
            first["xi"] = torch.tensor(group["A"] / math.sqrt(group["lr"]), dtype=params[0].dtype,
                                       device=params[0].device)
        return (first["xi"],)

    def _after_update(self, state, params):
        for p in params[1:]:
            self.state[p]["xi"] = state.xi


class PosteriorsBAOA(_PosteriorsSampler):
    """posteriors' BAOA (``posteriors.sgmcmc.baoa``), in underdamped's units: BAOAB with one gradient
    per step and O-step factor exp(-friction); it opens with a full kick (underdamped: a half)."""

    hypers = {
        "friction": Hyper(0.1, low=1e-6, doc="gamma dt; O-step velocity factor exp(-friction) "
                                              "(posteriors' alpha = friction / sqrt(lr))"),
    }
    mirrors = "underdamped"
    _module = _baoa
    _module_state = _baoa.BAOAState
    _their_name = "baoa"
    _has_momenta = True
