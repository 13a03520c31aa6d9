"""``sghmc`` (Chen, Fox & Guestrin 2014), in the SGD-with-momentum form of their eq. (15):

    v <- (1 - friction) v - h g + sqrt(2 friction h T / N) xi
    theta <- theta + v

``friction`` is Chen et al.'s alpha; their noise estimate beta-hat is 0. v starts at 0.
"""

import math

import torch

from .base import Hyper, Sampler
from .registry import register


@register("sghmc")
class SGHMC(Sampler):
    """Stochastic gradient Hamiltonian Monte Carlo (velocity per step, momentum decay 1 - friction)."""

    hypers = {
        "friction": Hyper(0.1, low=0.0, high=1.0, low_open=True, doc="alpha: the fraction of velocity lost per step"),
    }

    def _update(self, group, params, grads):
        friction, lr = group["friction"], group["lr"]
        velocity = self._state_list(params, "velocity", torch.zeros_like)
        scale = math.sqrt(2.0 * friction * lr * group["temperature"] / group["num_data"])
        if scale > 0.0:
            # y = (s xi - h g) / friction, then v <- lerp(v, y, friction) = (1 - friction) v - h g + s xi:
            # three passes over memory (noise drawn at its scale, y, v) instead of four
            y = self._noise(params, std=scale / friction)
            torch._foreach_add_(y, grads, alpha=-lr / friction)
            torch._foreach_lerp_(velocity, y, friction)
        else:
            torch._foreach_mul_(velocity, 1.0 - friction)
            torch._foreach_add_(velocity, grads, alpha=-lr)
        torch._foreach_add_(params, velocity)
