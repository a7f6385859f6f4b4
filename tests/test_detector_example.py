"""examples/detector_backbone.py's pieces on a Faster R-CNN with random weights: its backbone is searched (the FPN's
outputs, which the heads read, stay whole), prunes exactly, and the detector runs with the pruned backbone."""
import random
import sys
from pathlib import Path

import torch

from autoprune.models.specs import from_module
from autoprune.pruning.prune import prune
from autoprune.pruning.space import build_space
from autoprune.pruning.verify import verify_space

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
import detector_backbone as example  # noqa: E402


def test_a_detectors_backbone_prunes_exactly_and_the_detector_runs_with_it():
    torch.manual_seed(0)
    full = example.detector()
    features = example.BackboneFeatures(full.backbone).eval()
    space = build_space(from_module(features, input_shape=(3, 64, 64)))
    names = {g.name for g in space.searchable}
    assert "backbone.fpn.inner_blocks.0.0" in names and len(names) >= 20
    assert not any(name.startswith("backbone.fpn.layer_blocks") for name in names)  # the heads' input stays
    assert verify_space(features, space, trials=1) == []
    pruned = prune(features, space, space.random_config(random.Random(0)))
    x = torch.randn(1, 3, 64, 64)
    assert pruned(x).shape == features(x).shape
    detector = example.with_backbone(full, pruned)
    with torch.no_grad():
        found = detector([torch.rand(3, 96, 128)])[0]
    assert set(found) == {"boxes", "labels", "scores"} and found["boxes"].shape[1] == 4
    assert sum(p.numel() for p in detector.parameters()) < sum(p.numel() for p in full.parameters())
