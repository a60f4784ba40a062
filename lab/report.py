"""Comparison outputs a person reads at a glance: ``table.md`` sorted by energy and ``pareto.png``."""

from __future__ import annotations

import io
import os
import statistics
from dataclasses import dataclass
from typing import Any

from eval.data import VAL_WINDOW_CHARS
from eval.energy import FLOOR_WATTS
from eval.records import write_bytes_atomic, write_text_atomic

ACC_MIN = 0.70  # the benchmark's accuracy floor: what its runner passes to run_eval.py (task.ACC_MIN)
NOTE_LINE_SHARE = 0.06  # of the accuracy axis, added above the points per line of the plot's note
COLUMNS = ("run", "total J", "val acc", "val chars", "test acc", "bits/char", "chars/token", "params", "steps",
           "online", "train s", "train tok/s", "threads", "eval chars/s", "DQ reason")


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


def train_facts(record: dict[str, Any]) -> dict[str, Any]:
    """The trainer's summary in a record (zoo.train.TrainResult.summary; the char baseline's own few facts)."""
    return (record.get("model") or {}).get("train") or {}


def compact(count: int) -> str:
    """1234567 -> 1.23M, 45600 -> 45.6k: sizes read at a glance."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if count >= scale:
            return f"{count / scale:.3g}{suffix}"
    return str(count)


def size_cell(record: dict[str, Any]) -> str:
    """A network's parameters; for an n-gram, its stored n-grams of every order (its size); '—' when unknown."""
    params, ngrams = (record.get("model") or {}).get("params"), train_facts(record).get("ngrams")
    if params is not None:
        return compact(params)
    return "—" if ngrams is None else f"{compact(ngrams)} n-grams"


def steps_cell(record: dict[str, Any]) -> str:
    """Optimizer steps of a network; '—' for a counted n-gram (one pass, no steps)."""
    train = train_facts(record)
    return "—" if train.get("stop_reason") == "counted" else _fmt(train.get("steps"), ",")


def online_cell(record: dict[str, Any]) -> str:
    """Whether the model learned from the text it was scored on (``extra.adapt``); '—' for a record without it."""
    adapt = (record.get("extra") or {}).get("adapt")
    return "—" if adapt is None else "yes" if adapt else "no"


def tokens_per_s(record: dict[str, Any]) -> float | None:
    """Training throughput: tokens (characters for the char baseline) seen or counted per training second."""
    train = train_facts(record)
    if train.get("tokens_per_s") is not None:
        return train["tokens_per_s"]
    seconds, tokens = train.get("seconds"), train.get("tokens_seen")
    return tokens / seconds if seconds and tokens is not None else None


def threads_cell(record: dict[str, Any]) -> str:
    """Torch threads the CPU training ended on; ``2→1`` when all-thread steps collapsed mid-run (zoo.train)."""
    train = train_facts(record)
    choice = train.get("thread_choice") or {}
    if train.get("threads") is None:
        return "—"
    if choice.get("collapsed_at_step") is not None:
        return f"{choice['available']}→{train['threads']}"
    return str(train["threads"])


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
            size_cell(r),
            steps_cell(r),
            online_cell(r),
            _fmt(r.get("training_duration_s"), ".1f"),
            _fmt(tokens_per_s(r), ",.0f"),
            threads_cell(r),
            _fmt(r.get("eval_chars_per_s"), ",.0f"),
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
    if any((r.get("extra") or {}).get("adapt") for r in rows):
        notes.append("online yes: the n-grams also learned from the text they were scored on, only once it was observed "
                     "(a char n-gram each character, a token n-gram the tokens it committed; predict() comes strictly "
                     "before observe(), as in the benchmark); --no-adapt turns it off.")
    if any(train_facts(r).get("threads") is not None for r in rows):
        notes.append("threads: torch threads of the CPU training steps, unless set chosen by timing the first steps "
                     "on 1 and on all threads (zoo.train.ThreadChoice); 2→1: all-thread steps slowed mid-run, so it "
                     "went on with 1.")
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


@dataclass
class PlotInputs:
    """What pareto.png shows, decided before anything is drawn (so tests read this, not pixels): the points
    (summarised rows), the Pareto front, the single winner (None: no run qualifies), the lines of the note in the
    plot's corner and the title."""

    points: list[dict[str, Any]]
    front: list[dict[str, Any]]
    winner: dict[str, Any] | None
    notes: list[str]
    title: str


def scored_chars_note(points: list[dict[str, Any]]) -> str | None:
    """How many val chars each point's accuracy is over (a range when the runs differ): 400 chars is a smoke
    test, 60,000 the benchmark's window."""
    counts = sorted({r["val_chars"] for r in points if r.get("val_chars")})
    if not counts:
        return None
    scored = f"{counts[0]:,}" if len(counts) == 1 else f"{counts[0]:,}–{counts[-1]:,}"
    return f"val chars scored: {scored}" + (f" (the benchmark scores {VAL_WINDOW_CHARS:,})"
                                            if counts[-1] < VAL_WINDOW_CHARS else "")


def plot_inputs(records: list[dict[str, Any]], title: str = "energy to accuracy") -> PlotInputs:
    """The points, front, winner and notes of pareto.png: chars scored, the 50 W floor when the totals sit on it
    (no GPU energy counter: the x axis is then training seconds in disguise) and the winner, or that there is none."""
    points = [r for r in summarise(records) if r.get("total_energy_J") and r.get("val_char_accuracy") is not None]
    best = winner(points)
    notes = [note for note in (scored_chars_note(points),) if note]
    if any(on_energy_floor(r) for r in records):
        notes.append(f"no GPU energy counter: energy = {FLOOR_WATTS:g} W × training seconds")
    if points and not best:
        notes.append(f"no winner: no run reaches val acc {ACC_MIN} (hollow = disqualified)")
    proxy = " (proxy train text)" if any(r.get("proxy_train") for r in records) else ""
    return PlotInputs(points, pareto_front(points), best, notes, title + proxy)


def pareto_png(records: list[dict[str, Any]], title: str = "energy to accuracy") -> bytes:
    """Energy (log x) against val accuracy: one colour per model, squares for the char baseline, hollow markers for
    disqualified runs, the 0.70 floor, the Pareto front as an orange line, the winner alone as a large gold star,
    and a note of the chars scored and the energy floor (:func:`plot_inputs`)."""
    import matplotlib  # slow to import: loaded only when a plot is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from zoo.kinds import kind_of  # light, but `subchar show` and the CLI import no zoo module

    shown = plot_inputs(records, title)
    points = shown.points
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    if points:  # fixed limits first, so labels can be laid out in screen space
        energies = [e for r in points for e in energy_span(r)]
        accuracies = [a for r in points for a in value_span(r, "val_char_accuracy", "acc_range")]
        ax.set_xscale("log")
        ax.set_xlim(min(energies) / 1.6, max(energies) * 3.0)
        low, high = max(0.0, min(accuracies) - 0.05), max(ACC_MIN, max(accuracies)) + 0.04
        ax.set_ylim(low, high + (high - low) * NOTE_LINE_SHARE * len(shown.notes))  # room for the note above
    models = sorted({(r.get("model") or {}).get("name", "?") for r in points})
    colours = {name: plt.cm.tab10(i % 10) for i, name in enumerate(models)}
    for name in models:
        for disqualified in (False, True):
            group = [r for r in points
                     if (r.get("model") or {}).get("name", "?") == name and bool(r.get("disqualified")) == disqualified]
            if not group:
                continue
            ax.scatter([r["total_energy_J"] for r in group], [r["val_char_accuracy"] for r in group], s=45,
                       marker="o" if kind_of(name).tokenized else "s", edgecolors=colours[name], linewidths=1.5,
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
    if len(shown.front) > 1:  # a line through the front's points; the winner alone gets a marker of its own
        ax.plot([r["total_energy_J"] for r in shown.front], [r["val_char_accuracy"] for r in shown.front],
                color="tab:orange", linewidth=1.2, label="Pareto front", zorder=2)
    ax.axhline(ACC_MIN, color="tab:red", linestyle="--", label=f"benchmark floor {ACC_MIN}")
    if shown.winner:
        ax.scatter(shown.winner["total_energy_J"], shown.winner["val_char_accuracy"], s=420, marker="*",
                   facecolors="gold", edgecolors="black", linewidths=1.0, zorder=5,
                   label=f"winner: {run_label(shown.winner)}")
    if shown.notes:
        ax.text(0.02, 0.97, "\n".join(shown.notes), transform=ax.transAxes, fontsize=8, va="top",
                color="tab:red" if shown.winner is None and points else "0.25",
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8})
    ax.set_xlabel("total training energy (J, log scale)")
    ax.set_ylabel("val char accuracy")
    ax.set_title(shown.title)
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
