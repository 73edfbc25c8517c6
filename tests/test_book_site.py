"""Browser test of the built book: every page in _toc.yml, opened in headless Chromium.

For each page (taken from ``_toc.yml``, so new chapters are covered when they are listed)
the test loads ``_build/html/<page>.html`` over ``file://`` with every host name made
unresolvable (so a CDN dependency fails here as it would offline), lets its JavaScript
run, and checks the DOM that results:

- text: the page title and body are there, no error output or traceback;
- images: every ``<img>`` resolves to a readable image (``data:`` or a local file), and
  the page shows at least as many images as its executed notebook produced;
- equations: MathJax (served by the site) typeset every formula;
- widgets: on pages whose notebook uses ipywidgets (or whose built page embeds widget
  state), the html-manager drew a widget view for each widget output;
- assets: scripts, styles and images come from the site itself; no uncaught JavaScript
  error.

It also saves two screenshots of each page into ``_build/screenshots/`` for a person to
look at: ``<page>.png`` (the first screen) and ``<page>--full.png`` (an 8000-pixel-tall
window; set BOOK_FULL_SCREENSHOT_SIZE=1280,20000 for longer pages). Needs Chromium (``make chromium`` installs Debian's); it installs nothing itself.

The site is built once per session (fetch the vendored JavaScript, then
``jupyter-book build . -W --keep-going`` from a clean ``_build``), unless a complete
``make book`` build is newer than every input (book, redo_lib, configuration, the
virtual environment's install stamp). Set ``REDO_BOOK_REBUILD=1`` to always rebuild.
"""
from __future__ import annotations

import base64
import binascii
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from bs4 import BeautifulSoup
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build"
HTML = BUILD / "html"
EXECUTED = BUILD / "jupyter_execute"
SCREENSHOTS = BUILD / "screenshots"
# Written by `make book` (and by this test) after a successful build, dated when the
# build started; _build/html is deleted at the start of every build.
STAMP = HTML / ".book-build-ok"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
WINDOW = os.environ.get("BOOK_SCREENSHOT_SIZE", "1280,1600")
FULL_WINDOW = os.environ.get("BOOK_FULL_SCREENSHOT_SIZE", "1280,8000")  # long pages: raise
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
IMAGE_MIMES = ("image/png", "image/jpeg", "image/gif", "image/svg+xml")
# The repository of the launch buttons, from its one place: _config.yml.
_REPOSITORY = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["repository"]
REPOSITORY = _REPOSITORY["url"].rstrip("/")
COLAB = ("https://colab.research.google.com/github/" + urlsplit(REPOSITORY).path.strip("/")
         + f"/blob/{_REPOSITORY['branch']}/")
# Console messages that are known and harmless. Keep this list short and explained.
KNOWN_CONSOLE = [
    # Jupyter Book 1 emits sphinx-thebe's `const THEBE_JS_URL = ...` script twice on
    # every page; the second declaration throws. Thebe (live code) is not enabled here.
    re.compile(r"Identifier 'THEBE_JS_URL' has already been declared"),
]


# --- the pages --------------------------------------------------------------------------

def toc_pages() -> list[str]:
    """Document names in _toc.yml (root first), e.g. ``book/intro``."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                pages.append(node["file"])
            for key in ("parts", "chapters", "sections"):
                for child in node.get(key, []) or []:
                    walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk({k: v for k, v in toc.items() if k != "root"})
    return [re.sub(r"\.(md|ipynb)$", "", p) for p in pages]


PAGES = toc_pages()


def source_of(page: str) -> Path:
    for suffix in (".ipynb", ".md"):
        if (ROOT / (page + suffix)).is_file():
            return ROOT / (page + suffix)
    raise FileNotFoundError(f"_toc.yml lists {page}, but there is no {page}.ipynb or .md")


def _kept_cells(notebook: dict) -> list[dict]:
    return [c for c in notebook.get("cells", [])
            if "remove-cell" not in c.get("metadata", {}).get("tags", [])]


def source_title(page: str) -> str:
    path = source_of(page)
    if path.suffix == ".ipynb":
        text = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"]
                         if c["cell_type"] == "markdown")
    else:
        text = re.sub(r"\A---\n.*?\n---\n", "", path.read_text(), flags=re.S)  # front matter
    match = re.search(r"^# +(.+?)\s*$", text, flags=re.M)
    assert match, f"{path.name} has no '# title' heading"
    return match.group(1)


def source_uses_widgets(page: str) -> bool:
    path = source_of(page)
    if path.suffix != ".ipynb":
        return False
    code = "\n".join("".join(c["source"]) for c in _kept_cells(json.loads(path.read_text()))
                     if c["cell_type"] == "code")
    return bool(re.search(r"\bipywidgets\b|\btqdm\.(auto|notebook)\b", code))


def expected_images(page: str) -> int:
    """Images the page must show: notebook image outputs, or Markdown images."""
    executed = EXECUTED / (page + ".ipynb")
    if executed.is_file():
        count = 0
        for cell in _kept_cells(json.loads(executed.read_text())):
            if "remove-output" in cell.get("metadata", {}).get("tags", []):
                continue
            for output in cell.get("outputs", []):
                if any(m in output.get("data", {}) for m in IMAGE_MIMES):
                    count += 1
        return count
    text = source_of(page).read_text()
    return len(re.findall(r"!\[[^\]]*\]\(|^[`:]{3,}\{(?:image|figure)\}", text, flags=re.M))


# --- building the site ------------------------------------------------------------------

def _inputs() -> list[Path]:
    files = [ROOT / name for name in ("_config.yml", "_toc.yml", "pyproject.toml",
                                      "tools/fetch_widget_js.py", ".venv/.installed")]
    skip = {"_widgets", ".ipynb_checkpoints", "__pycache__"}
    for folder in ("book", "redo_lib", "data/checkpoints"):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and not skip.intersection(path.relative_to(ROOT).parts):
                files.append(path)
    return [f for f in files if f.exists()]


def _stale_inputs() -> list[Path]:
    if not STAMP.is_file():
        return [STAMP]
    built = STAMP.stat().st_mtime
    return [f for f in _inputs() if f.stat().st_mtime > built]


def _report(config: pytest.Config, message: str) -> None:
    """Print past pytest's output capture (also with -q)."""
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is None:
        print(message)
        return
    with capture.global_and_fixture_disabled():
        print(f"\n[test_book_site] {message}", flush=True)


def _build_site(config: pytest.Config) -> None:
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    if not jupyter_book.exists():
        found = shutil.which("jupyter-book")
        assert found, "jupyter-book is missing: install the book extra (make venv)"
        jupyter_book = Path(found)
    subprocess.run([sys.executable, str(ROOT / "tools" / "fetch_widget_js.py")],
                   cwd=ROOT, check=True)
    for folder in (HTML, BUILD / ".doctrees", EXECUTED):
        shutil.rmtree(folder, ignore_errors=True)
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)  # let the notebook kernels plot inline, as in Jupyter
    _report(config, "building the book (jupyter-book build . -W --keep-going) ...")
    start = time.time()
    proc = subprocess.run([str(jupyter_book), "build", ".", "-W", "--keep-going"],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        log = (proc.stdout + proc.stderr)[-8000:]
        pytest.fail(f"the book build failed (exit {proc.returncode}):\n{log}", pytrace=False)
    STAMP.touch()
    os.utime(STAMP, (start, start))
    _report(config, f"built the book in {time.time() - start:.0f} s")


@pytest.fixture(scope="session")
def site(request: pytest.FixtureRequest) -> Path:
    stale = _stale_inputs()
    if os.environ.get("REDO_BOOK_REBUILD") == "1" or stale:
        if stale:
            why = "no complete build" if stale == [STAMP] else (
                f"{len(stale)} input(s) changed since the last build, e.g. "
                f"{stale[0].relative_to(ROOT)}")
            _report(request.config, f"rebuilding: {why}")
        _build_site(request.config)
    else:
        _report(request.config, f"using the fresh build in {HTML} (REDO_BOOK_REBUILD=1 rebuilds)")
    return HTML


# --- the browser ------------------------------------------------------------------------

def _chromium(url: str, *args: str, window: str = WINDOW) -> subprocess.CompletedProcess:
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: run `make chromium` (apt-get install chromium)"
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        command = [
            str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}",
            # Every host name fails to resolve: the page must need nothing from a network.
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--virtual-time-budget=15000", f"--window-size={window}", *args, url,
        ]
        return subprocess.run(command, capture_output=True, text=True, timeout=180)


@dataclass
class Page:
    name: str
    html_path: Path
    dom: BeautifulSoup
    console: list[str] = field(default_factory=list)
    screenshots: list[Path] = field(default_factory=list)


@pytest.fixture(scope="session")
def screenshots(request: pytest.FixtureRequest, site: Path) -> Path:
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    yield SCREENSHOTS
    shots = sorted(p.name for p in SCREENSHOTS.glob("*.png"))
    _report(request.config, f"screenshots in {SCREENSHOTS}: {', '.join(shots) or 'none'}")


def render(page: str, site: Path, screenshot_dir: Path) -> Page:
    html_path = site / (page + ".html")
    assert html_path.is_file(), f"{html_path} was not built"
    url = html_path.as_uri()
    dumped = _chromium(url, "--enable-logging=stderr", "--v=0", "--dump-dom")
    assert dumped.returncode == 0, f"chromium failed on {url}:\n{dumped.stderr[-3000:]}"
    console = [line for line in dumped.stderr.splitlines() if ":CONSOLE" in line]
    # The top of the page as a reader first sees it, and the whole page (a tall window:
    # headless Chromium draws nothing when it scrolls to a #fragment before a screenshot).
    stem = screenshot_dir / page.replace("/", "__")
    shots = [(stem.with_name(stem.name + ".png"), WINDOW),
             (stem.with_name(stem.name + "--full.png"), FULL_WINDOW)]
    for shot, window in shots:
        taken = _chromium(url, f"--screenshot={shot}", window=window)
        assert taken.returncode == 0 and shot.is_file(), (
            f"no screenshot of {url}:\n{taken.stderr[-3000:]}")
    return Page(page, html_path, BeautifulSoup(dumped.stdout, "html.parser"), console,
                [shot for shot, _ in shots])


# --- checks -----------------------------------------------------------------------------

def _local_file(page: Page, ref: str) -> Path | None:
    parts = urlsplit(ref)
    if parts.scheme in ("http", "https") or ref.startswith("//"):
        return None
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    return (page.html_path.parent / unquote(parts.path)).resolve()


def _open_image(page: Page, src: str) -> Image.Image | None:
    """The image behind an <img src>, or None for SVG (checked for existence only)."""
    if src.startswith("data:"):
        header, _, payload = src.partition(",")
        try:
            data = base64.b64decode(payload) if header.endswith(";base64") else unquote(payload).encode()
        except binascii.Error as error:
            raise AssertionError(f"{page.name}: undecodable data: image ({error})")
        assert data, f"{page.name}: empty data: image"
        if "svg" in header:
            return None
        return Image.open(io.BytesIO(data))
    path = _local_file(page, src)
    assert path is not None, f"{page.name}: image from the network: {src}"
    assert path.is_file() and path.stat().st_size > 0, f"{page.name}: missing image {src}"
    if path.suffix.lower() == ".svg":
        return None
    return Image.open(path)


def check_text(page: Page) -> None:
    article = page.dom.select_one("article") or page.dom.body
    assert article is not None, f"{page.name}: no page body"
    text = " ".join(article.get_text(" ").split())
    title = " ".join(source_title(page.name).split())
    h1 = page.dom.find("h1")
    assert h1 is not None, f"{page.name}: no <h1>"
    # Strip inline markup from the source title for a text comparison.
    plain_title = re.sub(r"[`*_]|\{[a-z:]+\}", "", title)
    assert plain_title in " ".join(h1.get_text(" ").split()), (
        f"{page.name}: <h1> {h1.get_text()!r} does not show the title {plain_title!r}")
    assert len(text) > 200, f"{page.name}: almost no text ({len(text)} characters)"
    errors = page.dom.select(".output.traceback, .output.error, .cell_output .traceback")
    assert not errors, f"{page.name}: error output: {errors[0].get_text()[:500]}"
    assert "Traceback (most recent call last)" not in text, f"{page.name}: a traceback is shown"


def check_images(page: Page) -> None:
    images = page.dom.find_all("img")
    for img in images:
        src = img.get("src", "")
        assert src, f"{page.name}: <img> without src"
        if src.startswith("blob:"):
            # An ipywidgets Image: the widget manager turns the PNG bytes embedded in the
            # page's widget state into an object URL, which only lives inside the browser.
            assert "widget-image" in (img.get("class") or []), (
                f"{page.name}: blob: image outside an ipywidgets Image: {src[:80]}")
            continue
        picture = _open_image(page, src)
        if picture is not None:
            picture.load()
            assert picture.width > 0 and picture.height > 0, f"{page.name}: empty image {src[:80]}"
    expected = expected_images(page.name)
    assert len(images) >= expected, (
        f"{page.name}: {len(images)} <img> in the page, but its notebook has {expected} image outputs")


def check_math(page: Page) -> None:
    formulas = page.dom.select(".math")
    if formulas:
        typeset = page.dom.find_all("mjx-container")
        assert typeset, f"{page.name}: {len(formulas)} formulas, but MathJax typeset none"


def check_assets(page: Page) -> None:
    external = []
    for tag, attr in (("script", "src"), ("link", "href"), ("img", "src"), ("iframe", "src")):
        for element in page.dom.find_all(tag):
            ref = element.get(attr)
            if not ref or ref.startswith(("data:", "#", "mailto:", "blob:")):
                continue
            if tag == "link" and not set(element.get("rel", [])) & {"stylesheet", "preload", "icon"}:
                continue
            path = _local_file(page, ref)
            if path is None:
                external.append(ref)
            else:
                assert path.exists(), f"{page.name}: <{tag}> refers to a missing file {ref}"
    assert not external, f"{page.name}: assets loaded from the network: {external}"
    problems = [line for line in page.console
                if re.search(r"error|uncaught|failed", line, flags=re.I)
                and not any(known.search(line) for known in KNOWN_CONSOLE)]
    assert not problems, f"{page.name}: JavaScript errors:\n" + "\n".join(problems)


def check_widgets(page: Page) -> None:
    built = page.html_path.read_text()
    views = built.count(f'type="{WIDGET_VIEW}"')
    has_state = f'type="{WIDGET_STATE}"' in built
    wants = source_uses_widgets(page.name) or has_state
    if not wants:
        return
    assert has_state and views, (
        f"{page.name}: the notebook uses widgets, but the built page embeds no widget state "
        f"({views} widget outputs)")
    drawn = [el for el in page.dom.find_all(class_="jupyter-widgets")
             if any(c.startswith("widget-") for c in el.get("class", []))]
    assert "Error displaying widget" not in page.dom.get_text(), f"{page.name}: a widget failed"
    # Each widget output is a <script> placeholder; the html-manager draws the view
    # (class "jupyter-widgets widget-...") beside it. Containers draw several.
    assert len(drawn) >= views, (
        f"{page.name}: {views} widget outputs, but only {len(drawn)} widget views were drawn")
    scripts = [s.get("src", "") for s in page.dom.find_all("script")]
    for needed in ("widgets/require.js", "widgets/embed-amd.js"):
        assert any(needed in s and _local_file(page, s) for s in scripts), (
            f"{page.name}: {needed} is not loaded from the site")


def check_screenshots(page: Page) -> None:
    for path in page.screenshots:
        with Image.open(path) as shot:
            low, high = shot.convert("L").getextrema()
            assert high - low > 50, f"{page.name}: the screenshot {path.name} is blank"


def check_links(page: Page) -> None:
    """The repository link on every page; the Colab launch button on notebook pages."""
    hrefs = [a.get("href", "") for a in page.dom.find_all("a")]
    assert any(h.startswith(REPOSITORY) for h in hrefs), f"{page.name}: no repository link"
    if source_of(page.name).suffix == ".ipynb":
        colab = COLAB + page.name + ".ipynb"
        assert colab in hrefs, f"{page.name}: no Colab launch button ({colab})"
    footer = " ".join(" ".join(f.get_text(" ") for f in page.dom.find_all("footer")).split())
    assert re.search(r"Copyright \d{4}", footer), f"{page.name}: no copyright year in the footer"


# --- tests ------------------------------------------------------------------------------

def test_toc_pages_exist():
    assert PAGES, "_toc.yml lists no pages"
    for page in PAGES:
        source_of(page)


@pytest.mark.parametrize("page", PAGES)
def test_page_renders(page: str, site: Path, screenshots: Path):
    rendered = render(page, site, screenshots)
    check_text(rendered)
    check_images(rendered)
    check_math(rendered)
    check_widgets(rendered)
    check_assets(rendered)
    check_links(rendered)
    check_screenshots(rendered)


def test_site_is_self_contained(site: Path):
    """No page loads the widget manager, require.js or MathJax from a CDN."""
    cdn = re.compile(r"""<script[^>]+src="(?:https?:)?//(?:unpkg\.com|cdn\.jsdelivr\.net|cdnjs\.cloudflare\.com)[^"]*""")
    offenders = {str(p.relative_to(site)): cdn.findall(p.read_text())
                 for p in site.rglob("*.html") if cdn.search(p.read_text())}
    assert not offenders, f"pages load scripts from a CDN: {offenders}"
    for needed in ("_static/widgets/require.js", "_static/widgets/embed-amd.js",
                   "_static/mathjax/tex-mml-chtml.js"):
        assert (site / needed).is_file(), f"{needed} is not in the site"


def test_checks_are_not_vacuous(site: Path):
    """At least one page has figures and one has widgets, so both checks above ran."""
    assert any(expected_images(p) for p in PAGES), "no notebook of the book shows an image"
    assert any(source_uses_widgets(p) or WIDGET_STATE in (site / (p + ".html")).read_text()
               for p in PAGES), "no page of the book has widgets"
