"""One loader per dataset: the cache first, then each source in order; the one that served is recorded."""

from __future__ import annotations

import dataclasses
import os
import warnings
import zipfile

import numpy as np
import torch

from . import cache
from .core import (ChecksumError, CorruptFileError, DataError, DataUnavailableError, Dataset, Provenance,
                   UnsafeFileError, array_sha256)
from .sources import KNOWN_SHA256, SOURCES, SPLITS, Arrays, Settings, SourceMissing, fix_hint, settings

PathLike = str | os.PathLike | None


def _check_name(dataset: str, split: str) -> None:
    if dataset not in SPLITS:
        raise ValueError(f"unknown dataset {dataset!r}; valid datasets: {', '.join(SPLITS)}")
    if split not in SPLITS[dataset]:
        raise ValueError(f"unknown {dataset} split {split!r}; valid splits: {', '.join(SPLITS[dataset])}")


def _dataset(images: np.ndarray, labels: np.ndarray, provenance: Provenance) -> Dataset:
    images = torch.from_numpy(images if images.flags.writeable else images.copy())
    return Dataset(images, torch.from_numpy(labels.astype(np.int64)), provenance)


def _store(settings: Settings, dataset: str, decoded: dict[str, Arrays], source: str, location: str) -> dict[str, Provenance]:
    """Check every decoded split against its known digest, cache it, and return its provenance."""
    provenances = {}
    for split, (images, labels, num_skipped) in decoded.items():
        expected, actual = KNOWN_SHA256[dataset, split], array_sha256(images, labels)
        if actual != expected:
            raise ChecksumError(
                f"{dataset} {split} from {location}: sha256 of the decoded arrays is {actual}, expected {expected}"
            )
        provenances[split] = Provenance(dataset, split, source, location, actual, len(labels), num_skipped)
        try:
            cache.write(cache.cache_path(settings.cache_dir, dataset, split), images, labels, provenances[split].to_dict())
        except OSError as err:
            warnings.warn(f"could not cache {dataset} {split} in {settings.cache_dir}: {err}", stacklevel=3)
    return provenances


def load(dataset: str, split: str, *, data_dir: PathLike = None, offline: bool | None = None, cache_dir: PathLike = None) -> Dataset:
    """Load one split of ``dataset`` ("mnist", "notmnist" or "fashion_mnist"), verified against its known sha256.

    Tries the cache, then each source of the dataset in order (see ``sources.SOURCES``); the first that
    has the split serves, and every split it decoded is cached. ``data_dir``, ``offline`` and
    ``cache_dir`` default to $SGMCMC_DATA_DIR, $SGMCMC_OFFLINE and $SGMCMC_CACHE_DIR. A source that is
    absent or unreachable is skipped; one that is present but corrupt or unsafe is skipped with a
    warning naming the file. When none serves, the first such file's CorruptFileError, ChecksumError
    or UnsafeFileError is raised (else DataUnavailableError), its message listing each source, why it
    failed, and the command that fixes it.
    """
    _check_name(dataset, split)
    where = settings(data_dir, offline, cache_dir)
    cached_file = cache.cache_path(where.cache_dir, dataset, split)
    if (hit := cache.read(cached_file, KNOWN_SHA256[dataset, split])) is not None:
        images, labels, meta = hit
        origin = f"{meta['source']}: {meta['location']}"
        provenance = Provenance(dataset, split, "cache", str(cached_file), meta["sha256"], len(labels), meta["num_skipped"], origin)
        return _dataset(images, labels, provenance)
    failures = [f"cache: no {cached_file}"]
    corrupt: list[DataError] = []
    for source in SOURCES[dataset]:
        try:
            path, download = source.find(where, split)
            if download:
                source.fetch(path)
        except SourceMissing as why:
            failures.append(f"{source.name}: {why}")
            continue
        try:
            decoded = source.read(path)
            provenance = _store(where, dataset, decoded, source.name, str(path))[split]
        except (CorruptFileError, UnsafeFileError) as err:
            # present but unusable: say so, and let a later source serve (the digest guards it)
            warnings.warn(f"{dataset} {split}: source {source.name} is unusable ({err}); trying the next source",
                          stacklevel=2)
            failures.append(f"{source.name}: {type(err).__name__}: {err}")
            corrupt.append(err)
            continue
        return _dataset(decoded[split].images, decoded[split].labels, provenance)
    tried = "tried, in order:\n  - " + "\n  - ".join(failures)
    if corrupt:  # the first unusable file is the error; the message also lists every other source
        first = corrupt[0]
        raise type(first)(f"{first}\n{dataset} {split} is unavailable; {tried}\nTo fix: delete or replace the "
                          f"unusable file(s) named above, or: {fix_hint(dataset, where)}") from first
    raise DataUnavailableError(f"{dataset} {split} is unavailable; {tried}\nTo fix: {fix_hint(dataset, where)}")


def load_mnist(split: str, *, data_dir: PathLike = None, offline: bool | None = None, cache_dir: PathLike = None) -> Dataset:
    """MNIST "train" (the first 50,000 official training images), "validation" (the last 10,000) or "test" (10,000)."""
    return load("mnist", split, data_dir=data_dir, offline=offline, cache_dir=cache_dir)


def load_notmnist(*, data_dir: PathLike = None, offline: bool | None = None, cache_dir: PathLike = None) -> Dataset:
    """notMNIST_small, all 18,724 decodable letters A..J (labels 0..9), ordered by class: an OOD test set."""
    return load("notmnist", "test", data_dir=data_dir, offline=offline, cache_dir=cache_dir)


def load_fashion_mnist(split: str = "test", *, data_dir: PathLike = None, offline: bool | None = None, cache_dir: PathLike = None) -> Dataset:
    """Fashion-MNIST's 10,000 test images: a second OOD test set."""
    return load("fashion_mnist", split, data_dir=data_dir, offline=offline, cache_dir=cache_dir)


@dataclasses.dataclass(frozen=True)
class Availability:
    """Whether a split can be loaded now: ``status`` is "ready" (on disk), "download" or "missing".

    ``source`` and ``location`` say which source would serve from where; ``detail`` says what a
    "download" would fetch, or for "missing" why each source cannot serve and how to fix it.
    """

    dataset: str
    split: str
    status: str
    source: str | None = None
    location: str | None = None
    detail: str = ""


def available(*, data_dir: PathLike = None, offline: bool | None = None, cache_dir: PathLike = None) -> list[Availability]:
    """Report, for every dataset split, the source that would serve it; reads and downloads nothing."""
    where, report = settings(data_dir, offline, cache_dir), []
    for dataset, splits in SPLITS.items():
        for split in splits:
            if zipfile.is_zipfile(cached_file := cache.cache_path(where.cache_dir, dataset, split)):
                report.append(Availability(dataset, split, "ready", "cache", str(cached_file)))
                continue
            reasons = []
            for source in SOURCES[dataset]:
                try:
                    path, download = source.find(where, split)
                except SourceMissing as why:
                    reasons.append(f"{source.name}: {why}")
                    continue
                status = "download" if download else "ready"
                report.append(Availability(dataset, split, status, source.name, str(path), download or ""))
                break
            else:
                detail = "; ".join(reasons) + f". To fix: {fix_hint(dataset, where)}"
                report.append(Availability(dataset, split, "missing", detail=detail))
    return report


def fetch_all(*, data_dir: PathLike = None, offline: bool | None = None, cache_dir: PathLike = None) -> dict[tuple[str, str], Provenance | DataError]:
    """Load every dataset split into the cache; map each (dataset, split) to its provenance or its error."""
    results: dict[tuple[str, str], Provenance | DataError] = {}
    for dataset, splits in SPLITS.items():
        for split in splits:
            try:
                results[dataset, split] = load(dataset, split, data_dir=data_dir, offline=offline, cache_dir=cache_dir).provenance
            except DataError as err:
                results[dataset, split] = err
            except OSError as err:  # a file the sources could not even open
                results[dataset, split] = DataError(f"{type(err).__name__}: {err}")
    return results
