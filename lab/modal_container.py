"""What runs inside the Modal containers: the one-off data bake, and one grid cell per fresh container.

The bake writes the WikiText splits onto the data Volume once (one function call, so no two containers ever write
the same files) and commits it; the cells mount that Volume read-only. Like the benchmark's ``submit.py``, a cell
first checks the GPU's NVML total-energy counter and refuses to train without it (its energy would only be the
50 W floor) unless the user allowed that; a refusal is recorded but marked unfinished, so a rerun with the counter
(or with ``--allow-no-energy-counter``) runs the cell. A cell's own failure, and a failure to save its record or
commit the Volume, end in a record (never an exception, which Modal would count against the function): a cell is
never run twice because something after its work failed.

Before any work a cell commits a marker (``<run key>/started/<run folder>``) to the results Volume: a call Modal
loses without that marker never started, so the client may submit it again (:mod:`lab.modal_backend`). Encoded
ids are cached in the container's own temporary folder, not on the Volume: hundreds of MB per tokenizer that no
later container would read.
"""

from __future__ import annotations

import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from eval.data import SPLITS, fetch
from eval.energy import NvmlGpu
from eval.records import RunRecord, utc_now, write_json_atomic
from lab.cell import Cell, CellOptions, run_cell
from lab.compare import run_dir_name
from lab.identity import UNFINISHED
from lab.results import RECORD_FILE

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
        extra={"nvml": counter, UNFINISHED: "refused before training: no energy counter",
               "fix": "run on a GPU whose NVML exposes the total-energy counter, or pass "
                      "--allow-no-energy-counter to accept the 50 W floor"},
    )
    return record.to_dict()


def started_marker(run_key: str, run_name: str) -> str:
    """Where on the results Volume a cell says it started (relative to the Volume's root)."""
    return f"{run_key}/started/{run_name}"


def mark_started(results_dir: str, run_key: str, run_name: str, results_volume: str | None) -> None:
    """Commit the marker before any work, so the client can tell a call lost before it ran from one that ran."""
    write_json_atomic(Path(results_dir) / started_marker(run_key, run_name), {"started_utc": utc_now()})
    if results_volume:
        commit_volume(results_volume)


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
    """One cell: the counter check, then :func:`lab.cell.run_cell` into ``results_dir/run_key/runs/<run folder>``
    (``<cell id>``, or ``<cell id>-r<k>`` for repeat k, as a local grid names it).

    The record (also ``record.json`` there) says which backend ran it and what the counter check found; the
    results Volume is committed before returning, so the client can pull the folder as soon as it has the record.
    Every failure ends in the returned record: the function never raises for Modal to retry.
    """
    grid_cell, cell_options = Cell(**cell), CellOptions(**options)
    run_name = run_dir_name(grid_cell, cell_options)
    run_dir = Path(results_dir) / run_key / "runs" / run_name
    counter = energy_counter_check(probe)
    try:
        mark_started(results_dir, run_key, run_name, results_volume)
        if not counter["ok"] and not allow_no_energy_counter:
            record = refusal_record(grid_cell.id, counter)
        else:
            with tempfile.TemporaryDirectory(prefix="subchar-ids-") as ids_cache:
                record = run_cell(grid_cell, replace(cell_options, ids_cache=ids_cache), run_dir, data_dir)
    except Exception as err:  # the cell's own failure: recorded, not retried, the others go on
        record = failure_record(grid_cell.id, err, "cell_error")
    record["extra"].update(backend="modal", nvml=counter, modal_run=run_key)
    try:
        write_json_atomic(run_dir / RECORD_FILE, record)
        if results_volume:
            commit_volume(results_volume)
    except Exception as err:  # the record still reaches the client; only its folder is missing or partial
        record["extra"]["artifacts_not_saved"] = f"{type(err).__name__}: {err}"
    print(f"subchar: cell {run_name} finished: {outcome(record)}", flush=True)
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
