"""``psgld`` (Li, Chen, Carlson & Carin 2016): RMSprop-preconditioned SGLD.

    V <- alpha V + (1 - alpha) g * g          (V starts at g_0 * g_0 on the first step)
    G <- 1 / (eps + sqrt(V))
    theta <- theta - h G g + sqrt(2 h T G / N) xi

The Gamma(theta) correction term is omitted, as Li et al. do: the chain targets exp(-U / T) only
where G varies slowly against its own mixing (alpha near 1, or V dominated by minibatch noise).
Starting V at g_0^2 rather than 0 avoids the huge first steps that V = 0 gives with alpha near 1.
"""

import math

import torch

from .base import Hyper, Sampler
from .registry import register


@register("psgld")
class PSGLD(Sampler):
    """Preconditioned SGLD with an RMSprop diagonal preconditioner (no Gamma correction)."""

    hypers = {
        "alpha": Hyper(0.99, low=0.0, high=1.0, high_open=True, doc="decay of the squared-gradient average V"),
        "eps": Hyper(1e-5, low=0.0, low_open=True, doc="lambda in G = 1 / (lambda + sqrt(V))"),
    }

    def _update(self, group, params, grads):
        alpha, eps, lr = group["alpha"], group["eps"], group["lr"]
        fresh = {id(p) for p in params if "square_avg" not in self.state[p]}
        square_avg = self._state_list(params, "square_avg", lambda p: p.grad * p.grad)
        if len(fresh) < len(params):  # V <- alpha V + (1 - alpha) g^2 for all but the fresh ones
            if fresh:
                old = [(v, g) for p, v, g in zip(params, square_avg, grads) if id(p) not in fresh]
                vs, gs = [v for v, _ in old], [g for _, g in old]
            else:
                vs, gs = square_avg, grads
            torch._foreach_mul_(vs, alpha)
            torch._foreach_addcmul_(vs, gs, gs, value=1.0 - alpha)
        denom = torch._foreach_sqrt(square_avg)
        torch._foreach_add_(denom, eps)  # 1 / G = eps + sqrt(V)
        torch._foreach_addcdiv_(params, grads, denom, value=-lr)  # theta -= h G g
        scale = math.sqrt(2.0 * lr * group["temperature"] / group["num_data"])
        if scale > 0.0:
            torch._foreach_rsqrt_(denom)  # sqrt(G)
            torch._foreach_addcmul_(params, self._noise(params, std=scale), denom)  # + sqrt(2 h T / N) sqrt(G) xi
