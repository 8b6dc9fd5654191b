"""Where datasets live, and fetching the missing ones with pooch.

Data directory, first match wins:

1. an explicit argument (``data_dir=`` of the loaders, ``--data-dir`` of the examples);
2. the environment variable ``$MINIRSO_DATA`` (empty counts as unset);
3. the user cache folder ``pooch.os_cache("minirso")``: ``~/.cache/minirso`` on
   Linux (``$XDG_CACHE_HOME/minirso`` when that is set), ``~/Library/Caches/minirso``
   on macOS, the platform's user cache folder elsewhere (platformdirs decides).

Never the installed package: site-packages may be read-only or shared, and
``pip uninstall`` would delete the downloads with it.  The bundled MNIST test
set is package data and is read from the package (see :mod:`.mnist`).

Under the data directory each dataset has its own folder: ``mnist/``,
``fashion-mnist/``, ``cifar-10/`` (see ``data/README.md``).

Downloads go through ``pooch.retrieve``: the file is written to a temporary
name *in the target folder*, its md5 is checked against the published sum,
and only then is it moved to its real name, so an interrupted or corrupt
download never sits where the next run would take it for the dataset.  The
mirrors are tried in turn.  :func:`download_url` is the only function that
touches the network; the tests replace it.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping, Sequence

from .idx import DataError

__all__ = ["ENV_VAR", "MissingDataError", "data_dir", "download_url", "fetch", "find_or_fetch"]

ENV_VAR = "MINIRSO_DATA"
TIMEOUT_S = 60.0  # per socket operation (connect, each read), not for the whole file


class MissingDataError(DataError):
    """Dataset files are absent and could not be fetched (download disabled, or no network).

    A subclass of :class:`DataError` so that callers may fall back to other
    data on *missing* files while still failing loudly on *damaged* ones.
    """


def data_dir(path=None) -> pathlib.Path:
    """The data directory: ``path`` if given, else ``$MINIRSO_DATA``, else the user cache ``minirso`` folder."""
    if path is not None:
        return pathlib.Path(path).expanduser().resolve()
    env = os.environ.get(ENV_VAR)
    if env:  # an empty variable counts as unset, as in most tools
        return pathlib.Path(env).expanduser().resolve()
    import pooch  # imported here: it brings requests (about 60 ms), and ``import minirso`` should not pay that

    return pathlib.Path(pooch.os_cache("minirso"))


def download_url(url: str, path, timeout: float = TIMEOUT_S) -> None:
    """Copy ``url`` into the file ``path`` with a tqdm progress bar; network errors propagate.

    This is the one function that touches the network (tests monkeypatch it).
    It writes wherever it is told: :func:`fetch` (through pooch) gives it a
    temporary name.  Errors are ``requests`` exceptions, all of them ``OSError``.
    """
    import pooch

    pooch.HTTPDownloader(progressbar=True, timeout=timeout)(url, str(path), None)


def _downloader(url, output_file, _pooch):
    # pooch's downloader signature; looks download_url up at call time so that a patched one is used
    download_url(url, output_file)


def fetch(name: str, urls: Sequence[str], directory, md5: str) -> tuple[pathlib.Path, str]:
    """Download ``name`` into ``directory`` from the first of ``urls`` that answers with the right bytes.

    Returns ``(path, url)``.  Raises :class:`MissingDataError` when no mirror
    can be reached and :class:`DataError` when a mirror served bytes whose md5
    is not ``md5``; in both cases nothing is left under ``directory / name``.
    """
    import pooch

    directory = pathlib.Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MissingDataError(f"cannot create {directory} to download {name} into ({e.strerror or e})") from None
    target = directory / name
    unreachable, corrupt = [], []
    for url in urls:
        try:
            pooch.retrieve(url, known_hash=f"md5:{md5}", fname=name, path=directory, downloader=_downloader)
        except OSError as e:  # requests' errors (HTTP status, connection, timeout) and URLError are OSErrors
            unreachable.append(f"{url}: {getattr(e, 'reason', None) or e}")
        except ValueError as e:  # pooch's hash mismatch; it has already deleted the temporary file
            corrupt.append(f"{url}: {e}")
        else:
            return target, url
    if corrupt:
        raise DataError(
            f"{target}: download failed the checksum ({'; '.join(corrupt + unreachable)}); "
            "nothing was saved under that name"
        )
    raise MissingDataError(f"{target}: cannot download ({'; '.join(unreachable)})")


def find_or_fetch(
    title: str,
    files: Mapping[str, str],
    directories: Sequence,
    mirrors: Sequence[str],
    download: bool,
    *,
    plain_ok: bool = False,
) -> tuple[dict[str, pathlib.Path], list[str]]:
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
    return (
        f"missing {', '.join(missing)} in {directories[0]}{also}. Download them from "
        f"{' or '.join(mirrors)} and put them in {directories[0]}, or point ${ENV_VAR} or data_dir= at a "
        f"directory whose {directories[0].name}/ holds them"
    )
