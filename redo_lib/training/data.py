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
"""
from __future__ import annotations

from typing import Dict, Iterator, List, Optional, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Subset

__all__ = ["BatchStream", "BatchFetcher", "iterate_batches", "collate_items"]

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


class _StreamSampler:
    """Batch sampler for a DataLoader: the stream's future batches (an endless iterator)."""

    def __init__(self, stream: BatchStream) -> None:
        self.stream = stream

    def __iter__(self):
        return self.stream.future()


class BatchFetcher:
    """Training images, batch after batch, in the order of a :class:`BatchStream`.

    With ``num_workers == 0`` (or a procedural data set, which builds a batch in one
    vectorised call) the batches are made in this process; otherwise a DataLoader with
    workers prefetches them (``pin_memory`` on CUDA). Either way the stream advances by
    one batch per :meth:`next` call, so its state is the position of the next batch used.
    """

    def __init__(self, dataset: Dataset, stream: BatchStream, device: torch.device,
                 num_workers: int = 0) -> None:
        self.dataset = dataset
        self.stream = stream
        self.device = device
        self.pin = device.type == "cuda"
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
        if self.num_workers > 0:
            batch = next(self._loader_iter())
            self.stream.advance()
        else:
            batch = _fetch(self.dataset, self.stream.next_indices())
        images = batch["image"]
        return images.to(self.device, non_blocking=self.pin)


def iterate_batches(dataset: Dataset, batch_size: int, *, max_items: int = 0,
                    indices: Optional[Sequence[int]] = None, num_workers: int = 0,
                    pin_memory: bool = False) -> Iterator[Dict[str, torch.Tensor]]:
    """Sequential batches of a data set (evaluation): every item, or the first ``max_items``."""
    if indices is None:
        n = len(dataset) if max_items <= 0 else min(max_items, len(dataset))
        indices = list(range(n))
    indices = list(indices)
    if callable(getattr(dataset, "batch", None)) or num_workers <= 0:
        for start in range(0, len(indices), batch_size):
            yield _fetch(dataset, indices[start:start + batch_size])
        return
    loader = DataLoader(Subset(dataset, indices), batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, pin_memory=pin_memory, collate_fn=collate_items,
                        generator=torch.Generator())  # own generator: the global RNG is not touched
    yield from loader
