"""Downloads: resumable, checksummed, extracted atomically (``redo data download``).

What happens for each file of a :class:`~redo_lib.data.sources.Source`:

1. If everything the file ``provides`` already exists in the data root, nothing is done
   (a second run downloads nothing).
2. Otherwise it is fetched with ``urllib`` into ``<file>.part`` (archives go to
   ``root/.downloads/``, plain files straight to their folder). An existing ``.part``
   is resumed with an HTTP ``Range`` request; a server that ignores ranges makes us
   start again from byte 0.
3. The complete file is checked against its known size and MD5. A mismatch deletes the
   ``.part`` (it cannot be resumed into anything valid) and raises :class:`ChecksumError`.
   A cut connection, a timeout or a full disk raise :class:`DownloadError` and keep the
   ``.part``, so that running the same command again resumes it.
4. Archives are extracted into a temporary folder inside the data root, checked (no
   absolute paths, no ``..``, no links or devices escaping it, the expected top-level
   entries present), and only then renamed into place; any failure removes the
   temporary folder, so the data root never holds a half-extracted archive. The archive
   is deleted afterwards unless ``keep_archives`` is set.

``mirror``: take every file from ``<mirror>/<file name>`` instead of its official URL
(institutional mirrors, tests); checksums are still enforced.
"""
from __future__ import annotations

import errno
import hashlib
import http.client
import os
import shutil
import socket
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, List, Optional

from tqdm.auto import tqdm

from .errors import ChecksumError, DownloadError, UnknownNameError
from .sources import SOURCES, RemoteFile, Source

__all__ = [
    "download_dataset",
    "fetch",
    "verify_file",
    "extract_archive",
    "file_md5",
    "is_present",
    "DownloadReport",
    "DOWNLOADS_DIR",
]

#: folder of the data root where archives are downloaded (deleted when empty)
DOWNLOADS_DIR = ".downloads"
CHUNK = 1 << 16
USER_AGENT = "redo-lib (https://github.com/; research data download)"
Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass
class DownloadReport:
    """What :func:`download_dataset` did: file names fetched, skipped and extracted."""

    downloaded: List[str] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)
    extracted: List[str] = field(default_factory=list)


def file_digest(path: Path, algorithm: str = "md5") -> str:
    """Hex digest (``md5``, ``sha256``, ...) of a file, read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_md5(path: Path) -> str:
    """Hex MD5 of a file, read in chunks."""
    return file_digest(path, "md5")


def verify_file(path: Path, md5: Optional[str], size: Optional[int], name: Optional[str] = None) -> None:
    """Raise :class:`ChecksumError` when ``path`` has not the known size / MD5 (``None``: skipped)."""
    name = name or path.name
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise ChecksumError(f"{name}: expected {size} bytes, got {actual_size}")
    if md5 is not None:
        actual = file_md5(path)
        if actual.lower() != md5.lower():
            raise ChecksumError(f"{name}: MD5 mismatch, expected {md5}, got {actual}")


def is_present(root: Path, remote: RemoteFile) -> bool:
    """Whether everything ``remote`` provides exists under ``root``."""
    return all(any((root / alt).exists() for alt in entry.split("|")) for entry in remote.provides)


def _write_error(error: OSError, what: str, part: Path) -> DownloadError:
    if error.errno == errno.ENOSPC:
        return DownloadError(
            f"disk full while writing {what}; free some space and run the same command again "
            f"to resume (partial data kept in {part})"
        )
    return DownloadError(f"cannot write {what} to {part}: {error}")


def fetch(
    url: str,
    dest: Path,
    md5: Optional[str] = None,
    size: Optional[int] = None,
    progress: bool = True,
    timeout: float = 60.0,
    log: Log = _quiet,
) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming it when it exists.

    Returns ``dest`` once the file is complete and verified. Raises
    :class:`DownloadError` (the ``.part`` is kept, run again to resume) or
    :class:`ChecksumError` (the ``.part`` is deleted).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(2):
        offset = part.stat().st_size if part.exists() else 0
        if size is not None and offset > size:
            part.unlink()
            offset = 0
        if size is not None and offset == size:
            break  # a complete .part from an earlier run: only verify it
        if not _fetch_into(url, part, offset, size, progress, timeout, dest.name, log):
            break
        if attempt == 1:
            raise DownloadError(f"cannot download {dest.name} from {url}: the server does not resume consistently")
    try:
        verify_file(part, md5, size, dest.name)
    except ChecksumError as error:
        part.unlink()
        raise ChecksumError(
            f"{error} (downloaded from {url}); the file was deleted. Run the command again; "
            "if this persists the server's file has changed or is damaged: try --mirror URL"
        ) from None
    os.replace(part, dest)
    return dest


def _fetch_into(
    url: str, part: Path, offset: int, size: Optional[int], progress: bool, timeout: float, name: str, log: Log
) -> bool:
    """One HTTP request appending to ``part`` from ``offset``; True if the caller should retry from 0."""
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            # the server says our partial file already reaches the end (or is invalid)
            if size is None:
                return False
            part.unlink()
            log(f"{name}: server refused to resume, starting again")
            return True
        raise DownloadError(f"cannot download {name}: HTTP {error.code} {error.reason} from {url}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)
        kept = f" (partial data kept in {part})" if offset else ""
        raise DownloadError(f"cannot download {name} from {url}: {reason}{kept}") from None
    with response:
        status = getattr(response, "status", None) or response.getcode()
        mode = "wb"
        if offset and status == 206:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {offset}-"):
                part.unlink()
                log(f"{name}: unexpected Content-Range {content_range!r}, starting again")
                return True
            mode = "ab"
            log(f"{name}: resuming at byte {offset}")
        else:
            offset = 0
        length_header = response.headers.get("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        total = offset + length if length is not None else size
        received = 0
        try:
            handle = open(part, mode)
        except OSError as error:
            raise _write_error(error, name, part) from None
        with handle, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
            desc=name, disable=not progress, leave=False,
        ) as bar:
            while True:
                try:
                    chunk = response.read(CHUNK)
                except (OSError, http.client.HTTPException, socket.timeout) as error:
                    raise DownloadError(
                        f"connection lost while downloading {name} after {offset + received} bytes ({error}); "
                        f"run the same command again to resume (partial data kept in {part})"
                    ) from None
                if not chunk:
                    break
                try:
                    handle.write(chunk)
                except OSError as error:
                    raise _write_error(error, name, part) from None
                received += len(chunk)
                bar.update(len(chunk))
    if length is not None and received < length:
        raise DownloadError(
            f"connection closed while downloading {name}: got {offset + received} of {offset + length} bytes; "
            f"run the same command again to resume (partial data kept in {part})"
        )
    return False


# ---------------------------------------------------------------------------- extraction
def _check_member_name(name: str, archive: Path) -> None:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (len(name) > 1 and name[1] == ":"):
        raise DownloadError(f"refusing to extract {archive.name}: unsafe member path {name!r}")


def _safe_tar_members(tar: tarfile.TarFile, archive: Path) -> List[tarfile.TarInfo]:
    members = []
    for member in tar.getmembers():
        _check_member_name(member.name, archive)
        if member.issym() or member.islnk():
            target = PurePosixPath(member.name).parent / member.linkname if member.issym() else PurePosixPath(member.linkname)
            if PurePosixPath(member.linkname).is_absolute() or ".." in PurePosixPath(os.path.normpath(str(target))).parts:
                raise DownloadError(f"refusing to extract {archive.name}: link {member.name!r} points outside")
        elif not (member.isfile() or member.isdir()):
            continue  # devices, fifos: never needed
        members.append(member)
    return members


def _extract_all(archive: Path, into: Path) -> None:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                _check_member_name(name, archive)
            zf.extractall(into)
        return
    try:
        with tarfile.open(archive) as tar:
            members = _safe_tar_members(tar, archive)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(into, members=members, filter="data")
            else:  # Python < 3.11.4: our own checks above
                tar.extractall(into, members=members)
    except tarfile.TarError as error:
        raise DownloadError(f"cannot extract {archive}: not a valid archive ({error})") from None


def extract_archive(archive: Path, root: Path, strip: str, provides: List[str], log: Log = _quiet) -> List[str]:
    """Extract ``archive`` into ``root`` atomically; return the top-level names put in place.

    Members are extracted into a temporary folder inside ``root``; the content of its
    ``strip`` sub-folder (or all of it) is renamed into ``root`` only when every entry
    of ``provides`` is there. On any error the temporary folder is removed.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=root))
    try:
        try:
            _extract_all(archive, tmp)
        except OSError as error:
            if error.errno == errno.ENOSPC:
                raise DownloadError(
                    f"disk full while extracting {archive.name}; nothing was changed in {root}. "
                    f"Free some space and run the same command again (the archive is kept at {archive})"
                ) from None
            raise DownloadError(f"cannot extract {archive.name}: {error}") from None
        source = tmp / strip if strip else tmp
        missing = [p for p in provides if not (source / p).exists()]
        if missing:
            raise DownloadError(
                f"{archive.name} does not contain the expected {', '.join(missing)}; nothing was changed in {root}"
            )
        moved = []
        for entry in sorted(source.iterdir()):
            if entry == tmp / ".replaced":
                continue
            target = root / entry.name
            if target.exists() or target.is_symlink():
                graveyard = tmp / ".replaced"
                graveyard.mkdir(exist_ok=True)
                os.replace(target, graveyard / entry.name)
            os.replace(entry, target)
            moved.append(entry.name)
        log(f"{archive.name}: extracted {', '.join(moved)}")
        return moved
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------- data sets
def _url(remote: RemoteFile, mirror: Optional[str]) -> str:
    return f"{mirror.rstrip('/')}/{remote.name}" if mirror else remote.url


def download_dataset(
    name: "str | Source",
    root: "str | os.PathLike[str]",
    mirror: Optional[str] = None,
    keep_archives: bool = False,
    progress: bool = True,
    timeout: float = 60.0,
    log: Log = _quiet,
) -> DownloadReport:
    """Download, verify and extract data set ``name`` (flowers, lfw, cub, mnist) into ``root``.

    ``name`` may also be a :class:`~redo_lib.data.sources.Source` (custom tables, tests).

    Idempotent: files whose content is already in place are skipped without any request.
    Raises :class:`DownloadError` (or :class:`ChecksumError`) with a message that says
    what to do; never leaves a half-extracted archive in ``root``.
    """
    source = name if isinstance(name, Source) else get_source(name)
    root = Path(root)
    created = not root.exists()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DownloadError(f"cannot create the data root {root}: {error}") from None
    report = DownloadReport()
    downloads = root / DOWNLOADS_DIR
    try:
        for remote in source.files:
            _download_one(remote, root, downloads, mirror, keep_archives, progress, timeout, log, report)
    finally:
        if downloads.is_dir() and not any(downloads.iterdir()):
            downloads.rmdir()
        if created and root.is_dir() and not any(root.iterdir()):
            root.rmdir()  # a failed first download leaves no empty folder behind
    missing = [entry for remote in source.files for entry in remote.provides
               if not any((root / alt).exists() for alt in entry.split("|"))]
    if missing:  # pragma: no cover - defensive: every step above checks its own output
        raise DownloadError(f"{source.name}: after downloading, still missing {', '.join(missing)} in {root}")
    return report


def _download_one(
    remote: RemoteFile,
    root: Path,
    downloads: Path,
    mirror: Optional[str],
    keep_archives: bool,
    progress: bool,
    timeout: float,
    log: Log,
    report: DownloadReport,
) -> None:
    if is_present(root, remote):
        log(f"{remote.name}: already present, skipped")
        report.skipped.append(remote.name)
        return
    url = _url(remote, mirror)
    if remote.extract is None:
        log(f"{remote.name}: downloading from {url}")
        fetch(url, root / remote.dest / remote.name, remote.md5, remote.size, progress, timeout, log)
        report.downloaded.append(remote.name)
        return
    archive = downloads / remote.name
    if archive.exists():
        try:
            verify_file(archive, remote.md5, remote.size)
            log(f"{remote.name}: found a complete download, not fetching it again")
        except ChecksumError:
            archive.unlink()
    if not archive.exists():
        log(f"{remote.name}: downloading from {url}")
        fetch(url, archive, remote.md5, remote.size, progress, timeout, log)
        report.downloaded.append(remote.name)
    provided = [p.split("|")[0] for p in remote.provides]
    log(f"{remote.name}: extracting")
    extract_archive(archive, root, remote.extract, provided, log)
    report.extracted.append(remote.name)
    if not keep_archives:
        archive.unlink()


def get_source(name: str) -> Source:
    """The :class:`Source` of a downloadable data set; unknown names list the valid ones."""
    try:
        return SOURCES[name]
    except KeyError:
        valid = ", ".join(n for n in SOURCES if n != "cmnist")
        raise UnknownNameError(f"no download for data set {name!r}; downloadable: {valid}") from None
