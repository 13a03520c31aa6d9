"""``sgld`` (Welling & Teh 2011): theta += -h g + sqrt(2 h T / N) xi."""

import torch

from .base import Sampler
from .registry import register


@register("sgld")
class SGLD(Sampler):
    """Stochastic gradient Langevin dynamics, targeting exp(-U / T). At T = 0 it is SGD.

    The increment -h g + sqrt(2 h T / N) xi is built in the flat noise buffer (drawn at its scale,
    then the gradient term added) and its sum is the finiteness witness, so a step is: the noise,
    one pass over the gradients, a cheap flat reduction, one pass over the parameters.
    """

    def _stage(self, group, params, grads):
        increment = self._noise(params, std=self.noise_scale(group))  # sqrt(2 h T / N) xi
        torch._foreach_add_(increment, grads, alpha=-group["lr"])  # - h g
        return increment

    def _prepare(self, group, params, grads):
        if type(self)._update is not SGLD._update or self.noise_scale(group) == 0.0:
            return None  # a subclass with its own update, or T = 0 (exactly SGD): nothing to stage
        self._stage(group, params, grads)
        self._mark_staged(params)
        return self._noise_flat(params).sum()

    def _update(self, group, params, grads):
        if self.noise_scale(group) == 0.0:
            torch._foreach_add_(params, grads, alpha=-group["lr"])
            return
        increment = self._noise_like(params) if self._take_staged(params) else self._stage(group, params, grads)
        torch._foreach_add_(params, increment)
