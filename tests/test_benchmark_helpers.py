"""redo_lib.training.benchmark: the trainer every timing script and the compile tests build."""
import pytest
import torch

from redo_lib.training.benchmark import RandomImages, benchmark_config, benchmark_trainer


def test_random_images_are_fixed_and_in_range():
    data = RandomImages(6, 16, seed=3)
    batch = data.batch([4, 1])
    assert batch["image"].shape == (2, 3, 16, 16) and batch["index"].tolist() == [4, 1]
    assert torch.equal(batch["image"][0], data[4]["image"]) and len(data) == 6
    assert batch["image"].min() >= -1 and batch["image"].max() <= 1
    assert torch.equal(RandomImages(6, 16, seed=3).images, data.images)


def test_config_paths_on_the_cpu():
    fast = benchmark_config("synthetic-flat", 4, "cpu", image_size=64, compile=True)
    assert (fast.train.batch_size, fast.train.device, fast.model.image_size) == (4, "cpu", 64)
    assert fast.train.compile and not fast.train.amp and fast.train.channels_last  # AMP: CUDA only
    assert not benchmark_config("synthetic-flat", 4, "cpu", channels_last=False).train.channels_last
    plain = benchmark_config("synthetic-flat", path="plain", compile=True)
    assert not plain.train.compile and not plain.train.channels_last and plain.train.batch_size == benchmark_config("synthetic-flat").train.batch_size
    with pytest.raises(ValueError, match="path"):
        benchmark_config("synthetic-flat", path="slow")


def test_trainer_semantics_and_one_iteration():
    config = benchmark_config("synthetic-flat", 2, "cpu")
    config.model.nf_mask, config.model.nf_gen, config.model.nf_disc, config.model.nf_info = 8, 4, 4, 4
    assert benchmark_trainer(config).freeze_d
    trainer = benchmark_trainer(config, official_semantics=True)
    assert not trainer.freeze_d
    assert torch.isfinite(trainer.train_iteration()).all()
