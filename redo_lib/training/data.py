"""Deterministic, resumable data order and cheap batch fetching.

The order of the training images is a pure function of ``(seed, epoch)``: epoch ``e``
visits the images in ``randperm(n, seed=mix(seed, e))`` order, cut into global batches of
``batch_size * world_size`` images (the incomplete last batch is dropped, as the
official loader does), and process ``rank`` takes the ``rank``-th slice of ``batch_size``
images of each global batch (the sharding of ``DistributedSampler``, per batch). The
whole state is two integers, ``(epoch, position)``, so a run stopped in the middle of an
epoch resumes on exactly the batch it would have seen next.

One stream feeds the whole loop: each iteration takes batch A (generator step) and then
``d_steps`` batches of reals (D step). The official code draws A and the reals from two
independent shuffles of the training set; a single shuffle gives the same distribution
(two different images) and one loader instead of two.

Data sets of files (:class:`~redo_lib.data.base.ImageMaskDataset`) take a faster road
(issue 17): training reads their :meth:`~redo_lib.data.base.ImageMaskDataset.pixels`
view, which never decodes a mask; the batches travel as uint8 and become float32 in
``[-1, 1]`` on the device; and, when it fits in memory (:func:`plan_image_cache`), each
split's decoded pixels are kept in an :class:`~redo_lib.data.cache.ImageCache` after
the first pass (:func:`fill_cache`), so that from then on a batch is one gather from
memory. Every path gives the same tensors, bit for bit.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from ..config import TrainConfig
from ..data.base import ImageMaskDataset, Pixels
from ..data.errors import DataError
from ..data.transforms import uint8_to_signed

__all__ = [
    "BatchStream", "BatchFetcher", "iterate_batches", "collate_items", "training_view", "fill_cache",
    "CachePlan", "plan_image_cache", "available_memory", "available_cores", "loader_workers", "fill_workers",
    "data_pipeline", "to_device",
]

#: fraction of the available memory the image caches of one machine may take (all
#: processes together): the rest is left to the networks, CUDA and the notebook
CACHE_MEMORY_FRACTION = 0.5
#: fewer items than this are decoded in the main process (starting workers costs more)
MIN_ITEMS_FOR_WORKERS = 256
#: items per batch of the first (cache-filling) pass
FILL_BATCH = 32

_MIX = 0x9E3779B97F4A7C15  # golden-ratio constant, separates the seeds of successive epochs


def _epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch) * _MIX + 12345) % (2**63 - 1)


class BatchStream:
    """Index lists of successive mini-batches for one process, resumable mid-epoch."""

    def __init__(self, n_items: int, batch_size: int, seed: int = 0, *, rank: int = 0,
                 world_size: int = 1) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        global_batch = batch_size * world_size
        if n_items < global_batch:
            raise ValueError(
                f"the training split has {n_items} images, fewer than one batch of "
                f"{global_batch} ({batch_size} x {world_size} processes): lower --batch-size"
            )
        self.n_items = int(n_items)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.batches_per_epoch = n_items // global_batch
        self.epoch = 0
        self.position = 0  # index of the next global batch inside the epoch
        self._cache: Optional[tuple] = None

    def permutation(self, epoch: int) -> torch.Tensor:
        if self._cache is None or self._cache[0] != epoch:
            g = torch.Generator().manual_seed(_epoch_seed(self.seed, epoch))
            self._cache = (epoch, torch.randperm(self.n_items, generator=g))
        return self._cache[1]

    def indices_at(self, epoch: int, position: int) -> List[int]:
        """This process's indices of global batch ``position`` of ``epoch``."""
        start = (position * self.world_size + self.rank) * self.batch_size
        return self.permutation(epoch)[start:start + self.batch_size].tolist()

    def peek(self) -> List[int]:
        return self.indices_at(self.epoch, self.position)

    def advance(self) -> None:
        self.position += 1
        if self.position >= self.batches_per_epoch:
            self.epoch += 1
            self.position = 0

    def next_indices(self) -> List[int]:
        out = self.peek()
        self.advance()
        return out

    def future(self) -> Iterator[List[int]]:
        """Every batch from the current position on, without moving the stream."""
        epoch, position = self.epoch, self.position
        while True:
            yield self.indices_at(epoch, position)
            position += 1
            if position >= self.batches_per_epoch:
                epoch, position = epoch + 1, 0

    def state_dict(self) -> Dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "n_items": self.n_items,
                "batch_size": self.batch_size, "seed": self.seed, "world_size": self.world_size}

    def load_state_dict(self, state: Dict[str, int]) -> None:
        same = (state.get("n_items") == self.n_items and state.get("batch_size") == self.batch_size
                and state.get("world_size", 1) == self.world_size)
        if not same:
            # Another data set size or process count: keep the epoch, restart it.
            self.epoch, self.position = int(state.get("epoch", 0)) + 1, 0
            return
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


def collate_items(items: Sequence[Dict]) -> Dict[str, torch.Tensor]:
    """Stack a list of data-set items (dicts of tensors / ints) into a batch dict."""
    out: Dict[str, torch.Tensor] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        if isinstance(values[0], torch.Tensor):
            out[key] = torch.stack(values)
        else:
            out[key] = torch.as_tensor(values)
    return out


def _fetch(dataset: Dataset, indices: Sequence[int]) -> Dict[str, torch.Tensor]:
    """One batch, vectorised where the data set can (procedural data sets' ``batch``)."""
    batch_fn = getattr(dataset, "batch", None)
    if callable(batch_fn):
        return batch_fn(list(indices))
    getitems = getattr(dataset, "__getitems__", None)
    if callable(getitems):
        return collate_items(getitems(list(indices)))
    return collate_items([dataset[i] for i in indices])


def training_view(dataset: Dataset) -> Dataset:
    """What training reads of ``dataset``: its mask-free uint8 :class:`Pixels` view where it
    has one (data sets of files), the data set itself otherwise (procedural, custom)."""
    if isinstance(dataset, ImageMaskDataset):
        return dataset.pixels(with_masks=False)
    return dataset


def to_device(images: torch.Tensor, device: torch.device, non_blocking: bool = False) -> torch.Tensor:
    """A batch of images on ``device`` as float32 in ``[-1, 1]``.

    uint8 pixels travel as they are (a quarter of the bytes) and are converted on the
    device by :func:`~redo_lib.data.transforms.uint8_to_signed`; float images travel as
    float.
    """
    images = images.to(device, non_blocking=non_blocking)
    return uint8_to_signed(images) if images.dtype == torch.uint8 else images


def _worker_error(error: DataError) -> DataError:
    """``error`` (raised in a loader worker) with its own one-line message again.

    PyTorch re-raises a worker's exception in the main process with the worker's whole
    traceback as the message; the data layer's messages (which file, what to do) are its
    last line, and the command line prints the message as ``error: ...``.
    """
    text = str(error)
    for prefix in (f"{type(error).__module__}.{type(error).__qualname__}: ", f"{type(error).__name__}: "):
        at = text.rfind(prefix)
        if at >= 0:
            return type(error)(text[at + len(prefix):].strip())
    return error


class _StreamSampler:
    """Batch sampler for a DataLoader: the stream's future batches (an endless iterator)."""

    def __init__(self, stream: BatchStream) -> None:
        self.stream = stream

    def __iter__(self):
        return self.stream.future()


class BatchFetcher:
    """Training images, batch after batch, in the order of a :class:`BatchStream`.

    Three roads, one result (float32 images on ``device``, the same values on each):

    * the data set's :class:`~redo_lib.data.cache.ImageCache` (when
      :func:`plan_image_cache` enabled one): the first call decodes every missing image
      (:func:`fill_cache`, in parallel), then each batch is one gather from memory, in
      this process, with no loader worker at all;
    * ``num_workers > 0``: a DataLoader whose workers decode the stream's future batches
      ahead of time (``pin_memory`` on CUDA);
    * otherwise the batch is decoded (or, for a procedural data set, generated in one
      vectorised call) in this process.

    A data set of files is read through its mask-free :func:`training_view`. On CUDA the
    batch leaves page-locked memory with ``non_blocking=True``. The stream advances by one
    batch per :meth:`next` call, so its state is the position of the next batch used.
    """

    def __init__(self, dataset: Dataset, stream: BatchStream, device: torch.device,
                 num_workers: int = 0) -> None:
        self.dataset = training_view(dataset)
        self.stream = stream
        self.device = torch.device(device)
        self.pin = self.device.type == "cuda"
        self.num_workers = 0 if callable(getattr(dataset, "batch", None)) else int(num_workers)
        self._iter = None

    def _loader_iter(self):
        if self._iter is None:
            loader = DataLoader(self.dataset, batch_sampler=_StreamSampler(self.stream),
                                num_workers=self.num_workers, pin_memory=self.pin,
                                collate_fn=collate_items, persistent_workers=False,
                                prefetch_factor=4, generator=torch.Generator())
            self._iter = iter(loader)
        return self._iter

    def reset(self) -> None:
        """Forget prefetched batches (after the stream's state was changed)."""
        self._iter = None

    def next(self) -> torch.Tensor:
        cache = getattr(self.dataset, "cache", None)
        if cache is not None:
            if not cache.complete:
                self._iter = None  # the loader's workers (if any) are not needed any more
                fill_cache(self.dataset, range(len(self.dataset)), with_masks=False)
            images = cache.images_at(self.stream.next_indices(), pin_memory=self.pin)
        elif self.num_workers > 0:
            try:
                images = next(self._loader_iter())["image"]
            except DataError as error:
                raise _worker_error(error) from None
            self.stream.advance()
        else:
            images = _fetch(self.dataset, self.stream.next_indices())["image"]
        return to_device(images, self.device, non_blocking=self.pin)


# ----------------------------------------------------------------------------- the first pass
def _plain_batches(dataset: Dataset, batch_size: int, indices: List[int], num_workers: int,
                   pin_memory: bool) -> Iterator[Dict[str, torch.Tensor]]:
    """``indices`` in order, decoded in this process or by ``num_workers`` loader workers."""
    if callable(getattr(dataset, "batch", None)) or num_workers <= 0:
        for start in range(0, len(indices), batch_size):
            yield _fetch(dataset, indices[start:start + batch_size])
        return
    loader = DataLoader(Subset(dataset, indices), batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, pin_memory=pin_memory, collate_fn=collate_items,
                        generator=torch.Generator())  # own generator: the global RNG is not touched
    try:
        yield from loader
    except DataError as error:
        raise _worker_error(error) from None


def _cached_source(dataset: Dataset) -> Optional[ImageMaskDataset]:
    """The data set of files behind ``dataset`` if it has a cache, else ``None``."""
    source = dataset.source if isinstance(dataset, Pixels) else dataset
    if isinstance(source, ImageMaskDataset) and source.cache is not None:
        return source
    return None


def fill_cache(dataset: Dataset, indices: Iterable[int], *, with_masks: bool) -> int:
    """Decode the items of ``indices`` that ``dataset``'s cache lacks and store them.

    The first pass: the pixels (and, with ``with_masks``, the masks) of the missing items
    are decoded by the cache's ``fill_workers`` loader workers (in this process for fewer
    than :data:`MIN_ITEMS_FOR_WORKERS` items, without a progress bar), with a progress bar
    when the cache's ``progress`` is set. Only this (the main) process writes to the cache. Returns the
    number of items decoded (0 when the cache already held them all).
    """
    source = _cached_source(dataset)
    if source is None:
        raise ValueError(f"{dataset!r} has no image cache to fill (enable_cache() first)")
    cache = source.cache
    missing = cache.missing(list(indices), with_masks=with_masks and source.has_masks)
    if not missing:
        return 0
    workers = cache.fill_workers if len(missing) >= MIN_ITEMS_FOR_WORKERS else 0
    view = source.pixels(with_masks=with_masks)
    what = "images and masks" if view.with_masks else "images"
    with tqdm(total=len(missing), unit="img", leave=False, disable=not cache.progress or workers == 0,
              desc=f"{source.name} {source.split}: first pass, {what} into memory") as bar:
        for batch in _plain_batches(view, FILL_BATCH, missing, workers, pin_memory=False):
            cache.store(batch["index"], batch["image"], batch.get("mask"))
            bar.update(len(batch["index"]))
    return len(missing)


def _cached_batches(source: ImageMaskDataset, dataset: Dataset, batch_size: int,
                    indices: List[int]) -> Iterator[Dict[str, torch.Tensor]]:
    """Batches of ``indices`` read from the cache, as ``dataset`` (a split or its view) gives them."""
    raw = isinstance(dataset, Pixels)
    with_masks = bool(getattr(dataset, "has_masks", False))
    fill_cache(dataset, indices, with_masks=with_masks)
    cache = source.cache
    for start in range(0, len(indices), batch_size):
        chunk = indices[start:start + batch_size]
        images = cache.images_at(chunk)
        batch = {"image": images if raw else uint8_to_signed(images),
                 "index": torch.as_tensor(chunk, dtype=torch.long)}
        if with_masks:
            masks = cache.masks_at(chunk)
            batch["mask"] = masks if raw else masks.float()
        yield batch


def iterate_batches(dataset: Dataset, batch_size: int, *, max_items: int = 0,
                    indices: Optional[Sequence[int]] = None, num_workers: int = 0,
                    pin_memory: bool = False) -> Iterator[Dict[str, torch.Tensor]]:
    """Sequential batches of a data set (evaluation): every item, or the first ``max_items``.

    A data set with an image cache is read from it (its missing items decoded first, by
    :func:`fill_cache`); otherwise the items are decoded in this process or by
    ``num_workers`` loader workers.
    """
    if indices is None:
        n = len(dataset) if max_items <= 0 else min(max_items, len(dataset))
        indices = list(range(n))
    indices = [int(i) for i in indices]
    source = _cached_source(dataset)
    if source is not None:
        yield from _cached_batches(source, dataset, batch_size, indices)
        return
    yield from _plain_batches(dataset, batch_size, indices, num_workers, pin_memory)


# ----------------------------------------------------------------------------- resources
def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _read_int(path: Path) -> Optional[int]:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _cgroup_headroom(root: Path = Path("/sys/fs/cgroup")) -> Optional[int]:
    """Bytes left under this container's memory limit (cgroup v2 or v1), ``None`` if unlimited."""
    for limit_file, usage_file in (("memory.max", "memory.current"),
                                   ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        limit, usage = _read_int(root / limit_file), _read_int(root / usage_file)
        if limit is not None and usage is not None and limit < 2**60:  # v1 writes ~2^63 for "none"
            return max(0, limit - usage)
    return None


def available_memory() -> Optional[int]:
    """Bytes of memory available to new allocations, ``None`` when it cannot be told.

    ``psutil.virtual_memory().available`` if psutil is installed, else ``MemAvailable`` of
    ``/proc/meminfo`` (Linux), whichever is smaller with the room left under a container's
    cgroup memory limit (Docker, Kaggle), which neither of them sees.
    """
    found: Optional[int] = None
    try:
        import psutil

        found = int(psutil.virtual_memory().available)
    except (ImportError, OSError, AttributeError):
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    found = int(line.split()[1]) * 1024
                    break
        except (OSError, ValueError, IndexError):
            found = None
    headroom = _cgroup_headroom()
    if headroom is not None:
        found = headroom if found is None else min(found, headroom)
    return found


def loader_workers(requested: int, device: torch.device, dataset: Dataset, world_size: int = 1) -> int:
    """Loader workers that decode training batches when they are *not* cached.

    ``requested`` (``train.num_workers``) wins when positive. Otherwise: none on the CPU,
    where the training step itself takes every core and dwarfs the decoding, and none for
    a procedural data set (one vectorised call per batch); on CUDA, one fewer than the
    cores of this process's share of the machine (at least 1, at most 8), so the main
    process keeps a core to launch the GPU's work: on Colab's 2 cores, 1 worker. One
    worker decodes about 200 mask-free 500 x 500 Flowers images a second (measured on a
    2-core machine, ``benchmarks/loader_speed.py --no-cache-images``), far short of the
    ~750 an H100 consumes at 15 it/s, which is why the cache (:func:`plan_image_cache`) is
    on by default: once it is filled, batches need no worker at all.
    """
    if requested > 0:
        return int(requested)
    if device.type != "cuda" or callable(getattr(dataset, "batch", None)):
        return 0
    return max(1, min(8, available_cores() // max(1, world_size) - 1))


def fill_workers(requested: int, world_size: int = 1) -> int:
    """Loader workers for the first pass that fills the caches.

    ``requested`` (``train.num_workers``) when positive, else every core of this process's
    share of the machine (at most 8): during the first pass the main process only waits
    for decoded batches, so on Colab's 2 cores both decode.
    """
    if requested > 0:
        return int(requested)
    return max(1, min(8, available_cores() // max(1, world_size)))


def _megabytes(n_bytes: int) -> str:
    """``n_bytes`` in MB (10^6 bytes), one decimal below 10 MB."""
    mb = n_bytes / 1e6
    return f"{mb:.1f} MB" if mb < 10 else f"{mb:,.0f} MB"


@dataclass
class CachePlan:
    """What :func:`plan_image_cache` decided, and why (:meth:`message`)."""

    enabled: bool
    needed_bytes: int  # per process
    available_bytes: Optional[int]
    world_size: int = 1
    fill_workers: int = 0
    reason: str = ""  # "option" (train.cache_images off), "memory" (does not fit) or "" (enabled)
    parts: List[str] = field(default_factory=list)

    def message(self) -> str:
        what = " + ".join(self.parts)
        need = _megabytes(self.needed_bytes)
        if self.world_size > 1:
            need += f" per process x {self.world_size}"
        have = ("available memory unknown" if self.available_bytes is None
                else f"{_megabytes(self.available_bytes)} available")
        if self.enabled:
            return (f"data: image cache {need} as uint8 ({what}; {have}): decoded once "
                    f"({self.fill_workers} worker(s)), then read from memory "
                    f"(train.cache_images=false, --no-cache-images: decode every batch)")
        if self.reason == "option":
            return f"data: image cache off (train.cache_images=false); it would take {need} ({what})"
        return (f"data: image cache off: {need} ({what}) is more than "
                f"{CACHE_MEMORY_FRACTION:.0%} of the {have}; every batch is decoded "
                f"(lower --image-size or free memory to cache)")


def plan_image_cache(parts: Sequence[Tuple[Dataset, int, int]], *, enabled: bool = True, world_size: int = 1,
                     workers: int = 1, progress: bool = False,
                     available: Callable[[], Optional[int]] = available_memory) -> Optional[CachePlan]:
    """Decide whether the splits' decoded pixels stay in memory, and set their caches up.

    Args:
        parts: ``(data set, images, masks)`` per split: how many of its images and masks
            will be read (training: every image and the masks of the scored training
            subset; validation: the scored images, with their masks). Data sets that are
            not files on disk (procedural, custom) are left out.
        enabled: ``train.cache_images``; ``False`` removes any cache of these data sets.
        world_size: processes on this machine, each with its own copy.
        workers: loader workers of the first pass (:func:`fill_workers`).
        progress: a progress bar for the first pass.
        available: bytes of memory available (:func:`available_memory`).

    Returns:
        The decision (``None`` when no split is a data set of files). The caches are
        enabled when their estimate, times ``world_size``, is at most
        :data:`CACHE_MEMORY_FRACTION` of the available memory (or when that is unknown).
    """
    files = [(d, n_img, n_mask) for d, n_img, n_mask in parts if isinstance(d, ImageMaskDataset)]
    if not files:
        return None
    needed = sum(d.cache_bytes(n_img, n_mask) for d, n_img, n_mask in files)
    described = []
    for d, n_img, n_mask in files:
        masks = f" + {min(n_mask, len(d))} masks" if d.has_masks and n_mask > 0 else ""
        described.append(f"{d.name} {d.split} {min(n_img, len(d))} images{masks} at {d.image_size} px")
    have = available() if enabled else None
    fits = have is None or needed * max(1, world_size) <= CACHE_MEMORY_FRACTION * have
    plan = CachePlan(enabled and fits, needed, have, max(1, world_size), workers,
                     "" if enabled and fits else ("option" if not enabled else "memory"), described)
    for d, _, _ in files:
        if plan.enabled:
            cache = d.enable_cache()
            cache.fill_workers, cache.progress = int(workers), bool(progress)
        else:
            d.cache = None
    return plan


def data_pipeline(train: TrainConfig, train_set: Dataset, val_set: Optional[Dataset], stream: BatchStream,
                  device: torch.device, *, world_size: int = 1, log: Callable[[str], None] = print,
                  progress: bool = False) -> Tuple[int, BatchFetcher]:
    """The trainer's data loading: ``(num_workers for uncached reads, the BatchFetcher)``.

    ``train`` is the run's :class:`~redo_lib.config.TrainConfig`. Plans the image caches
    of the training split (every image, plus the masks of the ``train_eval_images``
    subset) and of the validation split (its scored images and masks), logs the estimate
    and the decision, and picks the loader workers (:func:`loader_workers`; unused by
    cached splits) and the first pass's workers (:func:`fill_workers`).
    """
    n_train = len(train_set)
    train_masks = min(int(train.train_eval_images), n_train) if getattr(train_set, "has_masks", False) else 0
    parts: List[Tuple[Dataset, int, int]] = [(train_set, n_train, train_masks)]
    if val_set is not None:
        n_val = len(val_set) if train.max_eval_images <= 0 else min(int(train.max_eval_images), len(val_set))
        parts.append((val_set, n_val, n_val))
    plan = plan_image_cache(parts, enabled=bool(getattr(train, "cache_images", True)), world_size=world_size,
                            workers=fill_workers(train.num_workers, world_size), progress=progress)
    if plan is not None:
        log(plan.message())
    num_workers = loader_workers(train.num_workers, device, train_set, world_size)
    if num_workers != train.num_workers and not (plan is not None and plan.enabled):
        log(f"note: {num_workers} data-loading workers (set train.num_workers to change)")
    return num_workers, BatchFetcher(train_set, stream, device, num_workers)
