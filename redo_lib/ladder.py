"""Stored results of the ladder of difficulty: runs, test scores and baselines per level.

``benchmarks/ladder.py`` trains ReDO on each level of the synthetic ladder
(``synthetic-flat``, ``synthetic-gradient``, ``synthetic-soft``, ``synthetic``) and
publishes, for every run, its curve (``metrics.jsonl``), the command that made it
(``command.txt``), the test score of the checkpoint it kept (``test.json``) and its last
sample grid (``samples_last.png``), in ``data/ladder/<data set>/<setting>/seed<S>/``, and
the baselines of each level in ``data/ladder/<data set>/baselines-<size>px.json``. This
module reads them, so that the book prints its numbers from the stored files.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from .viz import load_metrics

__all__ = ["LEVELS", "HELD_OUT", "default_root", "runs", "seeds", "test_scores", "command", "baselines",
           "config_of_command", "recorded_config", "run_config", "settings", "recipe", "differences", "changes", "preset_setting", "nearest_setting",
           "summary", "probes_root", "probe_names", "probe"]

PathLike = Union[str, "os.PathLike[str]"]

#: the training options that belong to a recipe (beside the model, loss and optimiser
#: sections); the others (data set, seed, length, files, device) describe one run
RECIPE_TRAIN_OPTIONS = ("batch_size", "d_steps", "mask_warmup", "reuse_fakes")

#: the levels of the ladder, easiest first, and their data sets
LEVELS: Mapping[str, str] = {"flat": "synthetic-flat", "gradient": "synthetic-gradient",
                             "soft": "synthetic-soft", "textured": "synthetic"}

#: held-out sets drawn by ``benchmarks/folder_sets.py`` (no ``redo_lib`` code), stored like
#: the levels (``benchmarks/ladder.py train ... --data-root``) under these names
HELD_OUT: Mapping[str, str] = {"flat folder set": "folder-flat", "textured folder set": "folder-textured"}


def default_root() -> Path:
    """``data/ladder`` of the checkout this package runs from (the book's stored runs)."""
    return Path(__file__).resolve().parents[1] / "data" / "ladder"


def probes_root() -> Path:
    """``data/probes`` of the checkout: the stored runs of ``benchmarks/mask_stability.py``."""
    return default_root().parent / "probes"


def _probes(root: Optional[PathLike]) -> Path:
    return Path(root) if root is not None else probes_root()


def probe_names(dataset: str, root: Optional[PathLike] = None) -> List[str]:
    """The stored probes of one data set (folders with a ``result.json``), sorted."""
    folder = _probes(root) / dataset
    return sorted(p.name for p in folder.glob("*") if (p / "result.json").is_file()) if folder.is_dir() else []


def probe(dataset: str, name: str, root: Optional[PathLike] = None) -> Dict:
    """One stored ground-truth probe (``mask_stability.py --publish``): its JSON result (the
    validation curve, the IoU at the release and at the end, the texture of the object's
    redraws), plus ``command`` (the command that made it) and ``grids`` (``{phase: path}``
    of its sample grids: ``release``, ``after`` (the first evaluation with F free) and
    ``last``)."""
    folder = _probes(root) / dataset / name
    path = folder / "result.json"
    if not path.is_file():
        raise FileNotFoundError(f"no stored probe {dataset}/{name} in {folder.parent}: benchmarks/mask_stability.py "
                                f"--publish {folder} writes one (stored: {', '.join(probe_names(dataset, root)) or 'none'})")
    result = json.loads(path.read_text(encoding="utf-8"))
    result["command"] = (folder / "command.txt").read_text(encoding="utf-8").strip()
    result["grids"] = {p.stem[len("samples_"):]: p for p in sorted(folder.glob("samples_*.png"))}
    return result


def _root(root: Optional[PathLike]) -> Path:
    folder = Path(root) if root is not None else default_root()
    if not folder.is_dir():
        raise FileNotFoundError(f"no stored ladder results in {folder}: they ship with a clone of the repository "
                                f"(data/ladder/); benchmarks/ladder.py writes new ones")
    return folder


def recorded_config(dataset: str, setting: str, seed: int = 0, root: Optional[PathLike] = None) -> Optional[Dict]:
    """The configuration a stored run recorded as it started (the ``start`` event of its
    ``metrics.jsonl``), with options added to the package since then at their defaults;
    None when the log has no such record."""
    from .config import ReDOConfig

    path = _root(root) / dataset / setting / f"seed{seed}" / "metrics.jsonl"
    with open(path, encoding="utf-8") as handle:
        first = handle.readline().strip()
    try:
        record = json.loads(first) if first else {}
    except json.JSONDecodeError:
        return None
    if record.get("event") != "start" or "config" not in record:
        return None
    return ReDOConfig.from_dict(record["config"]).to_dict()


def run_config(dataset: str, setting: str, seed: int = 0, root: Optional[PathLike] = None) -> Dict:
    """What a stored run trained with: its recorded configuration, else what its command gives
    with today's presets (:func:`config_of_command`)."""
    recorded = recorded_config(dataset, setting, seed, root)
    return recorded if recorded is not None else config_of_command(dataset, setting, seed, root)


def settings(dataset: str, root: Optional[PathLike] = None) -> List[str]:
    """The settings stored for one data set (those with at least one run), sorted."""
    folder = _root(root) / dataset
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and seeds(dataset, p.name, root))


def seeds(dataset: str, setting: str, root: Optional[PathLike] = None) -> List[int]:
    """The seeds stored for one setting on one data set, sorted."""
    folder = _root(root) / dataset / setting
    return sorted(int(p.name[4:]) for p in folder.glob("seed*") if (p / "metrics.jsonl").is_file())


def runs(dataset: str, setting: str, root: Optional[PathLike] = None,
         keys: Sequence[str] = ("iou", "d_loss", "info_loss", "min_region_size")) -> Dict[str, List[Dict]]:
    """``{"<setting> seed <S>": records}`` of :func:`redo_lib.viz.load_metrics` for every seed."""
    folder = _root(root) / dataset / setting
    return {f"{setting} seed {s}": load_metrics(folder / f"seed{s}" / "metrics.jsonl", keys=keys)
            for s in seeds(dataset, setting, root)}


def test_scores(dataset: str, setting: str, seed: int = 0, root: Optional[PathLike] = None) -> Optional[Dict]:
    """The ``redo evaluate --json`` result of a run's kept checkpoint on the test split (None: not scored)."""
    path = _root(root) / dataset / setting / f"seed{seed}" / "test.json"
    return json.loads(path.read_text()) if path.is_file() else None


def command(dataset: str, setting: str, seed: int = 0, root: Optional[PathLike] = None) -> str:
    """The ``redo train`` command that made a run."""
    return (_root(root) / dataset / setting / f"seed{seed}" / "command.txt").read_text().strip()


def baselines(dataset: str, image_size: int = 32, root: Optional[PathLike] = None) -> Dict[str, float]:
    """``{baseline: test IoU}`` on a level's test split (per-image polarity)."""
    path = _root(root) / dataset / f"baselines-{image_size}px.json"
    return {name: scores["iou"] for name, scores in json.loads(path.read_text()).items()}


def config_of_command(dataset: str, setting: str, seed: int = 0, root: Optional[PathLike] = None) -> Dict:
    """The configuration a stored run's command gives (``redo train ... --print-config``)."""
    from .cli import main

    words = shlex.split(command(dataset, setting, seed, root))
    if words[:2] != ["redo", "train"]:
        raise ValueError(f"not a 'redo train' command: {' '.join(words[:2])}")
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(["train", *words[2:], "--print-config"])
    if code:
        raise ValueError(f"the stored command of {dataset}/{setting}/seed{seed} no longer parses")
    return json.loads(buffer.getvalue())


def recipe(config: Mapping) -> Dict[str, object]:
    """``{"section.option": value}`` of what a configuration trains with: every option of
    the model, loss and optimiser sections and :data:`RECIPE_TRAIN_OPTIONS`."""
    flat = {f"{section}.{name}": value for section in ("model", "loss", "optim")
            for name, value in config[section].items()}
    flat.update({f"train.{name}": config["train"][name] for name in RECIPE_TRAIN_OPTIONS})
    return flat


def differences(dataset: str, setting: str, preset: str = "synthetic-flat", seed: int = 0,
                root: Optional[PathLike] = None) -> Dict[str, Tuple[object, object]]:
    """``{"section.option": (preset's value, the run's value)}`` where a stored run's recipe
    (:func:`run_config`) departs from the preset's (empty: the run is the preset)."""
    from .config import get_preset

    wanted = recipe(get_preset(preset).to_dict())
    found = recipe(run_config(dataset, setting, seed, root))
    return {key: (wanted[key], found[key]) for key in wanted if found[key] != wanted[key]}


def changes(dataset: str, setting: str, reference: str, seed: int = 0,
            root: Optional[PathLike] = None) -> Dict[str, Tuple[object, object]]:
    """``{"section.option": (reference's value, the run's value)}`` between two stored
    settings' recipes (:func:`run_config`, seed ``seed`` of each)."""
    ours, theirs = recipe(run_config(dataset, setting, seed, root)), recipe(run_config(dataset, reference, seed, root))
    return {key: (theirs[key], ours[key]) for key in theirs if ours[key] != theirs[key]}


def preset_setting(preset: str = "synthetic-flat", dataset: str = "synthetic-flat", root: Optional[PathLike] = None) -> str:
    """The stored setting whose command gives the preset's recipe (:func:`recipe`)."""
    folder = _root(root) / dataset
    for setting in settings(dataset, root):
        if not differences(dataset, setting, preset, seeds(dataset, setting, root)[0], root):
            return setting
    raise LookupError(f"no stored run in {folder} has the settings of the {preset!r} preset")


def nearest_setting(dataset: str, preset: str = "synthetic-flat", root: Optional[PathLike] = None) -> Optional[str]:
    """The stored setting of ``dataset`` closest to the preset: fewest :func:`differences`
    among the settings with a scored run, then most scored seeds, then by name; None when
    none is scored."""
    def scored_seeds(setting: str) -> int:
        return sum(test_scores(dataset, setting, seed, root) is not None for seed in seeds(dataset, setting, root))

    scored = [s for s in settings(dataset, root) if scored_seeds(s)]
    if not scored:
        return None
    return min(scored, key=lambda s: (len(differences(dataset, s, preset, seeds(dataset, s, root)[0], root)),
                                      -scored_seeds(s), s))


def summary(setting: Optional[str] = None, root: Optional[PathLike] = None, preset: str = "synthetic-flat",
            levels: Mapping[str, str] = LEVELS) -> List[Dict]:
    """One row per level: a setting's test IoUs over the stored seeds and the baselines.

    ``setting`` None: on each level the stored setting nearest to ``preset``
    (:func:`nearest_setting`); each row says which (``setting``) and how it departs from
    the preset (``changes``, as :func:`differences`). ``levels``: ``{name: data set}``,
    the ladder's by default (:data:`HELD_OUT` for the held-out folder sets).
    """
    rows = []
    for level, dataset in levels.items():
        folder = _root(root) / dataset
        if not folder.is_dir():
            continue
        chosen = setting if setting is not None else nearest_setting(dataset, preset, root)
        stored = seeds(dataset, chosen, root) if chosen is not None else []
        scores = [s["iou"] for s in (test_scores(dataset, chosen, seed, root) for seed in stored) if s is not None]
        minutes = [records[-1]["seconds"] / 60 for records in runs(dataset, chosen, root, keys=("iou",)).values()
                   if records] if stored else []
        changes = differences(dataset, chosen, preset, stored[0], root) if stored else {}
        rows.append({"level": level, "dataset": dataset, "setting": chosen, "changes": changes, "ious": scores,
                     "minutes": max(minutes) if minutes else None,
                     "baselines": baselines(dataset, root=root) if (folder / "baselines-32px.json").is_file() else {}})
    return rows
