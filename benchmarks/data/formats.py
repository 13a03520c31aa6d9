"""Decoders for the file formats the sources ship, each safe against hostile input.

Every reader returns uint8 numpy arrays (images [N, 28, 28], labels [N]) or raises CorruptFileError /
UnsafeFileError naming the file. Nothing here touches the network.
"""

from __future__ import annotations

import gzip
import io
import math
import pickle
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from .core import CorruptFileError, UnsafeFileError, check_arrays

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct

NOTMNIST_LETTERS = "ABCDEFGHIJ"

# Everything a pickle of plain numpy arrays may name; numpy 1.x writes numpy.core, 2.x numpy._core.
_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
_DECODE_ERRORS = (OSError, EOFError, ValueError, zlib.error, zipfile.BadZipFile, tarfile.TarError)


def _read_maybe_gzip(path: Path) -> bytes:
    try:
        return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise CorruptFileError(f"{path}: cannot read ({err})") from err


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file of unsigned bytes (``*-ubyte`` or ``*-ubyte.gz``), as MNIST ships them."""
    data = _read_maybe_gzip(path)
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise CorruptFileError(f"{path}: not an IDX file of unsigned bytes (magic {data[:4].hex()!r})")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + math.prod(shape)
    if len(data) != expected:
        raise CorruptFileError(f"{path}: IDX header says {list(shape)} = {expected} bytes, file has {len(data)} (truncated?)")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def read_idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an images IDX file and its labels IDX file into checked uint8 arrays."""
    return check_arrays(read_idx(images_path), read_idx(labels_path), f"{images_path} + {labels_path.name}")


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that builds numpy arrays and refuses every other global (os.system, builtins.eval, ...)."""

    def __init__(self, file, where: str):
        super().__init__(file, encoding="latin1")  # the MNIST pickle is Python 2's: byte strings as latin1
        self.where = where

    def find_class(self, module: str, name: str):
        try:
            return _PICKLE_ALLOWED[module, name]
        except KeyError:
            allowed = ", ".join(f"{m}.{n}" for m, n in _PICKLE_ALLOWED)
            raise UnsafeFileError(
                f"{self.where}: the pickle asks for {module}.{name}; only numpy arrays are allowed ({allowed})"
            ) from None


def read_mnist_pickle(data: bytes, where: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Decode the classic ``mnist.pkl.gz`` (gzipped bytes) into {"train", "validation", "test"} uint8 arrays.

    The pickle holds ((x, y) train 50k, valid 10k, test 10k) with x float32 [N, 784] = pixel / 256; the
    pixels are recovered exactly (an x that is not a multiple of 1/256 in [0, 255/256] is an error).
    """
    try:
        content = _NumpyOnlyUnpickler(io.BytesIO(gzip.decompress(data)), where).load()
    except UnsafeFileError:
        raise
    except Exception as err:  # hostile or damaged bytes can fail in many ways; none may pass silently
        raise CorruptFileError(f"{where}: cannot unpickle ({type(err).__name__}: {err})") from err
    if not (isinstance(content, tuple) and len(content) == 3 and all(isinstance(p, tuple) and len(p) == 2 for p in content)):
        raise CorruptFileError(f"{where}: expected a (train, valid, test) tuple of (x, y) pairs")
    splits = {}
    for split, (x, y) in zip(("train", "validation", "test"), content):
        if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 2 or x.shape[1] != 28 * 28:
            raise CorruptFileError(f"{where}: {split} x must be float32 [N, 784]")
        pixels = x * np.float32(256)  # exact in float32 for k / 256
        if not np.all((pixels >= 0) & (pixels <= 255) & (pixels == np.rint(pixels))):
            raise CorruptFileError(f"{where}: {split} x is not pixel / 256 for integer pixels 0..255")
        splits[split] = check_arrays(pixels.astype(np.uint8).reshape(-1, 28, 28), np.asarray(y), f"{where} ({split})")
    return splits


def read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read ``images`` and ``labels`` from an npz file without unpickling anything."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return check_arrays(npz["images"], npz["labels"], str(path))
    except KeyError as err:
        raise CorruptFileError(f"{path}: missing array {err} (expected 'images' and 'labels')") from err
    except _DECODE_ERRORS as err:
        why = str(err)
        if "allow_pickle" in why:  # numpy's advice to load it unsafely is not ours to give
            why = "not an npz of plain arrays: corrupt, or it holds pickled objects, which are never loaded"
        raise CorruptFileError(f"{path}: cannot read npz ({why})") from err


def _decode_png(data: bytes) -> np.ndarray | None:
    """A 28x28 8-bit grayscale PNG as a uint8 array, or None when it is not one (empty, undecodable)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.mode != "L" or image.size != (28, 28):
                return None
            return np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def _decode_letters(files: dict[tuple[str, str], bytes], where: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Decode {(letter, file name): PNG bytes} class by class, then by file name; skip undecodable files."""
    images, labels, skipped = [], [], 0
    for letter, name in sorted(files):
        image = _decode_png(files[letter, name])
        if image is None:
            skipped += 1
            continue
        images.append(image)
        labels.append(NOTMNIST_LETTERS.index(letter))
    if not images:
        raise CorruptFileError(f"{where}: no decodable 28x28 grayscale PNG under {'/'.join(NOTMNIST_LETTERS)}")
    return *check_arrays(np.stack(images), np.array(labels), where), skipped


def read_png_folder(folder: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """Read notMNIST's per-letter folders ``A/*.png .. J/*.png``; returns (images, labels, num_skipped)."""
    files = {}
    for letter in NOTMNIST_LETTERS:
        for p in (folder / letter).glob("*.png"):
            try:
                files[p.parent.name, p.name] = p.read_bytes()
            except OSError as err:
                raise CorruptFileError(f"{p}: cannot read ({type(err).__name__}: {err})") from err
    return _decode_letters(files, str(folder))


def _check_tar_member(member: tarfile.TarInfo, parts: tuple[str, ...], path: Path) -> None:
    if member.issym() or member.islnk():
        problem = "a link"
    elif not (member.isfile() or member.isdir()):
        problem = "neither a file nor a folder"
    elif member.name.startswith(("/", "\\")) or ".." in parts:
        problem = "an absolute path or one with '..'"
    else:
        return
    raise UnsafeFileError(f"{path}: refusing tar member {member.name!r}: {problem}")


def read_png_tar(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """Read notMNIST's tarball (``notMNIST_small/A..J/*.png``) without extracting it to disk.

    A member with an absolute path or ``..``, a link, or a device is refused with UnsafeFileError.
    Returns (images, labels, num_skipped).
    """
    files = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                parts = PurePosixPath(member.name).parts
                _check_tar_member(member, parts, path)
                if member.isfile() and len(parts) == 3 and parts[1] in NOTMNIST_LETTERS and parts[2].endswith(".png"):
                    files[parts[1], parts[2]] = tar.extractfile(member).read()
    except _DECODE_ERRORS as err:
        raise CorruptFileError(f"{path}: cannot read tar ({err})") from err
    return _decode_letters(files, str(path))
