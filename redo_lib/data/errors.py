"""Exceptions of the data layer.

Every error this package raises on purpose derives from :class:`DataError`, so a command
line front end can print the message (which always says what is wrong and what to do)
and exit with code 2 instead of showing a traceback.
"""
from __future__ import annotations

__all__ = [
    "DataError",
    "DatasetError",
    "MissingDataError",
    "CorruptFileError",
    "UnknownNameError",
    "DownloadError",
    "ChecksumError",
]


class DataError(RuntimeError):
    """Base class of every data-layer error (download or data set)."""


class DatasetError(DataError):
    """A data set on disk is missing, incomplete, inconsistent or unreadable."""


class MissingDataError(DatasetError, FileNotFoundError):
    """Files or folders a loader needs are absent (the message gives the download command)."""


class CorruptFileError(DatasetError):
    """A file exists but cannot be decoded (truncated or corrupt image, bad idx file)."""


class UnknownNameError(DatasetError, ValueError):
    """An unknown data set name or split (the message lists the valid ones)."""


class DownloadError(DataError):
    """A download or an extraction did not complete (cut connection, disk full...)."""


class ChecksumError(DownloadError):
    """A downloaded file does not have the expected size or MD5 checksum."""
