"""sgmcmc: stochastic-gradient MCMC samplers behind one PyTorch interface.

Every sampler is a ``torch.optim.Optimizer`` that reads ``p.grad = grad L_hat`` (the minibatch
mean loss plus the negative log prior over N) and targets exp(-U / T); see :mod:`sgmcmc.base` and
docs/contract.md.

>>> import sgmcmc
>>> [n for n in sgmcmc.available() if ':' not in n and not n.startswith('posteriors-')]
['psgld', 'sgd', 'sghmc', 'sgld', 'sgnht', 'underdamped']

The built-in samplers are the modules of this package that are not private (``_name``) and not
infrastructure (:data:`_NOT_SAMPLERS`): each is imported here and registers itself with
``@register("name")``, so a new built-in touches only its own module, ``sgmcmc/<name>.py``.
``sgmcmc.diagnostics`` and ``sgmcmc.testing`` are not imported (importing sgmcmc needs torch only).
"""

import importlib as _importlib
import pkgutil as _pkgutil

from .base import Diverged, HyperparameterError, Hyper, NonFiniteGradientError, Sampler
from .registry import ENTRY_POINT_GROUP, UnknownSamplerError, available, get, register

#: modules of the package that hold no sampler
_NOT_SAMPLERS = frozenset({"base", "registry", "diagnostics", "testing", "gradients"})


def _import_builtins() -> None:
    """Import every built-in sampler module (in name order), which registers its samplers."""
    for info in sorted(_pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_") and info.name not in _NOT_SAMPLERS:
            _importlib.import_module(f"{__name__}.{info.name}")


_import_builtins()

# the built-ins' classes as attributes, for ``sgmcmc.SGLD`` and the like
from .psgld import PSGLD  # noqa: E402
from .sgd import SGD  # noqa: E402
from .sghmc import SGHMC  # noqa: E402
from .sgld import SGLD  # noqa: E402
from .sgnht import SGNHT  # noqa: E402
from .underdamped import UnderdampedLangevin  # noqa: E402

from .gradients import CentreNotSetError, ControlVariates, control_variate, full_gradient  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Sampler", "Hyper", "HyperparameterError", "NonFiniteGradientError", "Diverged", "UnknownSamplerError",
    "register", "get", "available", "ENTRY_POINT_GROUP",
    "SGD", "SGLD", "PSGLD", "SGHMC", "SGNHT", "UnderdampedLangevin",
]
__all__ += ["ControlVariates", "CentreNotSetError", "control_variate", "full_gradient"]
