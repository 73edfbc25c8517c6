"""``redo data ...``: download and check data sets from the command line.

The main ``redo`` command calls :func:`add_data_parser` on its sub-parsers; every
sub-command sets ``func`` so that ``args.func(args)`` runs it and returns the exit code
(0 success, 2 a data problem, whose message is printed without a traceback). Standalone:
``python -m redo_lib.data.cli data download flowers --root data/flowers``.

Usage::

    redo data download {flowers,lfw,cub,mnist} [--root DIR] [--mirror URL] [--keep-archives]
    redo data check {flowers,lfw,cub,cmnist,folder,synthetic} [--root DIR] [--decode] [--strict]
    redo data list
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

from .download import download_dataset, get_source
from .errors import DataError
from .registry import DATASETS, check_dataset
from .sources import SOURCES

__all__ = ["add_data_parser", "main", "default_root"]

EXIT_DATA_ERROR = 2


def default_root(name: str) -> Path:
    """``data/<name>`` (``data/mnist`` for cmnist), the default ``--root``."""
    return Path("data") / ("mnist" if name in ("mnist", "cmnist") else name)


def _print_error(error: Exception) -> int:
    print(f"error: {error}", file=sys.stderr)
    return EXIT_DATA_ERROR


def _guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except DataError as error:
            return _print_error(error)
        except KeyboardInterrupt:
            print("interrupted: run the same command again to resume", file=sys.stderr)
            return 130

    run.__name__ = command.__name__
    run.__doc__ = command.__doc__
    return run


def _print_check(name: str, root: Optional[Path], reports, strict: bool) -> int:
    errors = [r.error for r in reports if r.error is not None]
    if errors and len(errors) == len(reports) and len(set(errors)) == 1:
        print(f"error: {errors[0]}", file=sys.stderr)
        return EXIT_DATA_ERROR
    location = f" at {root}" if root is not None else ""
    print(f"{name}{location}")
    print(f"  {'split':<6} {'images':>8} {'published':>10}  masks")
    failed = False
    for r in reports:
        if r.error is not None:
            print(f"  {r.split:<6} {'-':>8} {r.expected if r.expected is not None else '-':>10}  error: {r.error}")
            failed = True
            continue
        expected = "-" if r.expected is None else str(r.expected)
        note = "" if r.expected is None or r.count == r.expected else "  (differs from the published count)"
        print(f"  {r.split:<6} {r.count:>8} {expected:>10}  {'yes' if r.has_masks else 'no'}{note}")
    if failed:
        return EXIT_DATA_ERROR
    if any(not r.matches for r in reports):
        print("warning: some counts differ from the published splits" + (" (--strict: failing)" if strict else ""))
        return EXIT_DATA_ERROR if strict else 0
    if any(r.expected is not None for r in reports):
        print("all splits match the published counts")
    return 0


@_guarded
def run_download(args: argparse.Namespace) -> int:
    """``redo data download NAME``: fetch, verify, extract, then check the layout."""
    root = Path(args.root) if args.root else default_root(args.name)
    report = download_dataset(
        args.name,
        root,
        mirror=args.mirror,
        keep_archives=args.keep_archives,
        progress=not args.no_progress,
        timeout=args.timeout,
        log=print,
    )
    if not report.downloaded and not report.extracted:
        print(f"{args.name}: everything already present in {root}, nothing downloaded")
    loader = get_source(args.name).loader
    reports = check_dataset(loader, root, progress=not args.no_progress)
    return _print_check(loader, root, reports, strict=False)


@_guarded
def run_check(args: argparse.Namespace) -> int:
    """``redo data check NAME``: verify the layout and print per-split counts."""
    name = "cmnist" if args.name == "mnist" else args.name
    root = None if name == "synthetic" else (Path(args.root) if args.root else default_root(name))
    reports = check_dataset(name, root, decode=args.decode, image_size=args.image_size, progress=not args.no_progress)
    return _print_check(name, root, reports, strict=args.strict)


def run_list(args: argparse.Namespace) -> int:
    """``redo data list``: the data sets and how to get them."""
    for info in DATASETS.values():
        how = f"redo data download {info.download} --root {default_root(info.name)}" if info.download else "-"
        print(f"{info.name:<10} K={info.n_regions}  {info.description}\n{'':<10} get it: {how}")
    return 0


def add_data_parser(subparsers: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Add the ``data`` command (``download``, ``check``, ``list``) to ``subparsers``."""
    data = subparsers.add_parser("data", help="download and check data sets",
                                 description="Download and check data sets (flowers, lfw, cub, mnist; folder, synthetic).")
    commands = data.add_subparsers(dest="data_command", metavar="{download,check,list}")
    commands.required = True

    download = commands.add_parser(
        "download",
        help="download, verify and extract a published data set",
        description="Download a data set (resumable, checksummed); a second run downloads nothing.",
    )
    download.add_argument("name", choices=[n for n in SOURCES if n != "cmnist"] + ["cmnist"], metavar="NAME",
                          help="flowers, lfw, cub or mnist (cmnist is an alias of mnist)")
    download.add_argument("--root", help="data folder (default: data/NAME)")
    download.add_argument("--mirror", metavar="URL", help="take every file from URL/<file name> (checksums still enforced)")
    download.add_argument("--keep-archives", action="store_true", help="keep the downloaded archives in ROOT/.downloads")
    download.add_argument("--timeout", type=float, default=60.0, help="network timeout in seconds (default 60)")
    download.add_argument("--no-progress", action="store_true", help="no progress bars")
    download.set_defaults(func=run_download)

    check = commands.add_parser(
        "check", help="verify a data set's layout and print per-split counts",
        description="Check that every file of every split exists and compare split sizes with the published ones.",
    )
    check.add_argument("name", choices=list(DATASETS) + ["mnist"], metavar="NAME",
                       help=", ".join(DATASETS))
    check.add_argument("--root", help="data folder (default: data/NAME)")
    check.add_argument("--decode", action="store_true", help="also read every image and mask (slow)")
    check.add_argument("--strict", action="store_true", help="fail when a count differs from the published one")
    check.add_argument("--image-size", type=int, default=32, help="size used with --decode (default 32)")
    check.add_argument("--no-progress", action="store_true", help="no progress bars")
    check.set_defaults(func=run_check)

    listing = commands.add_parser("list", help="list the data sets")
    listing.set_defaults(func=run_list)
    return data


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Standalone entry point: ``python -m redo_lib.data.cli data ...``."""
    parser = argparse.ArgumentParser(prog="redo")
    commands = parser.add_subparsers(dest="command", metavar="{data}")
    commands.required = True
    add_data_parser(commands)
    args = parser.parse_args(list(argv) if argv is not None else None)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
