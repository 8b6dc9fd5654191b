"""Where datasets live, and fetching the missing ones with checksums.

Data directory, first match wins:

1. an explicit argument (``data_dir=`` of the loaders, ``--data-dir`` of the examples);
2. the environment variable ``$MINIRSO_DATA``;
3. the repository's ``data/`` directory (which already holds the MNIST test set).

Under it each dataset has its own folder: ``mnist/``, ``fashion-mnist/``,
``cifar-10/`` (see ``data/README.md``).

A download goes into a temporary file *in the target directory*, its md5 is
checked against the published sum, and only then is it renamed to its real
name with :func:`os.replace` (atomic on one file system).  So an interrupted
or corrupt download never sits under the real name, where the next run would
take it for the dataset.  :func:`download_url` is the only function that
touches the network; the tests replace it.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import pathlib
import socket
import tempfile
import urllib.request
from typing import Mapping, Sequence

from .idx import DataError

__all__ = ["ENV_VAR", "REPO_DATA_DIR", "MissingDataError", "data_dir", "download_url", "fetch", "find_or_fetch"]

ENV_VAR = "MINIRSO_DATA"
REPO_DATA_DIR = pathlib.Path(__file__).resolve().parent.parent.parent / "data"
TIMEOUT_S = 60.0  # per socket operation, not for the whole file
_CHUNK = 1 << 16


class MissingDataError(DataError):
    """Dataset files are absent and could not be fetched (download disabled, or no network).

    A subclass of :class:`DataError` so that callers may fall back to other
    data on *missing* files while still failing loudly on *damaged* ones.
    """


def data_dir(path=None) -> pathlib.Path:
    """The data directory: ``path`` if given, else ``$MINIRSO_DATA``, else the repository's ``data/``."""
    if path is not None:
        return pathlib.Path(path).expanduser().resolve()
    env = os.environ.get(ENV_VAR)
    if env:  # an empty variable counts as unset, as in most tools
        return pathlib.Path(env).expanduser().resolve()
    return REPO_DATA_DIR


def download_url(url: str, path, timeout: float = TIMEOUT_S) -> None:
    """Copy ``url`` into the file ``path`` with a tqdm progress bar; network errors propagate.

    This is the one function that touches the network (tests monkeypatch it).
    It writes wherever it is told: :func:`fetch` gives it a temporary name.
    """
    from tqdm import tqdm  # imported here: only a real download needs it

    # some mirrors refuse urllib's default agent string
    request = urllib.request.Request(url, headers={"User-Agent": "minirso"})
    with urllib.request.urlopen(request, timeout=timeout) as response, open(path, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                  desc=pathlib.PurePosixPath(url).name) as bar:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                bar.update(len(chunk))


def fetch(name: str, urls: Sequence[str], directory, md5: str) -> tuple[pathlib.Path, str]:
    """Download ``name`` into ``directory`` from the first of ``urls`` that answers with the right bytes.

    Returns ``(path, url)``.  Raises :class:`MissingDataError` when no mirror
    can be reached and :class:`DataError` when a mirror served bytes whose md5
    is not ``md5``; in both cases nothing is left under ``directory / name``.
    """
    directory = pathlib.Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MissingDataError(f"cannot create {directory} to download {name} into ({e.strerror or e})") from None
    target = directory / name
    unreachable, corrupt = [], []
    for url in urls:
        # A fresh temporary name in the same directory, so os.replace is a rename, not a copy.
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=directory)
        os.close(fd)
        try:
            try:
                download_url(url, tmp)
            except (OSError, socket.timeout, http.client.HTTPException, ValueError) as e:
                # URLError is an OSError; HTTPException covers a connection cut mid-file
                # (IncompleteRead), ValueError a malformed URL.
                unreachable.append(f"{url}: {getattr(e, 'reason', None) or e}")
                continue
            got = _file_md5(tmp)
            if got != md5:
                corrupt.append(f"{url} gave md5 {got}, published {md5}")
                continue
            os.replace(tmp, target)
            return target, url
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    if corrupt:
        raise DataError(f"{target}: download failed the checksum ({'; '.join(corrupt + unreachable)}); "
                        "nothing was saved under that name")
    raise MissingDataError(f"{target}: cannot download ({'; '.join(unreachable)})")


def find_or_fetch(title: str, files: Mapping[str, str], directories: Sequence, mirrors: Sequence[str],
                  download: bool, *, plain_ok: bool = False) -> tuple[dict[str, pathlib.Path], list[str]]:
    """Locate each of ``files`` (name -> published md5) in ``directories``; fetch the missing ones.

    ``directories[0]`` is where downloads go.  With ``plain_ok`` a ``name.gz``
    may also be present uncompressed, as ``name`` without ``.gz``.  Checksums
    of files found are left to the reader (it knows about compressed and plain
    copies); downloaded files were checked by :func:`fetch`.  Returns the paths
    and a list of ``"name from url"`` for what was downloaded.
    """
    directories = [pathlib.Path(d) for d in directories]
    found: dict[str, pathlib.Path] = {}
    for name in files:
        candidates = [name, name[:-3]] if plain_ok and name.endswith(".gz") else [name]
        for d in directories:
            hit = next((d / c for c in candidates if (d / c).is_file()), None)
            if hit is not None:
                found[name] = hit
                break
    missing = [name for name in files if name not in found]
    if not missing:
        return found, []
    where = _where(title, missing, directories, mirrors)
    if not download:
        raise MissingDataError(f"{title}: {where}, or pass download=True to fetch them.")
    fetched = []
    for name in missing:
        try:
            found[name], url = fetch(name, [m + name for m in mirrors], directories[0], files[name])
        except MissingDataError as e:
            raise MissingDataError(f"{title}: download failed ({e}). {where}.") from None
        fetched.append(f"{name} from {url}")
    return found, fetched


def _where(title, missing, directories, mirrors) -> str:
    """The part of a 'missing files' message that says what, where it was looked for, and where to get it."""
    also = f" (also looked in {', '.join(map(str, directories[1:]))})" if len(directories) > 1 else ""
    return (f"missing {', '.join(missing)} in {directories[0]}{also}. Download them from "
            f"{' or '.join(mirrors)} and put them in {directories[0]}, or point ${ENV_VAR} or data_dir= at a "
            f"directory whose {directories[0].name}/ holds them")


def _file_md5(path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
