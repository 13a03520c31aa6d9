"""Sampler registry: name -> class.

Built-in samplers register themselves with ``@register("name")``. Third-party packages add
samplers through the entry-point group ``sgmcmc.samplers`` (``name = "pkg.module:Class"``), and any
``"module:Class"`` string is accepted by :func:`get` directly.
"""

from __future__ import annotations

import importlib
import traceback
from importlib.metadata import entry_points
from typing import Callable, TypeVar

__all__ = ["register", "get", "available", "UnknownSamplerError", "ENTRY_POINT_GROUP"]

ENTRY_POINT_GROUP = "sgmcmc.samplers"
_REGISTRY: dict[str, type] = {}
T = TypeVar("T", bound=type)


class UnknownSamplerError(ValueError):
    """No sampler of that name; the message lists the valid ones."""


def register(name: str) -> Callable[[T], T]:
    """Class decorator: make ``cls`` available as ``sgmcmc.get(name)``."""
    if not isinstance(name, str) or not name or ":" in name:
        raise ValueError(f"sampler name must be a non-empty string without ':', got {name!r}")

    def deco(cls: T) -> T:
        from .base import Sampler

        if not (isinstance(cls, type) and issubclass(cls, Sampler)):
            raise TypeError(f"@register({name!r}) expects a subclass of sgmcmc.Sampler, got {cls!r}")
        old = _REGISTRY.get(name)
        # the same class defined again (a module reloaded) may take its name back; another may not
        if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"sampler name {name!r} is already registered to {old.__module__}.{old.__qualname__}")
        _REGISTRY[name] = cls
        cls.name = name
        return cls

    return deco


def _entry_points() -> dict:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _load_path(spec: str) -> type:
    from .base import Sampler

    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UnknownSamplerError(f"{spec!r} is not of the form 'module:Class'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UnknownSamplerError(f"cannot import module {module_name!r} for sampler {spec!r}: {exc}") from exc
    except Exception as exc:  # the module itself raised (a bug in it, a SyntaxError): name it, no traceback
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        where = f" ({exc.filename}, line {exc.lineno})" if isinstance(exc, SyntaxError) and exc.filename else ""
        raise UnknownSamplerError(f"module {module_name!r} of sampler {spec!r} raised on import: {last}{where}") from exc
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UnknownSamplerError(f"module {module_name!r} has no attribute {attr!r} (sampler {spec!r})") from None
    if not (isinstance(obj, type) and issubclass(obj, Sampler)):
        raise UnknownSamplerError(f"{spec!r} is {obj!r}, not a subclass of sgmcmc.Sampler")
    if obj._update is Sampler._update:
        raise UnknownSamplerError(f"{spec!r} does not implement _update(group, params, grads): it is not a sampler "
                                  f"yet (see 'Adding a sampler' in the README)")
    if "name" not in vars(obj):  # not registered itself (a subclass must not report its parent's name)
        obj.name = spec
    return obj


def get(name: str) -> type:
    """The sampler class called ``name``: a registered name, an entry point, or ``'module:Class'``."""
    if isinstance(name, type):
        return _load_path(f"{name.__module__}:{name.__qualname__}")
    if not isinstance(name, str):
        raise UnknownSamplerError(f"sampler name must be a string, got {name!r}; valid: {', '.join(available())}")
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" in name:
        return _load_path(name)
    eps = _entry_points()
    if name in eps:
        cls = _load_path(eps[name].value)
        cls.name = name
        return cls
    raise UnknownSamplerError(
        f"unknown sampler {name!r}; valid: {', '.join(available())} (or 'module:Class' for your own)"
    )


def available() -> list[str]:
    """Sorted names of the registered and entry-point samplers."""
    return sorted(set(_REGISTRY) | set(_entry_points()))
