"""Configs and command-line choices -> the grid of run specs.

The tuned hyperparameters live in ``benchmarks/configs/*.toml`` (one table per task, one entry per
sampler; ``samplers.toml`` is the sampler lineup, :mod:`benchmarks.lineup`, not a task).
:func:`build_grid` turns a suite, a profile and the CLI's choices (samplers, seeds, ``--hyper``
overrides, ``--tasks``) into :class:`~benchmarks.records.RunSpec` s: tuned rows x seeds, labelled
extra rows (e.g. tempered posteriors) x seeds, and the step-size sweeps.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import sgmcmc

from . import lineup
from .records import RunSpec
from .tasks import all_tasks, get_task, suites, tasks_for

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEFAULT_SEEDS = {"quick": 1, "default": 3, "full": 5}
#: hyperparameter keys of a config table that are not sampler hyperparameters
_CONFIG_META = ("sweep", "extra", "note", "tuning")
#: a row's variant by how its hyperparameters were chosen: a config entry (the published configs,
#: or a ``tune`` output), or none (a sampler without an entry runs at sgld's tuned lr, untuned)
UNTUNED = "untuned"
#: top-level tables of the config files that are not tasks (the sampler lineup, :mod:`benchmarks.lineup`)
NOT_TASKS = ("samplers",)


def default_samplers() -> tuple[str, ...]:
    """The samplers a suite runs when ``--samplers`` is not given: the built-ins, in display order."""
    return lineup.builtin_samplers()


def longest_first(specs: list[RunSpec]) -> list[RunSpec]:
    """``specs`` with the costliest tasks first (``Task.relative_cost``), otherwise in order."""
    return sorted(specs, key=lambda spec: -get_task(spec.task).relative_cost)


def sweep_factors(factors: list[float], points: int | None = None) -> list[float]:
    """The sweep's step-size factors, thinned to ``points`` of them (a profile's ``sweep_points``:
    the quick smoke profile runs 3) evenly spread over the sorted factors, ends included; all of
    them when ``points`` is None or not fewer."""
    factors = sorted(factors)
    if points is None or points >= len(factors):
        return factors
    if points <= 1:
        return [min(factors, key=lambda f: abs(math.log(f)))]  # the centre (the tuned lr)
    return [factors[round(i * (len(factors) - 1) / (points - 1))] for i in range(points)]


def load_configs(config_dir: str | os.PathLike | None = None, origins: dict[str, Path] | None = None) -> dict[str, dict]:
    """task name -> its table from the TOML files of ``config_dir`` (each task in one file; default
    :data:`CONFIG_DIR`); ``origins``, when given, is filled with each task's file."""
    config_dir = CONFIG_DIR if config_dir is None else config_dir
    out: dict[str, dict] = {}
    origin: dict[str, Path] = {} if origins is None else origins
    for path in sorted(Path(config_dir).glob("*.toml")):
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"config {path}: {exc}") from exc
        for task, table in data.items():
            if task in NOT_TASKS:
                continue
            if task in out:
                raise ValueError(f"task {task!r} is configured in both {origin[task]} and {path}")
            out[task], origin[task] = table, path
    return out


def task_wide_keys(task_cfg: dict) -> dict:
    """A config table's task-wide keys: its scalars (e.g. the prior), the same for every sampler."""
    return {k: v for k, v in task_cfg.items() if k not in _CONFIG_META and not isinstance(v, (dict, list))}


def row_for(task_cfg: dict, sampler: str) -> tuple[dict, str, str]:
    """``(hyper, variant, tuning)`` of ``sampler``'s row on a task: its own entry (variant
    ``tuned``; ``tuning`` says how it was chosen: the entry's or the table's ``tuning`` key); else the
    entry of the built-in it mirrors (a peer library's adapter class with ``mirrors = "sghmc"``, whose
    hyperparameters are translated to the peer's units by the adapter); else sgld's lr (variant
    ``untuned``: the summary marks it, see ``python -m benchmarks tune``)."""
    task_wide = task_wide_keys(task_cfg)
    table_note = str(task_cfg.get("tuning", "config file"))
    entry = task_cfg.get(sampler)
    if isinstance(entry, dict):
        own = {k: v for k, v in entry.items() if k not in _CONFIG_META}
        return {**task_wide, **own}, "tuned", str(entry.get("tuning", table_note))
    try:
        mirrored = getattr(sgmcmc.get(sampler), "mirrors", None)
    except (ValueError, ImportError, TypeError):
        mirrored = None
    if isinstance(mirrored, str) and isinstance(task_cfg.get(mirrored), dict):
        hyper, _variant, note = row_for(task_cfg, mirrored)
        return hyper, "tuned", f"{mirrored}'s ({note})"
    return hyper_for(task_cfg, sampler), UNTUNED, "default lr: sgld's (untuned)"


def merge_tuned(configs: dict[str, dict], tuned: dict[str, dict], path: str | os.PathLike = "tuned.toml") -> dict[str, dict]:
    """``configs`` with the entries of a ``tune`` output (:mod:`benchmarks.tuning`) laid over them:
    for each (task, sampler) of ``tuned``, its entry replaces the config's (a new dict; neither input
    is changed). A ValueError names ``path`` and the bad table or entry: a task that does not exist,
    a value that is not a table, a ``tuning`` note that is not a string."""
    from .tasks import all_tasks

    known = all_tasks()
    out = {task: dict(table) for task, table in configs.items()}
    for task, table in tuned.items():
        if not isinstance(table, dict):
            raise ValueError(f"tuned hyperparameters {path}: {task} = {table!r} is not a table; valid: [task] "
                             f"tables of sampler = {{ lr = ... }} entries")
        if task not in known:
            raise ValueError(f"tuned hyperparameters {path}: [{task}] is not a task; valid: {', '.join(known)}")
        merged = out.setdefault(task, {})
        for sampler, entry in table.items():
            if not isinstance(entry, dict):
                raise ValueError(f"tuned hyperparameters {path}: [{task}] {sampler} = {entry!r} is not a table; "
                                 f"valid: {sampler} = {{ lr = ..., tuning = \"...\" }}")
            if not isinstance(entry.get("tuning", ""), str):
                raise ValueError(f"tuned hyperparameters {path}: [{task}] {sampler}.tuning = {entry['tuning']!r}; "
                                 f"valid: a string")
            merged[sampler] = dict(entry)
    return out


def hyper_for(task_cfg: dict, sampler: str) -> dict:
    """The tuned hyperparameters of ``sampler`` on a task, after the task-wide keys (a scalar at
    the task's level, e.g. its prior: the same for every sampler). A sampler with no entry of its
    own (a user's ``module:Class``) starts from sgld's lr, which means the same for every sampler."""
    task_wide = task_wide_keys(task_cfg)
    if sampler in task_cfg:
        return {**task_wide, **{k: v for k, v in task_cfg[sampler].items() if k not in _CONFIG_META}}
    if "sgld" in task_cfg:
        return {**task_wide, "lr": task_cfg["sgld"]["lr"]}
    raise ValueError(f"no hyperparameters configured for {sampler!r} and no sgld entry to start from")


#: the largest magnitude a hyperparameter may have: the parameters are float32
FLOAT32_MAX = 3.4028234663852886e38


def check_representable(hyper: dict[str, Any]) -> None:
    """ValueError unless every number of ``hyper`` is finite in float32 (the parameters' dtype), and
    so is the Langevin noise's variance 2 lr T (its scale sqrt(2 lr T / N) for any N >= 1)."""
    for key, value in hyper.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value) or abs(value) >= FLOAT32_MAX:
                raise ValueError(f"{key}={value!r} is not representable in float32 (the parameters' dtype); "
                                 f"valid: |{key}| < {FLOAT32_MAX:.4g}")
    lr, temperature = hyper.get("lr"), hyper.get("temperature", 1.0)
    if isinstance(lr, (int, float)) and isinstance(temperature, (int, float)) and not isinstance(lr, bool):
        if not 2.0 * abs(lr) * abs(temperature) < FLOAT32_MAX:
            raise ValueError(f"lr={lr!r} with temperature={temperature!r}: the noise variance 2 lr T overflows "
                             f"float32; valid: 2 lr T < {FLOAT32_MAX:.4g}")


def check_overrides(overrides: dict[str, Any], samplers: Iterable[str], tasks: Iterable[Any]) -> None:
    """``--hyper KEY=VALUE`` before any run: every key must be a task-wide key of every selected task
    or a hyperparameter of every selected sampler there, in its valid range; else a ValueError
    naming the key, the value and the valid ones (the CLI exits 2 and nothing runs)."""
    if not overrides:
        return
    if "num_data" in overrides:
        raise ValueError("--hyper num_data: N is set by each task (the size of its data set), not by --hyper")
    try:
        check_representable(overrides)
    except ValueError as exc:
        raise ValueError(f"--hyper {exc}") from None
    tasks = list(tasks)
    for name in samplers:
        cls = sgmcmc.get(name)
        own = cls.all_hypers()
        for task in tasks:
            valid = sorted((set(own) - {"num_data"}) | set(task.task_keys))
            unknown = [k for k in overrides if k not in valid]
            if unknown:
                raise ValueError(f"--hyper {', '.join(unknown)}: not a hyperparameter of {name} on {task.name}; "
                                 f"valid: {', '.join(valid)}")
        for key, value in overrides.items():
            if key in own:
                try:
                    own[key].check(cls.__name__, key, value)
                except sgmcmc.HyperparameterError as exc:
                    raise ValueError(f"--hyper {key}: {exc}") from None
    for task in tasks:
        task_opts = {k: v for k, v in overrides.items() if k in task.task_keys}
        if task_opts:
            try:
                task.check_task_keys(task_opts)
            except ValueError as exc:
                raise ValueError(f"--hyper on {task.name}: {exc}") from None


def check_configs(configs: dict[str, dict], samplers: Iterable[str], tasks: Iterable[Any],
                  origins: dict[str, Path] | None = None) -> None:
    """The config tables of ``tasks`` before any run, as ``--hyper`` is checked: every hyperparameter
    of a selected sampler (its own entry, the task-wide keys, each labelled extra row) must be one of
    the sampler's or the task's, in its valid range and finite in float32, and the sweep's factors
    positive numbers; else a ValueError naming the file, the table and the key."""
    origins = origins or {}
    names = list(samplers)
    for task in tasks:
        cfg = configs.get(task.name)
        if not cfg:
            continue
        where = f"config {origins.get(task.name, 'for ' + task.name)}: [{task.name}]"
        sweep = cfg.get("sweep", [])
        if not isinstance(sweep, list) or not all(isinstance(f, (int, float)) and not isinstance(f, bool)
                                                  and math.isfinite(f) and f > 0 for f in sweep):
            raise ValueError(f"{where} sweep = {sweep!r}: valid: a list of positive numbers (factors of the tuned lr)")
        rows = [(name, f"{name}.", {k: v for k, v in cfg[name].items() if k not in _CONFIG_META}
                 if isinstance(cfg.get(name), dict) else None) for name in names]
        for i, extra in enumerate(cfg.get("extra", [])):
            if isinstance(extra, dict) and extra.get("sampler") in names:
                own = {k: v for k, v in extra.items() if k not in ("sampler", "label", "note")}
                rows.append((extra["sampler"], f"extra[{i}] ({extra.get('label', '?')}).", own))
        task_wide = task_wide_keys(cfg)
        for name, prefix, own in rows:
            cls = sgmcmc.get(name)
            hypers = cls.all_hypers()
            valid = sorted((set(hypers) - {"num_data"}) | set(task.task_keys))
            try:
                hyper = {**task_wide, **(own if own is not None else row_for(cfg, name)[0])}
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{where} {name}: {exc}") from None
            for key, value in hyper.items():
                label = f"{prefix}{key}" if own is not None and key in own else key
                if key not in valid and own is not None and key in own:  # task-wide keys pass to the task
                    raise ValueError(f"{where} {label} = {value!r}: not a hyperparameter of {name} on {task.name}; "
                                     f"valid: {', '.join(valid)}")
                if key in hypers:
                    try:
                        hypers[key].check(cls.__name__, key, value)
                        check_representable({key: value})
                    except (sgmcmc.HyperparameterError, ValueError) as exc:
                        raise ValueError(f"{where} {label} = {value!r}: {exc}") from None
            try:
                check_representable({k: v for k, v in hyper.items() if k in ("lr", "temperature")})
                task_opts = {k: v for k, v in hyper.items() if k in task.task_keys}
                if task_opts:
                    task.check_task_keys(task_opts)
            except ValueError as exc:
                raise ValueError(f"{where} {name}: {exc}") from None


def build_grid(suite: str, profile: str, samplers: Iterable[str] | None = None, seeds: int | None = None,
               sweep: bool = True, overrides: dict | None = None,
               configs: dict[str, dict] | None = None, tasks: Iterable[str] | None = None,
               origins: dict[str, Path] | None = None) -> list[RunSpec]:
    """Every run of ``suite`` under ``profile``: tuned rows x seeds, labelled extra rows
    (e.g. tempered posteriors) x seeds, and, for tasks with a ``sweep``, the step-size sweep
    (the tuned lr times each factor, seed 0)."""
    origins = {} if origins is None else origins
    configs = load_configs(origins=origins) if configs is None else configs
    seeds = DEFAULT_SEEDS[profile] if seeds is None else seeds
    names = list(samplers) if samplers else list(default_samplers())
    overrides = overrides or {}
    specs: list[RunSpec] = []
    selected = tasks_for(suite, profile)
    if tasks is not None:
        wanted = list(tasks)
        if not wanted:
            raise ValueError(f"--tasks names no task; valid for suite {suite!r} in profile {profile!r}: "
                             f"{', '.join(t.name for t in selected)}")
        names_in_suite = [t.name for t in selected]
        unknown = [t for t in wanted if t not in names_in_suite]
        if unknown:
            known, in_suite = all_tasks(), suites().get(suite, [])
            elsewhere = [f"{t} runs only in profile(s) {', '.join(known[t].profiles)}" for t in unknown
                         if t in known and t in in_suite]
            elsewhere += [f"{t} is in suite(s) {', '.join(n for n, ts in suites().items() if t in ts and n != 'all')}"
                          for t in unknown if t in known and t not in in_suite]
            raise ValueError(f"unknown task(s) {', '.join(unknown)} for suite {suite!r} in profile {profile!r}; "
                             f"valid: {', '.join(names_in_suite)}" + (f" ({'; '.join(elsewhere)})" if elsewhere else ""))
        selected = [t for t in selected if t.name in wanted]
    check_overrides(overrides, names, selected)
    check_configs(configs, names, selected, origins)
    for task in selected:
        cfg = configs.get(task.name, {})
        for name in names:
            hyper, variant, tuning = row_for(cfg, name)
            hyper = {**hyper, **overrides}
            if overrides:
                variant, tuning = "custom", "--hyper"
            specs += [RunSpec.make(task.name, name, hyper, s, profile, variant, tuning) for s in range(seeds)]
            if sweep and not overrides and "sweep" in cfg:
                for factor in sweep_factors(cfg["sweep"], task.protocol(profile).get("sweep_points")):
                    if factor == 1.0:
                        continue  # the tuned seed-0 run is the sweep's centre point
                    swept = {**hyper, "lr": hyper["lr"] * factor}
                    specs.append(RunSpec.make(task.name, name, swept, 0, profile, "sweep"))
        for extra in cfg.get("extra", []):
            if extra["sampler"] in names and not overrides:
                hyper = {k: v for k, v in extra.items() if k not in ("sampler", "label", "note")}
                base, _variant, tuning = row_for(cfg, extra["sampler"])
                hyper = {**base, **hyper}
                specs += [RunSpec.make(task.name, extra["sampler"], hyper, s, profile, extra["label"], tuning)
                          for s in range(seeds)]
    return specs
