"""Write the manifest of the shipped checkpoints: name, size and SHA-256 of each file.

``redo_lib.utils.shipped_checkpoint(name)`` finds ``data/checkpoints/<name>.pt`` in a
checkout of the repository. A package installed with pip has no ``data/`` folder: it then
downloads the file (and its ``<name>_metrics.jsonl`` log) and checks it against the
manifest shipped inside the package, ``redo_lib/shipped_manifest.json``.

This script hashes every ``*.pt`` and ``*_metrics.jsonl`` file in ``data/checkpoints/`` and
writes the same manifest to two places: ``data/checkpoints/MANIFEST.json`` (beside the
files) and ``redo_lib/shipped_manifest.json`` (package data, see ``pyproject.toml``). Run
it after adding or replacing a checkpoint::

    python tools/write_manifest.py          # rewrite both manifests
    python tools/write_manifest.py --check  # change nothing; exit 1 if they are stale

``tests/test_shipped_lookup.py`` runs ``--check``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "data" / "checkpoints"
MANIFEST_NAME = "MANIFEST.json"
PACKAGE_MANIFEST = ROOT / "redo_lib" / "shipped_manifest.json"
PATTERNS = ("*.pt", "*_metrics.jsonl")
ABOUT = ("Size and SHA-256 of the shipped checkpoints of data/checkpoints/, written by "
         "tools/write_manifest.py; redo_lib.utils.shipped_checkpoint checks downloads against it.")


def sha256(path: Path) -> str:
    from redo_lib.data.download import file_digest

    return file_digest(path, "sha256")


def shipped_files(folder: Path) -> List[Path]:
    """The files of ``folder`` that the manifest lists, sorted by name."""
    found = {path for pattern in PATTERNS for path in folder.glob(pattern) if path.is_file()}
    return sorted(found, key=lambda path: path.name)


def manifest(folder: Path) -> Dict:
    """The manifest of ``folder``: ``{"about": ..., "files": {name: {"size", "sha256"}}}``."""
    return {
        "about": ABOUT,
        "files": {path.name: {"size": path.stat().st_size, "sha256": sha256(path)}
                  for path in shipped_files(folder)},
    }


def dumps(data: Dict) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def differences(expected: Dict, path: Path) -> List[str]:
    """What is wrong with the manifest at ``path`` (empty: it is up to date)."""
    if not path.is_file():
        return [f"{path} is missing"]
    try:
        written = json.loads(path.read_text(encoding="utf-8")).get("files", {})
    except (ValueError, AttributeError) as error:
        return [f"{path} is not a valid manifest ({error})"]
    files = expected["files"]
    problems = [f"{path.name}: {name} is listed but not present" for name in sorted(set(written) - set(files))]
    problems += [f"{path.name}: {name} is present but not listed" for name in sorted(set(files) - set(written))]
    problems += [f"{path.name}: {name} has changed (size or SHA-256)" for name in sorted(set(files) & set(written))
                 if written[name] != files[name]]
    if not problems and path.read_text(encoding="utf-8") != dumps(expected):
        problems.append(f"{path.name}: not in the format this script writes")
    return problems


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 when a manifest does not match the files present")
    parser.add_argument("--checkpoints", type=Path, default=CHECKPOINTS, help="folder of the shipped files")
    parser.add_argument("--package-manifest", type=Path, default=PACKAGE_MANIFEST,
                        help="the copy shipped inside the package")
    args = parser.parse_args(argv)
    expected = manifest(args.checkpoints)
    targets = [args.checkpoints / MANIFEST_NAME, args.package_manifest]
    if args.check:
        problems = [problem for target in targets for problem in differences(expected, target)]
        for problem in problems:
            print(problem)
        if problems:
            print("run: python tools/write_manifest.py")
            return 1
        print(f"manifests up to date: {', '.join(expected['files']) or 'no files'}")
        return 0
    text = dumps(expected)
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        print(f"wrote {target} ({len(expected['files'])} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
