"""A submission file run the way the benchmark's ``run_eval.py`` runs it, so a file can be checked before it is sent.

The benchmark (cybertronai/wikitext, ``run_eval.py``) loads the file with ``importlib.util.spec_from_file_location``
as ``user_submission``, calls ``train(train_text, valid_text=valid_text)`` (``train(train_text)`` when ``train``
has no ``valid_text`` parameter) inside one ``EnergyMeter.measure()`` block under the 300 s ``wall_clock_guard``,
checks that a ``CharModel`` came back, then runs its loop over the first 60,000 characters of the valid stream: one
``reset()``, then per character ``predict()``, a hit when it equals the true character, ``observe(char)``. A
disqualified run (past the cap, or under the accuracy floor the runner passes, 0.70) prints its own block and the
runner exits 2. :func:`run_submission` is that sequence with subchar's meter and guard (the same block, in the same
order), and :func:`summary_lines` prints ``run_eval.py``'s closing lines. The result is a :class:`RunRecord`, the
record ``subchar compare`` writes, so its figures sit beside a cell's.

This module imports no torch: the submission brings whatever it imports.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from eval.contract import CharModel
from eval.data import VAL_WINDOW_CHARS, SplitText
from eval.energy import FLOOR_WATTS, EnergyMeter
from eval.errors import UserError
from eval.guard import MAX_TRAIN_SECONDS, TrainingTimeoutError, wall_clock_guard
from eval.progress import phase
from eval.records import RunRecord
from lab.report import ACC_MIN

MODULE_NAME = "user_submission"  # the name run_eval.py loads every submission under
BELOW_FLOOR = "val_accuracy_below_floor"


@dataclass(frozen=True)
class LoopResult:
    """The benchmark loop's counts; ``invalid`` counts predictions that were neither one character nor ``""`` (the
    benchmark scores them wrong without a word, so they are counted here to be reported)."""

    chars: int
    correct: int
    invalid: int
    seconds: float

    @property
    def accuracy(self) -> float:
        return self.correct / max(1, self.chars)


def submission_file(path: str | Path) -> Path:
    """``path`` if it is a file: checked before any data is read, so a wrong path fails at once."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"no submission file at {path}; write one with `subchar export RUN --out DIR`")
    return path


def load_submission(path: Path) -> ModuleType:
    """Execute the file as ``run_eval.py`` does (not registered in ``sys.modules`` by the loader). A module of that
    name left by an earlier load in this process is dropped first, so a file that registers itself (an export
    does) registers itself, not its predecessor."""
    path = submission_file(path)
    spec = importlib.util.spec_from_file_location(MODULE_NAME, path)
    if spec is None or spec.loader is None:
        raise UserError(f"could not import submission file {path}; it must be a Python file (submission.py)")
    module = importlib.util.module_from_spec(spec)
    sys.modules.pop(MODULE_NAME, None)
    try:
        spec.loader.exec_module(module)
    except ModuleNotFoundError as err:
        if err.name != "wikitext":
            raise
        raise UserError(f"{path} imports the benchmark's wikitext module; put the folder holding the benchmark's "
                        "wikitext.py on PYTHONPATH (cybertronai/wikitext)") from None
    if not callable(getattr(module, "train", None)):
        raise UserError(f"{path} must define train(train_text, valid_text=None) -> CharModel")
    return module


def is_char_model(model: object) -> bool:
    """What ``run_eval.py``'s ``isinstance(model, wikitext.CharModel)`` accepts here: subchar's contract, or the
    benchmark's own class when the submission imported it."""
    bases: list[type] = [CharModel]
    wikitext = sys.modules.get("wikitext")
    if isinstance(getattr(wikitext, "CharModel", None), type):
        bases.append(wikitext.CharModel)
    return isinstance(model, tuple(bases))


def harness_loop(model, text: str, progress: bool = False) -> LoopResult:
    """The benchmark's evaluation loop, exactly: one ``reset()``, then ``predict()`` strictly before
    ``observe(char)`` for every character; a prediction scores when it equals the character."""
    correct = invalid = 0
    model.reset()
    started = time.monotonic()
    with phase("eval", len(text), enabled=progress) as shown:
        for true_char in text:
            guess = model.predict()
            if guess == true_char:
                correct += 1
            elif not (isinstance(guess, str) and len(guess) <= 1):
                invalid += 1
            model.observe(true_char)
            shown.update(1)
    return LoopResult(len(text), correct, invalid, time.monotonic() - started)


def run_submission(
    path: str | Path,
    train: SplitText,
    valid: SplitText,
    chars: int | None = VAL_WINDOW_CHARS,
    acc_min: float | None = ACC_MIN,
    max_train_seconds: float = MAX_TRAIN_SECONDS,
    progress: bool = False,
    say: Callable[[str], None] = lambda line: None,
    meter: EnergyMeter | None = None,
) -> RunRecord:
    """Load, train (metered, under the cap) and score the submission at ``path`` on ``valid``'s first ``chars``
    characters (None: all), as ``run_eval.py`` does; ``say`` gets its progress lines. The record is disqualified
    when training passed ``max_train_seconds`` (no scores then) or the accuracy is under ``acc_min``."""
    path = Path(path).expanduser()
    window = valid.prefix(chars).text
    module = load_submission(path)
    accepts_valid = "valid_text" in inspect.signature(module.train).parameters
    meter = meter or EnergyMeter()
    say(f"training submission {path} ...")
    try:
        with meter.measure(), wall_clock_guard(max_train_seconds):
            model = module.train(train.text, valid_text=valid.text) if accepts_valid else module.train(train.text)
    except TrainingTimeoutError as err:
        record = base_record(path, train, meter, accepts_valid)
        record.disqualified, record.reason = True, err.reason
        record.extra["max_train_seconds"] = max_train_seconds
        return record
    if not is_char_model(model):
        raise UserError(f"{path}: train() returned {type(model).__name__}, expected a CharModel subclass "
                        "(eval.contract.CharModel, or the benchmark's wikitext.CharModel)")
    record = base_record(path, train, meter, accepts_valid)
    say(f"training: {measurement_text(record)}")
    say("evaluating on val split ...")
    loop = harness_loop(model, window, progress)
    say(f"chars={loop.chars:,}  acc={loop.accuracy:.4f}  eval_duration={loop.seconds:.1f}s")
    record.val_char_accuracy, record.val_chars = loop.accuracy, loop.chars
    record.eval_chars_per_s = loop.chars / loop.seconds if loop.seconds > 0 else None
    record.eval_engine = "stream"
    record.extra.update(eval_seconds=loop.seconds, invalid_predictions=loop.invalid)
    if acc_min is not None and loop.accuracy < acc_min:
        record.disqualified, record.reason = True, BELOW_FLOOR
        record.extra["acc_min"] = acc_min
    return record


def base_record(path: Path, train: SplitText, meter: EnergyMeter, accepts_valid: bool) -> RunRecord:
    """The record once training ended: run_eval.py's submission name (the file's stem) and the meter's block."""
    return RunRecord.after_training(path.stem, meter.report, train.proxy, extra={
        "submission_file": str(path.resolve()),
        "train_source": train.source,
        "train_chars": len(train.text),
        "train_sha256": train.digest(),
        "valid_text_passed": accepts_valid,
    })


def benchmark_total(record: RunRecord) -> float | None:
    """The total ``run_eval.py`` reports: only when both the GPU counter and the CPU tracker measured."""
    if record.training_energy_J is None or record.cpu_energy_J is None:
        return None
    return record.total_energy_J


def measurement_text(record: RunRecord) -> str:
    """``run_eval.py``'s ``training: ...`` line (its ``Measurement``)."""
    gpu, cpu, total = record.training_energy_J, record.cpu_energy_J, benchmark_total(record)
    text = f"{gpu:,.1f} J" if gpu is not None else "energy: not measured"
    if cpu is not None and total is not None:
        text += f"   cpu={cpu:,.1f} J   total={total:,.1f} J"
    return f"{text}   duration={record.training_duration_s:.1f}s"


def energy_text(record: RunRecord) -> str:
    """``run_eval.py``'s ``training energy (J)`` value."""
    gpu, cpu, total = record.training_energy_J, record.cpu_energy_J, benchmark_total(record)
    if gpu is not None and cpu is not None and total is not None:
        return f"{total:,.1f} ({gpu:,.1f} GPU + {cpu:,.1f} CPU)"
    return "NOT MEASURED" if gpu is None else f"{gpu:,.1f}"


def summary_lines(record: RunRecord) -> list[str]:
    """The closing block ``run_eval.py`` prints for this outcome (finished, past the cap, under the floor), then
    subchar's own total (as ``subchar compare`` counts it) and, for a proxy train text, that it is one."""
    extra = record.extra
    lines = ["---"]
    if record.reason == TrainingTimeoutError.reason:
        lines += [f"DISQUALIFIED: training wall-clock budget exceeded ({extra['max_train_seconds']:.1f} s)",
                  f"submission         : {record.submission}",
                  f"training duration  : {record.training_duration_s:.1f}s"]
        if record.training_energy_J is not None:
            lines.append(f"training energy (J): {energy_text(record)}  (at kill)")
    elif record.reason == BELOW_FLOOR:
        lines += [f"DISQUALIFIED: val accuracy {record.val_char_accuracy:.4f} below floor {extra['acc_min']:.4f}",
                  f"submission         : {record.submission}"]
        if record.training_energy_J is not None:
            lines.append(f"training energy (J): {energy_text(record)}")
        lines.append(f"training duration  : {record.training_duration_s:.1f}s")
    else:
        lines += [f"submission         : {record.submission}",
                  f"training energy (J): {energy_text(record)}",
                  f"training duration  : {record.training_duration_s:.1f}s",
                  f"val  char-accuracy : {record.val_char_accuracy:.4f}",
                  f"val  chars         : {record.val_chars:,}"]
    lines.append(f"subchar total (J)  : {record.total_energy_J:,.1f}  (max(GPU + CPU, {FLOOR_WATTS:g} W x duration), "
                 "as `subchar compare` counts it)")
    if extra.get("invalid_predictions"):
        lines.append(f"warning: {extra['invalid_predictions']:,} predict() results were neither one character nor "
                     "'' and scored wrong; predict() must return a str")
    if record.proxy_train:
        lines.append(f"proxy train text ({extra['train_source']}): a development figure, not a benchmark result")
    return lines
