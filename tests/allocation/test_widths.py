"""The width space the sampler sees, its repair to a budget, and the rules a search starts from
(allocation/widths.py, allocation/rules.py), on the embedded default's real space."""
import random

import optuna
import pytest

from autoprune.allocation.rules import RULES, UNPRUNED, starting_configs, uniform
from autoprune.allocation.saliency import Saliency
from autoprune.allocation.widths import WidthSpace


class SumOfWidths:
    """A stand-in table: each kept channel costs its group's weight, so narrower is always faster."""

    def __init__(self, space, seed=0):
        rng = random.Random(seed)
        self.space, self.cost = space, {g.name: rng.uniform(0.5, 2.0) for g in space.searchable}

    def predict(self, config):
        full = self.space.complete(config)
        return sum(self.cost[g] * full[g] for g in self.cost)


@pytest.fixture(scope="module")
def widths(resnet56, resnet56_space):
    return WidthSpace.for_model(resnet56.model, resnet56_space, resnet56.example_input())


@pytest.fixture(scope="module")
def saliency(resnet56_space):
    rng = random.Random(1)
    return Saliency("stand-in", {g.name: [rng.random() for _ in range(g.channels)] for g in resnet56_space.searchable})


def test_stages_part_the_groups_by_resolution_with_the_residual_streams_apart(widths):
    assert set(widths.stages()) == {"res32", "res16", "res8", "res32-stream", "res16-stream", "res8-stream"}
    assert len(widths.streams()) == 3 and all(widths.stage[g].endswith("-stream") for g in widths.streams())


def test_every_config_of_the_space_is_a_point_of_it(widths, resnet56_space):
    rng = random.Random(0)
    configs = [resnet56_space.full_config(), resnet56_space.narrowest_config()]
    configs += [resnet56_space.random_config(rng) for _ in range(50)]
    for config in configs:
        params = widths.params(config)
        assert widths.config(params) == config
        # ...and one the sampler can propose: every value within the distributions it suggests from.
        trial = optuna.trial.FixedTrial(params)
        assert widths.suggest(trial) == config


def test_the_repair_narrows_an_over_budget_config_just_under_the_target_and_leaves_one_within_it(
        widths, resnet56_space, saliency):
    table = SumOfWidths(resnet56_space)
    full = resnet56_space.full_config()
    target = 0.4 * table.predict(full)
    repaired = widths.repair(full, table, saliency, target)
    assert table.predict(repaired) <= target
    assert all(repaired[g] <= full[g] for g in full)
    # Greedy down the staircase: one step wider in any group would be over the target again, or it would have stopped
    # a step earlier there.
    groups = {g.name: g for g in resnet56_space.searchable}
    widened = [{**repaired, n: g.choices[g.choices.index(repaired[n]) + 1]} for n, g in groups.items()
               if repaired[n] < g.channels]
    assert any(table.predict(w) > target for w in widened)
    within = resnet56_space.narrowest_config()
    assert widths.repair(within, table, saliency, target) == within
    # Each step gives up the least saliency per millisecond saved.
    def rate(n):
        narrower = groups[n].choices[-2]
        saved = table.cost[n] * (full[n] - narrower)
        return saved / (saliency.kept(n, full[n]) - saliency.kept(n, narrower))
    cheap = max(groups, key=rate)
    one_step = widths.repair(full, table, saliency, table.predict(full) - 1e-9)
    assert [n for n in full if one_step[n] != full[n]] == [cheap]


def test_the_uniform_rule_is_the_widest_one_share_within_the_target(widths, resnet56_space, saliency):
    table = SumOfWidths(resnet56_space)
    target = 0.5 * table.predict(resnet56_space.full_config())
    config = uniform(widths, table, saliency, target)
    index = {g.choices.index(config[g.name]) for g in resnet56_space.searchable}
    assert len(index) == 1 and table.predict(config) <= target
    (i,) = index
    wider = {g.name: g.choices[i + 1] for g in resnet56_space.searchable}
    assert table.predict(wider) > target


def test_the_starting_configs_are_the_rules_at_the_target_each_once(widths, resnet56_space, saliency):
    table = SumOfWidths(resnet56_space)
    target = 0.35 * table.predict(resnet56_space.full_config())
    starts = starting_configs(widths, table, saliency, target)
    assert list(starts)[:2] == ["uniform", "knapsack"] and set(starts) <= set(RULES)
    assert all(table.predict(c) <= target for c in starts.values())
    assert len({tuple(sorted(c.items())) for c in starts.values()}) == len(starts)
    # A target the unpruned model meets (an int8 lane's, often): it starts from that model, and the rules that give
    # it too are not queued again.
    roomy = starting_configs(widths, table, saliency, 1.1 * table.predict(resnet56_space.full_config()))
    assert roomy[UNPRUNED] == resnet56_space.full_config() and list(roomy)[0] == UNPRUNED
    assert "uniform" not in roomy and len({tuple(sorted(c.items())) for c in roomy.values()}) == len(roomy)
