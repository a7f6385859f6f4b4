"""One suite over every registered proxy kind, pruning criterion, latency backend, sampler and data source:
a new entry in a registry is tested by being registered."""
import optuna
import pytest
import torch

from autoprune.data.sources import SOURCES, load_data
from autoprune.errors import AutopruneError
from autoprune.latency import backends
from autoprune.precision import FLOAT32
from autoprune.training.proxies import PROXY_KINDS, make_proxy
from autoprune.pruning.importance import CRITERIA, KNAPSACK, PRUNING_CRITERIA, SALIENCIES, resolve
from autoprune.pruning.prune import prune
from autoprune.study.samplers import SAMPLERS, make_sampler


@pytest.fixture(scope="module")
def splits(resnet56):
    return load_data("cifar10-mini", resnet56)


@pytest.fixture(scope="module")
def half(resnet56_space):
    return {g.name: g.choices[len(g.choices) // 2] for g in resnet56_space.searchable}


@pytest.mark.parametrize("kind", sorted(PROXY_KINDS))
def test_every_proxy_kind_scores_a_candidate_and_leaves_it_alone(kind, resnet56, resnet56_space, half, splits):
    pruned = prune(resnet56.model, resnet56_space, half)
    before = {k: v.clone() for k, v in pruned.state_dict().items()}
    result = make_proxy(f"{kind}:2", seed=0).evaluate(pruned, splits)
    assert 0.1 < result.accuracy <= 1 and result.seconds > 0
    assert all(torch.equal(before[k], v) for k, v in pruned.state_dict().items())


@pytest.mark.parametrize("name", PRUNING_CRITERIA)
def test_every_criterion_prunes_to_the_config(name, resnet56, resnet56_space, half, splits):
    from autoprune.pruning.prune import channels_to_remove
    from autoprune.allocation.saliency import channel_saliency

    needs_data = name != KNAPSACK and CRITERIA[name].needs_data
    batch = next(splits.proxy_train.batches(16)) if needs_data else None
    scores = channel_saliency(resnet56.model, resnet56_space, splits, "halp-taylor", batches=2).values
    pruned = prune(resnet56.model, resnet56_space, half, name, batch=batch, saliency=scores)
    widths = {n: m.out_channels for n, m in pruned.named_modules() if isinstance(m, torch.nn.Conv2d)}
    assert all(widths[g] == k for g, k in half.items() if g in widths)
    if needs_data:
        with pytest.raises(AutopruneError, match="needs data"):
            prune(resnet56.model, resnet56_space, half, name)
    if name == KNAPSACK:  # exactly the channels the saliency values least
        removed = channels_to_remove(resnet56.model, resnet56_space, half, name, saliency=scores)
        for group, idxs in removed.items():
            kept = set(range(len(scores[group]))) - set(idxs)
            assert max(scores[group][i] for i in idxs) <= min(scores[group][i] for i in kept)
        with pytest.raises(AutopruneError, match="needs the knapsack's channel scores"):
            prune(resnet56.model, resnet56_space, half, name)


@pytest.mark.parametrize("name", SALIENCIES)
def test_every_saliency_scores_every_searchable_channel(name, resnet56, resnet56_space, splits):
    from autoprune.allocation.saliency import channel_saliency

    found = channel_saliency(resnet56.model, resnet56_space, splits, name, batches=2)
    assert found.criterion == name
    assert {g.name: g.channels for g in resnet56_space.searchable} == {g: len(v) for g, v in found.values.items()}
    assert all(x >= 0 for v in found.values.values() for x in v) and any(x > 0 for v in found.values.values() for x in v)


def test_a_criterion_normalised_per_group_is_refused_as_a_saliency(resnet56, resnet56_space, splits):
    from autoprune.allocation.saliency import channel_saliency

    with pytest.raises(AutopruneError, match="unknown saliency criterion 'bn-scale'"):
        channel_saliency(resnet56.model, resnet56_space, splits, "bn-scale")


@pytest.mark.parametrize("role, old, new", [("saliency", "taylor", "halp-taylor"), ("pruning", "taylor", "weight-taylor"),
                                            ("pruning", "saliency", "knapsack")])
def test_an_earlier_release_s_criterion_name_means_one_algorithm_in_its_role(role, old, new):
    from autoprune.study.settings import SearchSettings

    assert resolve(old, role) == new
    stored = SearchSettings(**{"saliency" if role == "saliency" else "criterion": old})
    assert (stored.saliency if role == "saliency" else stored.criterion) == new


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_is_seeded(name):
    draws = []
    for _ in range(2):
        study = optuna.create_study(sampler=make_sampler(name, 3))
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=4)
        draws.append([t.params["x"] for t in study.trials])
    assert draws[0] == draws[1]


@pytest.mark.parametrize("kind", sorted(SOURCES))
def test_every_data_source_refuses_a_malformed_form_in_one_line(kind, resnet56, tmp_path):
    form = f"{kind}:{tmp_path / 'missing'}"
    with pytest.raises(AutopruneError) as caught:
        load_data(form, resnet56)
    assert len(str(caught.value).splitlines()) == 1


@pytest.mark.parametrize("name", sorted(backends.BACKENDS))
def test_every_backend_is_known_and_says_when_this_machine_cannot_run_it(name):
    try:
        backend = backends.get_backend(name)
    except AutopruneError as exc:  # a CUDA backend on a machine without CUDA: one line saying what is missing
        assert "CUDA" in str(exc) and len(str(exc).splitlines()) == 1
        assert not torch.cuda.is_available() and backends.BACKENDS[name].cuda
        return
    # Where it runs: the backend asked for, with the version a table records, timing a model in float32.
    assert backend.name == name and backend.version() and FLOAT32 in backend.precisions
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU()).eval()
    (stats,) = backend.time_models([model], torch.randn(1, 3, 16, 16), 1, 1, 2, FLOAT32)
    assert stats["ms"] > 0 and len(stats["rounds_ms"]) == 1


def test_a_study_stored_with_an_earlier_release_s_criterion_names_resumes():
    import optuna

    from autoprune.study.execution import check_settings
    from autoprune.study.settings import SearchSettings

    study = optuna.create_study()
    mine = {**SearchSettings().defining(), "space_digest": "abc"}
    study.set_user_attr("settings", {**mine, "saliency": "taylor", "criterion": "saliency"})
    check_settings(study, "memory", mine)  # the same settings, spelled as before
    study.set_user_attr("settings", {**mine, "saliency": "l1"})
    with pytest.raises(AutopruneError, match="saliency='l1', not 'halp-taylor'"):
        check_settings(study, "memory", mine)
