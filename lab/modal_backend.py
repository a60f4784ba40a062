"""Cells on Modal: one A100-80GB function call per cell, each in a fresh container, failures isolated, artifacts kept.

A run is three steps inside one ``app.run()``, with Modal's output shown (image build, container logs):

1. ``bake_data`` (one call, no GPU) writes the WikiText splits onto the data Volume if they are not there yet and
   commits them: the cells mount that Volume read-only, so no two containers race to write the same files;
2. ``run_cell_in_container.map(cells, return_exceptions=True)``: a fresh container per cell
   (``single_use_containers``), retried by Modal on infrastructure failures (preemption, lost workers); a call that
   still fails (timeout, internal failure) comes back as an exception, paired with its cell by input order, and
   becomes a disqualified record naming the Modal error class, while the other cells finish;
3. each cell's run folder (cell.json, tokenizer/, checkpoint/, record.json) is pulled from the results Volume into
   ``OUT/runs/<cell id>``, so ``subchar export`` and ``subchar eval`` work on it as on a local run.

The image is the benchmark's environment (:mod:`lab.modal_image`); the device is always ``cuda`` there, whatever the
local grid said. ``dry_run`` prints the calls and the image spec without opening ``app.run()``;
``executor="local"`` runs the very same container function in this process, against a local folder standing in
for the results Volume, which is how it is tested offline.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

from eval.errors import UserError
from lab.cell import Cell, CellOptions
from lab.compare import Backend
from lab.modal_artifacts import LocalVolume, VolumeFiles, pull_folder
from lab.modal_container import (
    DATA_MOUNT,
    DATA_VOLUME,
    RESULTS_MOUNT,
    RESULTS_VOLUME,
    bake_data,
    failure_record,
    run_cell_in_container,
)
from lab.modal_image import build_image, describe_image
from lab.modal_sdk import MODAL_MIN_TEXT, import_modal

GPU = "A100-80GB"  # the benchmark's card (task.INSTANCE_TYPE)
TIMEOUT_S = 50 * 60  # the benchmark's Modal limit for a whole run
BAKE_TIMEOUT_S = 60 * 60
MAX_RETRIES = 2  # for preemption and lost workers; a cell's own error is a record, never retried
RETRY_DELAY_S = 10.0


class ModalApp(NamedTuple):
    app: Any
    bake: Any
    cell: Any
    results: Any  # the results Volume, read back by the client


def remote_options(options: CellOptions) -> dict[str, Any]:
    """The grid's options as sent to a container: on the GPU, without progress bars in the logs."""
    return {**options.to_dict(), "device": "cuda", "progress": False}


def new_run_key() -> str:
    """A folder of its own on the results Volume for each `subchar modal` run."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"


def build_app(gpu: str = GPU) -> ModalApp:
    """The Modal app, its two functions and the results Volume; building them needs `modal` but no network."""
    modal = import_modal()
    image = build_image(modal)
    app = modal.App("subchar")
    data = modal.Volume.from_name(DATA_VOLUME, create_if_missing=True)
    results = modal.Volume.from_name(RESULTS_VOLUME, create_if_missing=True)
    bake = app.function(image=image, volumes={DATA_MOUNT: data}, timeout=BAKE_TIMEOUT_S, serialized=True)(bake_data)
    cell = app.function(
        image=image, gpu=gpu, timeout=TIMEOUT_S, serialized=True, single_use_containers=True,
        retries=modal.Retries(max_retries=MAX_RETRIES, initial_delay=RETRY_DELAY_S, backoff_coefficient=1.0),
        volumes={DATA_MOUNT: data.read_only(), RESULTS_MOUNT: results},
    )(run_cell_in_container)
    return ModalApp(app, bake, cell, results)


def describe(cells: list[Cell], options: CellOptions, gpu: str = GPU, allow_no_energy_counter: bool = False) -> str:
    """The calls a run makes and the image they run in, for ``--dry-run``."""
    sent = remote_options(options)
    lines = [
        f"modal app 'subchar' (modal>={MODAL_MIN_TEXT}), inside modal.enable_output() and app.run():",
        f"1. bake_data() on volume {DATA_VOLUME!r} at {DATA_MOUNT}: writes wiki.{{train,valid,test}}.raw from the "
        "Hub once, then commits (one call; quick when the splits are there)",
        f"2. run_cell_in_container.map({len(cells)} cell(s), order_outputs=True, return_exceptions=True) on {gpu}: "
        f"single_use_containers=True, retries={MAX_RETRIES}, timeout {TIMEOUT_S} s, "
        f"{DATA_MOUNT} read-only, {RESULTS_MOUNT} = volume {RESULTS_VOLUME!r}, "
        f"energy counter {'optional' if allow_no_energy_counter else 'required'}",
    ]
    lines += [f"   cell {cell.id}: run_cell_in_container({json.dumps(asdict(cell))})" for cell in cells]
    lines += [
        f"3. pull <run>/runs/<cell> from volume {RESULTS_VOLUME!r} into OUT/runs/<cell>",
        f"options: {json.dumps(sent, sort_keys=True)}",
        describe_image(),
    ]
    return "\n".join(lines)


def unwrapped(err: BaseException) -> BaseException:
    """The exception itself: modal before 1.4 wraps those returned by ``map(return_exceptions=True)``."""
    inner = getattr(err, "exc", None)
    return inner if type(err).__name__ == "UserCodeException" and isinstance(inner, BaseException) else err


def settle(cell: Cell, output: Any, volume: VolumeFiles, run_key: str, out_dir: Path) -> dict[str, Any]:
    """A map output as a record: an exception becomes a disqualified one; a record gets its run folder pulled."""
    if isinstance(output, BaseException):
        record = failure_record(cell.id, unwrapped(output), "modal_error")
        record["extra"].update(backend="modal", modal_run=run_key)
        return record
    remote = f"{run_key}/runs/{cell.id}"
    try:
        pull_folder(volume, remote, out_dir / "runs" / cell.id)
    except Exception as err:  # the record is still good: say where its files are instead
        output["extra"]["artifacts_not_pulled"] = (f"{type(err).__name__}: {err}; fetch them with "
                                                   f"`modal volume get {RESULTS_VOLUME} {remote}`")
    return output


def modal_failure(err: BaseException) -> UserError:
    """A whole-run failure (not one cell's) as one line naming the likely fix."""
    name = type(err).__name__
    fix = {
        "AuthError": "run `modal token new`",
        "ConnectionError": "check the network",
        "NotFoundError": "check the Modal workspace and environment (`modal profile current`)",
    }.get(name, "see Modal's output above")
    return UserError(f"Modal run failed ({name}: {err}); {fix}; finished cells were kept")


def run_remote(handles: ModalApp, cells: list[Cell], options: CellOptions, out_dir: Path, gpu: str,
               allow_no_energy_counter: bool, echo: Callable[[str], None]) -> Iterator[dict[str, Any]]:
    modal = import_modal()
    run_key = new_run_key()
    kwargs = {"options": remote_options(options), "run_key": run_key,
              "allow_no_energy_counter": allow_no_energy_counter}
    echo(f"modal: {len(cells)} cell(s) on {gpu}; their folders go to volume {RESULTS_VOLUME!r} under {run_key}/ "
         f"and come back into {out_dir}/runs")
    try:
        with modal.enable_output(), handles.app.run():
            ready = handles.bake.remote()
            echo(f"modal: data volume {DATA_VOLUME!r} holds {', '.join(Path(path).name for path in ready)}")
            outputs = handles.cell.map([asdict(cell) for cell in cells], kwargs=kwargs, order_outputs=True,
                                       return_exceptions=True)
            for cell, output in zip(cells, outputs):
                yield settle(cell, output, handles.results, run_key, out_dir)
    except (modal.exception.Error, ConnectionError) as err:
        raise modal_failure(err) from err


def run_here(cells: list[Cell], options: CellOptions, out_dir: Path, allow_no_energy_counter: bool,
             data_dir: str) -> Iterator[dict[str, Any]]:
    """The container function in this process, a temporary folder standing in for the results Volume."""
    run_key = new_run_key()
    with tempfile.TemporaryDirectory(prefix="subchar-results-volume-") as volume_dir:
        for cell in cells:
            record = run_cell_in_container(asdict(cell), remote_options(options), run_key, allow_no_energy_counter,
                                           data_dir, volume_dir, results_volume=None)
            yield settle(cell, record, LocalVolume(volume_dir), run_key, out_dir)


def modal_backend(
    out_dir: str | Path,
    executor: str = "modal",
    gpu: str = GPU,
    dry_run: bool = False,
    allow_no_energy_counter: bool = False,
    data_dir: str = DATA_MOUNT,
    echo: Callable[[str], None] = print,
) -> Backend:
    """A compare backend writing run folders into ``out_dir/runs``: ``executor='modal'`` maps the cells over
    remote GPUs; ``'local'`` runs the same container function here."""
    if executor not in ("modal", "local"):
        raise UserError(f"unknown executor {executor!r}; use modal or local")
    out = Path(out_dir)

    def run(cells: list[Cell], options: CellOptions) -> Iterator[dict[str, Any]]:
        if not cells:  # no image build, no app for nothing
            echo(f"modal: every cell is already in {out}; nothing to run")
            return
        if dry_run:
            build_app(gpu)  # the version check and the image description, offline
            echo(describe(cells, options, gpu, allow_no_energy_counter))
            return
        if executor == "local":
            yield from run_here(cells, options, out, allow_no_energy_counter, data_dir)
            return
        yield from run_remote(build_app(gpu), cells, options, out, gpu, allow_no_energy_counter, echo)

    return run
