"""What a subchar folder holds, read from its JSON files alone: ``subchar show PATH``.

Why: a newcomer meets tokenizer folders, checkpoints, run folders and compare folders, each with its own manifest
or record; this answers "what is this, how was it made, how well did it do, what did it cost" for any of them in
well under a second. It reads JSON only (no weights, no checksums of large files, no torch), so it works on a
machine without the heavy libraries, and it refuses anything it cannot read with one line naming the fix.

Kinds, as ``lab.commands.folders.folder_kind`` tells them apart:

- ``tokenizer``: ``manifest.json`` with ``format`` ``subchar-tokenizer`` (``tokenizers_local.base``);
- ``checkpoint``: ``manifest.json`` with ``format`` ``subchar-checkpoint`` (``zoo.checkpoint``), plus its
  ``train_record.json`` (``subchar train``) and ``eval_*.json`` records (``subchar eval``);
- ``run``: a grid cell's folder, ``cell.json`` and (once finished) ``record.json`` (``lab.cell``);
- ``compare``: a compare folder, ``grid.json`` and ``results.jsonl`` (``lab.compare``);
- ``record``: one run record file (``eval.records.RunRecord``), e.g. ``quickstart --json``'s.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eval.errors import UserError
from lab.commands.folders import (
    COMPARE_FILES,
    NOUNS,
    RUN_FILE,
    SAVED_MANIFEST,
    TRAIN_RECORD,
    folder_kind,
    read_saved,
    saved_adapt,
)
from lab.report import ACC_MIN, table_markdown, winner
from lab.results import RECORD_FILE, read_results

# Spelled out because importing their modules loads torch (as TRAIN_RECORD is, in lab.commands.folders);
# tests/test_show.py keeps them equal to lab.checkpoint_runs and zoo.checkpoint.
CHECKPOINT_TOKENIZER = "tokenizer"
RECORD, GRID, RESULTS = RECORD_FILE, *COMPARE_FILES
WHAT = "a tokenizer, checkpoint, run (cell.json) or compare (grid.json) folder, or a run record file"
NOT_RECORDED = "not recorded"


def show(path: str | Path) -> dict[str, Any]:
    """Everything shown about ``path``, as plain JSON data: ``kind``, ``settings``, ``scores``, ``energy``,
    ``provenance`` (and ``runs`` for a compare folder)."""
    target = Path(path).expanduser()
    if not target.exists():
        raise UserError(f"{target} does not exist; pass {WHAT}")
    if target.is_file():
        if target.suffix != ".json" and target.name not in COMPARE_FILES:
            raise UserError(f"{target} is not a run record (a .json file); pass {WHAT}")
        if target.name not in (SAVED_MANIFEST, RUN_FILE, *COMPARE_FILES):
            return {"path": str(target), "kind": "record", **record_view(read_record(target, "pass a run record file"))}
        target = target.parent
    kind = folder_kind(target)
    if kind in ("tokenizer", "checkpoint"):
        folder, manifest = read_saved(target, kind)
        view = tokenizer_view if kind == "tokenizer" else checkpoint_view
        fix = f"delete {folder} and make it again"
        parts = checked(kind, folder / SAVED_MANIFEST, fix, view, folder, manifest)
        return {"path": str(folder), "kind": kind, **parts}
    if kind == "run":
        return run_view(target)
    if kind == "compare":
        return grid_view(target)
    if kind == "export":
        raise UserError(f"{target} is a {NOUNS[kind]}; run its file as the benchmark would with "
                        f"`subchar harness {target / 'submission.py'}`")
    if (target / SAVED_MANIFEST).is_file():  # there, but not JSON or of no format subchar writes
        manifest = read_json(target / SAVED_MANIFEST, f"delete {target} and make it again")
        fmt = manifest.get("format") if isinstance(manifest, dict) else None
        raise UserError(f"{target / SAVED_MANIFEST} is not a subchar tokenizer or checkpoint manifest "
                        f"(format {fmt!r}); pass {WHAT}")
    raise UserError(f"{target} is not a subchar folder: it holds no {SAVED_MANIFEST}, {RUN_FILE}, {GRID} or "
                    f"{RESULTS}; pass {WHAT}")


# --- reading -------------------------------------------------------------------------------------------------
def read_json(path: Path, fix: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{path} is corrupt (not JSON); {fix}") from None
    except OSError as err:
        raise UserError(f"cannot read {path} ({err.strerror}); {fix}") from None


def read_record(path: Path, fix: str) -> dict[str, Any]:
    record = read_json(path, fix)
    if not isinstance(record, dict) or "submission" not in record or "val_char_accuracy" not in record:
        raise UserError(f"{path} is not a subchar run record; {fix}")
    return record


def checked(kind: str, path: Path, fix: str, build, *args) -> dict[str, Any]:
    """``build(*args)``; a file that parses but lacks a field or has the wrong types is a one-line error."""
    try:
        return build(*args)
    except (KeyError, TypeError, AttributeError, ValueError) as err:
        raise UserError(f"{path} is not a complete subchar {kind} ({type(err).__name__}: {err}); {fix}") from None


# --- the kinds -----------------------------------------------------------------------------------------------
def tokenizer_view(folder: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    if not (folder / manifest["backend_file"]).is_file():
        raise UserError(f"{folder} lacks its {manifest['backend_file']}; delete the folder and train it again")
    return {
        "settings": {"family": manifest["family"], "vocab_size": manifest["vocab_size"],
                     "requested_vocab_size": manifest["requested_vocab_size"], "options": manifest["options"]},
        "scores": {},
        "energy": {"learning_seconds": manifest["training_seconds"]},
        "provenance": {
            "train_split": manifest["train_split"], "train_source": manifest["train_source"],
            "proxy_train": manifest["train_proxy"], "train_chars": manifest["train_chars"],
            "train_sha256": manifest["train_sha256"], "created_utc": manifest["created_utc"],
            "libraries": manifest["libraries"], "backend_sha256": manifest["backend_sha256"],
            "subchar": NOT_RECORDED,
        },
    }


def checkpoint_view(folder: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    fix = f"the checkpoint is incomplete, train it again (`subchar train --out {folder}`)"
    missing = [name for name in manifest["files"] if not (folder / name).is_file()]
    if missing or not (folder / CHECKPOINT_TOKENIZER / SAVED_MANIFEST).is_file():
        raise UserError(f"{folder} lacks {', '.join(missing) or CHECKPOINT_TOKENIZER + '/' + SAVED_MANIFEST}; {fix}")
    tokenizer = read_json(folder / CHECKPOINT_TOKENIZER / SAVED_MANIFEST, fix)
    config = read_json(folder / "config.json", fix)
    train_record = folder / TRAIN_RECORD
    record = read_record(train_record, f"delete {train_record}") if train_record.is_file() else None
    steps = {"steps": manifest["steps"], "tokens_seen": manifest["tokens_seen"], "stop_reason": manifest["stop_reason"]}
    if "lr_schedule" in manifest:
        steps["compiled"] = manifest.get("compiled")
        steps["optimizer"] = manifest.get("optimizer", "adamw")
    scores: dict[str, Any] = {}
    for path in sorted(folder.glob("eval_*.json")):  # `subchar eval`'s records, one per split and mode
        scored = read_record(path, f"delete {path} and run `subchar eval {folder}` again")
        extra = scored.get("extra") or {}
        evaluation = extra.get("eval") or {}
        split = evaluation.get("split", "valid")
        scores[path.stem] = {
            "split": split, "mode": evaluation.get("mode"), "beam": evaluation.get("beam"),
            "char_accuracy": extra.get(f"{split}_char_accuracy"), "chars": extra.get(f"{split}_chars"),
            "bits_per_char": extra.get(f"{split}_bits_per_char"), "adapt": bool(evaluation.get("adapt")),
            "date_utc": scored.get("date_utc"),
        }
    return {
        "settings": {"model": manifest["model"], "vocab_size": manifest["vocab_size"], "config": config,
                     "tokenizer": {"family": tokenizer.get("family"), "vocab_size": tokenizer.get("vocab_size")},
                     "device": manifest["device"], **steps, "weights": manifest["weights"],
                     "adapt": saved_adapt(folder, manifest)},  # what `subchar eval` and `export` rebuild by default
        "scores": scores,
        "energy": energy_of(record) if record else {"train_seconds": manifest["train_seconds"], "note": (
            f"a grid cell's checkpoint: its energy is in {folder.parent / RECORD}"
            if (folder.parent / RUN_FILE).is_file() else f"no {TRAIN_RECORD}: energy was not recorded with it")},
        "provenance": {
            "train_source": manifest["train_source"], "proxy_train": manifest["proxy_train"],
            "train_chars": manifest["train_chars"], "train_sha256": manifest["train_text_sha256"],
            "data_dir": manifest.get("data_dir"), "created_utc": manifest["created_utc"],
            "tokenizer_sha256": manifest["tokenizer_sha256"], "tokenizer_source": manifest["tokenizer_source"],
            "subchar": NOT_RECORDED,
        },
    }


def run_view(folder: Path) -> dict[str, Any]:
    fix = "run the cell again with `subchar compare` (same --out)"
    cell_file = read_json(folder / RUN_FILE, fix)
    record = read_record(folder / RECORD, fix) if (folder / RECORD).is_file() else None
    return {"path": str(folder), "kind": "run", **checked("run folder", folder / RUN_FILE, fix, run_parts, folder,
                                                           cell_file, record)}


def run_parts(folder: Path, cell_file: dict[str, Any], record: dict[str, Any] | None) -> dict[str, Any]:
    cell, options = cell_file["cell"], dict(cell_file["options"])
    options.pop("progress", None)
    name = cell["model"] if cell["family"] is None else f"{cell['family']}{cell['vocab_size']}-{cell['model']}"
    settings = {"cell": name, **cell, "options": options}
    if record is None:
        return {"status": "unfinished: no record.json (the cell did not finish); run the grid again to finish it",
                "settings": settings, "scores": {}, "energy": {}, "provenance": {}}
    # the grid's results.jsonl line of this run carries its identity (subchar version, backend, train digest)
    results = folder.parent.parent / RESULTS
    twin = next((line for line in read_results(results)
                 if line.get("submission") == record["submission"] and line.get("date_utc") == record["date_utc"]),
                {})
    view = record_view({**record, "extra": {**(twin.get("extra") or {}), **(record.get("extra") or {})}})
    checkpoint = folder / "checkpoint" / SAVED_MANIFEST
    if checkpoint.is_file():
        manifest = read_json(checkpoint, f"delete {folder / 'checkpoint'}; {checkpoint.parent} is corrupt")
        view["provenance"].setdefault("train_sha256", manifest.get("train_text_sha256"))
        view["provenance"]["tokenizer_sha256"] = manifest.get("tokenizer_sha256")
    view["provenance"]["checkpoint"] = str(checkpoint.parent) if checkpoint.is_file() else None
    return {"settings": settings, **view}


def record_view(record: dict[str, Any]) -> dict[str, Any]:
    """Status, scores, energy and provenance of one run record (a grid cell's, `subchar eval`'s, a harness run's)."""
    extra = record.get("extra") or {}
    identity = extra.get("cell_identity") or {}
    tokenizer = record.get("tokenizer") or {}
    scores = {
        "val_char_accuracy": record["val_char_accuracy"], "val_chars": record.get("val_chars"),
        "bits_per_char": record.get("bits_per_char"), "zero_prob_chars": extra.get("zero_prob_chars"),
        "covered_bits_per_char": extra.get("covered_bits_per_char"),
        "test_char_accuracy": extra.get("test_char_accuracy"), "test_chars": extra.get("test_chars"),
        "test_bits_per_char": extra.get("test_bits_per_char"), "chars_per_token": tokenizer.get("chars_per_token"),
        "eval_chars_per_s": record.get("eval_chars_per_s"), "eval_engine": record.get("eval_engine"),
        "adapted": extra.get("adapt"),  # the model learned from the text as it was scored (absent: from before)
    }
    train_sha = identity.get("train_sha256") or extra.get("train_sha256")
    provenance = {
        "submission": record["submission"], "train_source": extra.get("train_source"),
        "proxy_train": record.get("proxy_train"), "train_chars": extra.get("train_chars"),
        **({"train_sha256": train_sha} if train_sha else {}),
        "date_utc": record.get("date_utc"), "subchar": identity.get("subchar", NOT_RECORDED),
        "backend": identity.get("backend") or extra.get("backend"),
    }
    return {
        "status": f"disqualified ({record.get('reason')})" if record.get("disqualified") else "finished",
        "scores": {key: value for key, value in scores.items() if value is not None},
        "energy": energy_of(record),
        "provenance": provenance,
    }


def energy_of(record: dict[str, Any]) -> dict[str, Any]:
    """The record's totals, its phases (planned against actual where the cell planned them) and its plan."""
    extra = record.get("extra") or {}
    energy = {
        "total_energy_J": record.get("total_energy_J"), "gpu_energy_J": record.get("training_energy_J"),
        "cpu_energy_J": record.get("cpu_energy_J"), "training_duration_s": record.get("training_duration_s"),
        "gpu_name": record.get("gpu_name"),
    }
    planned = extra.get("phases") or {}
    phases = {}
    for name, phase in (record.get("energy_phases") or {}).items():
        phases[name] = {"seconds": phase.get("duration_s"), "energy_J": phase.get("total_energy_J"),
                        **({"planned_s": planned[name].get("planned_s")} if name in planned else {})}
    if phases:
        energy["phases"] = phases
    plan = extra.get("plan")
    if plan:
        energy["plan"] = {key: plan.get(key) for key in ("budget_s", "feasible", "train_s", "margin_s",
                                                         "tokenizer_sample_chars", "encode_chars", "encode_threads")}
    if extra.get("train_peak_rss_gb") is not None:
        energy["train_peak_rss_gb"] = extra["train_peak_rss_gb"]
    return energy


def grid_view(folder: Path) -> dict[str, Any]:
    fix = "move it away and run `subchar compare` again"
    saved = read_json(folder / GRID, fix) if (folder / GRID).is_file() else None
    return {"path": str(folder), "kind": "compare",
            **checked("compare folder", folder / (GRID if saved else RESULTS), fix, grid_parts, folder, saved)}


def grid_parts(folder: Path, saved: dict[str, Any] | None) -> dict[str, Any]:
    records = read_results(folder / RESULTS)
    current = [r for r in records if not (r.get("extra") or {}).get("superseded")]
    settings: dict[str, Any] = {}
    if saved is not None:
        cells = [c["model"] if c["family"] is None else f"{c['family']}{c['vocab_size']}-{c['model']}"
                 for c in saved["cells"]]
        options = {k: v for k, v in saved["options"].items() if k != "progress"}
        settings = {"cells": cells, "options": options, "data_dir": saved.get("data_dir"),
                    "train_file": saved.get("train_file"), "repeats": saved.get("repeats", 1),
                    "invocations": len(saved.get("history", []))}
    best = winner(current)
    identities = [(r.get("extra") or {}).get("cell_identity") or {} for r in current]
    dates = sorted(r["date_utc"] for r in current if r.get("date_utc"))
    runs = [{
        "run": r.get("submission"), "val_char_accuracy": r.get("val_char_accuracy"),
        "bits_per_char": r.get("bits_per_char"), "test_char_accuracy": (r.get("extra") or {}).get("test_char_accuracy"),
        "total_energy_J": r.get("total_energy_J"), "training_duration_s": r.get("training_duration_s"),
        "disqualified": bool(r.get("disqualified")), "reason": r.get("reason"), "proxy_train": r.get("proxy_train"),
        "adapt": (r.get("extra") or {}).get("adapt"),
    } for r in current]
    return {
        "settings": settings,
        "scores": {"runs": len(current), "superseded": len(records) - len(current),
                   "winner": best.get("submission") if best else None, "acc_min": ACC_MIN},
        "energy": {"sum_total_energy_J": sum(r.get("total_energy_J") or 0.0 for r in current)},
        "provenance": {
            "train_sha256": sorted({i["train_sha256"] for i in identities if i.get("train_sha256")}),
            "proxy_train": any(r.get("proxy_train") for r in current),
            "subchar": sorted({i["subchar"] for i in identities if i.get("subchar")}) or NOT_RECORDED,
            "backends": sorted({i["backend"] for i in identities if i.get("backend")}),
            "first_utc": dates[0] if dates else None, "last_utc": dates[-1] if dates else None,
        },
        "runs": runs,
        "table": table_markdown(current) if current else None,
    }


# --- human-readable ------------------------------------------------------------------------------------------
def render(view: dict[str, Any]) -> str:
    """The view as indented ``key: value`` lines, one section per part; a compare folder ends with its table."""
    lines = [f"{view['kind']}: {view['path']}"]
    if "status" in view:
        lines.append(f"status: {view['status']}")
    if (view.get("provenance") or {}).get("proxy_train"):
        lines.append("note: trained on a proxy train text: development figures, not benchmark results")
    for section in ("settings", "scores", "energy", "provenance"):
        if view.get(section):
            lines.append(f"{section}:")
            lines += render_items(view[section], 1)
    if view.get("table"):
        lines += ["", view["table"].rstrip()]
    return "\n".join(lines)


def render_items(items: dict[str, Any], depth: int) -> list[str]:
    pad = "  " * depth
    lines = []
    for key, value in items.items():
        if isinstance(value, dict) and value and not all(isinstance(v, (str, int, float, bool)) or v is None
                                                          for v in value.values()):
            lines.append(f"{pad}{key}:")
            lines += render_items(value, depth + 1)
        elif isinstance(value, dict) and value:
            lines.append(f"{pad}{key}: " + ", ".join(f"{k} {fmt(v)}" for k, v in value.items()))
        else:
            lines.append(f"{pad}{key}: {fmt(value)}")
    return lines


def fmt(value: Any) -> str:
    """Numbers as a person reads them: thousands separated, fractions to 4 decimals, whole or large floats to 1."""
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "—"}[value]
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 or value.is_integer() else f"{value:.4f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value) if value else "—"
    if isinstance(value, dict):
        return "{}"
    return str(value)
