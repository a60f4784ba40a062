"""Comparison outputs a person reads at a glance: ``table.md`` sorted by energy and ``pareto.png``."""

from __future__ import annotations

import io
import os
from typing import Any

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


def bits_cell(record: dict[str, Any]) -> str:
    """bits/char; where some true chars got no mass, the mean over the others and how many were missed."""
    extra = record.get("extra") or {}
    missed = extra.get("zero_prob_chars") or 0
    if missed and extra.get("covered_bits_per_char") is not None:
        return f"{extra['covered_bits_per_char']:.3f} (+{missed} p=0)"
    return _fmt(record.get("bits_per_char"), ".3f")


def table_markdown(records: list[dict[str, Any]]) -> str:
    """Markdown table sorted by total energy; proxy-trained runs are labelled so they are never read as results."""
    rows = sorted(records, key=lambda r: (r.get("total_energy_J") is None, r.get("total_energy_J") or 0.0))
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        extra = r.get("extra") or {}
        tokenizer = r.get("tokenizer") or {}
        reason = r.get("reason") if r.get("disqualified") else ""
        lines.append("| " + " | ".join([
            run_label(r),
            _fmt(r.get("total_energy_J"), ",.0f"),
            _fmt(r.get("val_char_accuracy"), ".4f"),
            _fmt(r.get("val_chars"), ","),
            _fmt(extra.get("test_char_accuracy"), ".4f"),
            bits_cell(r),
            _fmt(tokenizer.get("chars_per_token"), ".2f"),
            _fmt(r.get("eval_chars_per_s"), ",.0f"),
            _fmt(r.get("training_duration_s"), ".1f"),
            reason or "",
        ]) + " |")
    notes = []
    if any(r.get("proxy_train") for r in records):
        notes.append("Trained on a proxy train text: development figures, not benchmark results.")
    if any((r.get("extra") or {}).get("zero_prob_chars") for r in records):
        notes.append("bits/char marked (+N p=0): N true chars got no mass (infinite bits); the figure averages the rest.")
    best = winner(records)
    notes.append(
        f"Winner (least energy with val acc ≥ {ACC_MIN}): {run_label(best)}" if best
        else f"No run reaches val acc {ACC_MIN}."
    )
    return "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"


def pareto_png(records: list[dict[str, Any]], title: str = "energy to accuracy") -> bytes:
    """Energy (log x) against val accuracy, the 0.70 floor, the Pareto front and the winner labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [r for r in records if r.get("total_energy_J") and r.get("val_char_accuracy") is not None]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for r in points:
        baseline = "char-kn" in run_label(r)
        ax.scatter(r["total_energy_J"], r["val_char_accuracy"], s=40, marker="s" if baseline else "o",
                   color="tab:gray" if r.get("disqualified") else ("tab:green" if baseline else "tab:blue"), zorder=3)
        ax.annotate(run_label(r), (r["total_energy_J"], r["val_char_accuracy"]), fontsize=7,
                    xytext=(4, 3), textcoords="offset points")
    front = pareto_front(points)
    if front:
        ax.step([r["total_energy_J"] for r in front], [r["val_char_accuracy"] for r in front], where="post",
                color="tab:orange", label="Pareto front", zorder=2)
    ax.axhline(ACC_MIN, color="tab:red", linestyle="--", label=f"benchmark floor {ACC_MIN}")
    best = winner(points)
    if best:
        ax.scatter(best["total_energy_J"], best["val_char_accuracy"], s=220, facecolors="none",
                   edgecolors="tab:red", linewidths=2, label=f"winner: {run_label(best)}", zorder=4)
    if points:
        ax.set_xscale("log")
    ax.set_xlabel("total training energy (J, log scale)")
    ax.set_ylabel("val char accuracy (first 60,000 chars)")
    proxy = " (proxy train text)" if any(r.get("proxy_train") for r in records) else ""
    ax.set_title(title + proxy)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
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
