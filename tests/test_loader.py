"""The training data pipeline (issue 17 item 3): mask-free training reads, the uint8 image
cache (same tensors as decoding, estimate printed, off by option or when it does not fit),
and benchmarks/loader_speed.py."""
from __future__ import annotations

import importlib.util
import json
import pickle
from pathlib import Path

import pytest
import torch

from redo_lib import ReDOConfig, TrainConfig
from redo_lib.data import Flowers, load_dataset
from redo_lib.data.transforms import _signed_table, uint8_to_signed
from redo_lib.training import Trainer
from redo_lib.training import data as pipeline
from redo_lib.training.data import BatchFetcher, BatchStream, fill_cache, iterate_batches, plan_image_cache

from .conftest import tiny_config
from .data_fakes import make_flowers_photos

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32


@pytest.fixture(scope="module")
def flowers_root(tmp_path_factory):
    """Photo-like Flowers files: 30 training, 6 validation images of varied pixels."""
    root = tmp_path_factory.mktemp("flowers")
    make_flowers_photos(root, n_train=30, n_val=6, short_side=40, seed=3)
    return root


def _split(root, split="train"):
    return load_dataset("flowers", root, split, image_size=SIZE)


def _cached(root, split="train", n_masks=None):
    dataset = _split(root, split)
    n = len(dataset)
    plan = plan_image_cache([(dataset, n, n if n_masks is None else n_masks)], enabled=True)
    assert plan.enabled and dataset.cache is not None
    return dataset


@pytest.fixture()
def mask_reads(monkeypatch):
    """Counts the calls of Flowers' mask reader (in this process)."""
    calls = []
    original = Flowers.read_mask

    def spy(self, path):
        calls.append(path)
        return original(self, path)

    monkeypatch.setattr(Flowers, "read_mask", spy)
    return calls


def _fetch_epochs(dataset, n_batches=14, device="cpu"):
    fetcher = BatchFetcher(dataset, BatchStream(len(dataset), 4, seed=5), torch.device(device))
    return [fetcher.next() for _ in range(n_batches)]  # 7 batches an epoch: two epochs


# ----------------------------------------------------------------------------- masks
def test_training_never_decodes_a_mask_evaluation_does(flowers_root, mask_reads):
    uncached = _split(flowers_root)
    _fetch_epochs(uncached)
    assert mask_reads == []
    cached = _cached(flowers_root, n_masks=0)
    _fetch_epochs(cached)  # the first pass fills the cache with images only
    assert mask_reads == [] and cached.cache.complete and int(cached.cache.has_mask.sum()) == 0
    batch = next(iterate_batches(cached, 8, max_items=8))  # evaluation reads masks
    assert "mask" in batch and len(mask_reads) == 8
    view = uncached.pixels(with_masks=False)
    assert "mask" not in view[0] and view[0]["image"].dtype == torch.uint8 and not view.has_masks


# ----------------------------------------------------------------------------- same tensors
def test_cached_batches_equal_decoded_ones(flowers_root):
    uncached, cached = _split(flowers_root), _cached(flowers_root)
    for a, b in zip(_fetch_epochs(uncached), _fetch_epochs(cached)):
        assert a.dtype == b.dtype == torch.float32 and torch.equal(a, b)
    # the float items of the data set: the official (x / 255) * 2 - 1 of the decoded pixels
    pixels, _ = uncached.load(3)
    official = pixels.float() / 255 * 2 - 1
    assert torch.equal(cached[3]["image"], official) and torch.equal(uncached[3]["image"], official)
    assert cached.cache.holds(3) and not cached.cache.holds(3, with_mask=True)
    for split in ("train", "val"):  # evaluation batches, masks included
        plain, memory = _split(flowers_root, split), _cached(flowers_root, split)
        for _ in range(2):  # the second pass reads memory only
            for a, b in zip(iterate_batches(plain, 4), iterate_batches(memory, 4)):
                assert a.keys() == b.keys() == {"image", "mask", "index"}
                for key in a:
                    assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key
        assert memory.cache.complete and bool(memory.cache.has_mask.all())
        assert all(torch.equal(plain[i]["mask"], memory[i]["mask"]) for i in range(len(plain)))


def test_device_conversion_table_is_the_cpu_arithmetic():
    pixels = torch.arange(256, dtype=torch.uint8)
    table = _signed_table(torch.device("cpu"))
    assert torch.equal(table[pixels.long()], pixels.float() / 255 * 2 - 1)
    assert torch.equal(uint8_to_signed(pixels), table)
    # why a table: multiplying by 1 / 255 (CUDA's way with a scalar divisor) differs
    assert not torch.equal(pixels.float() * (1 / 255) * 2 - 1, table)
    with pytest.raises(TypeError, match="uint8"):
        uint8_to_signed(pixels.float())


def test_first_pass_with_workers_equals_in_process(flowers_root, monkeypatch):
    in_process, workers = _cached(flowers_root), _cached(flowers_root)
    monkeypatch.setattr(pipeline, "MIN_ITEMS_FOR_WORKERS", 1)
    workers.cache.fill_workers = 2
    assert fill_cache(workers, range(len(workers)), with_masks=True) == len(workers)
    assert fill_cache(workers, range(len(workers)), with_masks=True) == 0  # nothing left to decode
    in_process.cache.fill_workers = 0
    fill_cache(in_process, range(len(in_process)), with_masks=True)
    assert torch.equal(workers.cache.images, in_process.cache.images)
    assert torch.equal(workers.cache.masks, in_process.cache.masks)


def test_a_pickled_split_leaves_its_cache_behind(flowers_root):
    dataset = _cached(flowers_root)
    fill_cache(dataset, range(len(dataset)), with_masks=False)
    copy = pickle.loads(pickle.dumps(dataset))  # what a spawned loader worker receives
    assert copy.cache is None and dataset.cache is not None
    assert torch.equal(copy[0]["image"], dataset[0]["image"])


# ----------------------------------------------------------------------------- the decision
def test_estimate_and_decision(flowers_root):
    train, val = _split(flowers_root), _split(flowers_root, "val")
    needed = 30 * 3 * SIZE * SIZE + 5 * SIZE * SIZE + 6 * 4 * SIZE * SIZE
    plan = plan_image_cache([(train, 30, 5), (val, 6, 6)], available=lambda: 10**9)
    assert plan.enabled and plan.needed_bytes == needed
    assert f"{needed / 1e6:.1f} MB" in plan.message() and "1,000 MB available" in plan.message()
    small = plan_image_cache([(train, 30, 5), (val, 6, 6)], available=lambda: needed)
    assert not small.enabled and train.cache is None and val.cache is None
    assert "image cache off" in small.message() and "50%" in small.message()
    two = plan_image_cache([(train, 30, 5)], world_size=2, available=lambda: 4 * train.cache_bytes(30, 5))
    assert two.enabled and "per process x 2" in two.message()
    unknown = plan_image_cache([(train, 30, 5)], available=lambda: None)
    assert unknown.enabled and "unknown" in unknown.message()
    off = plan_image_cache([(train, 30, 5)], enabled=False)
    assert not off.enabled and train.cache is None and "train.cache_images=false" in off.message()
    synthetic = load_dataset("synthetic", None, "train", image_size=16, length=8)
    assert plan_image_cache([(synthetic, 8, 8)]) is None


def test_memory_headroom_of_a_container(tmp_path):
    (tmp_path / "memory.max").write_text("1000000\n")
    (tmp_path / "memory.current").write_text("250000\n")
    assert pipeline._cgroup_headroom(tmp_path) == 750000
    v1 = tmp_path / "v1"
    (v1 / "memory").mkdir(parents=True)
    (v1 / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # "no limit"
    (v1 / "memory" / "memory.usage_in_bytes").write_text("5\n")
    assert pipeline._cgroup_headroom(v1) is None
    assert (pipeline.available_memory() or 1) > 0


# ----------------------------------------------------------------------------- the trainer
def _trainer(root, out, **train):
    values = dict(dataset="flowers", batch_size=4, steps=1, eval_every=1, max_eval_images=4,
                  train_eval_images=4, eval_batch_size=4, log_every=1, seed=0)
    values.update(train)
    config = ReDOConfig(model=tiny_config(image_size=SIZE), train=TrainConfig(**values))
    messages = []
    trainer = Trainer(config, out, _split(root), _split(root, "val"), progress=False, log=messages.append,
                      write_files=False)
    return trainer, messages


def test_trainer_prints_the_estimate_and_trains_the_same_with_and_without_cache(flowers_root, tmp_path):
    previous = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False  # tiny convolutions: the native kernels are faster
    try:
        cached, said = _trainer(flowers_root, tmp_path / "cached")
        plain, said_off = _trainer(flowers_root, tmp_path / "plain", cache_images=False)
        estimate = cached.train_set.cache_bytes(30, 4) + cached.val_set.cache_bytes(4, 4)
        assert any("image cache" in m and f"{estimate / 1e6:.1f} MB" in m for m in said), said
        assert any("image cache off (train.cache_images=false)" in m for m in said_off), said_off
        assert plain.train_set.cache is None and cached.train_set.cache is not None
        first, second = cached.fit(), plain.fit()
        assert first["best_iou"] == second["best_iou"]
        for (name, a), b in zip(cached.model.state_dict().items(), plain.model.state_dict().values()):
            assert torch.equal(a, b), name
        assert cached.train_set.cache.complete
    finally:
        torch.backends.mkldnn.enabled = previous


def test_cli_flag_turns_the_cache_off():
    from redo_lib.cli import _train_config, build_parser

    args = build_parser().parse_args(["train", "--preset", "flowers", "--no-cache-images", "--out", "x"])
    assert _train_config(args)[0].train.cache_images is False
    args = build_parser().parse_args(["train", "--preset", "flowers", "--out", "x"])
    assert _train_config(args)[0].train.cache_images is True


def test_the_cache_option_may_change_when_a_run_resumes():
    from redo_lib.training.checkpoint import check_resumable

    changed = ReDOConfig()
    changed.train.cache_images = False
    check_resumable(ReDOConfig(), changed)  # same steps computed: no CheckpointError


# ----------------------------------------------------------------------------- the benchmark
def test_loader_speed_script_prints_one_json_line(flowers_root, capsys):
    spec = importlib.util.spec_from_file_location("loader_speed", ROOT / "benchmarks" / "loader_speed.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    code = script.main(["--dataset", "flowers", "--data-root", str(flowers_root), "--image-size", str(SIZE),
                        "--epochs", "2", "--batch-size", "4", "--quiet", "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and len(out) == 1
    result = json.loads(out[0])
    assert result["n_images"] == 30 and result["cache_images"] is True and result["images_per_epoch"] == 28
    assert result["first_epoch_images_per_s"] > 0 and result["images_per_s"] > 0
    assert script.main(["--dataset", "flowers", "--data-root", str(flowers_root / "nowhere"), "--json"]) == 2
    assert "error: " in capsys.readouterr().err


def test_a_corrupt_file_met_by_a_worker_gives_its_one_line_message(tmp_path, monkeypatch):
    from redo_lib.data import CorruptFileError

    make_flowers_photos(tmp_path, n_train=8, short_side=40)
    (tmp_path / "jpg" / "image_00003.jpg").write_bytes(b"not a jpeg")
    monkeypatch.setattr(pipeline, "MIN_ITEMS_FOR_WORKERS", 1)
    dataset = _cached(tmp_path)
    dataset.cache.fill_workers = 1
    with pytest.raises(CorruptFileError) as caught:
        fill_cache(dataset, range(8), with_masks=False)
    message = str(caught.value)
    assert "\n" not in message and "image_00003.jpg" in message and "corrupt" in message
    plain = BatchFetcher(_split(tmp_path), BatchStream(8, 8), torch.device("cpu"), num_workers=1)
    with pytest.raises(CorruptFileError, match=r"^cannot read image file .*image_00003\.jpg") as caught:
        plain.next()
    assert "\n" not in str(caught.value)
