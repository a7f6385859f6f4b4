
import pytest
import torch
import torch.nn as nn

from autoprune.data.sources import load_data
from autoprune.errors import AutopruneError, UnsupportedModelError
from autoprune.models.specs import from_module, load_model
from autoprune.pruning.prune import prune
from autoprune.data.task import evaluate_top1
from autoprune.pruning.space import Granularity, SearchSpace, build_space
from autoprune.pruning.verify import verify_space


@pytest.fixture(scope="module")
def test_images(resnet56):
    """The shipped CIFAR-10 test images."""
    return load_data("cifar10-mini", resnet56).test


def test_groups_of_the_cifar_resnet(resnet56_space):
    names = [g.name for g in resnet56_space.groups]
    # The residual stream of each stage is one group, the classifier output is never one.
    assert {"conv1", "layer2.0.conv2", "layer3.0.conv2"} <= set(names)
    assert "linear" not in names and len(names) == 3 + 27
    stage2 = resnet56_space.group("layer2.0.conv2")
    assert stage2.channels == 32 and stage2.choices == [4, 8, 12, 16, 20, 24, 28, 32]
    assert "layer2.0.shortcut" in resnet56_space.group("conv1").consumers
    assert abs(sum(g.macs_share for g in resnet56_space.groups if len(g.producers) > 2) - 0.996) < 0.01


def test_granularity_and_freezing(resnet56):
    space = build_space(resnet56, Granularity(multiple_of=8, min_keep=0.5), freeze=["layer1.*"])
    assert space.group("layer3.1.conv1").choices == [32, 40, 48, 56, 64]
    assert space.group("layer1.3.conv1").frozen and space.group("layer1.3.conv1").choices == [16]
    with pytest.raises(AutopruneError, match="frozen"):
        space.complete({"layer1.3.conv1": 8})
    with pytest.raises(AutopruneError, match="matches no group"):
        build_space(resnet56, freeze=["nope*"])


def test_yaml_round_trip(tmp_path, resnet56_space):
    path = tmp_path / "space.yaml"
    resnet56_space.save(path)
    assert SearchSpace.load(path) == resnet56_space


@pytest.mark.parametrize(
    "text, message",
    [
        ("groups: [unclosed", "malformed YAML"),
        ("- just\n- a list\n", "not a search space"),
        ("model: cifar:resnet56\n", "not a search space"),
    ],
)
def test_malformed_space_files(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(AutopruneError, match=message):
        SearchSpace.load(path)


def test_invalid_configs(resnet56, resnet56_space):
    with pytest.raises(AutopruneError, match="unknown group 'layer9.conv1'"):
        prune(resnet56.model, resnet56_space, {"layer9.conv1": 8})
    with pytest.raises(AutopruneError, match="not allowed"):
        prune(resnet56.model, resnet56_space, {"layer3.0.conv1": 7})
    with pytest.raises(AutopruneError, match="unknown pruning criterion 'magic'"):
        prune(resnet56.model, resnet56_space, {}, criterion="magic")


def test_grouped_convolution_blocks_keep_the_same_positions():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=4),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
    space = build_space(from_module(model, input_shape=(3, 8, 8)))
    group = space.group("0")
    assert (group.blocks, group.choices) == (4, [4, 8])
    # Positions ranked by their mean over the 4 blocks of 2: position 1 (mean 2.5) before position 0 (mean 5).
    assert group.ranking([9, 1, 5, 2, 3, 4, 3, 3]) == [1, 3, 5, 7, 0, 2, 4, 6]
    assert group.ranking([9, 1, 5, 2, 3, 4, 3, 3], descending=True)[:4] == [0, 2, 4, 6]
    assert SearchSpace.from_dict(space.to_dict()).group("0").blocks == 4
    with pytest.raises(AutopruneError, match="multiples of its 4 blocks"):
        SearchSpace.from_dict({**space.to_dict(), "groups": [{**space.to_dict()["groups"][0], "choices": [6, 8]}]})
    assert verify_space(model, space, trials=3) == []
    pruned = prune(model, space, {"0": 4})
    assert (pruned[3].in_channels, pruned[3].groups, pruned[3].weight.shape[1]) == (4, 4, 1)


def test_attention_is_refused_as_attention():
    layer = nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32, batch_first=True)
    model = nn.Sequential(nn.Linear(4, 16), nn.Unflatten(1, (1, 16)), layer, nn.Flatten(), nn.Linear(16, 2))
    with pytest.raises(UnsupportedModelError, match="layer 2.self_attn \\(MultiheadAttention\\) is attention"):
        build_space(from_module(model, input_shape=(4,)))


def test_channel_shuffle_is_reported_unsupported():
    with pytest.raises(UnsupportedModelError, match="stage2.0.branch1.4.*channel shuffle"):
        build_space(load_model("torchvision:shufflenet_v2_x0_5", input_shape="3x64x64"))


def test_pretrained_accuracy_and_light_pruning(resnet56, resnet56_space, test_images):
    assert evaluate_top1(resnet56.model, test_images) >= 0.92
    # 10% of the channels inside every block, L1 criterion, no re-training and no BN re-estimation.
    fine = build_space(resnet56, Granularity(multiple_of=1))
    inner = {g.name: round(0.9 * g.channels) for g in fine.groups if len(g.producers) == 2}
    assert evaluate_top1(prune(resnet56.model, fine, inner, criterion="l1"), test_images) >= 0.90


@pytest.mark.parametrize(
    "spec, path",
    [
        ("cifar:resnet56", "cifar_resnet56.yaml"),
        ("torchvision:resnet18", "resnet18.yaml"),
        ("torchvision:mobilenet_v2", "mobilenet_v2.yaml"),
    ],
)
def test_shipped_search_spaces_are_current(spec, path):
    from autoprune.assets import SHIPPED_SPACES

    shipped = SearchSpace.load(SHIPPED_SPACES / path)
    assert shipped == build_space(load_model(spec))


def test_a_float_space_is_written_as_earlier_releases_wrote_it_so_their_studies_resume(resnet56_space):
    # A stored study keeps a digest of its space's dict: new Granularity fields must not change a float space's.
    import yaml

    from autoprune.assets import SHIPPED_SPACES
    from autoprune.precision import precision
    from autoprune.study.settings import digest

    written_before = yaml.safe_load((SHIPPED_SPACES / "cifar_resnet56.yaml").read_text())
    assert resnet56_space.to_dict() == written_before
    assert digest(resnet56_space.to_dict()) == digest(written_before)
    int8 = build_space(load_model("cifar:resnet56"), precision("int8").granularity(8, None, 0.125))
    assert int8.to_dict()["granularity"] == {"steps": 8, "multiple_of": None, "min_keep": 0.125, "align": 8, "least": 16}
    assert SearchSpace.from_dict(int8.to_dict()) == int8
