"""The Modal backend offline: version bound, image spec, per-cell failure isolation, artifacts round trip, re-run
semantics and progress, with Modal's network calls (app.run, Function.remote/map, Volume reads) replaced by fakes
and a local folder standing in for the results Volume."""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import inspect
import json
import re
import shlex
import sys
import tomllib
from dataclasses import replace
from importlib.metadata import packages_distributions
from pathlib import Path
from typing import NamedTuple

import modal
import modal.exception
import pytest

import lab.identity as identity_module
import lab.modal_backend as backend_module
import lab.modal_container as container_module
import lab.modal_image as image_module
from eval.errors import UserError
from lab.cell import Cell, CellOptions, mamba_scan
from lab.cli import build_parser, main
from lab.commands.grid import REMOTE_TRAIN
from lab.compare import RESULTS, compare, grid, load_grid, read_results, run_dir_name, save_grid
from lab.identity import cell_identity, identity_key
from lab.modal_artifacts import LocalVolume, pull_folder
from lab.modal_backend import build_app, describe, modal_backend
from lab.modal_container import NO_COUNTER, run_cell_in_container
from lab.modal_image import BENCHMARK_PINS, CUDA_DEVEL_BASE, build_image
from lab.modal_sdk import MODAL_MIN, check_modal_version, import_modal
from test_compare import OPTIONS, fixture_dir

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
QUICKSTART_CELLS = ["char-kn", "bytebpe2048-ngram", "unigram2048-ngram"]


def modal_identity(gpu: str = "A100-80GB", allow_no_energy_counter: bool = False) -> str:
    return identity_module.modal_backend_identity(gpu, allow_no_energy_counter)


def finished(cell: Cell, options, backend: str) -> dict:
    """A finished record of ``cell`` as compare stamps it: identified by its settings and backend."""
    train = "local train text" if backend == "local" else REMOTE_TRAIN
    return {"submission": cell.id, "extra": {"cell_key": identity_key(cell_identity(cell, options, train, backend))}}


def quickstart_folder(tmp_path: Path, data_dir: str = "../shared/wikitext") -> Path:
    """A folder as `subchar quickstart` leaves it: grid.json for its three cells, local device cpu."""
    folder = tmp_path / "quickstart"
    cells = grid(["bytebpe:2048", "unigram:2048"], ["ngram"])
    save_grid(folder, cells, OPTIONS.__class__(**{**OPTIONS.to_dict(), "device": "cpu"}), data_dir, None)
    return folder


# 1. the minimum modal version


@pytest.mark.parametrize("version", ["0.64.0", "0.66.12", "0.67.28", "1.2.6"])
def test_too_old_modal_is_one_line_naming_the_upgrade(version):
    with pytest.raises(UserError) as caught:
        check_modal_version(version)
    message = str(caught.value)
    assert "\n" not in message and f"modal {version} is too old" in message
    assert "pip install -U 'modal>=1.3.0,<2'" in message


@pytest.mark.parametrize("version", ["1.3.0", "1.3.0.post1", "1.6.4", "1.10.0"])
def test_recent_modal_passes(version, monkeypatch):
    monkeypatch.setattr("lab.modal_sdk.metadata.version", lambda name: version)
    assert import_modal() is modal  # the check import_modal runs accepts it
    assert check_modal_version(version) is None


def test_old_modal_stops_the_dry_run_with_that_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("lab.modal_sdk.metadata.version", lambda name: "0.66.0")
    assert main(["modal", str(quickstart_folder(tmp_path)), "--dry-run"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: modal 0.66.0 is too old for the Modal backend (it needs 1.3.0+ for single_use_containers); "
        "pip install -U 'modal>=1.3.0,<2'")


def test_the_bound_is_the_first_release_with_single_use_containers():
    """Installed modal (>= the bound) has every API the backend calls; 1.2.6 had no single_use_containers."""
    assert tuple(int(p) for p in modal.__version__.split(".")[:3]) >= MODAL_MIN
    assert "single_use_containers" in inspect.signature(modal.App.function).parameters
    assert "return_exceptions" in inspect.signature(modal.Function.map).parameters
    for owner, name in [(modal.Volume, "read_only"), (modal.Volume, "commit"), (modal.Volume, "listdir"),
                        (modal.Volume, "read_file"), (modal.Image, "add_local_python_source"),
                        (modal.Image, "from_registry"), (modal, "enable_output"), (modal, "Retries")]:
        assert hasattr(owner, name), name
    assert import_modal() is modal


# 2. the image: the benchmark's environment plus the fused Mamba kernels


class Recorder:
    """Stands in for modal.Image: records the calls made on it."""

    def __init__(self, calls=None):
        self.calls = calls if calls is not None else []

    def __getattr__(self, method):
        def call(*args, **kwargs):
            self.calls.append((method, args, kwargs))
            return self
        return call


def test_build_image_applies_exactly_the_described_calls():
    fake = type("FakeModal", (), {"Image": Recorder()})
    build_image(fake)
    assert fake.Image.calls == [tuple(call) for call in image_module.image_calls()]


def test_the_image_installs_pyprojects_runtime_dependencies_with_the_benchmark_pins():
    """One source of truth: every runtime dependency (and the `cuda` extra) is installed, at the benchmark's pin
    where it has one; a pin for a dependency that pyproject no longer declares is a mistake."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["cuda"]]
    names = {image_module.distribution_name(requirement) for requirement in declared}
    calls = image_module.image_calls()
    installed = [arg for call in calls if call.method == "pip_install" for arg in call.args]
    assert names <= image_module.installed_distributions(calls)
    pins = {**image_module.BENCHMARK_PINS, **image_module.KERNEL_PINS}
    assert set(pins) <= names
    for requirement in declared:
        name = image_module.distribution_name(requirement)
        assert pins.get(name, requirement) in installed, requirement
    assert "greenlet>=3" in installed and not any(arg.startswith("torch>=") for arg in installed)


def test_a_missing_pyproject_is_one_line_naming_the_fix(tmp_path):
    with pytest.raises(UserError, match=r"no pyproject.toml at .*; run subchar from a source checkout"):
        image_module.image_calls(tmp_path / "pyproject.toml")


# Imports the walk cannot map through this environment's installed distributions, with where they come from.
NOT_INSTALLED_HERE = {
    "mamba_ssm": "mamba-ssm",  # the cuda extra: built in the image, not installable without CUDA
    "causal_conv1d": "causal-conv1d",
    "selective_scan_cuda": "mamba-ssm",  # mamba-ssm's compiled extension
}
PROVIDED_BY_MODAL = {"modal"}  # Modal adds its client to every container it runs


class RuntimeImports(ast.NodeVisitor):
    """Every module a source file imports at run time (any depth, function bodies too; not under TYPE_CHECKING)."""

    def __init__(self, module: str, is_package: bool) -> None:
        self.package = module if is_package else module.rpartition(".")[0]
        self.names: set[str] = set()

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        if getattr(test, "id", None) == "TYPE_CHECKING" or getattr(test, "attr", None) == "TYPE_CHECKING":
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.names.update(alias.name for alias in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            parts = self.package.split(".")[: len(self.package.split(".")) - node.level + 1]
            base = ".".join(parts + ([node.module] if node.module else []))
        self.names.add(base)
        self.names.update(f"{base}.{alias.name}" for alias in node.names)  # `from package import module`


def is_module(name: str) -> bool:
    """Whether ``name`` is a module (``from package import name`` also imports names that are not)."""
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a name inside a module, not a submodule
        return False


def third_party_imports(start: str) -> dict[str, str]:
    """The third-party top-level modules reachable from ``start`` through the project's own modules, each with
    the project module that imports it."""
    seen, todo, found = set(), [start], {}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        spec = importlib.util.find_spec(name)
        visitor = RuntimeImports(name, spec.submodule_search_locations is not None)
        visitor.visit(ast.parse(Path(spec.origin).read_text(encoding="utf-8")))
        for imported in visitor.names:
            parts = imported.split(".")
            if parts[0] in image_module.PACKAGES:  # the project's sources, which the image adds
                prefixes = (".".join(parts[:end]) for end in range(1, len(parts) + 1))
                todo += [prefix for prefix in prefixes if is_module(prefix)]
            elif parts[0] not in sys.stdlib_module_names and parts[0] != "__future__":
                found.setdefault(parts[0], name)
    return found


def test_every_third_party_import_of_a_cell_is_installed_in_the_image():
    """What a cell imports in the container (from lab.modal_container down, function-level imports too) must be
    in the image: a cell once trained and then failed there for want of greenlet."""
    imports = third_party_imports("lab.modal_container")
    assert {"torch", "numpy", "greenlet", "tiktoken"} <= set(imports)  # the walk reaches the engine and the models
    installed = image_module.installed_distributions(image_module.image_calls())
    by_module = packages_distributions()
    missing = []
    for module, importer in sorted(imports.items()):
        if module in PROVIDED_BY_MODAL:
            continue
        names = by_module.get(module) or ([NOT_INSTALLED_HERE[module]] if module in NOT_INSTALLED_HERE else [])
        if not names:
            missing.append(f"{module} (imported by {importer}; not installed here: install it, or name its "
                           "distribution in NOT_INSTALLED_HERE)")
        elif not {image_module.distribution_name(name) for name in names} & installed:
            missing.append(f"{module} (imported by {importer}; distribution {', '.join(names)})")
    assert not missing, f"the Modal image does not install: {'; '.join(missing)}"


def test_dry_run_lists_the_three_quickstart_cells_and_the_image_spec(tmp_path, capsys, monkeypatch):
    def no_run(self, **kwargs):
        raise AssertionError("a dry run must not open app.run()")

    monkeypatch.setattr(modal.App, "run", no_run)
    folder = quickstart_folder(tmp_path)
    assert main(["modal", str(folder), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "run_cell_in_container.map(3 cell(s), order_outputs=True, return_exceptions=True) on A100-80GB" in out
    assert [line.split(":")[0].split()[-1] for line in out.splitlines() if line.startswith("   cell ")] == QUICKSTART_CELLS
    image = out[out.index("image: "):].splitlines()
    assert image[0] == f'image: modal.Image.from_registry("{CUDA_DEVEL_BASE}", add_python="3.11")'
    assert "-devel-" in CUDA_DEVEL_BASE and CUDA_DEVEL_BASE.startswith("nvidia/cuda:12.4")
    assert image[1] == '  .pip_install("torch==2.5.1", index_url="https://download.pytorch.org/whl/cu124")'
    pins = next(line for line in image if "numpy==" in line)
    for pin in ("numpy==2.1.3", "nvidia-ml-py==12.560.30", "pyarrow==18.1.0", "tiktoken==0.7.0", "codecarbon~=3.2"):
        assert f'"{pin}"' in pins and pin in BENCHMARK_PINS.values()
    kernels = next(index for index, line in enumerate(image) if "mamba-ssm" in line)
    assert image[kernels] == ('  .pip_install("mamba-ssm==2.2.4", "causal-conv1d==1.5.0.post8", '
                              '"huggingface-hub>=0.23,<1", extra_options="--no-build-isolation")')
    assert image.index(pins) < kernels < len(image) - 1  # its own cached layer, under the project's sources
    assert image[-1] == '  .add_local_python_source("lab", "subchar", "eval", "zoo", "tokenizers_local")'
    assert '"device": "cuda"' in out  # the local grid said cpu
    assert "single_use_containers=True, no retries" in out and "cpu=8, memory=32768 MiB" in out
    assert "/data read-only" in out
    assert not (folder / "modal").exists()  # a dry run writes nothing


def app_functions(monkeypatch) -> tuple[dict[str, dict], list]:
    """build_app() with modal.App.function recording its keyword arguments per function, and the read-only
    views it makes of Volumes."""
    seen = {}
    real = modal.App.function

    def recording(self, *args, **kwargs):
        decorate = real(self, *args, **kwargs)

        def wrap(fn):
            seen[fn.__name__] = kwargs
            return decorate(fn)
        return wrap

    read_only = []
    real_read_only = modal.Volume.read_only
    monkeypatch.setattr(modal.Volume, "read_only", lambda self: read_only.append(real_read_only(self)) or read_only[-1])
    monkeypatch.setattr(modal.App, "function", recording)
    build_app()
    return seen, read_only


def test_build_app_asks_modal_for_fresh_containers_and_a_read_only_data_volume(monkeypatch):
    seen, read_only = app_functions(monkeypatch)
    cell, bake = seen["run_cell_in_container"], seen["bake_data"]
    assert cell["single_use_containers"] is True and cell["gpu"] == "A100-80GB" and cell["timeout"] == 3000
    assert "gpu" not in bake
    assert read_only == [cell["volumes"]["/data"]] and bake["volumes"]["/data"] is not read_only[0]


def test_modal_never_retries_a_cell(monkeypatch):
    """A Modal retry reruns a hung cell after its 50 min timeout (3 x 50 min with retries=2) and a whole cell for
    an error after its work: no retry policy at all (a call lost before it started is resubmitted by the client)."""
    seen, _ = app_functions(monkeypatch)
    assert seen["run_cell_in_container"].get("retries") is None


def test_a_cell_gets_the_cores_and_memory_its_phases_plan_on(monkeypatch):
    from subchar.forking import MAX_PROCESSES

    seen, _ = app_functions(monkeypatch)
    cell = seen["run_cell_in_container"]
    assert cell.get("cpu") == MAX_PROCESSES and cell.get("memory") == 32 * 1024
    assert (backend_module.CELL_CPU_CORES, backend_module.CELL_MEMORY_MIB) == (cell["cpu"], cell["memory"])


def test_mamba_records_say_which_scan_ran(monkeypatch):
    from zoo import mamba

    model = mamba.Model(mamba.Config(vocab_size=20, n_layer=1, d_model=16))
    model.blocks[0].mixer.use_fused = False
    assert mamba_scan(model, "cuda") == "torch"
    monkeypatch.setattr(mamba, "selective_scan_fn", object())
    model.blocks[0].mixer.use_fused = True
    assert mamba_scan(model, "cuda:0") == "fused" and mamba_scan(model, "cpu") == "torch"


# 3. per-cell isolation, 5. re-run semantics, 6. progress: Function.map replaced by a fake


def timed_out() -> BaseException:
    """A FunctionTimeoutError with a cause, as the SDK raises it."""
    try:
        try:
            raise OSError("worker lost after 3000 s")
        except OSError as cause:
            raise modal.exception.FunctionTimeoutError("Function timed out") from cause
    except modal.exception.FunctionTimeoutError as err:
        return err


class Lost(NamedTuple):
    """A call the fake map fails with ``error``; ``started``: its container had committed the start marker."""

    error: BaseException
    started: bool


@pytest.fixture
def fake_modal(tmp_path, monkeypatch):
    """app.run() opens nothing, bake.remote() is counted, map runs the container function here (volume = a local
    folder) except for the cells named in `fail` (an exception: lost before it started; a Lost; or a list of
    those, one per call, running the cell when it is used up), Volume reads go to that folder."""
    data, _ = fixture_dir(tmp_path)
    train = (tmp_path / "train.raw").read_text(encoding="utf-8")
    (data / "wiki.train.raw").write_text(train, encoding="utf-8")  # the baked volume holds the real train split
    volume = tmp_path / "volume"
    state = {"bakes": 0, "maps": [], "fail": {}}

    monkeypatch.setattr(modal.App, "run", lambda self, **kw: contextlib.nullcontext(self))

    def remote(self, *args, **kwargs):
        state["bakes"] += 1
        return [f"/data/wiki.{split}.raw" for split in ("train", "valid", "test")]

    def fake_map(self, cells, kwargs={}, order_outputs=True, return_exceptions=False, **rest):
        cells = list(cells)
        state["maps"].append({"cells": cells, "kwargs": kwargs, "order_outputs": order_outputs,
                              "return_exceptions": return_exceptions})
        for cell in cells:
            failure = state["fail"].get(Cell(**cell).id)
            if isinstance(failure, list):
                failure = failure.pop(0) if failure else None
            if isinstance(failure, BaseException):
                failure = Lost(failure, started=False)
            if failure is not None:
                assert return_exceptions  # otherwise map would raise here and lose the other cells
                if failure.started:
                    name = run_dir_name(Cell(**cell), CellOptions(**kwargs["options"]))
                    marker = volume / container_module.started_marker(kwargs["run_key"], name)
                    marker.parent.mkdir(parents=True, exist_ok=True)
                    marker.write_text("{}")
                yield failure.error
            else:
                here = {**kwargs["options"], "device": "cpu"}  # sent for cuda (asserted); run on this machine's CPU
                yield run_cell_in_container(cell, **{**kwargs, "options": here, "allow_no_energy_counter": True},
                                            data_dir=str(data), results_dir=str(volume), results_volume=None)

    local = LocalVolume(volume)
    monkeypatch.setattr(modal.Function, "remote", remote)
    monkeypatch.setattr(modal.Function, "map", fake_map)
    monkeypatch.setattr(modal.Volume, "listdir", lambda self, path, recursive=False: local.listdir(path, recursive=recursive))
    monkeypatch.setattr(modal.Volume, "read_file", lambda self, path: local.read_file(path))
    state["data"] = data
    return state


def grid_folder(tmp_path, data, cells) -> Path:
    folder = tmp_path / "grid"
    save_grid(folder, cells, OPTIONS, str(data), None)
    (folder / RESULTS).write_text("".join(json.dumps({"submission": c.id, "total_energy_J": 1.0}) + "\n"
                                          for c in cells), encoding="utf-8")  # all done locally already
    return folder


def test_a_failing_and_a_timed_out_cell_become_records_and_the_others_finish(tmp_path, fake_modal, capsys):
    cells = [Cell("char-kn"), Cell("ngram", "unigram", 300), Cell("ngram", "bytebpe", 280)]
    folder = grid_folder(tmp_path, fake_modal["data"], cells)
    internal = modal.exception.InternalFailure("container crashed")
    fake_modal["fail"] = {"unigram300-ngram": Lost(internal, started=True), "bytebpe280-ngram": timed_out()}
    assert main(["modal", str(folder)]) == 0

    assert fake_modal["bakes"] == 1  # one bake, before the cells
    (call,) = fake_modal["maps"]
    assert call["order_outputs"] is True and call["return_exceptions"] is True
    assert call["kwargs"]["options"]["device"] == "cuda" and call["kwargs"]["allow_no_energy_counter"] is False
    assert len(call["cells"]) == 3  # every cell, though all were done locally: the Modal folder is its own

    records = {r["submission"]: r for r in read_results(folder / "modal" / RESULTS)}
    assert set(records) == {"char-kn", "unigram300-ngram", "bytebpe280-ngram"}
    assert all(r["extra"]["backend"] == "modal" for r in records.values())
    assert records["char-kn"]["val_char_accuracy"] > 0 and records["char-kn"]["proxy_train"] is False
    assert (folder / "modal" / "runs" / "char-kn" / "record.json").is_file()
    timeout, crash = records["bytebpe280-ngram"], records["unigram300-ngram"]
    assert timeout["disqualified"] and timeout["reason"] == "modal_error: FunctionTimeoutError"
    assert crash["disqualified"] and crash["reason"] == "modal_error: InternalFailure"
    assert timeout["extra"]["error"]["class"] == "modal.exception.FunctionTimeoutError"
    assert "worker lost after 3000 s" in timeout["extra"]["error"]["traceback"]  # the cause is kept
    assert crash["extra"]["error"]["message"] == "container crashed"

    out = capsys.readouterr().out
    assert "modal: data volume 'subchar-wikitext' holds wiki.train.raw, wiki.valid.raw, wiki.test.raw" in out
    assert "[1/3] char-kn: val acc" in out
    assert "[3/3] bytebpe280-ngram: no score, energy unmeasured, DQ (modal_error: FunctionTimeoutError)" in out
    assert "| unigram300-ngram" in out  # the table at the end
    assert json.loads((folder / "modal" / "grid.json").read_text())["cells"][0]["model"] == "char-kn"


def test_a_cells_own_error_is_its_record_with_the_traceback(tmp_path, fake_modal, monkeypatch):
    def broken(cell, *args, **kwargs):
        if cell.id == "char-kn":
            raise ValueError("order must be positive")
        return real(cell, *args, **kwargs)

    real = run_cell_in_container.__globals__["run_cell"]
    monkeypatch.setattr("lab.modal_container.run_cell", broken)
    folder = grid_folder(tmp_path, fake_modal["data"], [Cell("char-kn"), Cell("ngram", "bytebpe", 300)])
    assert main(["modal", str(folder), "--out", str(tmp_path / "elsewhere")]) == 0
    records = {r["submission"]: r for r in read_results(tmp_path / "elsewhere" / RESULTS)}
    assert records["char-kn"]["reason"] == "cell_error: ValueError"
    assert "order must be positive" in records["char-kn"]["extra"]["error"]["traceback"]
    assert records["bytebpe300-ngram"]["val_char_accuracy"] is not None, records["bytebpe300-ngram"]["extra"]
    assert records["bytebpe300-ngram"]["val_char_accuracy"] > 0


def test_a_run_wide_failure_names_the_fix_and_keeps_the_cause(tmp_path, fake_modal, monkeypatch, capsys):
    def refused(self, **kwargs):
        raise modal.exception.AuthError("Token missing")

    monkeypatch.setattr(modal.App, "run", refused)
    run = modal_backend(tmp_path / "out", echo=lambda line: None)
    with pytest.raises(UserError, match=r"AuthError: Token missing\); run `modal token new`") as caught:
        list(run([Cell("char-kn")], OPTIONS))
    assert isinstance(caught.value.__cause__, modal.exception.AuthError)


def test_rerun_skips_only_cells_already_in_the_modal_folder(tmp_path, capsys):
    folder = quickstart_folder(tmp_path)
    cells, options, _ = load_grid(folder)
    (folder / RESULTS).write_text("".join(json.dumps(finished(cell, options, "local")) + "\n" for cell in cells))
    (folder / "modal").mkdir()
    stale = {**finished(cells[0], options, modal_identity()), "extra": {"cell_key": "from other settings"}}
    (folder / "modal" / RESULTS).write_text("".join(json.dumps(r) + "\n" for r in (
        finished(cells[0], options, modal_identity()), stale)))
    assert main(["modal", str(folder), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "1 of 3 run(s) already in" in out and "map(2 cell(s)" in out and "   cell char-kn" not in out


def test_a_finished_modal_folder_opens_no_app(tmp_path, fake_modal, monkeypatch, capsys):
    folder = grid_folder(tmp_path, fake_modal["data"], [Cell("char-kn")])
    assert main(["modal", str(folder)]) == 0
    monkeypatch.setattr(modal.App, "run", lambda self, **kw: pytest.fail("app.run() opened with nothing to run"))
    assert main(["modal", str(folder)]) == 0
    assert "nothing to run" in capsys.readouterr().out and fake_modal["bakes"] == 1


def test_a_run_folder_reruns_its_one_cell(tmp_path, capsys):
    from lab.cell import run_cell

    data, train = fixture_dir(tmp_path)
    run_cell(Cell("char-kn"), OPTIONS, tmp_path / "runs" / "char-kn", str(data), str(train))
    assert main(["modal", str(tmp_path / "runs" / "char-kn"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "map(1 cell(s)" in out and "   cell char-kn: " in out


def test_no_energy_counter_refuses_unless_allowed(tmp_path):
    data, train = fixture_dir(tmp_path)
    (data / "wiki.train.raw").write_text(train.read_text(encoding="utf-8"), encoding="utf-8")

    def no_counter():
        raise RuntimeError("NVML Shared Library Not Found")

    common = dict(options=OPTIONS.to_dict(), run_key="k", data_dir=str(data), results_dir=str(tmp_path / "vol"),
                  results_volume=None, probe=no_counter)
    refused = run_cell_in_container({"model": "char-kn"}, **common)
    assert refused["disqualified"] and refused["reason"] == NO_COUNTER and refused["val_char_accuracy"] is None
    assert "NVML Shared Library Not Found" in refused["extra"]["nvml"]["reason"]
    assert "--allow-no-energy-counter" in refused["extra"]["fix"]
    allowed = run_cell_in_container({"model": "char-kn"}, allow_no_energy_counter=True, **common)
    assert allowed["val_char_accuracy"] > 0 and allowed["extra"]["nvml"]["ok"] is False
    assert refused["extra"]["unfinished"] and "unfinished" not in allowed["extra"]


def data_with_train(tmp_path: Path) -> Path:
    """The fixture splits in one folder, as the baked data Volume holds them (the real train split included)."""
    data, train = fixture_dir(tmp_path)
    (data / "wiki.train.raw").write_text(train.read_text(encoding="utf-8"), encoding="utf-8")
    return data


def test_a_transformer_cell_trains_and_scores_in_the_container(tmp_path, monkeypatch):
    """A neural cell through the container function, beside the char-kn and n-gram ones: its scoring runs the
    batch engine (greenlets), which once failed there after the training."""
    monkeypatch.setenv("SUBCHAR_PROCESSES", "1")
    tiny = {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 32}
    options = replace(OPTIONS, budget_s=6, eval_chars=100, test_chars=0, overrides={"transformer": tiny})
    record = run_cell_in_container({"model": "transformer", "family": "bytebpe", "vocab_size": 300},
                                   options.to_dict(), "k", allow_no_energy_counter=True,
                                   data_dir=str(data_with_train(tmp_path)), results_dir=str(tmp_path / "vol"),
                                   results_volume=None)
    assert not record["reason"] or not record["reason"].startswith("cell_error"), record["extra"].get("error")
    assert record["model"]["name"] == "transformer" and record["model"]["config"]["n_embd"] == 16
    assert record["eval_engine"] == "batch" and record["val_chars"] == 100 and record["val_char_accuracy"] > 0
    assert (tmp_path / "vol" / "k" / "runs" / "bytebpe300-transformer" / "checkpoint").is_dir()


@pytest.mark.parametrize("failing", ["record.json", "commit"])
def test_a_failure_after_the_cells_work_is_in_its_record_never_a_rerun(tmp_path, monkeypatch, failing):
    """Writing record.json or committing the Volume failing must not raise (Modal would run the cell again)."""
    run_dir = tmp_path / "vol" / "k" / "runs" / "char-kn"
    real_write = container_module.write_json_atomic

    def write(path, obj):
        if failing == "record.json" and Path(path).name == "record.json":
            raise OSError("No space left on device")
        real_write(path, obj)

    def commit(name):
        if failing == "commit" and (run_dir / "record.json").is_file():  # the cell is done: its final commit
            raise OSError("commit refused")

    monkeypatch.setattr(container_module, "write_json_atomic", write)
    monkeypatch.setattr(container_module, "commit_volume", commit)
    record = run_cell_in_container({"model": "char-kn"}, OPTIONS.to_dict(), "k", allow_no_energy_counter=True,
                                   data_dir=str(data_with_train(tmp_path)), results_dir=str(tmp_path / "vol"),
                                   results_volume="subchar-results")
    assert record["val_char_accuracy"] > 0 and not record["reason"]
    assert record["extra"]["artifacts_not_saved"].startswith("OSError: ")


def test_encoded_ids_stay_in_the_container_not_on_the_results_volume(tmp_path):
    """The id cache is hundreds of MB per tokenizer that no later container reads: never on the results Volume."""
    volume = tmp_path / "vol"
    record = run_cell_in_container({"model": "ngram", "family": "bytebpe", "vocab_size": 300}, OPTIONS.to_dict(),
                                   "k", allow_no_energy_counter=True, data_dir=str(data_with_train(tmp_path)),
                                   results_dir=str(volume), results_volume=None)
    assert record["val_char_accuracy"] > 0
    files = [path.relative_to(volume / "k") for path in volume.rglob("*") if path.is_file()]
    assert {path.parts[:2] for path in files} == {("runs", "bytebpe300-ngram"), ("started", "bytebpe300-ngram")}
    assert {path.parts[2] for path in files if path.parts[0] == "runs"} == {
        "cell.json", "record.json", "tokenizer", "checkpoint"}


def test_a_call_lost_before_its_cell_started_is_submitted_again_never_one_that_ran(tmp_path, fake_modal, capsys):
    cells = [Cell("char-kn"), Cell("ngram", "bytebpe", 300), Cell("ngram", "unigram", 300)]
    folder = grid_folder(tmp_path, fake_modal["data"], cells)
    fake_modal["fail"] = {
        "char-kn": [modal.exception.InternalFailure("no worker")],  # lost before it started, once
        "bytebpe300-ngram": [Lost(modal.exception.InternalFailure("container crashed"), started=True)],
        "unigram300-ngram": [timed_out()],  # a hung cell: never again
    }
    assert main(["modal", str(folder)]) == 0
    assert [[Cell(**cell).id for cell in call["cells"]] for call in fake_modal["maps"]] == [
        [cell.id for cell in cells], ["char-kn"]]
    records = {r["submission"]: r for r in read_results(folder / "modal" / RESULTS)}
    assert records["char-kn"]["val_char_accuracy"] > 0
    crashed, hung = records["bytebpe300-ngram"], records["unigram300-ngram"]
    assert crashed["reason"] == "modal_error: InternalFailure" and crashed["extra"]["unfinished"]
    assert hung["reason"] == "modal_error: FunctionTimeoutError" and "unfinished" not in hung["extra"]
    assert "1 call(s) lost by Modal before their cell started (char-kn); submitting them again" in capsys.readouterr().out


def test_resubmitting_is_bounded(tmp_path, fake_modal):
    folder = grid_folder(tmp_path, fake_modal["data"], [Cell("char-kn")])
    fake_modal["fail"] = {"char-kn": modal.exception.InternalFailure("no worker")}  # every time
    assert main(["modal", str(folder)]) == 0
    assert len(fake_modal["maps"]) == 3 and backend_module.MAX_RESUBMITS == 2  # submitted, then twice again
    (record,) = read_results(folder / "modal" / RESULTS)
    assert record["reason"] == "modal_error: InternalFailure" and record["extra"]["unfinished"]


def test_modal_failures_run_again_on_a_rerun_a_timeout_does_not(tmp_path, fake_modal):
    folder = grid_folder(tmp_path, fake_modal["data"], [Cell("char-kn"), Cell("ngram", "bytebpe", 300)])
    fake_modal["fail"] = {"char-kn": modal.exception.InternalFailure("no worker"), "bytebpe300-ngram": timed_out()}
    assert main(["modal", str(folder)]) == 0
    fake_modal["fail"] = {}
    assert main(["modal", str(folder)]) == 0
    assert [Cell(**cell).id for cell in fake_modal["maps"][-1]["cells"]] == ["char-kn"]
    saved = read_results(folder / "modal" / RESULTS)
    current = {r["submission"]: r for r in saved if not r["extra"].get("superseded")}
    assert current["char-kn"]["val_char_accuracy"] > 0 and "unfinished" not in current["char-kn"]["extra"]
    assert current["bytebpe300-ngram"]["reason"] == "modal_error: FunctionTimeoutError"
    assert [r["extra"].get("unfinished") is not None for r in saved if r["submission"] == "char-kn"] == [True, False]


def test_a_refusal_for_want_of_an_energy_counter_is_not_finished(tmp_path, monkeypatch):
    """Its message says to rerun with --allow-no-energy-counter or on another card; a rerun as it was tries again."""
    monkeypatch.setattr(container_module, "energy_counter_check",
                        lambda probe: {"ok": False, "reason": "NVMLError_NotSupported: Not Supported"})
    out = tmp_path / "out"
    local = modal_backend(out, executor="local", data_dir=str(data_with_train(tmp_path)))
    asked = []

    def backend(cells, options):
        asked.append([cell.id for cell in cells])
        yield from local(cells, options)

    for _ in range(2):
        (record,), _, _ = compare([Cell("char-kn")], OPTIONS, out, backend, train_sha256=REMOTE_TRAIN,
                                  backend_name="modal")
        assert record["reason"] == NO_COUNTER
    assert asked == [["char-kn"], ["char-kn"]]


def test_another_gpu_or_allowing_no_energy_counter_runs_the_cells_again(tmp_path, fake_modal, capsys):
    """An H100 record is not an A100 result, nor one scored on the 50 W floor one that had the counter."""
    folder = grid_folder(tmp_path, fake_modal["data"], [Cell("char-kn")])
    assert main(["modal", str(folder)]) == 0
    capsys.readouterr()
    assert main(["modal", str(folder), "--dry-run"]) == 0
    assert "nothing to run" in capsys.readouterr().out
    assert main(["modal", str(folder), "--dry-run", "--gpu", "H100"]) == 0
    assert "map(1 cell(s), order_outputs=True, return_exceptions=True) on H100" in capsys.readouterr().out
    assert main(["modal", str(folder), "--dry-run", "--allow-no-energy-counter"]) == 0
    assert "map(1 cell(s)" in capsys.readouterr().out


def test_each_repeat_keeps_its_run_folder(tmp_path):
    out = tmp_path / "out"
    run = modal_backend(out, executor="local", data_dir=str(data_with_train(tmp_path)), allow_no_energy_counter=True)
    records, _, _ = compare([Cell("char-kn")], OPTIONS, out, run, repeats=2, train_sha256=REMOTE_TRAIN,
                            backend_name="modal")
    assert [r["extra"]["repeat"] for r in records] == [0, 1]
    assert sorted(path.name for path in (out / "runs").iterdir()) == ["char-kn", "char-kn-r1"]
    for name, seed in (("char-kn", OPTIONS.seed), ("char-kn-r1", OPTIONS.seed + 1)):
        assert json.loads((out / "runs" / name / "cell.json").read_text())["options"]["seed"] == seed


def test_subchar_modal_runs_every_repeat_of_the_grid(tmp_path, fake_modal):
    folder = tmp_path / "grid"
    save_grid(folder, [Cell("char-kn")], OPTIONS, str(fake_modal["data"]), None, repeats=2)
    assert main(["modal", str(folder)]) == 0
    assert [call["kwargs"]["options"]["seed"] for call in fake_modal["maps"]] == [OPTIONS.seed, OPTIONS.seed + 1]
    records = read_results(folder / "modal" / RESULTS)
    assert sorted(r["extra"]["repeat"] for r in records) == [0, 1]
    assert (folder / "modal" / "runs" / "char-kn-r1" / "record.json").is_file()
    assert json.loads((folder / "modal" / "grid.json").read_text())["repeats"] == 2


def test_compare_dry_run_on_modal_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(modal.App, "run", lambda self, **kw: pytest.fail("a dry run must not open app.run()"))
    out = tmp_path / "cmp"
    assert main(["compare", "--tokenizers", "bytebpe:300", "--models", "ngram", "transformer", "--out", str(out),
                 "--backend", "modal", "--dry-run", "--repeats", "2"]) == 0
    assert not out.exists()
    printed = capsys.readouterr().out
    assert printed.count("run_cell_in_container.map(3 cell(s)") == 2
    assert "   cell bytebpe300-transformer-r1: " in printed


@pytest.mark.parametrize("flags", [["--data-dir", "data"], ["--train-file", "train.raw"],
                                   ["--data-dir", "data", "--train-file", "train.raw"]])
def test_local_data_flags_with_the_modal_backend_are_refused(tmp_path, capsys, flags):
    out = tmp_path / "cmp"
    code = main(["compare", "--tokenizers", "bytebpe:300", "--models", "ngram", "--out", str(out),
                 "--backend", "modal", "--dry-run", *flags])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "to local runs only (Modal cells read the real WikiText" in err
    assert f"drop {' and '.join(flag for flag in flags if flag.startswith('--'))}" in err
    assert not out.exists()


def test_dry_run_without_the_modal_backend_is_refused(tmp_path, capsys):
    data, train = fixture_dir(tmp_path)
    out = tmp_path / "cmp"
    code = main(["compare", "--tokenizers", "bytebpe:300", "--models", "ngram", "--out", str(out), "--data-dir",
                 str(data), "--train-file", str(train), "--budget", "10", "--eval-chars", "100", "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and "--dry-run plans Modal calls: add --backend modal" in err and not out.exists()


# 4. artifacts: the run folder comes back, and export / eval work on it


def test_artifacts_round_trip_through_a_volume_folder(tmp_path, capsys):
    data, train = fixture_dir(tmp_path)
    (data / "wiki.train.raw").write_text(train.read_text(encoding="utf-8"), encoding="utf-8")
    out = tmp_path / "out"
    run = modal_backend(out, executor="local", data_dir=str(data), allow_no_energy_counter=True)
    (record,) = run([Cell("ngram", "bytebpe", 300)], OPTIONS)
    folder = out / "runs" / "bytebpe300-ngram"
    assert json.loads((folder / "record.json").read_text()) == record
    assert record["extra"]["backend"] == "modal" and record["submission"] == "bytebpe300-ngram"
    assert (folder / "tokenizer").is_dir() and (folder / "checkpoint").is_dir() and (folder / "cell.json").is_file()

    assert main(["export", str(folder), "--out", str(tmp_path / "submission")]) == 0
    assert (tmp_path / "submission" / "submission.py").is_file()
    assert main(["eval", str(folder / "checkpoint"), "--split", "valid", "--chars", "200", "--data-dir", str(data),
                 "--mode", "spec", "--json", str(tmp_path / "eval.json")]) == 0
    assert json.loads((tmp_path / "eval.json").read_text())["val_chars"] == 200


def test_pull_copies_every_file_byte_for_byte_and_is_whole_or_absent(tmp_path):
    source = tmp_path / "vol" / "run1" / "runs" / "c"
    (source / "checkpoint").mkdir(parents=True)
    (source / "checkpoint" / "weights.bin").write_bytes(bytes(range(256)) * 10)
    (source / "record.json").write_text("{}")
    written = pull_folder(LocalVolume(tmp_path / "vol"), "run1/runs/c", tmp_path / "local" / "c")
    assert sorted(p.relative_to(tmp_path / "local" / "c").as_posix() for p in written) == [
        "checkpoint/weights.bin", "record.json"]
    assert (tmp_path / "local" / "c" / "checkpoint" / "weights.bin").read_bytes() == bytes(range(256)) * 10
    with pytest.raises(UserError, match="has no run1/runs/missing"):
        pull_folder(LocalVolume(tmp_path / "vol"), "run1/runs/missing", tmp_path / "local" / "missing")
    assert not (tmp_path / "local" / "missing").exists()


def test_a_record_whose_files_cannot_be_pulled_says_where_they_are(tmp_path):
    record = {"submission": "c", "extra": {}}
    kept = backend_module.settle(Cell("c"), replace(OPTIONS, repeat=2), record, LocalVolume(tmp_path), "run1",
                                 tmp_path / "out")
    assert kept is record and "modal volume get subchar-results run1/runs/c-r2" in kept["extra"]["artifacts_not_pulled"]


def test_a_wrapped_returned_exception_is_unwrapped():
    from synchronicity.exceptions import UserCodeException  # what modal 1.3 returns around the real error

    inner = modal.exception.InternalFailure("x")
    assert backend_module.unwrapped(UserCodeException(inner)) is inner
    assert backend_module.unwrapped(inner) is inner


# 7. the README section's commands are the ones these tests drive


def test_readme_running_on_modal_commands_parse():
    section = README[README.index("## Running on Modal"):]
    section = section[:section.index("\n## ", 3)]
    commands = [line.strip() for line in re.findall(r"```bash\n(.*?)```", section, re.S)[0].splitlines()
                if line.strip().startswith("subchar ")]
    for line in commands:
        build_parser().parse_args(shlex.split(line.split("  #")[0])[1:])
    driven = {"subchar modal runs/quickstart --dry-run", "subchar modal runs/quickstart/runs/char-kn",
              "subchar modal runs/quickstart"}
    assert driven <= {line.split("  #")[0].strip() for line in commands}
    assert "pip install -e '.[modal]'" in section and "modal token new" in section


def test_describe_is_what_the_dry_run_prints():
    printed = []
    cells = [Cell("ngram", "bytebpe", 300)]
    assert list(modal_backend("unused", dry_run=True, echo=printed.append)(cells, OPTIONS)) == []
    assert printed == [describe(cells, OPTIONS)]
