"""Cells on Modal: one A100-80GB function call per cell, fanned out in parallel, records streamed back.

The benchmark itself runs on Modal's A100-80GB, so this is where subchar's energy figures are comparable to the
leaderboard's. The image installs the project's dependencies and ships the five packages as local sources; the
WikiText splits live on a Modal volume, filled on first use by ``eval.data.fetch`` from the Hub. ``dry_run``
builds the app (no network) and prints what it would run; ``executor="local"`` calls the very same function in
this process, which is how it is tested offline.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any, Callable, Iterator

from eval.errors import UserError
from eval.data import fetch
from lab.cell import Cell, CellOptions, run_cell

GPU = "A100-80GB"
VOLUME = "subchar-wikitext"
DATA_MOUNT = "/data"
TIMEOUT_S = 50 * 60  # the benchmark's Modal limit for a whole run
PACKAGES = ("lab", "subchar", "eval", "zoo", "tokenizers_local")
REQUIREMENTS = (
    "torch==2.5.1", "numpy", "tokenizers", "tiktoken", "sentencepiece", "datasets", "pyarrow",
    "nvidia-ml-py", "codecarbon~=3.2", "tqdm", "matplotlib",
)


def run_cell_in_container(cell: dict[str, Any], options: dict[str, Any], data_dir: str = DATA_MOUNT) -> dict[str, Any]:
    """The remote body: make sure the splits are on the volume, then run the cell like the local backend."""
    fetch(data_dir)
    return run_cell(Cell(**cell), CellOptions(**options), f"/tmp/subchar-runs/{Cell(**cell).id}", data_dir)


def build_app(gpu: str = GPU):
    """The Modal app and its function; building them needs the `modal` package but no network."""
    try:  # optional extra `modal`: imported only when a Modal app is built
        import modal
    except ImportError:
        raise UserError("the Modal backend needs the `modal` package: pip install 'subchar[modal]'") from None
    image = (
        modal.Image.debian_slim(python_version="3.11")
        .pip_install(*REQUIREMENTS)
        .add_local_python_source(*PACKAGES)
    )
    app = modal.App("subchar")
    volume = modal.Volume.from_name(VOLUME, create_if_missing=True)
    function = app.function(image=image, gpu=gpu, timeout=TIMEOUT_S, volumes={DATA_MOUNT: volume}, serialized=True)(
        run_cell_in_container
    )
    return app, function


def describe(cells: list[Cell], options: CellOptions, gpu: str = GPU) -> str:
    """What a run would do, for ``--dry-run``."""
    lines = [
        f"modal app 'subchar': {len(cells)} function call(s) on {gpu}, timeout {TIMEOUT_S} s each, in parallel",
        f"image: debian_slim python 3.11 + {' '.join(REQUIREMENTS)} + local packages {', '.join(PACKAGES)}",
        f"data: volume {VOLUME!r} at {DATA_MOUNT} (filled from the Hub by `subchar data fetch` on first use)",
        f"options: {json.dumps(options.to_dict(), sort_keys=True)}",
    ]
    lines += [f"  cell {cell.id}: run_cell({json.dumps(asdict(cell))})" for cell in cells]
    return "\n".join(lines)


def modal_backend(
    executor: str = "modal", gpu: str = GPU, dry_run: bool = False, data_dir: str = DATA_MOUNT, echo=print
) -> Callable[[list[Cell], CellOptions], Iterator[dict[str, Any]]]:
    """A compare backend: ``executor='modal'`` maps cells over remote A100s; ``'local'`` runs the same function here."""
    if executor not in ("modal", "local"):
        raise UserError(f"unknown executor {executor!r}; use modal or local")

    def run(cells: list[Cell], options: CellOptions) -> Iterator[dict[str, Any]]:
        app, function = build_app(gpu)
        if dry_run:
            echo(describe(cells, options, gpu))
            return
        remote_options = {**options.to_dict(), "progress": False}
        if executor == "local":
            for cell in cells:
                yield function.local(asdict(cell), remote_options, data_dir)
            return
        try:
            with app.run():
                yield from function.map(
                    [asdict(cell) for cell in cells], [remote_options] * len(cells), order_outputs=False
                )
        except Exception as err:  # the SDK raises its own types for auth and network failures
            if type(err).__module__.startswith("modal"):
                raise UserError(f"Modal run failed ({type(err).__name__}: {err}); check `modal token new` and the network") from None
            raise

    return run
