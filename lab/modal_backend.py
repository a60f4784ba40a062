"""Cells on Modal: one A100-80GB function call per cell, each in a fresh container, failures isolated, artifacts kept.

A run is three steps inside one ``app.run()``, with Modal's output shown (image build, container logs):

1. ``bake_data`` (one call, no GPU) writes the WikiText splits onto the data Volume if they are not there yet and
   commits them: the cells mount that Volume read-only, so no two containers race to write the same files;
2. ``run_cell_in_container.map(cells, return_exceptions=True)``: a fresh container per cell
   (``single_use_containers``) with the CPU cores and memory the cell's phases plan on. Modal retries nothing
   (``retries`` unset): a retry would rerun a hung cell after its 50 min timeout, or a whole cell for an error
   after its work. A call that fails comes back as an exception, paired with its cell by input order. A call Modal
   lost before its cell started (``InternalFailure`` and no start marker on the results Volume) is submitted
   again, at most ``MAX_RESUBMITS`` times; any other failure becomes a disqualified record naming the Modal error
   class, while the other cells finish. Modal's own failures are marked unfinished, so a rerun runs them again; a
   timeout is a result;
3. each cell's run folder (cell.json, tokenizer/, checkpoint/, record.json) is pulled from the results Volume into
   ``OUT/runs/<run folder>`` (the cell id, ``-r<k>`` for repeat k), so ``subchar export`` and ``subchar eval``
   work on it as on a local run.

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
from lab.compare import Backend, run_dir_name
from lab.identity import UNFINISHED
from lab.modal_artifacts import LocalVolume, VolumeFiles, has_file, pull_folder
from lab.modal_container import (
    DATA_MOUNT,
    DATA_VOLUME,
    RESULTS_MOUNT,
    RESULTS_VOLUME,
    bake_data,
    failure_record,
    run_cell_in_container,
    started_marker,
)
from lab.modal_image import build_image, describe_image
from lab.modal_sdk import MODAL_MIN_TEXT, import_modal
from subchar.forking import MAX_PROCESSES

GPU = "A100-80GB"  # the benchmark's card (task.INSTANCE_TYPE)
TIMEOUT_S = 50 * 60  # the benchmark's Modal limit for a whole run
BAKE_TIMEOUT_S = 60 * 60
MAX_RESUBMITS = 2  # rounds of submitting again the calls Modal lost before their cell started
# A cell's container is sized for what its phases plan on. Cores: the encode threads (the planner probes one and
# all cores) and the batch engine's scoring processes (one per core, at most MAX_PROCESSES); 8 is also the A100
# host that scripts/bench_scale.py projects to. Memory: the 540 MB train split as one str (up to 4 bytes a char),
# its id file and tokenizer sample, and a scoring process per core, each with its branch states.
CELL_CPU_CORES = float(MAX_PROCESSES)
CELL_MEMORY_MIB = 32 * 1024


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
    cell = app.function(  # no `retries`: see the module's docstring
        image=image, gpu=gpu, cpu=CELL_CPU_CORES, memory=CELL_MEMORY_MIB, timeout=TIMEOUT_S, serialized=True,
        single_use_containers=True, volumes={DATA_MOUNT: data.read_only(), RESULTS_MOUNT: results},
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
        f"single_use_containers=True, no retries (a call lost before its cell started is submitted again, at most "
        f"{MAX_RESUBMITS} times), cpu={CELL_CPU_CORES:g}, memory={CELL_MEMORY_MIB} MiB, timeout {TIMEOUT_S} s, "
        f"{DATA_MOUNT} read-only, {RESULTS_MOUNT} = volume {RESULTS_VOLUME!r}, "
        f"energy counter {'optional' if allow_no_energy_counter else 'required'}",
    ]
    lines += [f"   cell {run_dir_name(cell, options)}: run_cell_in_container({json.dumps(asdict(cell))})"
              for cell in cells]
    lines += [
        f"3. pull <run>/runs/<run folder> from volume {RESULTS_VOLUME!r} into OUT/runs/<run folder>",
        f"options: {json.dumps(sent, sort_keys=True)}",
        describe_image(),
    ]
    return "\n".join(lines)


def unwrapped(err: BaseException) -> BaseException:
    """The exception itself: modal before 1.4 wraps those returned by ``map(return_exceptions=True)``."""
    inner = getattr(err, "exc", None)
    return inner if type(err).__name__ == "UserCodeException" and isinstance(inner, BaseException) else err


def is_modal_failure(err: BaseException) -> bool:
    """Modal's own failure (internal, lost container, ...), which a rerun may not meet: not a timeout, which would
    hang again, nor an exception from the project's code."""
    exception = import_modal().exception
    return isinstance(err, exception.Error) and not isinstance(err, exception.TimeoutError)


def lost_before_start(cell: Cell, options: CellOptions, output: Any, volume: VolumeFiles, run_key: str) -> bool:
    """Whether Modal lost this call before its cell started: safe to submit again, nothing was done or billed
    for the cell itself."""
    if not isinstance(output, BaseException):
        return False
    internal = isinstance(unwrapped(output), import_modal().exception.InternalFailure)
    return internal and not has_file(volume, started_marker(run_key, run_dir_name(cell, options)))


def settle(cell: Cell, options: CellOptions, output: Any, volume: VolumeFiles, run_key: str,
           out_dir: Path) -> dict[str, Any]:
    """A map output as a record: an exception becomes a disqualified one (unfinished when Modal failed, so a
    rerun runs the cell again); a record gets its run folder pulled."""
    if isinstance(output, BaseException):
        err = unwrapped(output)
        record = failure_record(cell.id, err, "modal_error")
        record["extra"].update(backend="modal", modal_run=run_key)
        if is_modal_failure(err):
            record["extra"][UNFINISHED] = f"Modal failed ({type(err).__name__}); a rerun runs the cell again"
        return record
    name = run_dir_name(cell, options)
    remote = f"{run_key}/runs/{name}"
    try:
        pull_folder(volume, remote, out_dir / "runs" / name)
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
            pending = cells
            for attempt in range(MAX_RESUBMITS + 1):
                outputs = handles.cell.map([asdict(cell) for cell in pending], kwargs=kwargs, order_outputs=True,
                                           return_exceptions=True)
                lost = []
                for cell, output in zip(pending, outputs):
                    if attempt < MAX_RESUBMITS and lost_before_start(cell, options, output, handles.results, run_key):
                        lost.append(cell)
                    else:
                        yield settle(cell, options, output, handles.results, run_key, out_dir)
                if not lost:
                    break
                echo(f"modal: {len(lost)} call(s) lost by Modal before their cell started "
                     f"({', '.join(run_dir_name(cell, options) for cell in lost)}); submitting them again")
                pending = lost
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
            yield settle(cell, options, record, LocalVolume(volume_dir), run_key, out_dir)


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
