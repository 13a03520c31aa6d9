"""Runs and their records: the run spec, the record files, one atomic write, and provenance.

A run is one (task, sampler, hyperparameters, seed, profile). Its record is one JSON file,
``<results>/records/<hash>.json``, named by the hash of that configuration and written atomically
(:func:`atomic_write`: a temporary file in the same folder, fsync, then ``os.replace``), so an
interrupted suite never leaves a half-written record and a rerun resumes where it stopped: every
configuration that already has an ``ok`` or ``diverged`` record is skipped unless ``force``
(:func:`pending`); a ``failed`` one (a crash, not a property of the sampler) is retried. A corrupt
record is reported by its path and treated as missing.

:func:`atomic_write` is the one way the suite writes a file: records, the leaderboard tables,
every figure (:mod:`benchmarks.figures`) and the data cache (:mod:`benchmarks.data.cache`).

This module knows nothing of tasks, grids or executors (``tests/test_architecture.py`` checks it).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import platform
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Union

import numpy as np

import sgmcmc

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
    #: how the row's hyperparameters were chosen (e.g. ``ladder-v1: 7 trials, validation kl``): kept in
    #: the record (``tuning``), not part of the configuration or its key
    tuning: str = field(default="", compare=False)

    @classmethod
    def make(cls, task: str, sampler: str, hyper: dict, seed: int, profile: str, variant: str = "tuned",
             tuning: str = "") -> "RunSpec":
        return cls(task, sampler, tuple(sorted(hyper.items())), int(seed), profile, variant, tuning)

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



#: what :func:`atomic_write` writes: text (UTF-8), bytes, or a function that writes into the binary file
Content = Union[str, bytes, Callable[[BinaryIO], object]]


def atomic_write(path: str | os.PathLike, content: Content, mode: int | None = None) -> Path:
    """Write ``content`` to ``path`` atomically: a temp file in the same folder, fsync, rename over it.

    Readers see the old file or the whole new one, never a partial one; racing writers are safe; a
    writer that fails (or is interrupted) leaves no temporary file behind. ``content`` is text
    (written as UTF-8), bytes, or a function called with the open binary file. The file's mode is
    ``mode``, else what the umask allows (mkstemp's 0600 would hide it from other users)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise WriteError.of(path, exc) from None
    try:
        if mode is None:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            if isinstance(content, str):
                fh.write(content.encode("utf-8"))
            elif isinstance(content, (bytes, bytearray, memoryview)):
                fh.write(content)
            else:
                content(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):
            raise WriteError.of(path, exc) from None
        raise
    return path


class WriteError(OSError):
    """:func:`atomic_write` could not write a file (disk full, no permission, ...): ``str()`` is one
    line naming the path and the reason. The file is as it was before (old or absent, never partial)."""

    @classmethod
    def of(cls, path: str | os.PathLike, exc: OSError) -> "WriteError":
        return cls(exc.errno, exc.strerror or str(exc), str(path))

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror}"


def check_writable(folder: str | os.PathLike) -> None:
    """Raise :class:`WriteError` unless a file can be created in ``folder`` (an existing
    directory): create and delete a probe file, as :func:`atomic_write` would."""
    folder = Path(folder)
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".sgmcmc-probe-", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise WriteError(exc.errno, exc.strerror or str(exc), str(folder)) from None


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


def record_digest(record: dict) -> str:
    """sha256 of the canonical JSON of a (JSON-ready) record without its ``digest`` field: a record
    edited after it was written (a metric changed by hand) no longer matches its digest."""
    body = {k: v for k, v in record.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()).hexdigest()


def write_record(results_dir: str | os.PathLike, record: dict) -> Path:
    path = records_dir(results_dir) / f"{record['key']}.json"
    record = {**record, "metrics": {k: _encode_metric(v) for k, v in record.get("metrics", {}).items()}}
    record = _json_safe({k: v for k, v in record.items() if k != "digest"})
    record["digest"] = record_digest(record)
    atomic_write(path, json.dumps(record, indent=1, sort_keys=True, allow_nan=False) + "\n")
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
    # records written before digests existed (the published ones) have none and are accepted as they are
    if "digest" in record:
        try:
            actual = record_digest(record)
        except (TypeError, ValueError) as exc:
            return f"its content cannot be digested ({exc})"
        if record["digest"] != actual:
            return (f"digest {str(record['digest'])[:12]}... does not match its content ({actual[:12]}...): "
                    f"edited after it was written?")
    return None


def died_record(spec: RunSpec, error: str, **provenance: Any) -> dict:
    """The ``failed`` record written for a run whose worker process died (it wrote nothing itself):
    the leaderboard shows the run as failed, and the next invocation retries it."""
    return {"schema": SCHEMA_VERSION, "key": spec.key, "config": spec.config(), "status": "failed", "metrics": {},
            "error": error, "provenance": {**base_provenance(), **provenance}}


#: the largest record file read (a record is a few kB; a path to /dev/zero or a huge file is not one)
MAX_RECORD_BYTES = 64 * 2**20


def _read_regular_file(path: Path, limit: int) -> bytes:
    """The bytes of ``path`` if it is a regular file (after symlinks) of at most ``limit`` bytes;
    else :class:`RecordError`. Opened non-blocking: a FIFO swapped in after the check cannot hang."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise RecordError(f"{path}: not a regular file (a FIFO, device or directory): not a record")
    if st.st_size > limit:
        raise RecordError(f"{path}: {st.st_size} bytes, larger than the {limit // 2**20} MB a record may be")
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise RecordError(f"{path}: not a regular file (a FIFO, device or directory): not a record")
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise RecordError(f"{path}: larger than the {limit // 2**20} MB a record may be")
    return data


def read_record(path: str | os.PathLike) -> dict:
    """Read and validate one record; raise :class:`RecordError` naming the path and the problem."""
    path = Path(path)
    try:
        record = json.loads(_read_regular_file(path, MAX_RECORD_BYTES).decode("utf-8"))
    except RecordError:
        raise
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


def sampler_provenance(spec: RunSpec) -> dict[str, Any]:
    """What the record's configuration leaves to the sampler's code: its class, the source file's
    sha256, and every hyperparameter it ran with, its own defaults included (a user's sampler whose
    default changes is then told apart; ``num_data`` is the task's). Empty when it cannot be loaded."""
    try:
        cls = sgmcmc.get(spec.sampler)
        given = spec.hyper_dict
        hypers = {k: given.get(k, h.default) for k, h in cls.all_hypers().items() if k != "num_data"}
        out: dict[str, Any] = {"class": f"{cls.__module__}.{cls.__qualname__}", "hypers": hypers}
        peer = getattr(cls, "peer", None)  # a peer library's sampler behind an adapter: its name and version
        if isinstance(peer, dict):
            out["peer"] = {str(k): str(v) for k, v in peer.items()}
        source = inspect.getsourcefile(cls)
        if source:
            out["file_sha256"] = hashlib.sha256(Path(source).read_bytes()).hexdigest()
        return out
    except Exception:  # noqa: BLE001  (provenance must never fail a record)
        return {}

