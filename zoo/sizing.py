"""A neural model's size by rule: width, depth, heads and context from the training budget and a throughput probe.

The rule (``RULE``): compute-optimal training wants about ``TOKENS_PER_PARAM`` = 20 tokens per parameter, N
counted without the embedding and output head (:func:`zoo.hardware.non_embedding_params`). A probe
(:func:`probe_tokens_per_s`) times forward + backward steps of the reference shape (``LADDER[0]``, the models'
default Config) on the device for about a second, inside the training budget; tokens/s × its FLOPs per token
(:func:`zoo.hardware.flops_per_token`) is the device's achieved FLOP/s, taken to hold at every shape (larger shapes
usually use a GPU better, so this errs small). For each shape of the ladder, the tokens it can train on are the
achieved FLOP/s × the seconds left ÷ its FLOPs per token, capped by one pass over the training ids; the rule picks
the largest shape whose tokens per parameter are >= 20 (exactly 20 qualifies; the ladder is ordered by size, so
there are no ties), and the ladder's first shape when none qualifies: the rule never goes below today's default.
A chosen shape must also fit the device's memory at the run's batch size: one training step is tried there
(:func:`fits_in_memory`), and a shape that runs out of memory gives way to the next smaller one (the record lists
those that did not fit).

The ladder grows width, depth, heads (head size 32 to 64) and context together, each shape a valid Config of every
neural model (n_head applies to the transformer only; width is ``n_embd`` or ``d_model``).

When it does not apply, the default Config stands and the record says why: a device that is not CUDA (the CPU
defaults are already what a CPU can train: the rule never grows them), overrides that set any of the ladder's
fields (explicit settings win; the record lists them), a fixed step count (``max_steps`` or a replayed schedule:
exported submissions replay a run's full config), ``TrainSettings.size_rule=False`` or a module of your own.
Standard library and torch only: exported submissions inline this module.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from zoo.hardware import flops_per_token, non_embedding_params

TOKENS_PER_PARAM = 20.0
RULE = ("largest ladder shape whose training tokens per non-embedding parameter are >= 20; tokens = probe FLOP/s "
        "x seconds left / FLOPs per token, capped by one pass over the train ids")
PROBE_SECONDS = 1.0  # the probe's timed steps stop after this long
PROBE_MAX_STEPS = 10


@dataclass(frozen=True)
class Shape:
    """One rung of the ladder: the fields the rule sets."""

    width: int
    n_layer: int
    n_head: int
    block_size: int


LADDER: tuple[Shape, ...] = (
    Shape(128, 4, 4, 256),  # every neural model's default Config
    Shape(192, 4, 6, 256),
    Shape(256, 6, 4, 512),
    Shape(384, 6, 6, 512),
    Shape(512, 8, 8, 1024),
    Shape(640, 10, 10, 1024),
    Shape(768, 12, 12, 1024),
    Shape(1024, 16, 16, 1024),
)


def shape_values(shape: Shape, config: dict[str, Any]) -> dict[str, int]:
    """The Config fields ``shape`` sets in a model whose Config has the fields of ``config``."""
    values = {"n_embd" if "n_embd" in config else "d_model": shape.width, "n_layer": shape.n_layer,
              "block_size": shape.block_size}
    if "n_head" in config:
        values["n_head"] = shape.n_head
    return values


def size_fields(config: dict[str, Any]) -> set[str]:
    return set(shape_values(LADDER[0], config))


@dataclass
class SizePlan:
    """The rule's outcome: the Config fields it sets (empty: the default stands) and the record of why."""

    values: dict[str, int] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)


def rung_table(model_name: str, defaults: dict[str, Any], flops_per_s: float, seconds: float,
               train_tokens: int) -> list[dict[str, Any]]:
    """For each shape of the ladder: its N, FLOPs per token, the tokens it would train on and tokens per param."""
    rows = []
    for shape in LADDER:
        config = {**defaults, **shape_values(shape, defaults)}
        params = non_embedding_params(model_name, config)
        flops = flops_per_token(model_name, config, shape.block_size)
        tokens = min(flops_per_s * max(seconds, 0.0) / flops, float(train_tokens))
        rows.append({**shape_values(shape, defaults), "params_non_embedding": params, "flops_per_token": flops,
                     "tokens": int(tokens), "tokens_per_param": tokens / params})
    return rows


def choose_shape(model_name: str, defaults: dict[str, Any], flops_per_s: float, seconds: float,
                 train_tokens: int, device_type: str) -> tuple[int, list[dict[str, Any]]]:
    """(index into LADDER, the rung table): the largest rung with tokens per param >= TOKENS_PER_PARAM, else 0;
    always 0 on a device that is not CUDA."""
    rows = rung_table(model_name, defaults, flops_per_s, seconds, train_tokens)
    if device_type != "cuda":
        return 0, rows
    fit = [i for i, row in enumerate(rows) if row["tokens_per_param"] >= TOKENS_PER_PARAM]
    return (fit[-1] if fit else 0), rows


def plan_size(model_name: str | None, defaults: dict[str, Any], overrides: dict[str, Any], device_type: str,
              train_tokens: int, seconds_left: Callable[[], float], probe: Callable[[dict[str, Any]], float],
              *, fixed_steps: bool = False, enabled: bool = True,
              fits: Callable[[dict[str, Any]], bool] = lambda config: True) -> SizePlan:
    """The size of ``model_name`` (a zoo model; None: a module of your own) whose default Config is ``defaults``.

    ``probe(config)`` returns the tokens/s of training steps at ``config`` (the reference: defaults under the
    overrides); it runs only when the rule applies. ``seconds_left()`` is read after the probe: the budget the
    chosen model will train in. ``fits(config)`` says whether a training step at ``config`` fits the device's
    memory; it is asked for the chosen rung and, while the answer is no, for each smaller one (never the first)."""
    record: dict[str, Any] = {"rule": RULE, "tokens_per_param": TOKENS_PER_PARAM, "device": device_type,
                              "train_tokens": int(train_tokens)}
    if model_name is None:
        return SizePlan(record={**record, "applied": False, "why": "a module of your own: trained as built"})
    pinned = sorted(size_fields(defaults) & set(overrides))
    why = ("TrainSettings.size_rule is off" if not enabled
           else f"overrides set {', '.join(pinned)}" if pinned
           else f"device {device_type}: the default Config is the CPU size" if device_type != "cuda"
           else "a fixed step count (max_steps or a replayed schedule)" if fixed_steps else None)
    if why:
        return SizePlan(record={**record, "applied": False, "why": why})
    reference = {**defaults, **overrides}
    started = time.monotonic()
    rate = float(probe(reference))
    ref_flops = flops_per_token(model_name, reference, reference["block_size"])
    flops_per_s = rate * ref_flops
    seconds = seconds_left()
    index, rows = choose_shape(model_name, reference, flops_per_s, seconds, train_tokens, device_type)
    too_big = []
    while index > 0 and not fits({**reference, **shape_values(LADDER[index], defaults)}):
        too_big.append(index)
        index -= 1
    values = shape_values(LADDER[index], defaults)
    record.update(applied=True, why="rule", probe_tokens_per_s=rate, probe_flops_per_s=flops_per_s,
                  probe_s=time.monotonic() - started, seconds=seconds, rung=index, chosen={**rows[index]},
                  out_of_memory=too_big, ladder=rows)
    return SizePlan(values=values, record=record)


def forward_backward(model: torch.nn.Module, batch_size: int, block: int, device: torch.device,
                     autocast: Callable[[], Any]) -> None:
    """One training step's forward and backward pass (no optimizer step) on random ids [batch_size, block]."""
    ids = torch.randint(0, model.vocab_size, (batch_size, block + 1), device=device)
    with autocast():
        logits = model(ids[:, :-1])
    F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), ids[:, 1:].reshape(-1)).backward()
    model.zero_grad(set_to_none=True)


def probe_tokens_per_s(model: torch.nn.Module, batch_size: int, block: int, device: torch.device,
                       autocast: Callable[[], Any] = contextlib.nullcontext, seconds: float = PROBE_SECONDS,
                       max_steps: int = PROBE_MAX_STEPS) -> float:
    """Tokens/s of forward + backward steps (no optimizer step) of ``model`` on random ids [batch_size, block]: one
    warm-up step, then steps until ``seconds`` or ``max_steps``. Runs under a forked RNG, so the training that
    follows draws the same numbers as without a probe."""
    devices = [device] if device.type == "cuda" else []
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.random.fork_rng(devices=devices):
        model.train()
        forward_backward(model, batch_size, block, device, autocast)
        sync()
        steps, started = 0, time.monotonic()
        while steps < max_steps and (steps == 0 or time.monotonic() - started < seconds):
            forward_backward(model, batch_size, block, device, autocast)
            sync()
            steps += 1
        return steps * batch_size * block / (time.monotonic() - started)


def fits_in_memory(build: Callable[[], torch.nn.Module], batch_size: int, block: int, device: torch.device,
                   autocast: Callable[[], Any] = contextlib.nullcontext) -> bool:
    """Whether one forward + backward step of the model ``build()`` makes, on [batch_size, block] ids, fits the
    GPU's memory (always true off CUDA: a CPU run never grows past its default). What it allocated is freed."""
    if device.type != "cuda":
        return True

    def step() -> None:  # its locals (the model, its activations and gradients) are gone once it returns or raises
        with torch.random.fork_rng(devices=[device]):
            forward_backward(build(), batch_size, block, device, autocast)
        torch.cuda.synchronize(device)

    try:
        step()
        fits = True
    except torch.cuda.OutOfMemoryError:
        fits = False
    torch.cuda.empty_cache()
    return fits
