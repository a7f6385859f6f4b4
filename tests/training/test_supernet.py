"""The supernet: slices that are the masked supernet, a resumable training, a cache keyed by what made it."""
import random

import pytest
import torch

from autoprune.allocation.widths import WidthSpace
from autoprune.data.sources import load_data
from autoprune.errors import AutopruneError
from autoprune.models.specs import load_model
from autoprune.pruning.masks import ChannelMasks
from autoprune.pruning.space import build_space
from autoprune.training import supernet as sn

QUICK = sn.SupernetSettings(epochs=0.2, samples=1, batch_size=64, seed=3, importance_batches=4)  # 12 steps


@pytest.fixture(scope="module")
def resnet20():
    loaded = load_model("cifar:resnet20")
    return loaded, build_space(loaded), load_data("cifar10-mini", loaded)


@pytest.fixture(scope="module")
def trained(resnet20):
    loaded, space, data = resnet20
    return sn.train_supernet(loaded.model, space, data, QUICK, progress=False)


def test_width_k_keeps_the_first_k_ordered_channels_and_the_slice_is_the_masked_supernet(resnet20, trained):
    loaded, space, data = resnet20
    rng = random.Random(0)
    x = next(data.proxy_train.batches(16))[0]
    for _ in range(3):
        config = sn.draw_config(WidthSpace.for_model(loaded.model, space, loaded.example_input()), rng)
        removed = trained.removed(config)
        for group in space.searchable:
            assert sorted(trained.order[group.name]) == list(range(group.channels))
            assert removed.get(group.name, []) == trained.order[group.name][config[group.name]:]
        sliced = trained.slice(config).eval()
        widths = {n: m.out_channels for n, m in sliced.named_modules() if isinstance(m, torch.nn.Conv2d)}
        assert all(widths[g] == k for g, k in config.items() if g in widths)
        masks = ChannelMasks(trained.model, space)
        masks.set(removed)
        with torch.no_grad():
            masked = trained.model.eval()(x)
        masks.remove()
        assert torch.allclose(sliced(x), masked, atol=1e-4)
    # The order is the importance's: the first channel of each group matters at least as much as the last.
    assert all(order[0] != order[-1] for order in trained.order.values())


def test_a_killed_supernet_training_resumes_to_the_weights_of_an_uninterrupted_one(resnet20, trained, tmp_path,
                                                                                   monkeypatch):
    loaded, space, data = resnet20
    ckpt = tmp_path / "supernet.ckpt"
    step_of = sn.sandwich_step

    def dies_at_step_7(*args):
        if args[6] == 7:  # sandwich_step's step
            raise KeyboardInterrupt
        return step_of(*args)

    monkeypatch.setattr(sn, "CHECKPOINT_EVERY", 5)
    with monkeypatch.context() as mp:
        mp.setattr(sn, "sandwich_step", dies_at_step_7)
        with pytest.raises(KeyboardInterrupt):
            sn.train_supernet(loaded.model, space, data, QUICK, checkpoint=ckpt, progress=False)
    assert torch.load(ckpt, weights_only=True)["step"] == 5
    resumed = sn.train_supernet(loaded.model, space, data, QUICK, checkpoint=ckpt, progress=False)
    mine, theirs = resumed.model.state_dict(), trained.model.state_dict()
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    assert resumed.order == trained.order


def test_a_second_request_reuses_the_cached_supernet_and_other_settings_are_refused(resnet20, tmp_path, monkeypatch):
    loaded, space, data = resnet20
    identity = {"weights": "random", "data": "cifar10-mini"}
    first = sn.supernet_for(loaded.model, space, data, QUICK, identity, tmp_path, progress=False)
    stored = list(tmp_path.glob("supernet-*.pt"))
    assert len(stored) == 1 and not list(tmp_path.glob("*.ckpt"))

    def no_training(*args, **kwargs):
        raise AssertionError("a cached supernet was trained again")

    monkeypatch.setattr(sn, "train_supernet", no_training)
    again = sn.supernet_for(loaded.model, space, data, QUICK, identity, tmp_path, progress=False)
    assert all(torch.equal(v, again.model.state_dict()[k]) for k, v in first.model.state_dict().items())
    assert again.order == first.order
    with pytest.raises(AutopruneError) as caught:
        sn.load_supernet(stored[0], loaded.model, space, {**identity, "data": "other"})
    assert "other settings" in str(caught.value) and len(str(caught.value).splitlines()) == 1


def test_a_slice_scores_on_held_out_images_after_batch_norm_re_estimation(resnet20, trained):
    loaded, space, data = resnet20
    narrowest, full = space.narrowest_config(), space.full_config()
    scores = [trained.score(c, data) for c in (narrowest, full)]
    assert all(0 <= s <= 1 for s in scores)
    assert trained.score(narrowest, data) == scores[0]  # the same slice scores the same


def test_a_supernet_with_depth_draws_blocks_removed_and_its_slice_without_them_is_the_masked_supernet(resnet20):
    loaded, _, data = resnet20
    space = build_space(loaded, depth=True)
    blocks = [g.name for g in space.groups if g.kind == "block"]
    trained = sn.train_supernet(loaded.model, space, data, QUICK, progress=False)
    assert all(trained.order[b] == [0] for b in blocks)
    rng = random.Random(1)
    widths = WidthSpace.for_model(loaded.model, space, loaded.example_input())
    drawn = [sn.draw_config(widths, rng) for _ in range(8)]
    config = next(c for c in drawn if any(c[b] == 0 for b in blocks))  # draws remove blocks as the search does
    removed = trained.removed(config)
    assert {b for b in blocks if removed.get(b)} == {b for b in blocks if config[b] == 0}
    x = next(data.proxy_train.batches(16))[0]
    masks = ChannelMasks(trained.model, space)
    masks.set(removed)
    with torch.no_grad():
        masked = trained.model.eval()(x)
    masks.remove()
    with torch.no_grad():
        assert torch.allclose(trained.slice(config).eval()(x), masked, atol=1e-4)
