"""LatencyPredictor: config -> milliseconds, from a table's entries and the model's calibration.

    ms = a * (dense kernels' ms) + b * (depthwise kernels' ms) + c * weight MB + d * activation MB
         + k * (kernels run) + e

(the features and why: runner.CALIBRATION_FEATURES). Each coefficient is applied to the feature of its
name, as the table stores them (runner.calibration_coef, which also reads version 1's list form). The
search calls predict() thousands of times, so each layer memoizes its (cin, cout) -> contribution to the
features; after the first visit of a channel pair a call is a few dict look-ups and additions per layer.
"""
from __future__ import annotations

import math
import warnings

from ..errors import AutopruneError
from ..pruning.blocks import BLOCK
from ..pruning.space import Config, SearchSpace
from .layout import activation_mb, channels, model_key, weight_mb
from .runner import CALIBRATION_FEATURES, calibrated_ms, calibration_coef, kernel_feature, zero_features
from .signature import Signature
from .table import LatencyTable, warn_if_disturbed

NEIGHBOURS = 4


class ForeignTableWarning(UserWarning):
    """A table measured on a machine whose fingerprint differs from this one's."""


class LatencyPredictor:
    def __init__(self, table: LatencyTable, space: SearchSpace, strict: bool = False):
        self.table, self.space, self.strict = table, space, strict
        self.key = model_key(space)
        model = table.model(self.key)
        if model["groups"] != space.channel_widths():
            raise AutopruneError(
                f"the table's layout of {self.key} has other channel groups than this search space "
                "(another model version or input size?): profile it again"
            )
        uncalibrated = [g.name for g in space.searchable_of(BLOCK) if g.name not in model.get("blocks", [])]
        if uncalibrated:
            raise AutopruneError(
                f"the table's calibration of {self.key} never removed block {uncalibrated[0]} (it was profiled without "
                "--depth), so it mispredicts models without it: profile the model with --depth into a table"
            )
        cal = model.get("calibration")
        if cal is None:
            raise AutopruneError(f"the table's {self.key} has no calibration: its profile did not finish")
        self.coef = calibration_coef(cal)
        if self.coef is None or set(self.coef) != set(CALIBRATION_FEATURES):
            raise AutopruneError(f"the table's calibration of {self.key} is not one this autoprune reads (it needs "
                                 f"a coefficient for each of {', '.join(CALIBRATION_FEATURES)}): profile it again")
        moved = table.foreign()
        if moved:
            warnings.warn(f"table {table.path or ''} was measured on another machine or runtime ({'; '.join(moved)}): "
                          "its latencies are that setup's; for this one run `autoprune rescale` (seconds) or profile "
                          "here", ForeignTableWarning, stacklevel=2)
        elif "profiles" not in model:  # a foreign table's check says nothing of this machine; the cache said
            warn_if_disturbed(model.get("validation"), space.model, table.path)  # its own once, when it kept it
        self.layers = model["layers"]
        self.full = space.full_config()
        self.least = {g.name: 0 if g.kind == BLOCK else 1 for g in space.groups}
        self._memo: list[dict] = [{} for _ in self.layers]
        self._families: dict | None = None

    def _layer_cost(self, i: int, cin: int, cout: int) -> tuple[float, str, float, float]:
        """(entry ms, the feature it adds to: dense_ms or depthwise_ms, weight MB, activation MB)."""
        memo = self._memo[i]
        if (cin, cout) not in memo:
            layer = self.layers[i]
            key = str(Signature.of(layer, cin, cout))
            memo[(cin, cout)] = (self._entry_ms(key), kernel_feature(key), weight_mb(layer, cin, cout),
                                 activation_mb(layer, cin))
        return memo[(cin, cout)]

    def _complete(self, config: Config) -> Config:
        full = dict(self.full)
        for name, kept in config.items():
            if name not in full:
                raise AutopruneError(f"unknown group '{name}' for {self.key}")
            least = self.least[name]
            if not isinstance(kept, int) or not least <= kept <= full[name]:
                raise AutopruneError(f"group '{name}': kept must be an integer in {least}..{full[name]}, got {kept!r}")
        full.update(config)
        return full

    def _costs(self, config: Config):
        full = self._complete(config)
        off = self.space.switched_off(full)
        for i, layer in enumerate(self.layers):
            if layer["name"] in off:  # a removed block's layers run nothing
                continue
            yield layer["name"], self._layer_cost(i, channels(layer["in"], full), channels(layer["out"], full))

    def features(self, config: Config) -> dict[str, float]:
        """The calibration's features of a config (runner.CALIBRATION_FEATURES), before its coefficients."""
        features = zero_features()
        for _, (ms, kind, mb, act) in self._costs(config):
            features[kind] += ms
            features["weight_mb"] += mb
            features["activation_mb"] += act
            features["kernels"] += 1
        return features

    def predict(self, config: Config) -> float:
        """Predicted ms of one forward pass at the table's batch size; unnamed groups stay whole."""
        return calibrated_ms(self.coef, self.features(config))

    def breakdown(self, config: Config) -> dict[str, float]:
        """Per-layer ms (its kind's calibration slope applied) plus the weight, activation and constant
        terms of the calibration; the parts sum to predict(config)."""
        parts, weights, acts, kernels = {}, 0.0, 0.0, 0
        for name, (ms, kind, mb, act) in self._costs(config):
            parts[name] = self.coef[kind] * ms
            weights += mb
            acts += act
            kernels += 1
        parts["(weight streaming)"] = self.coef["weight_mb"] * weights
        parts["(layout conversions of micro-benchmarks)"] = self.coef["activation_mb"] * acts
        parts["(per kernel run: the entries' own run overhead)"] = self.coef["kernels"] * kernels
        parts["(overhead: calls, layers between)"] = self.coef["const"]
        return parts

    # ------------------------------------------------------------ missing entries

    def _entry_ms(self, key: str) -> float:
        entry = self.table.entries.get(key)
        if entry is not None:
            return entry["ms"]
        if self.strict:
            raise AutopruneError(f"kernel {key} is not in the table (strict mode): profile this search space onto it")
        ms = self._interpolate(key)
        warnings.warn(f"kernel {key} is not in the table: interpolated {ms:.4f} ms from its neighbours", stacklevel=4)
        return ms

    def _interpolate(self, key: str) -> float:
        """Scales the nearest measured kernels of the same family (equal but for channels) by their MAC
        ratio, and averages them weighted by closeness in log-channels."""
        if self._families is None:
            self._families = {}
            for k, e in self.table.entries.items():
                s = Signature.parse(k)
                self._families.setdefault(s.family, []).append((s.cin, s.cout, e["ms"]))
        wanted = Signature.parse(key)
        family = self._families.get(wanted.family, [])
        if not family:
            raise AutopruneError(f"kernel {key} is not in the table and no kernel like it is: profile this model")
        cin, cout = wanted.cin, wanted.cout
        linear = wanted.scales_with_channels

        def macs(i: int, o: int) -> int:
            return i if linear else i * o

        def dist(n):
            return math.hypot(math.log(n[0] / cin), math.log(n[1] / cout))

        nearest = sorted(family, key=dist)[:NEIGHBOURS]
        weights = [1 / (dist(n) + 1e-6) for n in nearest]
        estimates = [n[2] * macs(cin, cout) / macs(n[0], n[1]) for n in nearest]
        return sum(w * e for w, e in zip(weights, estimates)) / sum(weights)
