"""Benchmark-compatible harness: the CharModel contract, WikiText data, streaming evaluation, energy, run records."""

from eval.contract import CharModel
from eval.data import SplitText, load_split, require_train, val_window
from eval.energy import EnergyMeter, EnergyReport, PhaseEnergy
from eval.errors import UserError
from eval.evaluate import EvalResult, evaluate
from eval.guard import TrainingTimeoutError, wall_clock_guard
from eval.records import RunRecord, write_json_atomic

__all__ = [
    "CharModel",
    "EnergyMeter",
    "EnergyReport",
    "EvalResult",
    "PhaseEnergy",
    "RunRecord",
    "SplitText",
    "TrainingTimeoutError",
    "UserError",
    "evaluate",
    "load_split",
    "require_train",
    "val_window",
    "wall_clock_guard",
    "write_json_atomic",
]
