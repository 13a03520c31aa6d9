"""``sgld`` (Welling & Teh 2011): theta += -h g + sqrt(2 h T / N) xi."""

import torch

from .base import Sampler
from .registry import register


@register("sgld")
class SGLD(Sampler):
    """Stochastic gradient Langevin dynamics, targeting exp(-U / T). At T = 0 it is SGD.

    A step is the drift ``theta -= h g`` and then the noise ``theta += sqrt(2 h T / N) xi``.
    """

    # one tensor (a batch of chains): the plain op, same arithmetic, without foreach's list overhead
    def _update(self, group, params, grads):
        if len(params) == 1:
            params[0].add_(grads[0], alpha=-group["lr"])
        else:
            torch._foreach_add_(params, grads, alpha=-group["lr"])  # - h g
        std = self.noise_scale(group)
        if std > 0.0:
            noise = self._noise(params, std)
            if len(params) == 1:
                params[0].add_(noise[0])
            else:
                torch._foreach_add_(params, noise)  # + sqrt(2 h T / N) xi
