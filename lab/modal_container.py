"""What runs inside the Modal containers: the one-off data bake, and one grid cell per fresh container.

The bake writes the WikiText splits onto the data Volume once (one function call, so no two containers ever write
the same files) and commits it; the cells mount that Volume read-only. Like the benchmark's ``submit.py``, a cell
first checks the GPU's NVML total-energy counter and refuses to train without it (its energy would only be the
50 W floor) unless the user allowed that. A cell's own failure becomes a disqualified record naming the error
class, with the traceback kept: it is not retried (it would fail again) and it does not stop the other cells.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path
from typing import Any, Callable

from eval.data import SPLITS, fetch
from eval.energy import NvmlGpu
from eval.records import RunRecord, write_json_atomic
from lab.cell import Cell, CellOptions, run_cell

DATA_MOUNT = "/data"
RESULTS_MOUNT = "/results"
DATA_VOLUME = "subchar-wikitext"
RESULTS_VOLUME = "subchar-results"
NO_COUNTER = "no_energy_counter"


def commit_volume(name: str) -> None:
    """Make this container's writes to Volume ``name`` visible to others; nothing to do outside Modal."""
    import modal  # in the image; only the Modal containers get here with is_local() False

    if not modal.is_local():
        modal.Volume.from_name(name).commit()


def bake_data(data_dir: str = DATA_MOUNT, volume: str | None = DATA_VOLUME) -> list[str]:
    """Write the missing ``wiki.<split>.raw`` files (from the Hub) and commit them; quick when all are there."""
    written = [str(path) for path in fetch(data_dir, SPLITS)]
    if volume:
        commit_volume(volume)
    return written


def nvml_probe() -> dict[str, Any]:
    """The benchmark's ``verify_nvml`` question: is the total-energy counter exposed, and does it count up?"""
    gpu = NvmlGpu()  # reads the counter once at start: an unsupported counter raises here
    before = gpu.energy_J()
    time.sleep(1.0)
    after = gpu.energy_J()
    if after < before:
        raise RuntimeError(f"the energy counter went backwards ({before:.1f} J then {after:.1f} J)")
    return {"gpu_name": gpu.name, "counter_J": after}


def energy_counter_check(probe: Callable[[], dict[str, Any]] = nvml_probe) -> dict[str, Any]:
    """``{"ok": True, ...}`` with the counter's facts, or ``{"ok": False, "reason": ...}`` saying why not."""
    try:
        return {"ok": True, **probe()}
    except Exception as err:  # NVML raises its own error types, pynvml may be missing: all mean "no counter"
        return {"ok": False, "reason": f"{type(err).__name__}: {err}"}


def failure_record(cell_id: str, err: BaseException, origin: str) -> dict[str, Any]:
    """A disqualified record for a cell that produced none; ``reason`` names the error class, ``extra.error``
    keeps the message and the whole traceback (causes included)."""
    record = RunRecord(
        submission=cell_id, training_energy_J=None, training_duration_s=0.0, cpu_energy_J=None,
        total_energy_J=None, val_char_accuracy=None, val_chars=0, gpu_name=None, disqualified=True,
        reason=f"{origin}: {type(err).__name__}",
        extra={"error": {
            "class": f"{type(err).__module__}.{type(err).__qualname__}",
            "message": str(err),
            "traceback": "".join(traceback.format_exception(err)),
        }},
    )
    return record.to_dict()


def refusal_record(cell_id: str, counter: dict[str, Any]) -> dict[str, Any]:
    record = RunRecord(
        submission=cell_id, training_energy_J=None, training_duration_s=0.0, cpu_energy_J=None,
        total_energy_J=None, val_char_accuracy=None, val_chars=0, gpu_name=None, disqualified=True,
        reason=NO_COUNTER,
        extra={"nvml": counter, "fix": "run on a GPU whose NVML exposes the total-energy counter, or pass "
                                        "--allow-no-energy-counter to accept the 50 W floor"},
    )
    return record.to_dict()


def run_cell_in_container(
    cell: dict[str, Any],
    options: dict[str, Any],
    run_key: str,
    allow_no_energy_counter: bool = False,
    data_dir: str = DATA_MOUNT,
    results_dir: str = RESULTS_MOUNT,
    results_volume: str | None = RESULTS_VOLUME,
    probe: Callable[[], dict[str, Any]] = nvml_probe,
) -> dict[str, Any]:
    """One cell: the counter check, then :func:`lab.cell.run_cell` into ``results_dir/run_key/runs/<cell id>``.

    The record (also ``record.json`` there) says which backend ran it and what the counter check found; the
    results Volume is committed before returning, so the client can pull the folder as soon as it has the record.
    """
    grid_cell = Cell(**cell)
    run_dir = Path(results_dir) / run_key / "runs" / grid_cell.id
    counter = energy_counter_check(probe)
    if not counter["ok"] and not allow_no_energy_counter:
        record = refusal_record(grid_cell.id, counter)
    else:
        try:
            record = run_cell(grid_cell, CellOptions(**options), run_dir, data_dir)
        except Exception as err:  # the cell's own failure: recorded, not retried, the others go on
            record = failure_record(grid_cell.id, err, "cell_error")
    record["extra"].update(backend="modal", nvml=counter, modal_run=run_key)
    write_json_atomic(run_dir / "record.json", record)
    if results_volume:
        commit_volume(results_volume)
    print(f"subchar: cell {grid_cell.id} finished: {outcome(record)}", flush=True)
    return record


def outcome(record: dict[str, Any]) -> str:
    """One line about a record, for progress output."""
    accuracy = record.get("val_char_accuracy")
    energy = record.get("total_energy_J")
    parts = [f"val acc {accuracy:.4f}" if accuracy is not None else "no score",
             f"{energy:,.0f} J" if energy is not None else "energy unmeasured"]
    if record.get("disqualified"):
        parts.append(f"DQ ({record.get('reason')})")
    return ", ".join(parts)
