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

    @staticmethod
    def _scale(group) -> float:
        return math.sqrt(2.0 * group["friction"] * group["lr"] * group["temperature"] / group["num_data"])

    def _update(self, group, params, grads):
        friction, lr = group["friction"], group["lr"]
        velocity = self._state_list(params, "velocity", torch.zeros_like)
        torch._foreach_mul_(velocity, 1.0 - friction)
        torch._foreach_add_(velocity, grads, alpha=-lr)  # (1 - friction) v - h g
        std = self._scale(group)
        if std > 0.0:
            torch._foreach_add_(velocity, self._noise(params, std))  # + sqrt(2 friction h T / N) xi
        torch._foreach_add_(params, velocity)
