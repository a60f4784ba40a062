"""Whether ``torch.compile`` pays back inside a training budget, from its measured cost and speedup.

``train()`` is metered as a whole, so compiling is charged: it is worth it only when the steps it speeds up save
more seconds than it costs. With ``c`` seconds of compilation and compiled steps ``s`` times as fast as eager ones,
``B`` seconds of training do ``(B - c) * s`` eager steps' work compiled against ``B`` eager: compile iff
``c < B * (1 - 1 / s)``, that is iff the budget exceeds the break-even ``c / (1 - 1 / s)``.

``c`` and ``s`` are measured, per model and device class, by ``scripts/bench_train.py --compare compile``
(:data:`MEASURED`, with the machine each came from). Where no measurement exists the run stays eager: the cost of a
cold compile is certain (tens of seconds), its gain is not. So does a run of a fixed step count (``max_steps``, a
replayed schedule), whose payback depends on steps, not seconds. ``TrainSettings.compile`` overrides the rule.
Standard library only: exported submissions inline this module.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class Payback(NamedTuple):
    """One measurement: the first compiled step's seconds and compiled over eager steps' tokens/s."""

    compile_s: float
    speedup: float
    machine: str


# (model, device class) -> measurement; device class as :func:`device_class` names it
# (bench_train --seconds 90 --threads 1 --compare compile; mamba's compiled run passed its 90 s budget: no entry)
MEASURED: dict[tuple[str, str], Payback] = {
    ("transformer", "cpu"): Payback(22.8, 1.070, "2 CPU cores, 1 thread, 90 s runs, no other job"),
    ("hyena", "cpu"): Payback(16.1, 1.103, "2 CPU cores, 1 thread, 90 s runs, no other job"),
}
# device classes, matched in order on the lower-cased device name (as zoo.hardware's peak table is)
GPU_CLASSES = ("h200", "h100", "a100")


def device_class(device_type: str, device_name: str | None) -> str | None:
    """"cpu", a GPU's class from its name ("h100", ...), or None for a GPU no class names."""
    if device_type == "cpu":
        return "cpu"
    name = (device_name or "").lower()
    return next((key for key in GPU_CLASSES if key in name), None)


def break_even_s(compile_s: float, speedup: float) -> float:
    """The budget at which compiling breaks even (infinite when compiled steps are no faster)."""
    return compile_s / (1.0 - 1.0 / speedup) if speedup > 1.0 else float("inf")


def compile_choice(model_name: str, device_type: str, device_name: str | None, seconds: float,
                   setting: bool | None, fixed_steps: bool = False) -> dict[str, Any]:
    """The decision for ``seconds`` of training, as a record: ``compile`` (bool), ``why`` and the measurement."""
    if setting is not None:
        return {"compile": setting, "why": "TrainSettings.compile", "measured": None}
    if fixed_steps:
        return {"compile": False, "why": "a fixed step count: eager", "measured": None}
    key = (model_name, device_class(device_type, device_name))
    measured = MEASURED.get(key)  # type: ignore[arg-type]
    if measured is None:
        return {"compile": False, "why": f"no measured payback for {model_name} on {key[1] or device_name}: eager",
                "measured": None}
    even = break_even_s(measured.compile_s, measured.speedup)
    pays = seconds > even
    return {"compile": pays, "why": f"break-even {even:,.0f} s {'<' if pays else '>='} {seconds:,.0f} s left",
            "measured": measured._asdict()}
