"""Comparison outputs a person reads at a glance: ``table.md`` sorted by energy and ``pareto.png``."""

from __future__ import annotations

import io
import os
import statistics
from typing import Any

from eval.energy import FLOOR_WATTS
from eval.records import write_bytes_atomic, write_text_atomic

ACC_MIN = 0.70
COLUMNS = ("run", "total J", "val acc", "val chars", "test acc", "bits/char", "chars/token", "eval chars/s", "train s", "DQ reason")


def run_label(record: dict[str, Any]) -> str:
    return record.get("submission") or "?"


def pareto_front(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs no other run beats on both energy (lower) and val accuracy (higher), by increasing energy."""
    scored = sorted(
        (r for r in records if r.get("total_energy_J") is not None and r.get("val_char_accuracy") is not None),
        key=lambda r: (r["total_energy_J"], -r["val_char_accuracy"]),
    )
    front, best = [], -1.0
    for record in scored:
        if record["val_char_accuracy"] > best:
            front.append(record)
            best = record["val_char_accuracy"]
    return front


def winner(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The benchmark's winner: least total energy among runs reaching the accuracy floor, not disqualified."""
    passing = [
        r for r in records
        if not r.get("disqualified") and (r.get("val_char_accuracy") or 0.0) >= ACC_MIN and r.get("total_energy_J") is not None
    ]
    return min(passing, key=lambda r: r["total_energy_J"], default=None)


def _fmt(value: Any, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def summarise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per run name. A single record stays as it is; the records of ``compare --repeats`` become their
    median energy, accuracy and training time, with the min–max ranges in ``extra.energy_range`` and
    ``extra.acc_range`` and the count in ``extra.runs``; the row is disqualified when any run was."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(run_label(record), []).append(record)
    rows = []
    for group in groups.values():
        if len(group) == 1:
            rows.append(group[0])
            continue
        row = {**group[0], "extra": dict(group[0].get("extra") or {})}
        for key, range_key in (("total_energy_J", "energy_range"), ("val_char_accuracy", "acc_range"),
                               ("training_duration_s", None)):
            values = [r[key] for r in group if r.get(key) is not None]
            row[key] = statistics.median(values) if values else None
            if range_key:
                row["extra"][range_key] = [min(values), max(values)] if values else None
        failed = [r for r in group if r.get("disqualified")]
        row["disqualified"], row["reason"] = bool(failed), failed[0].get("reason") if failed else None
        row["extra"]["runs"] = len(group)
        rows.append(row)
    return rows


def value_span(row: dict[str, Any], key: str, range_key: str) -> tuple[float, float] | None:
    """(min, max) of ``key`` over a row's runs: its range when repeated, else the value twice (None if missing)."""
    span = (row.get("extra") or {}).get(range_key)
    if span:
        return span[0], span[1]
    value = row.get(key)
    return None if value is None else (value, value)


def energy_span(row: dict[str, Any]) -> tuple[float, float] | None:
    return value_span(row, "total_energy_J", "energy_range")


def ties(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """For each row of repeated runs, the other rows whose energy range overlaps its own: their order is noise."""
    tied: dict[str, list[str]] = {}
    for row in rows:
        span = energy_span(row)
        if span is None or not (row.get("extra") or {}).get("runs"):
            continue
        for other in rows:
            other_span = energy_span(other)
            if other is not row and other_span and other_span[0] <= span[1] and span[0] <= other_span[1]:
                tied.setdefault(run_label(row), []).append(run_label(other))
    return tied


def with_range(value: Any, span: list[float] | None, spec: str) -> str:
    text = _fmt(value, spec)
    return text if not span else f"{text} [{format(span[0], spec)}–{format(span[1], spec)}]"


def on_energy_floor(record: dict[str, Any]) -> bool:
    """No GPU counter, and the total is the 50 W × seconds floor (CodeCarbon's CPU estimate stayed below it)."""
    total, seconds = record.get("total_energy_J"), record.get("training_duration_s")
    if record.get("training_energy_J") is not None or total is None or seconds is None:
        return False
    return abs(total - FLOOR_WATTS * seconds) <= 1e-9 * max(1.0, total)


def bits_cell(record: dict[str, Any]) -> str:
    """bits/char; where some true chars got no mass, the mean over the others and how many were missed."""
    extra = record.get("extra") or {}
    missed = extra.get("zero_prob_chars") or 0
    if missed and extra.get("covered_bits_per_char") is not None:
        return f"{extra['covered_bits_per_char']:.3f} (+{missed} p=0)"
    return _fmt(record.get("bits_per_char"), ".3f")


def table_markdown(records: list[dict[str, Any]]) -> str:
    """Markdown table sorted by total energy (medians and ranges for repeated runs, with energy ties named);
    proxy-trained runs are labelled so they are never read as results."""
    rows = sorted(summarise(records), key=lambda r: (r.get("total_energy_J") is None, r.get("total_energy_J") or 0.0))
    tied = ties(rows)
    columns = COLUMNS + (("energy tied with",) if any((r.get("extra") or {}).get("runs") for r in rows) else ())
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        extra = r.get("extra") or {}
        tokenizer = r.get("tokenizer") or {}
        reason = r.get("reason") if r.get("disqualified") else ""
        cells = [
            run_label(r) + (f" (×{extra['runs']})" if extra.get("runs") else ""),
            with_range(r.get("total_energy_J"), extra.get("energy_range"), ",.0f"),
            with_range(r.get("val_char_accuracy"), extra.get("acc_range"), ".4f"),
            _fmt(r.get("val_chars"), ","),
            _fmt(extra.get("test_char_accuracy"), ".4f"),
            bits_cell(r),
            _fmt(tokenizer.get("chars_per_token"), ".2f"),
            _fmt(r.get("eval_chars_per_s"), ",.0f"),
            _fmt(r.get("training_duration_s"), ".1f"),
            reason or "",
        ]
        if len(columns) > len(COLUMNS):
            cells.append(", ".join(tied.get(run_label(r), [])))
        lines.append("| " + " | ".join(cells) + " |")
    notes = []
    if any(r.get("proxy_train") for r in records):
        notes.append("Trained on a proxy train text: development figures, not benchmark results.")
    if any((r.get("extra") or {}).get("zero_prob_chars") for r in records):
        notes.append("bits/char marked (+N p=0): N true chars got no mass (infinite bits); the figure averages the rest.")
    if any(on_energy_floor(r) for r in records):
        notes.append(f"No GPU energy counter on this host: the totals sit on the {FLOOR_WATTS:g} W × "
                     "training seconds floor, so they rank training time, not measured energy; use --repeats to see the noise.")
    if tied:
        notes.append("Repeated runs whose energy ranges overlap are tied: their order by median energy is noise.")
    best = winner(rows)
    notes.append(
        f"Winner (least energy with val acc ≥ {ACC_MIN}): {run_label(best)}"
        + (f", tied with {', '.join(tied[run_label(best)])}" if best and run_label(best) in tied else "")
        if best else f"No run reaches val acc {ACC_MIN}."
    )
    return "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"


def label_points(ax, points: list[dict[str, Any]], line_px: float = 12.0) -> None:
    """Name every point, moving a label down until it clears the labels already placed near it; a thin leader
    line ties each label to its point."""
    placed: list[tuple[float, float]] = []
    for r in sorted(points, key=lambda r: (-r["val_char_accuracy"], r["total_energy_J"])):
        x, y = ax.transData.transform((r["total_energy_J"], r["val_char_accuracy"]))
        label_y = y
        while any(abs(label_y - py) < line_px and abs(x - px) < 150 for px, py in placed):
            label_y -= line_px
        placed.append((x, label_y))
        points_per_px = 72.0 / ax.figure.dpi
        ax.annotate(run_label(r), (r["total_energy_J"], r["val_char_accuracy"]), fontsize=7,
                    xytext=(14, (label_y - y) * points_per_px + 6), textcoords="offset points",
                    arrowprops={"arrowstyle": "-", "color": "0.55", "linewidth": 0.6})


def pareto_png(records: list[dict[str, Any]], title: str = "energy to accuracy") -> bytes:
    """Energy (log x) against val accuracy: one colour per model, squares for the char baseline, hollow markers for
    disqualified runs, the 0.70 floor, the Pareto front joined in orange and the winner circled in red."""
    import matplotlib  # slow to import: loaded only when a plot is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [r for r in summarise(records) if r.get("total_energy_J") and r.get("val_char_accuracy") is not None]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    if points:  # fixed limits first, so labels can be laid out in screen space
        energies = [e for r in points for e in energy_span(r)]
        accuracies = [a for r in points for a in value_span(r, "val_char_accuracy", "acc_range")]
        ax.set_xscale("log")
        ax.set_xlim(min(energies) / 1.6, max(energies) * 3.0)
        ax.set_ylim(max(0.0, min(accuracies) - 0.05), max(ACC_MIN, max(accuracies)) + 0.04)
    models = sorted({(r.get("model") or {}).get("name", "?") for r in points})
    colours = {name: plt.cm.tab10(i % 10) for i, name in enumerate(models)}
    for name in models:
        for disqualified in (False, True):
            group = [r for r in points
                     if (r.get("model") or {}).get("name", "?") == name and bool(r.get("disqualified")) == disqualified]
            if not group:
                continue
            ax.scatter([r["total_energy_J"] for r in group], [r["val_char_accuracy"] for r in group], s=45,
                       marker="s" if name == "char-kn" else "o", edgecolors=colours[name], linewidths=1.5,
                       facecolors="none" if disqualified else colours[name], zorder=3,
                       label=name if not disqualified or not any(
                           not r.get("disqualified") and (r.get("model") or {}).get("name") == name for r in points
                       ) else None)
    for r in points:  # repeated runs: the median with the min–max of energy and accuracy
        extra = r.get("extra") or {}
        if extra.get("energy_range") and extra.get("acc_range"):
            (e_lo, e_hi), (a_lo, a_hi) = extra["energy_range"], extra["acc_range"]
            energy, accuracy = r["total_energy_J"], r["val_char_accuracy"]
            ax.errorbar(energy, accuracy, xerr=[[energy - e_lo], [e_hi - energy]],
                        yerr=[[accuracy - a_lo], [a_hi - accuracy]], color="0.45", linewidth=0.9, capsize=3, zorder=2)
    label_points(ax, points)
    front = pareto_front(points)
    if front:
        ax.plot([r["total_energy_J"] for r in front], [r["val_char_accuracy"] for r in front], color="tab:orange",
                linewidth=1.2, marker="o", markersize=11, markerfacecolor="none", label="Pareto front", zorder=2)
    ax.axhline(ACC_MIN, color="tab:red", linestyle="--", label=f"benchmark floor {ACC_MIN}")
    best = winner(points)
    if best:
        ax.scatter(best["total_energy_J"], best["val_char_accuracy"], s=260, facecolors="none",
                   edgecolors="tab:red", linewidths=2.2, label=f"winner: {run_label(best)}", zorder=4)
    elif points:
        ax.text(0.02, 0.97, f"no run reaches {ACC_MIN} (hollow = disqualified)", transform=ax.transAxes,
                fontsize=8, va="top", color="tab:red")
    ax.set_xlabel("total training energy (J, log scale)")
    ax.set_ylabel("val char accuracy")
    proxy = " (proxy train text)" if any(r.get("proxy_train") for r in records) else ""
    ax.set_title(title + proxy)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def write_reports(records: list[dict[str, Any]], out_dir: str | os.PathLike) -> tuple[str, str]:
    table_path = os.path.join(out_dir, "table.md")
    plot_path = os.path.join(out_dir, "pareto.png")
    write_text_atomic(table_path, table_markdown(records))
    write_bytes_atomic(plot_path, pareto_png(records))
    return table_path, plot_path
