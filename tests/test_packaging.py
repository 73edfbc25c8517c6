"""pyproject.toml declares what the code and the tests really need.

- The torch lower bound covers every torch API that redo_lib/ uses (a table of API ->
  first torch version that has it, grepped in the sources), torchvision's bound is the
  release that goes with it, and neither is pinned or capped.
- Every third-party module imported by tests/ is declared (main dependencies or an extra).
- requires-python agrees with README.md and environment.yml.

Installing old versions is not needed: the table says which version brought each API.
"""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest
import torch

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]

# API (as named in the failure message) -> (regular expression over the sources, first torch version).
TORCH_APIS: Dict[str, Tuple[str, Tuple[int, int]]] = {
    "torch.compile": (r"\btorch\.compile\(", (2, 0)),
    "F.scaled_dot_product_attention": (r"\bscaled_dot_product_attention\(", (2, 0)),
    "scaled_dot_product_attention(..., scale=)": (r"\bscaled_dot_product_attention\([^)]*\bscale\s*=", (2, 1)),
    "torch.utils.flop_counter": (r"\bflop_counter\b", (2, 1)),
    "torch.export": (r"\btorch\.export\b", (2, 1)),
    "nn.Module.compile": (r"(?<!\btorch)(?<!\bre)(?<!\bregex)\.compile\(", (2, 2)),  # not torch.compile
    "torch.amp.GradScaler": (r"\btorch\.amp\.GradScaler\b|from torch\.amp import[^\n]*\bGradScaler\b", (2, 3)),
    "torch.nn.attention": (r"\btorch\.nn\.attention\b|\bsdpa_kernel\(", (2, 3)),
    "torch.serialization.add_safe_globals": (r"\badd_safe_globals\(", (2, 4)),
    "torch.amp.custom_fwd / custom_bwd": (r"\btorch\.amp\.custom_(fwd|bwd)\b", (2, 4)),
    "torch.library.custom_op": (r"\blibrary\.custom_op\b", (2, 4)),
    "nn.RMSNorm / F.rms_norm": (r"\bnn\.RMSNorm\b|\brms_norm\(", (2, 4)),
    "torch.serialization.safe_globals": (r"\bserialization\.safe_globals\b|\bsafe_globals\(", (2, 5)),
    "scaled_dot_product_attention(..., enable_gqa=)": (r"\benable_gqa\s*=", (2, 5)),
    "torch.accelerator": (r"\btorch\.accelerator\b", (2, 6)),
    "torch.compiler.set_stance": (r"\bset_stance\(", (2, 6)),
    "torch.nn.utils.get_total_norm": (r"\bget_total_norm\(|\bclip_grads_with_norm_\(", (2, 6)),
}
NEWEST_ALLOWED_TORCH = (2, 14, 1)  # the lower bound may not ask for more than this

# import name -> distribution name, for modules whose names differ (and are not installed here).
IMPORT_TO_DIST = {
    "yaml": "pyyaml",
    "bs4": "beautifulsoup4",
    "PIL": "pillow",
    "cv2": "opencv-python-headless",
    "sklearn": "scikit-learn",
    "skimage": "scikit-image",
}


def _pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)["project"]


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([^;]*?)\s*(;.*)?$")


def _requirements(strings: List[str]) -> Dict[str, str]:
    """``{normalised name: version specifier}`` of requirement strings."""
    out = {}
    for text in strings:
        match = _REQUIREMENT.match(text)
        assert match, f"cannot parse requirement {text!r}"
        out[_normalise(match.group(1))] = match.group(3).replace(" ", "")
    return out


def _version(text: str) -> Tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text.split("+")[0])[:3])


def _lower_bound(spec: str, name: str) -> Tuple[int, ...]:
    clauses = [c for c in spec.split(",") if c]
    lower = [c for c in clauses if c.startswith(">=")]
    assert len(lower) == 1, f"{name}: expected one '>=' lower bound, got {spec!r}"
    assert all(c.startswith(">=") for c in clauses), f"{name}: lower bounds only (no pin, no cap), got {spec!r}"
    return _version(lower[0][2:])


def _sources() -> Dict[str, str]:
    """redo_lib/**/*.py without comments (a docstring may name an API the code does not call)."""
    out = {}
    for path in sorted((ROOT / "redo_lib").rglob("*.py")):
        text = path.read_text()
        out[str(path.relative_to(ROOT))] = "\n".join(line.split("#")[0] for line in text.splitlines())
    return out


def _needed_torch(sources: Dict[str, str]) -> Tuple[Tuple[int, int], List[str]]:
    needed, why = (2, 0), []
    for api, (pattern, version) in TORCH_APIS.items():
        regex = re.compile(pattern, re.S)
        for name, text in sources.items():
            if regex.search(text):
                why.append(f"{api} ({'.'.join(map(str, version))}) in {name}")
                needed = max(needed, version)
    return needed, why


def test_the_api_table_finds_what_it_should():
    """The patterns recognise the uses (and not their look-alikes)."""
    code = {
        "a.py": "with torch.serialization.safe_globals([Namespace]):\n    pass",
        "b.py": "scaler = torch.amp.GradScaler('cuda')",
        "c.py": "getattr(model, name).compile(mode='max-autotune')",
        "d.py": "y = F.scaled_dot_product_attention(q, k, v,\n    scale=1.0)",
    }
    _, why = _needed_torch(code)
    found = {entry.split(" (")[0] for entry in why}
    assert {"torch.serialization.safe_globals", "torch.amp.GradScaler", "nn.Module.compile",
            "scaled_dot_product_attention(..., scale=)"} <= found
    assert _needed_torch({"a.py": "safe_globals_used = 1"})[1] == []
    assert _needed_torch({"e.py": "pattern = re.compile(r'x')\nf = torch.compile(f)"})[0] == (2, 0)
    assert _needed_torch({"f.py": "torch.serialization.add_safe_globals([X])"})[0] == (2, 4)


def test_torch_lower_bound_covers_the_apis_used():
    deps = _requirements(_pyproject()["dependencies"])
    declared = _lower_bound(deps["torch"], "torch")
    needed, why = _needed_torch(_sources())
    assert why, "the API table found nothing in redo_lib/: are the patterns still right?"
    assert declared >= needed, (
        f"pyproject.toml declares torch>={'.'.join(map(str, declared))} but the code needs "
        f"{'.'.join(map(str, needed))}: " + "; ".join(why))
    assert declared <= NEWEST_ALLOWED_TORCH
    assert declared <= _version(torch.__version__), "the declared lower bound is newer than the torch installed here"


def test_torchvision_bound_goes_with_torch():
    deps = _requirements(_pyproject()["dependencies"])
    torch_bound = _lower_bound(deps["torch"], "torch")
    vision_bound = _lower_bound(deps["torchvision"], "torchvision")
    assert torch_bound[0] == 2
    # torch 2.N is released with torchvision 0.(N + 15): 2.5 <-> 0.20
    assert vision_bound[:2] == (0, torch_bound[1] + 15), (torch_bound, vision_bound)


def test_no_dependency_is_pinned_or_capped():
    project = _pyproject()
    strings = list(project["dependencies"])
    for name, extra in project["optional-dependencies"].items():
        if name != "book":  # jupyter-book 1.x is capped below 2 on purpose (2.x is another tool)
            strings += extra
    for name, spec in _requirements(strings).items():
        assert "==" not in spec and "<" not in spec.replace("<=", ""), f"{name}: {spec}"


def _third_party_imports() -> Dict[str, List[str]]:
    """Top-level names imported by tests/*.py (also inside functions and importorskip) -> files."""
    local = {p.stem for folder in (ROOT, ROOT / "tools", ROOT / "benchmarks", ROOT / "tests")
             for p in folder.glob("*.py")}
    local |= {p.name for p in ROOT.iterdir() if p.is_dir()}  # redo_lib, tests, tools, book, ...
    found: Dict[str, List[str]] = {}
    for path in sorted((ROOT / "tests").glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names: List[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and node.func.attr in ("importorskip", "import_module") and node.args
                  and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                names = [node.args[0].value]
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in local or top == "__future__":
                    continue
                found.setdefault(top, []).append(path.name)
    return found


def _distribution(module: str) -> Optional[str]:
    if module in IMPORT_TO_DIST:
        return IMPORT_TO_DIST[module]
    from importlib.metadata import packages_distributions

    dists = packages_distributions().get(module)
    return dists[0] if dists else module  # most distributions are named as their module


def test_every_module_the_tests_import_is_declared():
    project = _pyproject()
    declared = set(_requirements(project["dependencies"]))
    for extra in project["optional-dependencies"].values():
        declared |= set(_requirements(extra))
    imports = _third_party_imports()
    assert {"pytest", "torch", "yaml", "bs4"} <= set(imports), sorted(imports)
    missing = {module: (_distribution(module), files) for module, files in imports.items()
               if _normalise(_distribution(module)) not in declared}
    assert not missing, f"imported by tests/ but not declared in pyproject.toml: {missing}"


def test_the_test_extra_declares_what_the_tests_need_unconditionally():
    """Modules imported at the top of a test file (no importorskip) belong to the main or test requirements."""
    project = _pyproject()
    available = set(_requirements(project["dependencies"])) | set(
        _requirements(project["optional-dependencies"]["test"]))
    for module in ("yaml", "bs4", "pytest"):
        assert _normalise(_distribution(module)) in available, module
    extra = project["optional-dependencies"]["test"]
    assert any(r.startswith("tomli") and "python_version < '3.11'" in r.replace('"', "'") for r in extra)


def test_requires_python_agrees_with_readme_and_environment():
    import yaml

    requires = _pyproject()["requires-python"].replace(" ", "")
    assert re.fullmatch(r">=\d+\.\d+", requires), requires
    minimum = requires[2:]
    readme = re.findall(r"Python (\d+\.\d+)\+", (ROOT / "README.md").read_text())
    assert readme and set(readme) == {minimum}, f"README.md says Python {readme}, pyproject.toml {requires}"
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pythons = [d for d in environment["dependencies"] if isinstance(d, str) and d.startswith("python")]
    assert [p.replace(" ", "") for p in pythons] == [f"python{requires}"], pythons
    assert sys.version_info[:2] >= _version(minimum)[:2]

