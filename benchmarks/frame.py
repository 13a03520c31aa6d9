"""Records -> one pandas frame, and how its rows are named and ordered (shared by the report's
tables and the figures, so a sampler's row reads and sorts the same in both)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

import sgmcmc

from . import lineup


def hyper_label(hyper: dict) -> str:
    """``k=v, ...`` of a run's hyperparameters but the temperature (its own column), sorted by key."""
    parts = []
    for k in sorted(hyper):
        if k == "temperature":
            continue
        v = hyper[k]
        parts.append(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}")  # 0.1 * 0.003: lr=0.0003
    return ", ".join(parts)


@lru_cache(maxsize=None)
def _class_defaults(sampler: str) -> tuple[tuple[str, Any], ...]:
    """The (name, default) pairs of the sampler class's own hyperparameters (cached: one lookup a
    sampler, not one a record); empty when it does not load here."""
    try:
        hypers = sgmcmc.get(sampler).all_hypers()
    except Exception:  # noqa: BLE001  (a sampler that no longer loads: show what the record holds)
        return ()
    return tuple((k, h.default) for k, h in hypers.items() if k not in ("num_data", "lr") and h.default is not None)


def tuning_label(variant: str, note: str) -> str:
    """How a row's hyperparameters were chosen, for the tables: the record's ``tuning`` note (the
    protocol and its trial count, or the config file), ``default lr (untuned)``, or ``custom``."""
    if variant == "custom":
        return "custom (--hyper)"
    if variant == "untuned":
        return "default lr (untuned)"
    return note or "published config"


def records_frame(records: list[dict]) -> pd.DataFrame:
    """One row per record: configuration columns, status, wall time, gradient evaluations, metrics."""
    rows = []
    for rec in records:
        cfg = rec["config"]
        hyper = cfg.get("hyper", {})
        sampler_prov = (rec.get("provenance") or {}).get("sampler") or {}
        # every hyperparameter the run used: the sampler's own defaults (provenance; a record written
        # before provenance held them: the class's current defaults) under the configured ones (and
        # the task-wide keys, which only the configuration holds)
        defaults = sampler_prov.get("hypers") or dict(_class_defaults(cfg["sampler"]))
        used = {**{k: v for k, v in defaults.items() if k != "lr" or "lr" not in hyper}, **hyper}
        peer = sampler_prov.get("peer") or {}
        variant = cfg.get("variant", "tuned")
        row = {
            "task": cfg["task"], "sampler": cfg["sampler"], "variant": variant,
            "seed": cfg["seed"], "profile": cfg["profile"], "hyper_label": hyper_label(used),
            "tuning": tuning_label(variant, rec.get("tuning", "")),
            "peer": f"{peer.get('library', '?')} {peer.get('version', '')}".strip() if peer else "",
            "lr": hyper.get("lr", np.nan), "temperature": float(hyper.get("temperature", 1.0)),
            "status": rec["status"], "wall_time_s": rec.get("wall_time_s", np.nan),
            "grad_evals": rec.get("grad_evals", np.nan), "key": rec["key"],
        }
        for k, v in rec["metrics"].items():
            if v is None or isinstance(v, (int, float)):
                row[k] = np.nan if v is None else float(v)
        rows.append(row)
    return pd.DataFrame(rows)


def row_order(sampler: str, variant: str) -> tuple:
    """Built-in samplers in their display order (:mod:`benchmarks.lineup`), then others by name;
    the tuned row before variants."""
    return (variant != "tuned", lineup.display_rank(sampler), sampler, variant)


def _differing(sampler: str, variant: str, hyper_label: str, frame: pd.DataFrame) -> str:
    """When ``frame`` (one task's records) holds the (sampler, variant) under several
    configurations, the ``k=v, ...`` of the keys in which this one differs from the others; else ""
    (so distinct configurations are ranked apart rather than averaged into one row)."""
    labels = sorted(set(frame.hyper_label[(frame.sampler == sampler) & (frame.variant == variant)]))
    if len(labels) < 2 or hyper_label not in labels:
        return ""
    parsed = [dict(part.partition("=")[::2] for part in label.split(", ") if part) for label in labels]
    mine = parsed[labels.index(hyper_label)]
    keys = sorted({k for d in parsed for k in d if any(e.get(k) != d.get(k) for e in parsed)})
    return ", ".join(f"{k}={mine.get(k, '-')}" for k in keys)


def _custom_label(sampler: str, hyper_label: str, frame: pd.DataFrame) -> str:
    """``sampler [custom]``, or, when the sampler was run with several ``--hyper`` overrides on the
    task, ``sampler [custom: k=v, ...]`` with the keys in which they differ."""
    diff = _differing(sampler, "custom", hyper_label, frame)
    return f"{sampler} [custom: {diff}]" if diff else f"{sampler} [custom]"


def row_label(sampler: str, variant: str, hyper_label: str, frame: pd.DataFrame) -> str:
    """How a row is named in the summary and the figures: the sampler (its tuned row), ``sampler
    [custom...]`` (see :func:`_custom_label`) or ``sampler [variant]``; where ``frame`` holds the
    row under several configurations, the keys that tell them apart are added. Pass one task's
    records: a sampler's tuned lr differs from task to task."""
    if "peer" in frame and len(frame):  # a peer library's sampler: marked with the library and its version
        peers = frame.peer[(frame.sampler == sampler) & (frame.peer != "")]
        if len(peers):
            sampler = f"{sampler} ({peers.iloc[0]})"
    if variant == "custom":
        return _custom_label(sampler, hyper_label, frame)
    diff = _differing(sampler, variant, hyper_label, frame)  # two tuned.toml choices, say
    tags = [t for t in ("" if variant == "tuned" else variant, diff) if t]
    return f"{sampler} [{'; '.join(tags)}]" if tags else sampler
