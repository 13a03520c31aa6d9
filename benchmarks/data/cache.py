"""The cache of decoded arrays: one uncompressed uint8 npz per (dataset, split), written atomically.

Each file holds ``images``, ``labels`` and ``meta`` (JSON: the source that filled it and the sha256 of
the arrays). A read recomputes the digest; a file that is truncated, unreadable or whose arrays do
not hash to the known digest is deleted with a warning, so that the loader rebuilds it.
"""

from __future__ import annotations

import json
import os
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..records import atomic_write
from .core import CorruptFileError, array_sha256, check_arrays


def default_cache_dir() -> Path:
    """``$SGMCMC_CACHE_DIR``, else ``$XDG_CACHE_HOME/sgmcmc-bench``, else ``~/.cache/sgmcmc-bench``."""
    if os.environ.get("SGMCMC_CACHE_DIR"):
        return Path(os.environ["SGMCMC_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sgmcmc-bench"


def cache_path(cache_dir: Path, dataset: str, split: str) -> Path:
    return cache_dir / f"{dataset}-{split}.npz"


def write(path: Path, images: np.ndarray, labels: np.ndarray, meta: dict) -> None:
    """Cache uint8 ``images`` and ``labels`` with ``meta`` (their source, location, sha256, num_skipped)."""
    meta_json = np.array(json.dumps(meta, sort_keys=True))
    # 0644 whatever the umask: a shared cache is read by other users
    atomic_write(path, lambda file: np.savez(file, images=images, labels=labels, meta=meta_json), mode=0o644)


#: cache files this process has read and verified: (path, expected sha256) -> (the file's identity
#: and size and mtime then, its read-only arrays and meta). A later read of the same unchanged file
#: returns them without reading and hashing it again: a process that runs several runs (a pool
#: worker, a sequential grid) pays the read and the digest once, not once per run.
_VERIFIED: dict[tuple[str, str], tuple[tuple, np.ndarray, np.ndarray, dict]] = {}


def _identity(path: Path) -> tuple:
    st = path.stat()
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def read(path: Path, expected_sha256: str) -> tuple[np.ndarray, np.ndarray, dict] | None:
    """(images, labels, meta) from the cache file, or None when it is missing or corrupt (then deleted).

    The arrays of a file already verified in this process, unchanged since (same inode, size and
    mtime), come from memory, read-only (a caller that changes them copies them first)."""
    if not path.exists():
        _VERIFIED.pop((str(path), expected_sha256), None)
        return None
    memo = _VERIFIED.get((str(path), expected_sha256))
    if memo is not None and path.is_file():
        try:
            if _identity(path) == memo[0]:
                return memo[1], memo[2], dict(memo[3])
        except OSError:
            pass
    if not path.is_file():  # never delete a user's folder: say so, and let the sources serve
        warnings.warn(f"{path}: not a file where the cache file should be; remove it to let the cache work "
                      f"(loading from the sources instead)", stacklevel=3)
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            images, labels = check_arrays(npz["images"], npz["labels"], str(path))
            meta = json.loads(str(npz["meta"]))
            meta = {key: meta[key] for key in ("source", "location", "sha256", "num_skipped")}
        actual = array_sha256(images, labels)
        problem = None if actual == expected_sha256 == meta["sha256"] else f"sha256 {actual}, expected {expected_sha256}"
    except (CorruptFileError, OSError, EOFError, ValueError, KeyError, TypeError, zlib.error, zipfile.BadZipFile) as err:
        problem = f"{type(err).__name__}: {err}"
    if problem is None:
        try:
            identity = _identity(path)
        except OSError:
            return images, labels, meta
        images.flags.writeable = labels.flags.writeable = False
        _VERIFIED[str(path), expected_sha256] = (identity, images, labels, dict(meta))
        return images, labels, meta
    warnings.warn(f"{path}: corrupt cache file ({problem}); deleting it to rebuild", stacklevel=3)
    path.unlink(missing_ok=True)
    return None
