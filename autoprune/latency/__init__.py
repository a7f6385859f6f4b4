"""Latency lookup tables: profile a device, predict a pruned config's latency, validate the prediction."""
from .measure import measure_model_ms, measure_models_ms, measure_shares
from .predict import LatencyPredictor
from .table import LatencyTable

__all__ = ["LatencyTable", "LatencyPredictor", "measure_model_ms", "measure_models_ms", "measure_shares"]
