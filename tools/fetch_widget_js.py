#!/usr/bin/env python3
"""Fetch the JavaScript the static book needs, so that the site serves it itself.

myst-nb's default loads require.js and ``@jupyter-widgets/html-manager``'s ``embed-amd.js``
from public CDNs (cdnjs, jsdelivr), and Sphinx loads MathJax from jsdelivr: offline,
behind a firewall or over ``file://`` the widgets silently vanish and equations stay raw
LaTeX. This script downloads pinned versions of those npm packages from the npm registry
at build time, checks each tarball against the sha512 ``integrity`` pinned below (the
registry's own value), and extracts the few files the pages need into ``book/_widgets/``
(git-ignored, about 9 MB). ``_config.yml`` lists ``book/_widgets`` in ``html_extra_path``,
so they are copied to ``_build/html/_static/{widgets,mathjax}/``, and points
``nb_ipywidgets_js`` and ``mathjax_path`` at them. It also writes one small file of its
own, ``widgets/mathjax2-hub-shim.js`` (see ``SHIM``): the widget manager speaks MathJax 2,
the book loads MathJax 3.

Standard library only (no npm, no virtual environment needed). A second run with the
same pins downloads nothing. To update a pin: change ``version`` and ``integrity`` (from
``npm view <name>@<version> dist.integrity``), and keep ``_config.yml`` in step.

Usage: python tools/fetch_widget_js.py [--out DIR] [--force]
Environment: NPM_CONFIG_REGISTRY (or npm_config_registry) selects a registry mirror.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "book" / "_widgets"
# Inside the html_extra_path folder; the same relative paths appear in the built site.
# (Not the book's own ``_static`` folder: jupyter-book injects every *.js found in
# html_static_path into every page.)
STATIC = Path("_static")
MANIFEST = STATIC / "vendor-manifest.json"

# ``files`` maps a path inside the tarball to a path under _static/; a key ending in "/"
# copies that whole folder.
PACKAGES = [
    {
        # ipywidgets 8.1 declares ``__html_manager_version__ = "^1.0.1"``; 1.0.15 bundles
        # @jupyter-widgets/controls 5.0.13 (ipywidgets 8) and also renders ipywidgets 7 state.
        "name": "@jupyter-widgets/html-manager",
        "version": "1.0.15",
        "integrity": "sha512-5thBIV6ymNgmPVOHvzx+gGy8ZSKmSazhtGw4/c4xJDVzRhG9PTeQsRjF3FUTopvFi//SABeNz1yp47bCrJ3CQA==",
        "license": "BSD-3-Clause",
        "files": {
            "package/dist/embed-amd.js": "widgets/embed-amd.js",
            "package/dist/embed.js.LICENSE.txt": "widgets/embed-amd.js.LICENSE.txt",
        },
        # Plus the assets webpack emitted beside embed-amd.js (Font Awesome fonts, named by
        # content hash), found by name inside it.
        "assets_of": ("package/dist/embed-amd.js", "widgets/"),
    },
    {
        "name": "requirejs",
        "version": "2.3.8",
        "integrity": "sha512-7/cTSLOdYkNBNJcDMWf+luFvMriVm7eYxp4BcFCsAX0wF421Vyce5SXP17c+Jd5otXKGNehIonFlyQXSowL6Mw==",
        "license": "MIT",
        "files": {"package/require.js": "widgets/require.js"},
    },
    {
        # The version Sphinx 7's default URL (mathjax@3) resolves to.
        "name": "mathjax",
        "version": "3.2.2",
        "integrity": "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw==",
        "license": "Apache-2.0",
        "files": {
            "package/es5/tex-mml-chtml.js": "mathjax/tex-mml-chtml.js",
            "package/es5/output/chtml/fonts/woff-v2/": "mathjax/output/chtml/fonts/woff-v2/",
            "package/es5/input/tex/extensions/": "mathjax/input/tex/extensions/",
            "package/LICENSE": "mathjax/LICENSE",
        },
    },
]
# Our own addition, written next to the widget manager (listed before it in
# nb_ipywidgets_js). The html-manager typesets widget labels with MathJax 2's API,
# ``MathJax.Hub.Queue(["Typeset", MathJax.Hub, element])``; the book loads MathJax 3,
# which has no ``Hub``, so on every page with equations each widget threw "Cannot read
# properties of undefined (reading 'Queue')" and could stop drawing half-way.
SHIM_NAME = "widgets/mathjax2-hub-shim.js"
SHIM = """\
/* Written by tools/fetch_widget_js.py (redo-book). Lets @jupyter-widgets/html-manager,
   which calls MathJax 2's MathJax.Hub.Queue(["Typeset", MathJax.Hub, element]) for widget
   labels, work with the MathJax 3 that the book loads. */
(function () {
  "use strict";
  function typeset(job) {
    var mathjax = window.MathJax;
    var element = job && job[2];
    if (!mathjax || !element) { return; }
    Promise.resolve(mathjax.startup && mathjax.startup.promise).then(function () {
      return mathjax.typesetPromise ? mathjax.typesetPromise([element]) : null;
    }).catch(function (problem) {
      console.warn("MathJax could not typeset a widget label:", problem);
    });
  }
  // MathJax 3 is loaded with "defer": it has replaced its configuration object by the
  // time DOMContentLoaded fires, and the widgets are drawn later, on "load".
  document.addEventListener("DOMContentLoaded", function () {
    var mathjax = window.MathJax;
    if (mathjax && !mathjax.Hub) { mathjax.Hub = { Queue: typeset }; }
  });
})();
"""
ASSET_RE = re.compile(r"\b([0-9a-f]{20}\.(?:woff2|woff|ttf|eot|svg))\b")


def registry() -> str:
    url = (os.environ.get("NPM_CONFIG_REGISTRY") or os.environ.get("npm_config_registry")
           or "https://registry.npmjs.org/")
    return url.rstrip("/") + "/"


def http_get(url: str, attempts: int = 3) -> bytes:
    req = urllib.request.Request(url, headers={"User-Agent": "redo-book/fetch_widget_js"})
    for attempt in range(1, attempts + 1):
        try:
            with urllib.request.urlopen(req, timeout=120) as response:
                return response.read()
        except OSError as error:  # URLError, HTTPError, timeouts, resets
            if attempt == attempts:
                raise RuntimeError(f"could not download {url}: {error}") from error
            print(f"  {url}: {error}; retrying", file=sys.stderr)
            time.sleep(2 * attempt)
    raise AssertionError("unreachable")


def tarball_url(name: str, version: str) -> str:
    # The registry's version document names the tarball (a mirror may rewrite its host).
    meta = json.loads(http_get(registry() + name.replace("/", "%2F") + "/" + version))
    return meta["dist"]["tarball"]


def check_integrity(data: bytes, integrity: str, what: str) -> None:
    algorithm, _, expected = integrity.partition("-")
    actual = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if actual != expected:
        raise RuntimeError(f"{what}: {algorithm} mismatch (pinned {expected}, got {actual})")


def extract(package: dict, data: bytes, dest: Path) -> list[str]:
    """Write the package's wanted files under ``dest``; return their relative paths."""
    spec = f"{package['name']}@{package['version']}"
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = {m.name: m for m in tar.getmembers() if m.isfile()}
        wanted: dict[str, str] = {}
        for source, target in package["files"].items():
            if source.endswith("/"):
                found = {m: target + m[len(source):] for m in members if m.startswith(source)}
                if not found:
                    raise RuntimeError(f"{spec}: no files under {source}")
                wanted.update(found)
            elif source in members:
                wanted[source] = target
            else:
                raise RuntimeError(f"{spec}: no {source}")
        if "assets_of" in package:
            bundle, target_dir = package["assets_of"]
            text = tar.extractfile(members[bundle]).read().decode("utf-8")
            folder = bundle.rsplit("/", 1)[0]
            for asset in sorted(set(ASSET_RE.findall(text))):
                if f"{folder}/{asset}" in members:
                    wanted[f"{folder}/{asset}"] = target_dir + asset
        written = []
        for member, target in sorted(wanted.items()):
            path = dest / STATIC / target
            if not path.resolve().is_relative_to(dest.resolve()):
                raise RuntimeError(f"{spec}: unsafe path {target}")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(tar.extractfile(members[member]).read())
            written.append((STATIC / target).as_posix())
    return written


def up_to_date(out: Path, pins: list[dict]) -> bool:
    try:
        manifest = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return manifest.get("packages") == pins and all(
        (out / f).is_file() for f in manifest.get("files", [])
    )


def fetch(out: Path, force: bool = False) -> None:
    pins = [{k: p[k] for k in ("name", "version", "integrity")} for p in PACKAGES]
    pins.append({"name": SHIM_NAME, "sha256": hashlib.sha256(SHIM.encode()).hexdigest()})
    if not force and up_to_date(out, pins):
        print(f"vendored JavaScript up to date in {out}")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    # Build the whole folder beside the old one, then swap: an interrupted run leaves
    # either the old complete folder or none, never a half-written one.
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the site must be readable
    try:
        files: list[str] = []
        for package in PACKAGES:
            spec = f"{package['name']}@{package['version']}"
            url = tarball_url(package["name"], package["version"])
            print(f"fetching {spec} from {url}")
            data = http_get(url)
            check_integrity(data, package["integrity"], spec)
            files += extract(package, data, staging)
        (staging / STATIC / SHIM_NAME).write_text(SHIM)
        files.append((STATIC / SHIM_NAME).as_posix())
        notice = STATIC / "VENDORED.txt"
        (staging / notice).write_text(
            "Downloaded from the npm registry by tools/fetch_widget_js.py when the book is "
            "built; not part of the redo-book sources.\n"
            + "".join(f"{p['name']}@{p['version']}: {p['license']}\n" for p in PACKAGES)
            + f"{SHIM_NAME}: written by the script (a MathJax 3 shim for the widgets)\n"
        )
        files.append(notice.as_posix())
        (staging / MANIFEST).write_text(
            json.dumps({"packages": pins, "files": sorted(files)}, indent=2) + "\n"
        )
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    size = sum((out / f).stat().st_size for f in files)
    print(f"wrote {len(files)} files ({size / 1e6:.1f} MB) to {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="the html_extra_path folder (default: book/_widgets)")
    parser.add_argument("--force", action="store_true", help="download even if up to date")
    args = parser.parse_args(argv)
    fetch(args.out.resolve(), force=args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
