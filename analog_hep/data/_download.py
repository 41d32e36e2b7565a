"""Fetch dataset files over HTTP(S) into a cache directory, verified by SHA-256.

Only the standard library (urllib) is used. Each file is written to a temporary file in the
target directory, its checksum compared, and only then renamed into place, so the cache
never holds a partial or unverified file under a real name. A file with no known checksum is
not downloaded at all: an unverified dataset would make every recorded result suspect.

Checksum tables map a file name to the SHA-256 of *that name's bytes*: a key ending in
``.gz`` is the hash of the compressed file as served; a key without ``.gz`` is the hash of
the decompressed IDX bytes. The latter is what the MNIST table holds, because MNIST mirrors
serve differently compressed copies of the same IDX data (the copies in our shared folder
differ from the original archives in their gzip headers only).
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import SpecError

__all__ = [
    "FASHION_MNIST_SHA256",
    "MNIST_SHA256",
    "default_base_url",
    "default_cache_dir",
    "default_sha256",
    "download_files",
]

MNIST_SHA256: dict[str, str | None] = {
    # SHA-256 of the decompressed IDX files. The t10k values were computed from the copies
    # in shared/data/mnist; all four agree with the values published by many projects.
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
"""SHA-256 of the four MNIST IDX files, decompressed (keys without ``.gz``)."""

FASHION_MNIST_SHA256: dict[str, str | None] = {
    # SHA-256 of the .gz archives as published by Zalando Research (one distributor, so the
    # compressed bytes are stable); not verified locally, as no copy is on our machines.
    "train-images-idx3-ubyte.gz": (
        "08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc"
    ),
    "train-labels-idx1-ubyte.gz": (
        "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc"
    ),
    "t10k-images-idx3-ubyte.gz": (
        "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229"
    ),
    "t10k-labels-idx1-ubyte.gz": (
        "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf"
    ),
}
"""SHA-256 of the four Fashion-MNIST ``.gz`` archives as served (keys with ``.gz``)."""

_DEFAULT_URLS = {
    "mnist": ("ANALOG_HEP_MNIST_URL", "https://ossci-datasets.s3.amazonaws.com/mnist/"),
    "fashion-mnist": (
        "ANALOG_HEP_FASHION_MNIST_URL",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ),
}
_TABLES = {"mnist": MNIST_SHA256, "fashion-mnist": FASHION_MNIST_SHA256}
_CHUNK = 1 << 20


def default_base_url(name: str) -> str:
    """Base URL for dataset ``name`` ("mnist" or "fashion-mnist").

    Read at call time from ``ANALOG_HEP_MNIST_URL`` / ``ANALOG_HEP_FASHION_MNIST_URL`` if
    set, else a public mirror.
    """
    env, url = _DEFAULT_URLS[name]
    return os.environ.get(env) or url


def default_sha256(name: str) -> dict[str, str | None]:
    """A copy of the known checksum table for ``name`` ("mnist" or "fashion-mnist")."""
    return dict(_TABLES[name])


def default_cache_dir(name: str) -> Path:
    """``~/.cache/analog-hep/<name>``, where downloads go when no directory is given."""
    return Path.home() / ".cache" / "analog-hep" / name


def _expected(name: str, sha256: Mapping[str, str | None]) -> dict[str, str]:
    """The checksums that apply to the served file ``name``: {key: lowercase hex digest}."""
    keys = (name, name.removesuffix(".gz")) if name.endswith(".gz") else (name,)
    return {key: sha256[key].lower() for key in keys if sha256.get(key)}


def _digest(path: Path, *, gunzip: bool) -> str:
    """SHA-256 hex digest of the file's bytes, or of its decompressed bytes if ``gunzip``."""
    h = hashlib.sha256()
    with gzip.open(path, "rb") if gunzip else path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _mismatches(path: Path, served_name: str, expected: Mapping[str, str]) -> list[str]:
    """Descriptions of every checksum in ``expected`` that ``path`` fails; empty if it passes."""
    problems = []
    for key, want in expected.items():
        try:
            got = _digest(path, gunzip=key != served_name)
        except (OSError, EOFError, zlib.error) as err:
            problems.append(f"{key}: expected SHA-256 {want}, found a corrupt gzip stream ({err})")
            continue
        if got != want:
            problems.append(f"{key}: expected SHA-256 {want}, found {got}")
    return problems


def _fetch(url: str, directory: Path, name: str, timeout_s: float) -> Path:
    """Download ``url`` to a new temporary file in ``directory`` and return its path."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout_s) as resp:
            while chunk := resp.read(_CHUNK):
                out.write(chunk)
    except (OSError, http.client.HTTPException) as err:
        # urllib.error.URLError and socket timeouts are OSErrors.
        Path(tmp).unlink(missing_ok=True)
        reason = err.reason if isinstance(err, urllib.error.URLError) else err
        raise SpecError(
            f"{url}: download failed ({reason}); check the network, pick another mirror "
            f"(base_url, or ANALOG_HEP_MNIST_URL / ANALOG_HEP_FASHION_MNIST_URL), or put "
            f"{name} into {directory} yourself"
        ) from err
    return Path(tmp)


def download_files(
    directory: str | Path,
    names: Sequence[str],
    *,
    base_url: str,
    sha256: Mapping[str, str | None],
    timeout_s: float = 60.0,
) -> list[Path]:
    """Make sure ``directory`` holds each of ``names``, downloaded from ``base_url``.

    Args:
        directory: the cache directory (created if needed).
        names: file names as served, e.g. ``"t10k-images-idx3-ubyte.gz"``; the URL of each
            is ``base_url`` + "/" + name. Any urllib scheme works (https, http, file).
        base_url: where the files are served.
        sha256: checksum table, ``{file name: hex digest or None}``; a key is the name whose
            bytes are hashed (``X.gz``: the file as served; ``X``: its decompressed bytes).
            Every name needs at least one applicable digest.
        timeout_s: socket timeout of each request.

    Returns:
        The paths ``directory / name``, in the order of ``names``. A file already there that
        passes its checksums is kept without any request (the cache); one that fails is
        downloaded again.

    Raises:
        SpecError: before any request if a name has no known checksum; for a failed
            download; for a checksum mismatch, naming the file and both hashes, in which
            case the download is discarded and nothing is written under the file's name.
    """
    directory = Path(directory).expanduser()
    expected = {name: _expected(name, sha256) for name in names}
    unknown = [name for name, digests in expected.items() if not digests]
    if unknown:
        raise SpecError(
            f"download: expected a known SHA-256 for every file, found none for "
            f"{', '.join(unknown)}; pass sha256={{name: hex digest}}, or put the files into "
            f"{directory} yourself"
        )
    paths = []
    for name, digests in expected.items():
        target = directory / name
        if target.is_file() and not _mismatches(target, name, digests):
            paths.append(target)
            continue
        directory.mkdir(parents=True, exist_ok=True)
        url = base_url.rstrip("/") + "/" + name
        tmp = _fetch(url, directory, name, timeout_s)
        try:
            problems = _mismatches(tmp, name, digests)
            if problems:
                raise SpecError(
                    f"{url}: checksum mismatch, download discarded: {'; '.join(problems)}"
                )
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        paths.append(target)
    return paths
