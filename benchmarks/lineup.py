"""The built-in samplers: which they are, their display order, colour, marker and default config.

One place, read from ``benchmarks/configs/samplers.toml`` (one ``[samplers.<name>]`` table per
built-in, in display order). The built-ins are the samplers the ``sgmcmc`` package registers itself
(their class lives in an ``sgmcmc.*`` module); a user's sampler (``module:Class``, an entry point)
is not one. Every consumer asks here: ``run``'s default lineup (:func:`builtin_samplers`), the
leaderboard's row order (:func:`display_rank`), every figure's colours (:func:`style`), the tuning
scripts (:func:`tuned_samplers`, :func:`fixed_hypers`) and the studies (:func:`baseline`).

A sampler not listed in the file sorts after the listed ones and gets a colour derived from its
name (:func:`style`, deterministic), so adding a built-in touches ``sgmcmc/<name>.py`` and its
config entries only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import sgmcmc

SAMPLERS_FILE = Path(__file__).resolve().parent / "configs" / "samplers.toml"
#: the markers of figures, in turn (a sampler not in the file takes one by its name)
MARKERS = ("o", "s", "^", "D", "v", "P", "*", "h")


@dataclass(frozen=True)
class Entry:
    """One built-in sampler's table in ``samplers.toml``."""

    name: str
    rank: int
    color: str
    marker: str
    fixed: dict[str, Any] = field(default_factory=dict)
    baseline: bool = False


@lru_cache(maxsize=None)
def entries(path: str | os.PathLike = SAMPLERS_FILE) -> dict[str, Entry]:
    """name -> :class:`Entry`, in the file's (display) order."""
    path = Path(path)
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8")).get("samplers", {})
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"sampler lineup {path}: {exc}") from exc
    out = {}
    for rank, (name, cfg) in enumerate(table.items()):
        unknown = set(cfg) - {"color", "marker", "fixed", "baseline"}
        if unknown:
            raise ValueError(f"sampler lineup {path}: [samplers.{name}] has unknown key(s) {', '.join(sorted(unknown))}; "
                             f"valid: color, marker, fixed, baseline")
        out[name] = Entry(name, rank, str(cfg.get("color", f"C{rank % 10}")), str(cfg.get("marker", MARKERS[rank % len(MARKERS)])),
                          dict(cfg.get("fixed", {})), bool(cfg.get("baseline", False)))
    return out


def is_builtin(name: str) -> bool:
    """Is ``name`` registered by the sgmcmc package itself (not a plug-in, not ``module:Class``)?"""
    try:
        cls = sgmcmc.get(name)
    except (ValueError, ImportError, TypeError):
        return False
    return cls.__module__.split(".")[0] == "sgmcmc" and ":" not in name


def display_rank(name: str) -> int:
    """The sampler's place in tables and legends: its index in the file; every other sampler after."""
    listed = entries()
    return listed[name].rank if name in listed else len(listed)


def builtin_samplers() -> tuple[str, ...]:
    """The built-in samplers in display order (listed ones first, then any other by name):
    ``run``'s default lineup."""
    names = [n for n in sgmcmc.available() if is_builtin(n)]
    return tuple(sorted(names, key=lambda n: (display_rank(n), n)))


def baseline() -> str | None:
    """The optimiser baseline (sgd): the reference of a study, not tuned itself."""
    return next((e.name for e in entries().values() if e.baseline and is_builtin(e.name)), None)


def tuned_samplers() -> tuple[str, ...]:
    """The built-ins whose step size a tuning grid chooses (all but the baseline)."""
    return tuple(n for n in builtin_samplers() if n != baseline())


def fixed_hypers(name: str) -> dict[str, Any]:
    """Hyperparameters other than lr that a tuning grid holds fixed for ``name`` (empty if none)."""
    entry = entries().get(name)
    return dict(entry.fixed) if entry else {}


def style(name: str) -> dict[str, str]:
    """Colour and marker of ``name`` in every figure: its entry's, else derived from its name
    (the same on every machine: no hash randomisation)."""
    listed = entries()
    if name in listed:
        return {"color": listed[name].color, "marker": listed[name].marker}
    h = sum(map(ord, name))
    used = {e.color for e in listed.values()}
    free = [f"C{i}" for i in range(10) if f"C{i}" not in used] or [f"C{i}" for i in range(10)]
    return {"color": free[h % len(free)], "marker": MARKERS[(len(listed) + h % 5) % len(MARKERS)]}
