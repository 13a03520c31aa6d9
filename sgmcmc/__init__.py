"""sgmcmc: stochastic-gradient MCMC samplers behind one PyTorch interface.

Every sampler is a ``torch.optim.Optimizer`` that reads ``p.grad = grad L_hat`` (the minibatch
mean loss plus the negative log prior over N) and targets exp(-U / T); see :mod:`sgmcmc.base`.

>>> import sgmcmc
>>> sgmcmc.available()
['psgld', 'sgd', 'sghmc', 'sgld', 'underdamped']
"""

from .base import Diverged, HyperparameterError, Hyper, NonFiniteGradientError, Sampler
from .registry import ENTRY_POINT_GROUP, UnknownSamplerError, available, get, register

# built-in samplers register themselves on import
from .sgd import SGD
from .sgld import SGLD
from .psgld import PSGLD
from .sghmc import SGHMC
from .underdamped import UnderdampedLangevin

__version__ = "0.1.0"

__all__ = [
    "Sampler", "Hyper", "HyperparameterError", "NonFiniteGradientError", "Diverged", "UnknownSamplerError",
    "register", "get", "available", "ENTRY_POINT_GROUP",
    "SGD", "SGLD", "PSGLD", "SGHMC", "UnderdampedLangevin",
]
