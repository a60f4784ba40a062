"""One budgeted trainer for every zoo model: the benchmark's wall-clock cap, its energy meter, one loop.

The benchmark gives ``train()`` 300 s and disqualifies a run past it, so the loop plans its own stop: it ends when
the next step would cross ``budget - margin`` (the margin is left for saving), with :func:`eval.guard.
wall_clock_guard` around it only as a safety net. The learning-rate schedule runs on elapsed *time*, not steps
(steps per second are unknown in advance; with ``max_steps`` it runs on steps, for reproducibility): short warm-up,
then linear decay to 10 % at the planned stop. A time-based schedule depends on how fast each step ran, so the run
records the learning rate of every step (``TrainResult.lrs``) and whether it compiled; ``TrainSettings.lr_schedule``
replays such a sequence step for step (an exported submission, ``lab.export``), which on the same device, seed and
ids gives the same weights.

Optimizer (:mod:`zoo.optimizers`): AdamW (betas 0.9/0.95, weight decay on matrices only), or Muon on the hidden
matrices with AdamW on the rest; ``TrainSettings.optimizer`` chooses, else each model's measured default.

The n-gram "trains" by counting, under the same guard and meter.

A zoo model's size on CUDA comes from :mod:`zoo.sizing`'s rule (a second's throughput probe inside the budget; on a
CPU, with size overrides or a fixed step count the Config's defaults stand), and every neural result carries its
hardware accounting (:mod:`zoo.hardware`: FLOPs per token, achieved FLOP/s, MFU, compile and data seconds), both
in ``TrainResult.summary()``.

``train`` takes a zoo model's name (``model_names()``) or a model of your own: any ``torch.nn.Module`` that follows
:class:`zoo.interface.StreamingNetwork` (``vocab_size``, ``block_size``, ``forward`` over token ids;
``empty_cache`` and ``step`` for streaming through ``zoo.streaming.TorchTokenLM``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
# The first optimizer step imports torch._dynamo lazily; imported here, the budget's alarm can never land mid-import
# and leave a half-initialised torch behind for the rest of the process.
import torch._dynamo  # noqa: F401
import torch.nn.functional as F
from tqdm import tqdm

from eval.energy import EnergyMeter, PhaseEnergy
from eval.errors import UserError
from eval.guard import MAX_TRAIN_SECONDS, TrainingTimeoutError, caused_by_timeout, wall_clock_guard
from zoo.ngram import KneserNeyLM, check_counting_input
from zoo.ngram_count import count_tables_chunked
from zoo.kinds import NGRAM, kind_of, trainable_names
from zoo.compile_payback import compile_choice
from zoo.hardware import accounting, flops_per_token
from zoo.optimizers import Optimizers, default_optimizer, make_optimizer
from zoo.registry import lookup
from zoo.sizing import fits_in_memory, plan_size, probe_tokens_per_s
from zoo.threads import ThreadChoice  # noqa: F401 (zoo.train.ThreadChoice, as before it moved)

log = logging.getLogger(__name__)

NGRAM_DEFAULT_ORDER = 5
CPU_MAX_BLOCK_SIZE = 128  # CPU default context: long enough to learn, short enough to take many steps
CPU_BATCH_SIZE = 8  # sequences per step when TrainSettings.batch_size is None: small steps, many of them, on CPU
CUDA_BATCH_SIZE = 64  # and on a GPU, which runs a batch's rows in parallel


def model_names() -> list[str]:
    """Every trainable model: the n-gram and the neural models of zoo.registry."""
    return trainable_names()


@dataclass
class TrainSettings:
    """Loop hyper-parameters; None means "pick for the device" (see :func:`resolve_settings`)."""

    batch_size: int | None = None
    lr: float = 3e-3
    weight_decay: float = 0.1
    warmup_steps: int = 20
    grad_clip: float = 1.0
    val_fraction: float = 0.02
    val_batches: int = 4
    evals: int = 5  # val-loss checks, after the first step and then evenly over the plan
    margin_s: float | None = None  # kept free for saving; default min(15, max(0.5, 5 % of budget))
    max_steps: int | None = None
    # the learning rate of each step, replayed as given (a recorded run's TrainResult.lrs); it sets the step count
    lr_schedule: Sequence[float] | None = None
    compile: bool | None = None  # torch.compile; None: where its measured payback fits (zoo.compile_payback)
    threads: int | None = None  # torch threads for CPU training; None: chosen by timing the first steps (ThreadChoice)
    size_rule: bool = True  # size a zoo model by zoo.sizing's rule on CUDA (overrides of its fields win)
    optimizer: str | None = None  # "adamw" or "muon" (zoo.optimizers); None: the model's default
    progress: bool = True


@dataclass
class TrainResult:
    """What training produced; ``model`` is a module in eval mode (neural) or a KneserNeyLM."""

    model_name: str
    model: Any
    config: dict[str, Any]
    device: str
    seconds: float
    steps: int
    tokens_seen: int
    stop_reason: str  # "budget" (planned stop), "max_steps", or "counted" (n-gram)
    train_loss: float | None = None
    val_losses: list[tuple[int, float]] = field(default_factory=list)
    energy: PhaseEnergy | None = None
    lrs: list[float] = field(default_factory=list)  # the learning rate each step used, in order (neural models)
    compiled: bool = False  # whether the steps ran through torch.compile (its kernels round differently from eager)
    compile_choice: dict[str, Any] | None = None  # why it compiled or not (zoo.compile_payback's record)
    threads: int | None = None  # torch threads of the last CPU step (None: CUDA, no step, or the n-gram's counting)
    thread_choice: dict[str, Any] | None = None  # how they were chosen (ThreadChoice.record)
    ngrams: int | None = None  # the n-gram's stored n-grams, all orders: its size, as params are a network's
    size_rule: dict[str, Any] | None = None  # zoo.sizing's record: the rule, its inputs, the size chosen (neural)
    optimizer: dict[str, Any] | None = None  # which optimizer updated how many parameters (neural)
    # the hardware accounting of a neural run (tokens/s, FLOPs per token, achieved FLOP/s, peak, MFU, seconds
    # compiling and loading data: zoo.hardware.accounting), computed when summarised: a CPU's peak is timed then,
    # once per process, outside the budget
    account: Callable[[], dict[str, Any]] | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-ready facts about the run (no model)."""
        return {
            "model": self.model_name,
            "config": self.config,
            "device": self.device,
            "seconds": self.seconds,
            "steps": self.steps,
            "tokens_seen": self.tokens_seen,
            "tokens_per_s": self.tokens_seen / self.seconds if self.seconds > 0 else None,
            "stop_reason": self.stop_reason,
            "compiled": self.compiled,
            "compile_choice": self.compile_choice,
            "threads": self.threads,
            "thread_choice": self.thread_choice,
            "ngrams": self.ngrams,
            "size_rule": self.size_rule,
            "optimizer": self.optimizer,
            "hardware": self.account() if self.account is not None else None,
            "train_loss": self.train_loss,
            "val_losses": self.val_losses,
        }


def resolve_device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise UserError(f"unknown device {device!r}; use auto, cpu or cuda") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UserError("device cuda requested but no CUDA GPU is visible; use --device cpu")
    return resolved


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def check_ids(token_ids: np.ndarray, vocab_size: int) -> np.ndarray:
    ids = np.asarray(token_ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise UserError(f"token ids must be a 1-D integer array, got {ids.dtype} {ids.shape}")
    if len(ids) < 16:
        raise UserError(f"only {len(ids)} training tokens; give more training text")
    if ids.min() < 0 or ids.max() >= vocab_size:
        raise UserError(f"token ids must lie in [0, {vocab_size}); the tokenizer and vocab_size disagree")
    return ids  # not copied: a memory-mapped uint16 id file stays on disk


def train(
    model: str | torch.nn.Module,
    token_ids: np.ndarray,
    vocab_size: int,
    *,
    budget_s: float = MAX_TRAIN_SECONDS,
    overrides: dict[str, Any] | None = None,
    device: str | None = "auto",
    seed: int = 0,
    settings: TrainSettings | None = None,
    meter: EnergyMeter | None = None,
) -> TrainResult:
    """Train ``model`` (a zoo model's name, or a module following :class:`zoo.interface.StreamingNetwork`, trained in
    place) on ``token_ids`` within ``budget_s`` seconds, measured as the meter's "train" phase.

    ``overrides`` set fields of a zoo model's Config (or ``order`` for the n-gram). Raises
    :class:`eval.guard.TrainingTimeoutError` only if the planned stop failed (e.g. torch.compile took the budget).
    """
    settings = settings or TrainSettings()
    ids = check_ids(token_ids, vocab_size)
    if budget_s <= 0:
        raise UserError(f"the training budget must be positive, got {budget_s:g} s")
    meter = meter or EnergyMeter()
    seed_everything(seed)
    with meter.phase("train") as phase, wall_clock_guard(budget_s):
        try:
            if isinstance(model, str) and kind_of(model).token_ngram:
                result = count_ngram_chunked(ids, vocab_size, overrides or {}, device)
            else:
                result = train_neural(model, ids, vocab_size, budget_s, overrides or {}, device, settings)
        except TrainingTimeoutError:
            raise
        except Exception as err:  # the alarm inside torch.compile's backward surfaces wrapped: it is still the alarm
            if caused_by_timeout(err):
                raise TrainingTimeoutError(f"training exceeded {budget_s:g} s wall clock (inside "
                                           f"{type(err).__name__}); the run is disqualified") from err
            raise
    result.energy = phase
    return result


def ngram_order(overrides: dict[str, Any]) -> int:
    unknown = set(overrides) - {"order"}
    if unknown:
        raise UserError(f"the n-gram takes only the override 'order', not {', '.join(sorted(unknown))}")
    return int(overrides.get("order", NGRAM_DEFAULT_ORDER))


def count_ngram_chunked(ids: np.ndarray, vocab_size: int, overrides: dict[str, Any], device: str | None,
                        advanced: Callable[[int], object] = lambda tokens: None) -> TrainResult:
    """The n-gram's tables (exactly those of ``KneserNeyLM.fit``), counted chunk by chunk by zoo.ngram_count on
    ``device`` (a GPU when "auto" finds one), reading a memory-mapped id file without copying it whole;
    ``advanced`` is told each chunk's length (for progress)."""
    order = ngram_order(overrides)
    dev = resolve_device(device)
    start = time.monotonic()
    try:
        ids = check_counting_input(ids, vocab_size, order)
    except ValueError as err:  # the model file raises plain ValueError; here it is the user's setting
        raise UserError(str(err)) from None
    lm = KneserNeyLM(count_tables_chunked(ids, order, vocab_size, device=dev, advanced=advanced), vocab_size)
    return ngram_result(lm, order, len(ids), str(dev), time.monotonic() - start)


def ngram_result(lm: KneserNeyLM, order: int, tokens: int, device: str, seconds: float) -> TrainResult:
    return TrainResult(
        model_name=NGRAM,
        model=lm,
        config={"vocab_size": lm.vocab_size, "order": order},
        device=device,
        seconds=seconds,
        steps=1,
        tokens_seen=tokens,
        stop_reason="counted",
        ngrams=sum(len(table.keys) for table in lm.tables),
    )


def build_model(
    model: str | torch.nn.Module, vocab_size: int, overrides: dict[str, Any], device: torch.device
) -> tuple[str, dict[str, Any], int, torch.nn.Module]:
    """(name, config, training context length, module on ``device``) for a zoo model's name (its Config with
    device-dependent defaults under the overrides) or for a module of your own (trained as it is)."""
    if not isinstance(model, str):
        return own_model(model, vocab_size, overrides, device)
    config_cls, model_cls = lookup(model)
    fields = set(config_cls.__dataclass_fields__)
    unknown = set(overrides) - fields
    if unknown:
        raise UserError(f"{model} has no setting {', '.join(sorted(unknown))}; choose from {', '.join(sorted(fields))}")
    defaults = config_cls(vocab_size=vocab_size)
    values = dict(overrides)
    if device.type == "cpu" and "block_size" not in values:
        values["block_size"] = min(defaults.block_size, CPU_MAX_BLOCK_SIZE)
    try:
        cfg = config_cls(**{**asdict(defaults), **values, "vocab_size": vocab_size})
    except ValueError as err:  # the model file raises plain ValueError; here it is the user's setting
        raise UserError(str(err)) from None
    return model, asdict(cfg), cfg.block_size, model_cls(cfg).to(device)


def own_model(
    model: torch.nn.Module, vocab_size: int, overrides: dict[str, Any], device: torch.device
) -> tuple[str, dict[str, Any], int, torch.nn.Module]:
    """A module following :class:`zoo.interface.StreamingNetwork`, checked before any step is taken."""
    name = type(model).__name__
    if not isinstance(model, torch.nn.Module) or not callable(getattr(model, "forward", None)):
        raise UserError(f"cannot train {name}: pass a zoo model's name or an nn.Module "
                        "(zoo.interface.StreamingNetwork)")
    if overrides:
        raise UserError(f"settings ({', '.join(sorted(overrides))}) apply to zoo models only; configure {name} itself")
    for attribute in ("vocab_size", "block_size"):
        if not isinstance(getattr(model, attribute, None), int):
            raise UserError(f"{name} needs an int attribute {attribute} (see zoo.interface.StreamingNetwork)")
    if model.vocab_size != vocab_size:
        raise UserError(f"{name} has vocab_size {model.vocab_size} but the token ids need {vocab_size}")
    return name, {"vocab_size": vocab_size, "block_size": model.block_size}, model.block_size, model.to(device)


def neural_optimizer(model: torch.nn.Module, model_name: str, settings: TrainSettings, fused: bool) -> Optimizers:
    """``settings.optimizer`` (else ``model_name``'s default) over ``model``, at the settings' lr and weight decay."""
    try:
        return make_optimizer(model, settings.optimizer or default_optimizer(model_name), settings.lr,
                              settings.weight_decay, fused)
    except ValueError as err:  # an unknown name, or Muon where this torch lacks it: the user's choice
        raise UserError(str(err)) from None


def lr_at(step: int, progress: float, settings: TrainSettings) -> float:
    """Warm-up over the first steps, then linear decay to 10 % as ``progress`` (0..1 of the plan) runs out."""
    warmup = min(1.0, (step + 1) / settings.warmup_steps)
    return settings.lr * warmup * (1.0 - 0.9 * min(1.0, progress))


class Batches:
    """Random training windows from the head of the ids; fixed validation windows from the held-out tail.

    The ids may be a read-only memory map of any integer dtype: each batch gathers only its own windows. For a GPU
    they are gathered into page-locked (pinned) memory and copied asynchronously, and :meth:`prefetch` does both for
    the next batch while the device still runs the current step, so neither waits for the other. Prefetching draws
    the same windows in the same order: the batches are those of the plain path.
    """

    def __init__(self, ids: np.ndarray, block_size: int, batch_size: int, val_fraction: float, device, seed: int,
                 pin: bool | None = None):
        split = len(ids) - max(int(len(ids) * val_fraction), 0)
        self.block = min(block_size, split - 1)
        if self.block < 2:
            raise UserError(f"{len(ids)} tokens leave too little training data after the held-out tail")
        self.train = ids[:split]
        self.val = ids[split:]
        self.batch_size = batch_size
        self.device = device
        self.generator = torch.Generator().manual_seed(seed)
        self.pin = torch.device(device).type == "cuda" if pin is None else pin
        self.ready: tuple[torch.Tensor, torch.Tensor] | None = None  # the prefetched next training batch

    def _windows(self, data: np.ndarray, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        index = starts.numpy()[:, None] + np.arange(self.block + 1)
        rows = torch.from_numpy(data[index].astype(np.int64))
        if self.pin:
            rows = rows.pin_memory()  # torch's caching host allocator keeps it alive until the copy is done
        rows = rows.to(self.device, non_blocking=self.pin)
        return rows[:, :-1], rows[:, 1:]

    def _draw(self) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(0, len(self.train) - self.block, (self.batch_size,), generator=self.generator)
        return self._windows(self.train, starts)

    def prefetch(self) -> None:
        """Gather the next training batch and start its copy now (a no-op when one is waiting)."""
        if self.ready is None:
            self.ready = self._draw()

    def train_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The prefetched batch, else the next one drawn now."""
        batch, self.ready = self.ready or self._draw(), None
        return batch

    def val_batches(self, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        room = len(self.val) - self.block - 1
        if room < 0:
            return []
        starts = torch.linspace(0, room, count * self.batch_size).long().unique()
        return [self._windows(self.val, chunk) for chunk in starts.split(self.batch_size)]


def next_token_loss(runner, x: torch.Tensor, y: torch.Tensor, autocast) -> torch.Tensor:
    with autocast():
        logits = runner(x)
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))


def train_neural(
    model: str | torch.nn.Module,
    ids: np.ndarray,
    vocab_size: int,
    budget_s: float,
    overrides: dict[str, Any],
    device: str | None,
    settings: TrainSettings,
) -> TrainResult:
    start = time.monotonic()
    planned = planned_steps(settings)
    margin = settings.margin_s if settings.margin_s is not None else min(15.0, max(0.5, 0.05 * budget_s))
    deadline = start + budget_s - margin
    dev = resolve_device(device)
    cuda = dev.type == "cuda"
    batch_size = settings.batch_size or (CUDA_BATCH_SIZE if cuda else CPU_BATCH_SIZE)
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda else contextlib.nullcontext
    # the size by rule (zoo.sizing): on CUDA a second's probe of the default shape, inside the budget; the models
    # it builds draw their weights from a forked RNG, so the trained model's are those of a run without the rule
    named = isinstance(model, str)
    with torch.random.fork_rng(devices=[dev] if cuda else []):
        plan = plan_size(
            model if named else None, asdict(lookup(model)[0](vocab_size=vocab_size)) if named else {}, overrides,
            dev.type, len(ids) - max(int(len(ids) * settings.val_fraction), 0), lambda: deadline - time.monotonic(),
            lambda reference: probe_tokens_per_s(build_model(model, vocab_size, reference, dev)[3], batch_size,
                                                 reference["block_size"], dev, autocast),
            fixed_steps=planned is not None, enabled=settings.size_rule,
            fits=lambda config: fits_in_memory(lambda: build_model(model, vocab_size, config, dev)[3], batch_size,
                                               config["block_size"], dev, autocast))
    model_name, config, block_size, model = build_model(model, vocab_size, {**plan.values, **overrides}, dev)
    data_started = time.monotonic()
    batches = Batches(ids, block_size, batch_size, settings.val_fraction, dev, seed=torch.initial_seed())
    val_set = batches.val_batches(settings.val_batches)
    batches.prefetch()  # the first step's batch; each step then gathers the next one while the device computes
    data_s = time.monotonic() - data_started  # gathering windows from the ids and moving them to the device
    optimizer = neural_optimizer(model, model_name, settings, fused=cuda)
    device_name = torch.cuda.get_device_name(dev) if cuda else "cpu"
    compiling = compile_choice(model_name, dev.type, device_name, deadline - time.monotonic(), settings.compile,
                               fixed_steps=planned is not None)
    runner = torch.compile(model) if compiling["compile"] else model
    compile_s = step_s = 0.0
    eval_points = [i / settings.evals for i in range(settings.evals)]  # progress at which to check val loss

    steps = tokens = 0
    lrs: list[float] = []
    loss_value: float | None = None
    val_losses: list[tuple[int, float]] = []
    step_time = 0.0  # running estimate of one step, to stop before the deadline, not after it
    val_time = 0.0  # duration of the last validation, to know whether a final one still fits
    stop_reason = "budget"
    model.train()
    # a with-block closes the bar on any exit (a timeout, Ctrl-C), so the message that follows starts on its own line
    with tqdm(total=deadline - start, unit="s", desc=f"train {model_name}", disable=not settings.progress,
              bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s{postfix}") as bar, \
            ThreadChoice(None if cuda else torch.get_num_threads(), settings.threads) as threads:
        while True:
            now = time.monotonic()
            if planned is not None and steps >= planned:
                stop_reason = "max_steps"
                break
            if now + step_time > deadline:
                break
            # the schedule follows steps when a step count is planned (reproducible), else the clock
            progress = steps / planned if planned else (now - start) / (deadline - start)
            lr = settings.lr_schedule[steps] if settings.lr_schedule is not None else lr_at(steps, progress, settings)
            for group in optimizer.param_groups:
                group["lr"] = lr
            threads.before_step()
            x, y = batches.train_batch()  # prefetched: gathered and copied while the previous step ran
            try:
                loss = next_token_loss(runner, x, y, autocast)
            except TrainingTimeoutError:
                raise
            except Exception as err:  # torch.compile can fail on some kernels at the first call; eager still works
                if runner is model or caused_by_timeout(err):  # not when it failed because the budget ran out
                    raise
                log.warning("torch.compile failed (%s); training eagerly", type(err).__name__)
                runner = model
                loss = next_token_loss(runner, x, y, autocast)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
            optimizer.step()
            data_started = time.monotonic()
            batches.prefetch()  # the GPU is still busy with this step's kernels: the next batch's gather overlaps
            data_s += time.monotonic() - data_started
            steps += 1
            lrs.append(lr)
            tokens += x.numel()
            loss_value = loss.item()  # syncs the GPU every step: that is what makes the step time below honest
            elapsed = time.monotonic() - now
            if steps == 1 and runner is not model:
                compile_s = elapsed  # torch.compile compiles forward and backward in the first step
            else:
                step_s += elapsed
            step_time = elapsed if steps <= 2 else 0.9 * step_time + 0.1 * elapsed
            threads.after_step(elapsed)
            if val_set and eval_points and progress >= eval_points[0]:
                eval_points.pop(0)
                val_started = time.monotonic()
                val_losses.append((steps, validation_loss(model, val_set, autocast)))
                val_time = time.monotonic() - val_started
            bar.update(max(0.0, min(time.monotonic(), deadline) - start - bar.n))
            bar.set_postfix(loss=f"{loss_value:.3f}", tok_s=f"{tokens / (time.monotonic() - start):,.0f}",
                            threads=threads.current() or "-", refresh=False)
        # the final model, inside the margin, on the steps' threads (torch's own count may be the collapsing one)
        if val_losses and val_losses[-1][0] != steps and time.monotonic() + val_time < start + budget_s - margin / 2:
            val_losses.append((steps, validation_loss(model, val_set, autocast)))
    model.eval()
    seconds = time.monotonic() - start
    hardware = {
        "flops_per_token": flops_per_token(model_name, config, batches.block,
                                           sum(p.numel() for p in model.parameters())),
        "block": batches.block,
        "device_name": device_name,
        "step_s": step_s,
        "compile_s": compile_s,
        "data_s": data_s,
        "probe_s": plan.record.get("probe_s", 0.0),
    }
    return TrainResult(
        model_name=model_name,
        model=model,
        config=config,
        device=str(dev),
        seconds=seconds,
        steps=steps,
        tokens_seen=tokens,
        stop_reason=stop_reason,
        train_loss=loss_value,
        val_losses=val_losses,
        lrs=lrs,
        compiled=runner is not model,
        compile_choice=compiling,
        threads=threads.last,
        thread_choice=threads.record(),
        size_rule=plan.record,
        optimizer=optimizer.record(),
        account=lambda last=threads.last: accounting(hardware, str(dev), tokens, seconds, last),
    )


def planned_steps(settings: TrainSettings) -> int | None:
    """The step count fixed in advance: the replayed schedule's length, else ``max_steps`` (None: the clock's)."""
    if settings.lr_schedule is None:
        return settings.max_steps
    if settings.max_steps is not None and settings.max_steps != len(settings.lr_schedule):
        raise UserError(f"max_steps {settings.max_steps} contradicts the {len(settings.lr_schedule)} learning rates "
                        "of lr_schedule; give one of them")
    return len(settings.lr_schedule)


@torch.no_grad()
def validation_loss(model: torch.nn.Module, val_set, autocast) -> float:
    """Mean loss on the held-out windows, eager: a compiled no-grad graph would cost a second compilation."""
    model.eval()
    losses = [next_token_loss(model, x, y, autocast).item() for x, y in val_set]
    model.train()
    return float(math.fsum(losses) / len(losses))
