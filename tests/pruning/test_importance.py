"""HALP's importance against a hand computation: per batch, batch-norm scale and shift terms, then averaged."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from autoprune.pruning.graph import build_graph
from autoprune.pruning.halp_taylor import accumulated_importance
from autoprune.pruning.space import graph_groups


def _batches(n: int, shape: tuple, classes: int):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(8, *shape, generator=g), torch.randint(0, classes, (8,), generator=g)) for _ in range(n)]


def test_the_importance_is_the_mean_of_each_batchs_batchnorm_taylor_term():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                          nn.Conv2d(6, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    with torch.no_grad():  # scales and shifts of both signs, so that the batches' terms differ
        for bn in (model[1], model[4]):
            bn.weight.copy_(torch.randn_like(bn.weight))
            bn.bias.copy_(torch.randn_like(bn.bias))
    batches = _batches(3, (3, 8, 8), 3)
    dg = build_graph(model, torch.randn(1, 3, 8, 8))
    groups = graph_groups(model, dg)
    got = accumulated_importance(model, groups, batches, F.cross_entropy)

    per_batch, summed_grad = [], torch.zeros(6, dtype=torch.float64)
    bn = model[1]
    for x, y in batches:
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()
        term = (bn.weight * bn.weight.grad + bn.bias * bn.bias.grad).detach().double()
        per_batch.append(term.abs())
        summed_grad += term
    expected = torch.stack(per_batch).mean(0)
    assert torch.allclose(got["0"], expected, rtol=1e-6, atol=1e-12)
    # Not the product on the batches' accumulated gradient, whose terms partly cancel.
    assert not torch.allclose(got["0"], summed_grad.abs() / len(batches), rtol=1e-3)
    # Only batch-norm terms: the convolution's own weights do not enter where the group has a batch norm.
    assert got["0"].shape == (6,) and got["3"].shape == (4,)


def test_a_group_without_batchnorm_scores_the_weights_that_write_it():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 2)).eval()
    batches = _batches(2, (5,), 2)
    groups = graph_groups(model, build_graph(model, torch.randn(1, 5)))
    got = accumulated_importance(model, groups, batches, F.cross_entropy)
    first = model[0]
    expected = []
    for x, y in batches:
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()
        w = (first.weight * first.weight.grad).sum(1) + first.bias * first.bias.grad
        expected.append(w.detach().double().abs())
    assert torch.allclose(got["0"], torch.stack(expected).mean(0), rtol=1e-6, atol=1e-12)
