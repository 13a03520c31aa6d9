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

    def _stage(self, group, params, grads):
        """y = (s xi - h g) / friction in the flat noise buffer (s = sqrt(2 friction h T / N))."""
        friction, lr = group["friction"], group["lr"]
        y = self._noise(params, std=self._scale(group) / friction)
        torch._foreach_add_(y, grads, alpha=-lr / friction)
        return y

    @staticmethod
    def _scale(group) -> float:
        return math.sqrt(2.0 * group["friction"] * group["lr"] * group["temperature"] / group["num_data"])

    def _prepare(self, group, params, grads):
        if type(self)._update is not SGHMC._update or self._scale(group) == 0.0:
            return None
        self._stage(group, params, grads)
        self._mark_staged(params)
        return self._noise_flat(params).sum()  # finite iff every gradient is (unless it overflows)

    def _update(self, group, params, grads):
        friction, lr = group["friction"], group["lr"]
        velocity = self._state_list(params, "velocity", torch.zeros_like)
        if self._scale(group) > 0.0:
            # v <- lerp(v, y, friction) = (1 - friction) v - h g + s xi: with y staged, one pass over v
            y = self._noise_like(params) if self._take_staged(params) else self._stage(group, params, grads)
            torch._foreach_lerp_(velocity, y, friction)
        else:
            torch._foreach_mul_(velocity, 1.0 - friction)
            torch._foreach_add_(velocity, grads, alpha=-lr)
        torch._foreach_add_(params, velocity)
