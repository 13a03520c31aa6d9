"""The grid of runs, their records, and the executors that run them.

A run is one (task, sampler, hyperparameters, seed, profile). Its record is one JSON file,
``<results>/records/<hash>.json``, named by the hash of that configuration and written atomically
(a temporary file in the same folder, fsync, then ``os.replace``), so an interrupted suite never
leaves a half-written record and a rerun resumes where it stopped: every configuration that
already has an ``ok`` or ``diverged`` record is skipped unless ``force``; a ``failed`` one (a crash,
not a property of the sampler) is retried. A corrupt record is reported by its path and treated as
missing.

Executors: ``local`` runs in this process (``jobs=1``) or in a pool of ``jobs`` processes, each
with ``torch.set_num_threads(cores // jobs)`` so the machine is not oversubscribed; ``dask``
submits each run to a ``dask.distributed`` cluster (see :mod:`benchmarks.distributed`). Every
worker writes its own record.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import platform
import random
import subprocess
import tempfile
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

SCHEMA_VERSION = 1
RECORD_STATUSES = ("ok", "diverged", "failed")
DONE_STATUSES = ("ok", "diverged")


# --------------------------------------------------------------------------- run specs
@dataclass(frozen=True)
class RunSpec:
    """One configuration of the grid. ``variant`` labels the row it belongs to (tuned, sweep, ...)."""

    task: str
    sampler: str
    hyper: tuple[tuple[str, Any], ...]
    seed: int
    profile: str
    variant: str = "tuned"

    @classmethod
    def make(cls, task: str, sampler: str, hyper: dict, seed: int, profile: str, variant: str = "tuned") -> "RunSpec":
        return cls(task, sampler, tuple(sorted(hyper.items())), int(seed), profile, variant)

    @classmethod
    def from_config(cls, config: dict) -> "RunSpec":
        """The spec a record's ``config`` (:meth:`config`) was made from."""
        return cls.make(config["task"], config["sampler"], config["hyper"], config["seed"], config["profile"],
                        config.get("variant", "tuned"))

    @property
    def hyper_dict(self) -> dict[str, Any]:
        return dict(self.hyper)

    def config(self) -> dict[str, Any]:
        return {"task": self.task, "sampler": self.sampler, "hyper": self.hyper_dict, "seed": self.seed,
                "profile": self.profile, "variant": self.variant}

    @property
    def key(self) -> str:
        """sha256 of the canonical JSON of the configuration (first 20 hex digits)."""
        blob = json.dumps(self.config(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def label(self) -> str:
        hyper = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.hyper)
        return f"{self.task} / {self.sampler} ({hyper}) seed {self.seed}"


# --------------------------------------------------------------------------- records
class RecordError(ValueError):
    """A record file that cannot be read or does not hold a valid record."""


def records_dir(results_dir: str | os.PathLike) -> Path:
    return Path(results_dir) / "records"


def record_path(results_dir: str | os.PathLike, spec: RunSpec) -> Path:
    return records_dir(results_dir) / f"{spec.key}.json"


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically: temp file in the same folder, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; a record is as readable as any file
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


#: a record's temporary file older than this was left by a writer that was killed (a write takes ms)
STALE_TEMP_S = 600.0


def remove_stale_temp_files(results_dir: str | os.PathLike, older_than_s: float = STALE_TEMP_S) -> int:
    """Delete the temporary files of record writes that never finished (the writer killed with
    kill -9 between create and rename), if older than ``older_than_s``; returns how many."""
    folder = records_dir(results_dir)
    if not folder.is_dir():
        return 0
    now, removed = time.time(), 0
    for tmp in folder.glob(".*.json.*.tmp"):
        try:
            if tmp.is_file() and now - tmp.stat().st_mtime > older_than_s:
                tmp.unlink()
                removed += 1
        except FileNotFoundError:  # another suite cleaned it meanwhile
            pass
    return removed


def longest_first(specs: list[RunSpec]) -> list[RunSpec]:
    """``specs`` with the costliest tasks first (``Task.relative_cost``), otherwise in order."""
    from .tasks import get_task

    return sorted(specs, key=lambda spec: -get_task(spec.task).relative_cost)


def _json_safe(obj: Any) -> Any:
    """NaN and +-Inf become null (strict JSON has no such numbers); numpy scalars become Python."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


#: how a metric that is +-inf is written (strict JSON has no such numbers): an infinite KL (a
#: collapsed sampler) is a measurement, the worst possible, not a missing value. NaN (undefined,
#: e.g. the R-hat of chains that do not move) is written as null.
_NONFINITE = {"inf": math.inf, "-inf": -math.inf}


def _encode_metric(value: Any) -> Any:
    if isinstance(value, (float, np.floating)) and np.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def write_record(results_dir: str | os.PathLike, record: dict) -> Path:
    path = records_dir(results_dir) / f"{record['key']}.json"
    record = {**record, "metrics": {k: _encode_metric(v) for k, v in record.get("metrics", {}).items()}}
    atomic_write_text(path, json.dumps(_json_safe(record), indent=1, sort_keys=True, allow_nan=False) + "\n")
    return path


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_record(record: Any) -> str | None:
    """What is wrong with a parsed record (None if nothing): its shape, its types, and its key,
    which must be the hash of its configuration (a record edited by hand no longer is)."""
    if not isinstance(record, dict):
        return f"a record must be a JSON object, got {type(record).__name__}"
    missing = [k for k in ("key", "config", "status", "metrics") if k not in record]
    if missing:
        return f"record lacks {', '.join(missing)}"
    if record["status"] not in RECORD_STATUSES:
        return f"status {record['status']!r} is not one of {', '.join(RECORD_STATUSES)}"
    config = record["config"]
    if not isinstance(config, dict) or any(k not in config for k in ("task", "sampler", "hyper", "seed", "profile")):
        return "config must hold task, sampler, hyper, seed and profile"
    for k in ("task", "sampler", "profile", "variant"):
        if k in config and not (isinstance(config[k], str) and config[k]):
            return f"config.{k} must be a non-empty string, got {config[k]!r}"
    if not isinstance(config["seed"], int) or isinstance(config["seed"], bool):
        return f"config.seed must be an integer, got {config['seed']!r}"
    hyper = config["hyper"]
    if not isinstance(hyper, dict) or not all(isinstance(v, (str, int, float)) for v in hyper.values()):
        return f"config.hyper must be an object of numbers and strings, got {hyper!r}"
    if "temperature" in hyper and not _is_number(hyper["temperature"]):
        return f"config.hyper.temperature must be a number, got {hyper['temperature']!r}"
    if not isinstance(record["metrics"], dict):
        return "metrics must be an object"
    bad = {k: v for k, v in record["metrics"].items() if not (v is None or _is_number(v) or v in _NONFINITE)}
    if bad:
        return f"metrics must be numbers (or null, 'inf', '-inf'); got {bad}"
    for k in ("wall_time_s", "grad_evals", "sampling_time_s"):
        if record.get(k) is not None and not _is_number(record[k]):
            return f"{k} must be a number, got {record[k]!r}"
    try:
        spec = RunSpec.from_config(config)
    except (TypeError, ValueError) as exc:
        return f"config cannot be read as a run ({exc})"
    if spec.key != record["key"]:
        return f"key {record['key']!r} is not the hash of its configuration ({spec.key}): edited by hand?"
    return None


def died_record(spec: RunSpec, error: str, **provenance: Any) -> dict:
    """The ``failed`` record written for a run whose worker process died (it wrote nothing itself):
    the leaderboard shows the run as failed, and the next invocation retries it."""
    return {"schema": SCHEMA_VERSION, "key": spec.key, "config": spec.config(), "status": "failed", "metrics": {},
            "error": error, "provenance": {**base_provenance(), **provenance}}


def read_record(path: str | os.PathLike) -> dict:
    """Read and validate one record; raise :class:`RecordError` naming the path and the problem."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(f"{path}: not a readable JSON record ({exc})") from None
    problem = _check_record(record)
    if problem is not None:
        raise RecordError(f"{path}: {problem}")
    record["metrics"] = {k: _NONFINITE.get(v, v) if isinstance(v, str) else v for k, v in record["metrics"].items()}
    return record


def load_records(results_dir: str | os.PathLike, warn: Callable[[str], None] | None = None) -> list[dict]:
    """Every valid record under ``results_dir``; each invalid one is reported through ``warn``."""
    out = []
    folder = records_dir(results_dir)
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.json")):
        try:
            out.append(read_record(path))
        except RecordError as exc:
            if warn is not None:
                warn(f"skipping corrupt record {exc}")
    return out


# --------------------------------------------------------------------------- provenance
_PROVENANCE_CACHE: dict | None = None


def git_commit(root: str | os.PathLike | None = None) -> str | None:
    """HEAD of the checkout this package runs from (or ``root``), with '+dirty' when a tracked file
    outside ``results/`` has local changes: the suite's own outputs (records, tables, figures)
    written into the checkout do not make the next run's code look edited.

    A copy of the source without git (an unpacked archive, a container image, a remote machine
    handed the working tree) has no HEAD: then ``$SGMCMC_GIT_COMMIT`` names the commit it was
    copied from, recorded as "<value> (SGMCMC_GIT_COMMIT)"; unset, None."""
    root = Path(__file__).resolve().parent.parent if root is None else Path(root)
    given = os.environ.get("SGMCMC_GIT_COMMIT", "").strip()
    fallback = f"{given} (SGMCMC_GIT_COMMIT)" if given else None
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return fallback
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)results"], cwd=root, capture_output=True, text=True, timeout=5)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return fallback


def base_provenance() -> dict:
    global _PROVENANCE_CACHE
    if _PROVENANCE_CACHE is None:
        from importlib.metadata import PackageNotFoundError, version

        versions = {"python": platform.python_version()}
        for pkg in ("torch", "numpy", "scipy", "sgmcmc-bench", "arviz", "scikit-learn", "torchvision"):
            try:
                versions[pkg] = version(pkg)
            except PackageNotFoundError:
                pass
        _PROVENANCE_CACHE = {
            "versions": versions,
            "git_commit": git_commit(),
            "host": platform.node(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
        }
    return dict(_PROVENANCE_CACHE)


# --------------------------------------------------------------------------- one run
@dataclass
class RunOptions:
    """Options of the whole invocation that every run shares (not part of the run's identity)."""

    results_dir: str = "results"
    device: str = "cpu"
    data_dir: str | None = None
    offline: bool | None = None
    show_progress: bool = False
    threads: int | None = None


def resolve_device(name: str) -> torch.device:
    """'cpu', 'cuda' (an error without a GPU) or 'auto' (cuda when available, else cpu)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and not (name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit())):
        raise ValueError(f"unknown device {name!r}; valid: cpu, cuda, cuda:N, auto")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: no CUDA GPU is available here; use --device cpu or --device auto")
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s); "
                         f"valid: cuda:0 ... cuda:{torch.cuda.device_count() - 1}, cuda, auto, cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run_one(spec: RunSpec, opts: RunOptions) -> dict:
    """Run one configuration and write its record; returns the record. Only an interrupt escapes."""
    import sgmcmc

    from .tasks import get_task
    from .tasks.base import Diverged, RunContext

    if opts.threads:
        torch.set_num_threads(opts.threads)
    device = resolve_device(opts.device)
    started = time.time()
    record: dict[str, Any] = {
        "schema": SCHEMA_VERSION, "key": spec.key, "config": spec.config(), "metrics": {},
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
    }
    ctx = RunContext(seed=spec.seed, profile=spec.profile, device=device, data_dir=opts.data_dir,
                     offline=opts.offline, show_progress=opts.show_progress)
    t0 = time.perf_counter()
    try:
        task = get_task(spec.task)
        sampler_cls = sgmcmc.get(spec.sampler)
        seed_everything(spec.seed)
        result = task.run(sampler_cls, spec.hyper_dict, ctx)
        record.update(status="ok", metrics=result.metrics, grad_evals=result.grad_evals,
                      sampling_time_s=result.sampling_time_s, artifacts=result.artifacts)
    except Diverged as exc:
        record.update(status="diverged", divergence={"step": exc.step, "reason": exc.reason})
    except Exception as exc:  # recorded, the grid goes on; KeyboardInterrupt is not caught
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                      traceback=traceback.format_exc(limit=8))
    record["wall_time_s"] = time.perf_counter() - t0
    openmp_wait = {k: os.environ[k] for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in os.environ}
    record["provenance"] = {**base_provenance(), "device": str(device),
                            "torch_threads": torch.get_num_threads(),
                            "openmp_wait": openmp_wait, "datasets": ctx.datasets,
                            "sampler": sampler_provenance(spec)}
    if ctx.threads is not None:  # the task ran on its own thread count (the toy tasks: 1)
        record["provenance"]["task_threads"] = ctx.threads
    write_record(opts.results_dir, record)
    return record


def sampler_provenance(spec: RunSpec) -> dict[str, Any]:
    """What the record's configuration leaves to the sampler's code: its class, the source file's
    sha256, and every hyperparameter it ran with, its own defaults included (a user's sampler whose
    default changes is then told apart; ``num_data`` is the task's). Empty when it cannot be loaded."""
    import inspect

    import sgmcmc

    try:
        cls = sgmcmc.get(spec.sampler)
        given = spec.hyper_dict
        hypers = {k: given.get(k, h.default) for k, h in cls.all_hypers().items() if k != "num_data"}
        out: dict[str, Any] = {"class": f"{cls.__module__}.{cls.__qualname__}", "hypers": hypers}
        source = inspect.getsourcefile(cls)
        if source:
            out["file_sha256"] = hashlib.sha256(Path(source).read_bytes()).hexdigest()
        return out
    except Exception:  # noqa: BLE001  (provenance must never fail a record)
        return {}


class TaskNotReady(RuntimeError):
    """A task of the grid cannot run here (its data is missing, ...): nothing was started."""


def check_ready(task_names: Iterable[str], opts: RunOptions) -> None:
    """Ask every task of the grid whether it can run, before any run starts."""
    from .tasks import get_task
    from .tasks.base import RunContext

    for name in sorted(task_names):
        ctx = RunContext(seed=0, device=resolve_device(opts.device), data_dir=opts.data_dir, offline=opts.offline)
        try:
            get_task(name).check_ready(ctx)
        except Exception as exc:
            raise TaskNotReady(f"task {name} cannot run: {exc}") from exc


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)
    # a worker ignores Ctrl-C: the parent decides, cancels what is pending, and lets running runs end
    import signal
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # and dies with its parent (kill -9 of the suite): the run in progress leaves no record (records
    # are written atomically), rather than the worker running on, orphaned, and then idling for ever
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="sgmcmc-parent-watch", daemon=True).start()


# --------------------------------------------------------------------------- the grid
def pending(specs: Iterable[RunSpec], results_dir: str | os.PathLike, force: bool = False,
            warn: Callable[[str], None] | None = None) -> tuple[list[RunSpec], list[RunSpec]]:
    """Split ``specs`` into (to run, already done). A corrupt record counts as missing."""
    todo, done = [], []
    for spec in specs:
        path = record_path(results_dir, spec)
        if not force and path.exists():
            try:
                if read_record(path)["status"] in DONE_STATUSES:
                    done.append(spec)
                    continue
            except RecordError as exc:
                if warn:
                    warn(f"corrupt record, will rerun: {exc}")
        todo.append(spec)
    return todo, done


@dataclass
class GridSummary:
    total: int = 0
    skipped: int = 0
    counts: dict = field(default_factory=lambda: {s: 0 for s in RECORD_STATUSES})
    wall_time_s: float = 0.0
    interrupted: bool = False
    failures: list = field(default_factory=list)

    def add(self, record: dict) -> None:
        self.counts[record["status"]] += 1
        if record["status"] == "failed":
            self.failures.append((record["config"], record.get("error", "")))

    @property
    def exit_status(self) -> int:
        """The command's exit status for this grid: 130 interrupted, 1 a run failed, else 0."""
        return 130 if self.interrupted else 1 if self.counts["failed"] else 0

    def line(self) -> str:
        parts = [f"{n} {s}" for s, n in self.counts.items() if n]
        return (f"{self.total} runs: {self.skipped} already recorded" + (", " if parts else "") + ", ".join(parts)
                + f" in {self.wall_time_s:.1f} s" + (" (interrupted)" if self.interrupted else ""))


def cpu_threads_per_worker(jobs: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(jobs, 1))


def execute(specs: list[RunSpec], opts: RunOptions, *, jobs: int = 1, force: bool = False,
            executor: str = "local", scheduler: str | None = None,
            log: Callable[[str], None] = print) -> GridSummary:
    """Run every spec without a record (all with ``force``); returns counts by status."""
    from tqdm.auto import tqdm

    specs = list({spec.key: spec for spec in specs}.values())  # the same configuration named twice runs once
    summary = GridSummary(total=len(specs))
    todo, done = pending(specs, opts.results_dir, force, warn=log)
    summary.skipped = len(done)
    stale = remove_stale_temp_files(opts.results_dir)
    if stale:
        log(f"removed {stale} temporary file(s) of record writes interrupted over {STALE_TEMP_S:.0f} s ago "
            f"in {records_dir(opts.results_dir)}")
    if not todo:
        return summary
    if jobs > 1 or executor == "dask":
        todo = longest_first(todo)
    check_ready({spec.task for spec in todo}, opts)
    t0 = time.perf_counter()
    bar = tqdm(total=len(todo), desc="runs", unit="run", position=0, disable=None)

    def finished(record: dict) -> None:
        summary.add(record)
        bar.update(1)
        cfg = record["config"]
        if record["status"] != "ok":
            why = record.get("divergence", {}).get("reason") or record.get("error", "")
            spec = RunSpec.from_config(cfg)
            where = f" at step {record['divergence']['step']}" if "divergence" in record else ""
            bar.write(f"  {record['status']}{where}: {spec.label()} [{spec.variant}]: "
                      f"{why.splitlines()[0] if why else ''}")

    try:
        if executor == "dask":
            from .distributed import execute_dask

            execute_dask(todo, opts, jobs=jobs, scheduler=scheduler, on_record=finished, log=log)
        elif jobs <= 1:
            for spec in todo:
                finished(run_one(spec, opts))
        else:
            opts = dataclasses.replace(opts, show_progress=False, threads=cpu_threads_per_worker(jobs))
            ctx = get_context("spawn")
            with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker,
                                     initargs=(opts.threads,)) as pool:
                # at most `jobs` runs handed over at a time (the pool would queue more, and a queued
                # run can no longer be cancelled), so Ctrl-C waits only for the runs really going
                futures: dict = {}
                remaining: set = set()
                queued = iter(todo)

                def submit_next() -> None:
                    spec = next(queued, None)
                    if spec is not None:
                        fut = pool.submit(run_one, spec, opts)
                        futures[fut] = spec
                        remaining.add(fut)

                for _ in range(jobs):
                    submit_next()

                def collect(fut) -> None:
                    remaining.discard(fut)
                    try:
                        finished(fut.result())
                    except Exception as exc:  # the worker process died: it wrote nothing, so the parent
                        # records the run as failed (a rerun retries it) and counts it as any other
                        record = died_record(futures[fut], f"worker process died: {type(exc).__name__}: {exc}; "
                                                           f"run the same command again to retry")
                        write_record(opts.results_dir, record)
                        finished(record)

                try:
                    while remaining:
                        ready, _ = wait(remaining, return_when=FIRST_COMPLETED)
                        for fut in ready:
                            collect(fut)
                            submit_next()
                except KeyboardInterrupt:
                    # runs already handed to a worker cannot be cancelled: they finish and write
                    # their records, so wait for them and count them (Ctrl-C again stops waiting)
                    running = [f for f in remaining if not f.cancel()]
                    if running:
                        bar.write(f"interrupted: waiting for the {len(running)} run(s) already started to write "
                                  f"their records")
                        for fut in running:
                            collect(fut)
                    raise
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        bar.close()
        summary.wall_time_s = time.perf_counter() - t0
    return summary


# --------------------------------------------------------------------------- configs -> grid
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
#: the built-in samplers every suite ranks, in table order
DEFAULT_SAMPLERS = ("sgd", "sgld", "psgld", "sghmc", "underdamped")
DEFAULT_SEEDS = {"quick": 1, "default": 3, "full": 5}
#: hyperparameter keys of a config table that are not sampler hyperparameters
_CONFIG_META = ("sweep", "extra", "note")


def load_configs(config_dir: str | os.PathLike = CONFIG_DIR) -> dict[str, dict]:
    """task name -> its table from the TOML files of ``config_dir`` (each task in one file)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    out: dict[str, dict] = {}
    origin: dict[str, Path] = {}
    for path in sorted(Path(config_dir).glob("*.toml")):
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"config {path}: {exc}") from exc
        for task, table in data.items():
            if task in out:
                raise ValueError(f"task {task!r} is configured in both {origin[task]} and {path}")
            out[task], origin[task] = table, path
    return out


def task_wide_keys(task_cfg: dict) -> dict:
    """A config table's task-wide keys: its scalars (e.g. the prior), the same for every sampler."""
    return {k: v for k, v in task_cfg.items() if k not in _CONFIG_META and not isinstance(v, (dict, list))}


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


def check_overrides(overrides: dict[str, Any], samplers: Iterable[str], tasks: Iterable[Any]) -> None:
    """``--hyper KEY=VALUE`` before any run: every key must be a task-wide key of every selected task
    or a hyperparameter of every selected sampler there, in its valid range; else a ValueError
    naming the key, the value and the valid ones (the CLI exits 2 and nothing runs)."""
    import sgmcmc

    if not overrides:
        return
    if "num_data" in overrides:
        raise ValueError("--hyper num_data: N is set by each task (the size of its data set), not by --hyper")
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


def build_grid(suite: str, profile: str, samplers: Iterable[str] | None = None, seeds: int | None = None,
               sweep: bool = True, overrides: dict | None = None,
               configs: dict[str, dict] | None = None, tasks: Iterable[str] | None = None) -> list[RunSpec]:
    """Every run of ``suite`` under ``profile``: tuned rows x seeds, labelled extra rows
    (e.g. tempered posteriors) x seeds, and, for tasks with a ``sweep``, the step-size sweep
    (the tuned lr times each factor, seed 0)."""
    from .tasks import tasks_for

    configs = load_configs() if configs is None else configs
    seeds = DEFAULT_SEEDS[profile] if seeds is None else seeds
    names = list(samplers) if samplers else list(DEFAULT_SAMPLERS)
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
            from .tasks import all_tasks, suites

            known, in_suite = all_tasks(), suites().get(suite, [])
            elsewhere = [f"{t} runs only in profile(s) {', '.join(known[t].profiles)}" for t in unknown
                         if t in known and t in in_suite]
            elsewhere += [f"{t} is in suite(s) {', '.join(n for n, ts in suites().items() if t in ts and n != 'all')}"
                          for t in unknown if t in known and t not in in_suite]
            raise ValueError(f"unknown task(s) {', '.join(unknown)} for suite {suite!r} in profile {profile!r}; "
                             f"valid: {', '.join(names_in_suite)}" + (f" ({'; '.join(elsewhere)})" if elsewhere else ""))
        selected = [t for t in selected if t.name in wanted]
    check_overrides(overrides, names, selected)
    for task in selected:
        cfg = configs.get(task.name, {})
        for name in names:
            hyper = {**hyper_for(cfg, name), **overrides}
            variant = "custom" if overrides else "tuned"
            specs += [RunSpec.make(task.name, name, hyper, s, profile, variant) for s in range(seeds)]
            if sweep and not overrides and "sweep" in cfg:
                for factor in cfg["sweep"]:
                    if factor == 1.0:
                        continue  # the tuned seed-0 run is the sweep's centre point
                    swept = {**hyper, "lr": hyper["lr"] * factor}
                    specs.append(RunSpec.make(task.name, name, swept, 0, profile, "sweep"))
        for extra in cfg.get("extra", []):
            if extra["sampler"] in names and not overrides:
                hyper = {k: v for k, v in extra.items() if k not in ("sampler", "label", "note")}
                hyper = {**hyper_for(cfg, extra["sampler"]), **hyper}
                specs += [RunSpec.make(task.name, extra["sampler"], hyper, s, profile, extra["label"])
                          for s in range(seeds)]
    return specs
