"""A third-party sampler, written the way an outside user would: subclass ``sgmcmc.Sampler``.

Loaded in the tests as ``"tests.plugin_sampler:LeimkuhlerMatthews"`` (it does not register itself,
so it never appears in ``sgmcmc.available()``). Deliberately unlike the built-ins: a plain loop over
parameters (no ``torch._foreach_*``), fresh noise per tensor from ``torch.randn``, and a different
formula, the Leimkuhler-Matthews scheme for overdamped Langevin,

    theta <- theta - h g + sqrt(2 h T / N) (xi_n + xi_{n+1}) / 2,

which averages this step's and the previous step's Gaussian draw. The increments are correlated,
the long-run diffusion is that of SGLD, and the invariant measure has O(h^2) bias instead of O(h)
(on a Gaussian target it is exact at any stable step). The previous draw is kept as sampler state,
so ``state_dict`` resume matters.

Also here: ``NotASampler``, a class that is not a Sampler (the registry must reject it).
"""

import math

import torch

from sgmcmc import Sampler


class LeimkuhlerMatthews(Sampler):
    """Overdamped Langevin, Leimkuhler-Matthews (non-Markovian) noise averaging; per-parameter loop."""

    def _update(self, group, params, grads):
        lr = group["lr"]
        scale = math.sqrt(2.0 * lr * group["temperature"] / group["num_data"])
        for p, g in zip(params, grads):
            state = self.state[p]
            if "previous_noise" not in state:
                state["previous_noise"] = torch.randn(p.shape, dtype=p.dtype, device=p.device, generator=self.generator)
            xi = torch.randn(p.shape, dtype=p.dtype, device=p.device, generator=self.generator)
            p.add_(g, alpha=-lr)
            if scale > 0.0:
                p.add_(state["previous_noise"].add_(xi), alpha=0.5 * scale)
            state["previous_noise"] = xi


class NotASampler:
    """Has a step method, but is not an ``sgmcmc.Sampler``."""

    def step(self):
        pass
