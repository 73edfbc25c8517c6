"""Loading official checkpoints fabricated from the published key lists.

``../shared/reference/official-state-dicts/*.json`` lists every key and shape of the
official networks for three configurations. We fabricate checkpoints with random values,
load them, and compare our networks with a functional re-statement of the official
forward passes (written from the spec, working directly on the official keys).
"""
import argparse
import json
import pathlib

import pytest
import torch
import torch.nn.functional as F

from redo_lib.pretrained import OfficialCheckpointError, load_official, official_model_config

REFERENCE = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "official-state-dicts"
if not REFERENCE.is_dir():  # CI's clone has shared/ beside it, like the working tree
    REFERENCE = pathlib.Path("/work/shared/reference/official-state-dicts")


def layout(name):
    path = REFERENCE / f"{name}.json"
    if not path.is_file():
        pytest.fail(f"missing reference layout {path}")
    return json.loads(path.read_text())


def fabricate(name, networks=("netEncM", "netGenX", "netDX", "netRecZ"), seed=0):
    info = layout(name)
    g = torch.Generator().manual_seed(seed)
    ckpt = {"options": argparse.Namespace(**info["options"], device="cuda:0", iteration=19500)}
    for net in networks:
        state = {}
        for key, shape, _kind in info["networks"][net]["state_dict"]:
            t = torch.randn(*shape, generator=g) * 0.05
            if key.endswith("weight_u") or key.endswith("weight_v"):
                t = F.normalize(torch.randn(*shape, generator=g), dim=0)
            if key.endswith("gamma") and "selfAtt" in key:
                t = torch.full(shape, 0.3)
            state[key] = t
        ckpt[net] = state
    return ckpt


# --- a functional statement of the official forward passes, from the spec ---------------

def sn_weight(sd, name):
    w = sd[name + ".weight_orig"]
    sigma = torch.dot(sd[name + ".weight_u"], w.reshape(w.shape[0], -1) @ sd[name + ".weight_v"])
    return w / sigma


def conv(sd, name, x, padding=0, stride=1):
    if name + ".weight_orig" in sd:
        return F.conv2d(x, sn_weight(sd, name), sd.get(name + ".bias"), stride, padding)
    return F.conv2d(x, sd[name + ".weight"], sd.get(name + ".bias"), stride, padding)


def inorm(sd, name, x):
    return F.instance_norm(x, weight=sd[name + ".weight"], bias=sd[name + ".bias"], eps=1e-5)


def ref_mask_net(sd, x):
    h = F.pad(x, (3,) * 4, mode="reflect")
    h = F.relu(inorm(sd, "cnn.0.mods.2", conv(sd, "cnn.0.mods.1", h)))
    h = F.relu(inorm(sd, "cnn.0.mods.5", conv(sd, "cnn.0.mods.4", h, 1, 2)))
    h = F.relu(inorm(sd, "cnn.0.mods.8", conv(sd, "cnn.0.mods.7", h, 1, 2)))
    for i in (1, 2, 3):
        r = F.relu(inorm(sd, f"cnn.{i}.blocs.1", conv(sd, f"cnn.{i}.blocs.0", h, 1)))
        h = F.relu(inorm(sd, f"cnn.{i}.activationF.0", conv(sd, f"cnn.{i}.blocs.3", r, 1) + h))
    s = h.shape[-1]
    levels = [F.interpolate(conv(sd, f"psp.{j}.1", F.avg_pool2d(h, s // n)), size=s, mode="bilinear",
                            align_corners=False) for j, n in enumerate((1, 2, 3, 6))]
    h = torch.cat([h] + levels, 1)
    h = F.relu(inorm(sd, "out.mods.2", conv(sd, "out.mods.1", F.interpolate(h, scale_factor=2), 1)))
    h = F.relu(inorm(sd, "out.mods.6", conv(sd, "out.mods.5", F.interpolate(h, scale_factor=2), 1)))
    m = torch.sigmoid(conv(sd, "out.mods.9", F.pad(h, (3,) * 4, mode="reflect")))
    return torch.cat([m, 1 - m], 1)


def ref_attention(sd, p, x):
    b, c, hh, ww = x.shape
    f = conv(sd, p + ".f", x).flatten(2)
    g = F.max_pool2d(conv(sd, p + ".g", x), 2).flatten(2)
    h = F.max_pool2d(conv(sd, p + ".h", x), 2).flatten(2)
    s = torch.softmax(g.transpose(1, 2) @ f, dim=1)
    o = conv(sd, p + ".o", (h @ s).view(b, c // 2, hh, ww))
    return sd[p + ".gamma"] * o + x


def ref_encoder(sd, x, first, blocs, sc, dense, attention=None):
    h = conv(sd, first[1], F.relu(conv(sd, first[0], x, 1)), 1)
    h = F.avg_pool2d(h, 2) + conv(sd, first[2], F.avg_pool2d(x, 2))
    if attention:
        h = ref_attention(sd, attention, h)
    for i, (b, s) in enumerate(zip(blocs, sc)):
        r = conv(sd, b + ".3", F.relu(conv(sd, b + ".1", F.relu(h), 1)), 1)
        h = F.avg_pool2d(r, 2) + conv(sd, s, F.avg_pool2d(h, 2)) if s else r + h
    return F.linear(h.sum((2, 3)), sd[dense + ".weight"], sd[dense + ".bias"])


def ref_discriminator(sd, x, attention):
    return ref_encoder(sd, x, ("bloc0.0", "bloc0.2", "sc0.1"), [f"blocs.{i}" for i in range(5)],
                       [f"sc.{i}.1" for i in range(4)] + [None], "dense", "selfAtt" if attention else None)


def ref_info_net(sd, x):
    return ref_encoder(sd, x, ("net.blocs.0.0", "net.blocs.0.2", "net.sc.0.1"),
                       [f"net.blocs.{i}" for i in range(1, 6)], [f"net.sc.{i}.1" for i in range(1, 5)] + [None],
                       "net.dense")


def ref_generator(sd, p, m, z, attention):
    def cin(name_g, name_b, h):
        gamma = F.conv2d(z[:, :, None, None], sd[name_g + ".weight"], sd[name_g + ".bias"])
        beta = F.conv2d(z[:, :, None, None], sd[name_b + ".weight"], sd[name_b + ".bias"])
        return F.instance_norm(h) * gamma + beta

    x = F.linear(z, sd[p + "dense.weight"], sd[p + "dense.bias"]).view(z.shape[0], -1, 4, 4)
    for k in range(5):
        if k == 4 and attention:
            x = ref_attention(sd, p + "selfAtt", x)
        h = torch.cat([F.relu(cin(f"{p}gammaA.{k}", f"{p}betaA.{k}", x)), F.avg_pool2d(m, 128 // x.shape[-1])], 1)
        h = conv(sd, f"{p}convA.{k}.1", F.interpolate(h, scale_factor=2), 1)
        h = conv(sd, f"{p}convB.{k}", F.relu(cin(f"{p}gammaB.{k}", f"{p}betaB.{k}", h)), 1)
        x = h + conv(sd, f"{p}sc.{k}.1", F.interpolate(x, scale_factor=2))
    x = conv(sd, p + "convOut", torch.cat([F.relu(cin(p + "gammaOut", p + "betaOut", x)), m], 1), 1)
    return torch.tanh(x) * m


# --- tests ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def flowers_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("official") / "flowers_best.pth"
    torch.save(fabricate("flowers"), path)
    return path


def test_flowers_checkpoint_reproduces_the_official_forward_passes(flowers_file):
    ckpt = fabricate("flowers")
    model = load_official(flowers_file)  # from disk, weights_only=True with argparse.Namespace
    assert model.official_networks == ["netEncM", "netGenX", "netDX", "netRecZ"]
    assert not model.training
    cfg = model.config
    assert (cfg.nf_gen, cfg.self_attention_gen, cfg.self_attention_disc, cfg.n_regions) == (32, True, True, 2)
    # float64 on both sides, so any difference is a mapping error, not rounding
    model.double()
    ckpt = {k: {n: t.double() for n, t in v.items()} if k != "options" else v for k, v in ckpt.items()}
    torch.manual_seed(1)
    x = torch.rand(2, 3, 128, 128, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        masks = model.mask_net(x)
        assert torch.allclose(masks, ref_mask_net(ckpt["netEncM"], x), atol=1e-10)
        z = torch.randn(2, 2, 32, dtype=torch.float64)
        out = model.generator(masks, z)
        for k in range(2):
            ref = ref_generator(ckpt["netGenX"], f"net.{k}.", masks[:, k:k + 1], z[:, k], attention=True)
            assert torch.allclose(out[:, k], ref, atol=1e-10)
        assert torch.allclose(model.discriminator(x), ref_discriminator(ckpt["netDX"], x, True), rtol=1e-9)
        assert torch.allclose(model.info_net(x).flatten(1), ref_info_net(ckpt["netRecZ"], x), rtol=1e-9)


@pytest.mark.parametrize("name", ["lfw", "defaults"])
def test_other_published_configurations_load_with_the_right_sizes(name):
    info = layout(name)
    model = load_official(fabricate(name))
    counts = model.parameter_counts()
    for official, ours in [("netEncM", "mask_net"), ("netGenX", "generator"), ("netDX", "discriminator"),
                           ("netRecZ", "info_net")]:
        assert counts[ours] == info["networks"][official]["n_parameters"]


def test_loaded_values_are_really_used():
    ckpt = fabricate("flowers", networks=("netEncM", "netDX"))
    x = torch.rand(1, 3, 128, 128) * 2 - 1
    with torch.no_grad():
        model = load_official(ckpt)
        before_m, before_d = model.mask_net(x), model.discriminator(x)
        ckpt["netEncM"]["out.mods.9.bias"] += 1.0
        ckpt["netDX"]["blocs.4.3.weight_u"] = F.normalize(torch.randn(1024), dim=0)
        model2 = load_official(ckpt)
        assert not torch.allclose(model2.mask_net(x), before_m)
        assert not torch.allclose(model2.discriminator(x), before_d)
    assert model.official_networks == ["netEncM", "netDX"]


def test_missing_and_unexpected_keys_are_named():
    ckpt = fabricate("flowers", networks=("netEncM",))
    del ckpt["netEncM"]["psp.2.1.weight"]
    ckpt["netEncM"]["cnn.9.blocs.0.weight"] = torch.zeros(1)
    with pytest.raises(OfficialCheckpointError) as err:
        load_official(ckpt)
    message = str(err.value)
    assert "cnn.9.blocs.0.weight" in message and "pyramid.convs.2.weight" in message


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_official(tmp_path / "nope.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(OfficialCheckpointError, match="bad.pth"):
        load_official(bad)
    with pytest.raises(OfficialCheckpointError, match="options"):
        load_official({"netDX": {}})


def test_options_without_explicit_widths_fall_back_to_nf():
    cfg = official_model_config({"nf": 32, "nfX": None, "nMasks": 3, "sizex": 128})
    assert (cfg.nf_gen, cfg.nf_disc, cfg.n_regions) == (32, 32, 3)
