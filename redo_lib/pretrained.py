"""Load the official ReDO checkpoints (``mickaelChen/ReDO``) into :class:`~redo_lib.ReDO`.

An official file is a ``torch.save``-d dict with any of the keys ``netEncM`` (F),
``netGenX`` (the K generators), ``netDX`` (D) and ``netRecZ`` (delta), plus ``options``:
the ``argparse.Namespace`` of the training run (nfX, nfD, useSelfAttG, nMasks, nz, ...).
Its spectrally normalised layers use the legacy names ``weight_orig`` / ``weight_u`` /
``weight_v``; copying all three into the parametrised layers reproduces the official
eval-mode outputs exactly.

The authors' pretrained weights (Flowers, LFW, CUB) are ``.tar.gz`` archives in a Google
Drive folder linked from the official README; :func:`fetch_official_archive` downloads
and extracts one, :func:`load_official_archive` also loads it.

Usage::

    model = load_official("flowers_best.pth")      # a ReDO in eval mode
    masks = model.mask_net(images)
    model = load_official_archive("flowers", "netM")  # the authors' F, downloaded once
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union
from urllib.parse import unquote, urlsplit

import torch

from .config import ModelConfig
from .model import ReDO

__all__ = ["load_official", "read_official", "official_model_config", "convert_state_dict", "OFFICIAL_NETWORKS",
           "OfficialCheckpointError", "OFFICIAL_WEIGHTS_FOLDER", "OFFICIAL_ARCHIVE_PARTS", "official_archive_name",
           "OFFICIAL_WEIGHT_DATASETS", "fetch_official_archive", "load_official_archive"]

#: official key -> attribute of :class:`ReDO`
OFFICIAL_NETWORKS = {
    "netEncM": "mask_net",
    "netGenX": "generator",
    "netDX": "discriminator",
    "netRecZ": "info_net",
}

_ATTENTION = r"(?:selfAtt)\.(f|g|h|o)"
_ATTENTION_NAMES = {"f": "query", "g": "key", "h": "value", "o": "out"}

# (pattern on the official key without the parameter suffix, replacement) per network.
_RULES: Dict[str, List[Tuple[str, Any]]] = {
    "netEncM": [
        (r"cnn\.0\.mods\.(\d+)", r"encoder.\1"),
        (r"cnn\.(\d+)\.blocs\.0", lambda m: f"residual.{int(m[1]) - 1}.conv1"),
        (r"cnn\.(\d+)\.blocs\.1", lambda m: f"residual.{int(m[1]) - 1}.norm1"),
        (r"cnn\.(\d+)\.blocs\.3", lambda m: f"residual.{int(m[1]) - 1}.conv2"),
        (r"cnn\.(\d+)\.activationF\.0", lambda m: f"residual.{int(m[1]) - 1}.norm_out"),
        (r"psp\.(\d+)\.1", r"pyramid.convs.\1"),
        (r"out\.mods\.(\d+)", r"decoder.\1"),
    ],
    "netGenX": [
        (r"net\.(\d+)\." + _ATTENTION, lambda m: f"generators.{m[1]}.attention.{_ATTENTION_NAMES[m[2]]}"),
        (r"net\.(\d+)\.selfAtt\.gamma", r"generators.\1.attention.gamma"),
        (r"net\.(\d+)\.dense", r"generators.\1.dense"),
        (r"net\.(\d+)\.convA\.(\d+)\.1", r"generators.\1.blocks.\2.conv_a"),
        (r"net\.(\d+)\.convB\.(\d+)", r"generators.\1.blocks.\2.conv_b"),
        (r"net\.(\d+)\.gammaA\.(\d+)", r"generators.\1.blocks.\2.norm_a.gamma"),
        (r"net\.(\d+)\.betaA\.(\d+)", r"generators.\1.blocks.\2.norm_a.beta"),
        (r"net\.(\d+)\.gammaB\.(\d+)", r"generators.\1.blocks.\2.norm_b.gamma"),
        (r"net\.(\d+)\.betaB\.(\d+)", r"generators.\1.blocks.\2.norm_b.beta"),
        (r"net\.(\d+)\.sc\.(\d+)\.1", r"generators.\1.blocks.\2.shortcut"),
        (r"net\.(\d+)\.gammaOut", r"generators.\1.norm_out.gamma"),
        (r"net\.(\d+)\.betaOut", r"generators.\1.norm_out.beta"),
        (r"net\.(\d+)\.convOut", r"generators.\1.conv_out"),
    ],
    "netDX": [
        (r"bloc0\.0", "blocks.0.conv1"),
        (r"bloc0\.2", "blocks.0.conv2"),
        (r"sc0\.1", "blocks.0.shortcut"),
        (_ATTENTION, lambda m: f"attention.{_ATTENTION_NAMES[m[1]]}"),
        (r"selfAtt\.gamma", "attention.gamma"),
        (r"blocs\.(\d+)\.1", lambda m: f"blocks.{int(m[1]) + 1}.conv1"),
        (r"blocs\.(\d+)\.3", lambda m: f"blocks.{int(m[1]) + 1}.conv2"),
        (r"sc\.(\d+)\.1", lambda m: f"blocks.{int(m[1]) + 1}.shortcut"),
        (r"dense", "linear"),
    ],
    "netRecZ": [
        (r"net\.blocs\.0\.0", "blocks.0.conv1"),
        (r"net\.blocs\.0\.2", "blocks.0.conv2"),
        (r"net\.blocs\.(\d+)\.1", r"blocks.\1.conv1"),
        (r"net\.blocs\.(\d+)\.3", r"blocks.\1.conv2"),
        (r"net\.sc\.(\d+)\.1", r"blocks.\1.shortcut"),
        (r"net\.dense", "linear"),
    ],
}

# Legacy spectral-norm tensors -> torch.nn.utils.parametrizations names.
_SUFFIXES = {
    "weight_orig": "parametrizations.weight.original",
    "weight_u": "parametrizations.weight.0._u",
    "weight_v": "parametrizations.weight.0._v",
    "weight": "weight",
    "bias": "bias",
    "gamma": None,  # a bare parameter (self-attention's gamma): handled by the rules
}


class OfficialCheckpointError(ValueError):
    """An official checkpoint that cannot be mapped (missing, unexpected or mis-shaped keys)."""


def official_model_config(options: Union[argparse.Namespace, Mapping[str, Any]]) -> ModelConfig:
    """The :class:`ModelConfig` of an official run, from its stored ``options``."""
    opts = dict(vars(options)) if isinstance(options, argparse.Namespace) else dict(options)
    nf = opts.get("nf", 64)

    def width(name: str) -> int:
        value = opts.get(name)
        return nf if value is None else int(value)

    return ModelConfig(
        image_size=int(opts.get("sizex", 128)),
        n_regions=int(opts.get("nMasks", 2)),
        nz=int(opts.get("nz", 32)),
        nf_mask=width("nfM"),
        n_res_mask=int(opts.get("nResM", 3)),
        nf_gen=width("nfX"),
        nf_disc=width("nfD"),
        nf_info=width("nfZ"),
        self_attention_gen=bool(opts.get("useSelfAttG", False)),
        self_attention_disc=bool(opts.get("useSelfAttD", False)),
        temperature=float(opts.get("temperature", 1.0)),
        pyramid_pooling="official",
        init_gain=float(opts.get("initOrthoGain", 0.8)),
    ).validate()


def _map_key(network: str, key: str) -> str:
    """One official key -> our key, or raise naming the key."""
    for suffix, ours in _SUFFIXES.items():
        if key == suffix or key.endswith("." + suffix):
            prefix = key[: -len(suffix) - 1] if key != suffix else ""
            break
    else:
        raise OfficialCheckpointError(f"{network}: unexpected key {key!r} (unknown parameter name)")
    if suffix == "gamma":
        prefix, ours = key, ""
    for pattern, repl in _RULES[network]:
        m = re.fullmatch(pattern, prefix)
        if m:
            base = repl(m) if callable(repl) else m.expand(repl)
            return f"{base}.{ours}" if ours else base
    raise OfficialCheckpointError(f"{network}: unexpected key {key!r} (no layer of ours corresponds)")


def convert_state_dict(network: str, official: Mapping[str, torch.Tensor],
                       target: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Rename (and reshape 1x1-conv codes to linear weights) one official state dict.

    ``target`` is our network's state dict, used to check that every key is present and
    every shape fits; any missing, unexpected or mis-shaped key raises
    :class:`OfficialCheckpointError` listing them.
    """
    if network not in _RULES:
        raise OfficialCheckpointError(f"unknown official network {network!r}; valid: {sorted(_RULES)}")
    converted: Dict[str, torch.Tensor] = {}
    source: Dict[str, str] = {}
    errors: List[str] = []
    for key, value in official.items():
        try:
            ours = _map_key(network, key)
        except OfficialCheckpointError as exc:
            errors.append(str(exc))
            continue
        if ours not in target:
            errors.append(f"{network}: unexpected key {key!r} (this configuration has no {ours!r})")
            continue
        expected = target[ours].shape
        if value.shape != expected:
            if value.numel() == target[ours].numel() and value.dim() == 4 and len(expected) == 2:
                value = value.reshape(expected)  # 1x1 conv of z -> linear layer of z
            else:
                errors.append(f"{network}: {key!r} has shape {tuple(value.shape)}, expected {tuple(expected)}")
                continue
        converted[ours] = value
        source[ours] = key
    missing = [k for k in target if k not in converted]
    if missing:
        errors.append(f"{network}: missing {len(missing)} key(s) for {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    if errors:
        raise OfficialCheckpointError("cannot load the official checkpoint:\n  " + "\n  ".join(errors))
    return converted


def read_official(path_or_dict: Union[str, os.PathLike, Mapping[str, Any]]) -> Mapping[str, Any]:
    """The raw dict of an official checkpoint (``options`` and one state dict per network).

    Loaded with ``weights_only=True`` (``argparse.Namespace`` allowed, for ``options``);
    a dict is returned unchanged. A missing file raises :class:`FileNotFoundError`, an
    unreadable one :class:`OfficialCheckpointError` naming the file.
    """
    if isinstance(path_or_dict, Mapping):
        return path_or_dict
    path = os.fspath(path_or_dict)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"official checkpoint {path!r} does not exist")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file or a pickle with other classes
        raise OfficialCheckpointError(f"{path}: not a loadable official ReDO checkpoint ({exc})") from exc


def load_official(path_or_dict: Union[str, os.PathLike, Mapping[str, Any]]) -> ReDO:
    """Build a :class:`ReDO` from an official checkpoint (a path or the loaded dict).

    The configuration comes from ``options``; every network present in the file is loaded
    (the others keep their fresh initialisation and are listed in ``model.official_networks``,
    which names those loaded). The model is returned in eval mode.
    """
    checkpoint = read_official(path_or_dict)
    if "options" not in checkpoint:
        raise OfficialCheckpointError("the checkpoint has no 'options' (the official argparse.Namespace)")
    present = [name for name in OFFICIAL_NETWORKS if name in checkpoint]
    if not present:
        raise OfficialCheckpointError(
            f"the checkpoint holds none of the official networks {list(OFFICIAL_NETWORKS)}; "
            f"its keys are {sorted(checkpoint)}"
        )
    model = ReDO(official_model_config(checkpoint["options"]))
    for name in present:
        module = getattr(model, OFFICIAL_NETWORKS[name])
        state = convert_state_dict(name, checkpoint[name], module.state_dict())
        module.load_state_dict(state, strict=True)
    model.official_networks = present
    return model.eval()


# ---------------------------------------------------------------------------- the authors' weights
#: The Google Drive folder of pretrained weights linked from the official README.
OFFICIAL_WEIGHTS_FOLDER = "https://drive.google.com/drive/folders/1hUb2iOTJAbWw1NotWGAsEt4ASomhOwbh"
#: ``<dataset>_<part>_state.tar.gz`` -> the official networks its ``.pth`` file holds
OFFICIAL_ARCHIVE_PARTS: Mapping[str, Tuple[str, ...]] = {
    "nets": ("netEncM", "netGenX", "netDX", "netRecZ"),  # all four networks
    "netM": ("netEncM",),  # the mask network F: enough to segment
    "netX": ("netGenX",),  # the region generators
    "netD": ("netDX",),
    "netZ": ("netRecZ",),
}
#: the data sets the authors published weights for
OFFICIAL_WEIGHT_DATASETS = ("flowers", "lfw", "cub")


def official_archive_name(dataset: str, part: str = "netM") -> str:
    """The file name of an official archive, e.g. ``flowers_netM_state.tar.gz``."""
    if part not in OFFICIAL_ARCHIVE_PARTS:
        raise ValueError(f"unknown part {part!r}; valid: {', '.join(OFFICIAL_ARCHIVE_PARTS)}")
    return f"{dataset}_{part}_state.tar.gz"


def _is_google_drive(url: str) -> bool:
    return urlsplit(url).netloc.endswith("drive.google.com")


def _local_file(url: str) -> Optional[Path]:
    """The local file a ``url`` names (a path or a ``file://`` URL), else None."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    if len(parts.scheme) <= 1:  # a path (a one-letter "scheme" is a Windows drive)
        return Path(url)
    return None


def _basename(path: str) -> str:
    """The last component of a path as gdown lists it."""
    return path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def _gdown_fetch(url: str, name: str, dest: Path, progress: bool) -> None:
    """Download ``name`` from a Google Drive file or folder link with gdown (Colab has it)."""
    from .data.errors import DownloadError

    try:
        import gdown
    except ImportError:
        raise DownloadError(
            f"{name} is on Google Drive, which needs gdown: pip install gdown (Colab has it), or "
            f"download the archive yourself and pass its path or an HTTP URL as url="
        ) from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    if "/folders/" in url:
        try:
            listing = gdown.download_folder(url=url, skip_download=True, quiet=not progress, remaining_ok=True)
        except TypeError:  # gdown < 4.7 has no skip_download
            raise DownloadError("this gdown cannot list a folder: pip install -U gdown") from None
        except Exception as error:  # gdown raises its own exception types for network errors
            raise DownloadError(f"cannot list the Google Drive folder {url}: {error}") from None
        matches = [entry for entry in listing or () if _basename(entry.path) == name]
        if not matches:
            names = sorted(_basename(entry.path) for entry in listing or ())
            raise DownloadError(f"no {name} in the Google Drive folder {url}; it holds: {', '.join(names)}")
        target = dict(id=matches[0].id)
    else:
        target = dict(url=url, fuzzy=True)  # a file link in any of Drive's forms
    part = dest.with_name(dest.name + ".part")  # renamed only once complete
    try:
        result = gdown.download(output=os.fspath(part), quiet=not progress, **target)
    except Exception as error:
        raise DownloadError(f"cannot download {name} from Google Drive: {error}") from None
    if not result or not part.is_file():
        raise DownloadError(f"cannot download {name} from Google Drive ({url}); try again later, or download "
                            f"it in a browser and pass its path as url=")
    os.replace(part, dest)


def _find_state_file(folder: Path, part: str) -> Optional[Path]:
    """The ``.pth`` file of an extracted archive (``*_<part>_state.pth`` preferred)."""
    files = sorted(p for p in folder.rglob("*.pth") if p.is_file())
    if not files:
        return None
    preferred = [p for p in files if p.name.endswith(f"_{part}_state.pth")]
    if len(preferred) == 1:
        return preferred[0]
    if len(files) == 1:
        return files[0]
    raise OfficialCheckpointError(f"{folder} holds several .pth files, which one to load is unclear: "
                                  f"{', '.join(p.name for p in files)}")


def fetch_official_archive(dataset: str = "flowers", part: str = "netM",
                           root: Union[str, os.PathLike] = "data/official", *, url: Optional[str] = None,
                           md5: Optional[str] = None, progress: bool = True, timeout: float = 60.0,
                           keep_archive: bool = False, log: Callable[[str], None] = print) -> Path:
    """Download and extract one of the authors' archives; return the ``.pth`` file it holds.

    ``dataset`` is ``flowers``, ``lfw`` or ``cub``; ``part`` names the archive
    (:data:`OFFICIAL_ARCHIVE_PARTS`: ``"nets"`` for all four networks, ``"netM"`` for F only).
    Where the archive comes from:

    - ``url=None``: ``<dataset>_<part>_state.tar.gz`` in the official Google Drive folder
      (:data:`OFFICIAL_WEIGHTS_FOLDER`), through ``gdown`` (installed on Colab);
    - a ``drive.google.com`` URL (a file link, or a folder link searched for that name):
      ``gdown`` as well;
    - any other URL (``http``, ``https``): the package's resumable downloader,
      :func:`redo_lib.data.download.fetch` (a cut transfer resumes on the next call);
    - a local path or ``file://`` URL: that archive, used in place.

    The archive goes to ``root/.downloads/`` and is extracted into
    ``root/<dataset>_<part>_state/`` by :func:`redo_lib.data.download.extract_archive`:
    into a temporary folder first, refusing absolute paths, ``..`` and links that point
    outside, and renamed into place only when complete. When that folder already holds a
    ``.pth`` file nothing is downloaded. ``md5``, when given, is checked before extracting.
    """
    from .data.download import DOWNLOADS_DIR, extract_archive, fetch, verify_file
    from .data.errors import DownloadError

    name = official_archive_name(dataset, part)
    root = Path(root)
    target = root / name[: -len(".tar.gz")]
    if target.is_dir():
        found = _find_state_file(target, part)
        if found is not None:
            log(f"{name}: already extracted in {target}, nothing to download")
            return found
    source = OFFICIAL_WEIGHTS_FOLDER if url is None else url
    local = _local_file(source)
    downloaded = None
    if local is not None:
        if not local.is_file():
            raise FileNotFoundError(f"no archive at {local}")
        archive = local
    else:
        downloaded = archive = root / DOWNLOADS_DIR / name
        if not archive.is_file():
            log(f"{name}: downloading from {source}")
            if _is_google_drive(source):
                _gdown_fetch(source, name, archive, progress)
            else:
                fetch(source, archive, md5=md5, progress=progress, timeout=timeout)
    if md5 is not None:
        verify_file(archive, md5, None, name)
    log(f"{name}: extracting into {target}")
    target.mkdir(parents=True, exist_ok=True)
    try:
        extract_archive(archive, target, "", [])
    except DownloadError:
        if downloaded is not None:
            downloaded.unlink(missing_ok=True)  # a damaged download: fetch it again next time
        if not any(target.iterdir()):
            target.rmdir()
        raise
    found = _find_state_file(target, part)
    if found is None:
        shutil.rmtree(target, ignore_errors=True)
        raise OfficialCheckpointError(f"{name} holds no .pth file")
    if downloaded is not None and not keep_archive:
        downloaded.unlink()
        downloads = downloaded.parent
        if downloads.is_dir() and not any(downloads.iterdir()):
            downloads.rmdir()
    return found


def load_official_archive(dataset: str = "flowers", part: str = "netM",
                          root: Union[str, os.PathLike] = "data/official", *, url: Optional[str] = None,
                          **kwargs: Any) -> ReDO:
    """:func:`fetch_official_archive`, then :func:`load_official`: a :class:`ReDO` in eval mode.

    Only the networks the archive holds are loaded (``model.official_networks``); with
    ``part="netM"`` that is F, the segmenter.
    """
    return load_official(fetch_official_archive(dataset, part, root, url=url, **kwargs))
