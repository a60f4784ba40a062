"""Hardware accounting of a training run: model FLOPs per token, achieved FLOP/s and MFU against the device's peak.

FLOPs per token (training: forward + backward = 3 × forward) follow the usual 6N rule plus the sequence-mixing
term each architecture adds, from the model's Config alone:

- N counts the weights of the matrix products every token goes through: the blocks' projections (and depthwise
  convolutions, whose per-token cost is also 2 FLOPs per weight) plus the output head (vocab × width, tied to the
  input embedding: the embedding lookup itself costs nothing). Gains, biases and skips are left out. The sizing
  rule (:mod:`zoo.sizing`) uses the blocks' part only, ``non_embedding_params``.
- transformer: + 12 · n_layer · n_embd · T (attention scores and their weighted sum over the whole window T, the
  PaLM appendix's count; causal masking is not subtracted).
- mamba: + 27 · n_layer · d_inner · d_state (the selective scan, 9 · d_inner · d_state FLOPs per token forward as
  in the Mamba paper, × 3); A_log is the scan's, not a matrix product's.
- hyena: + 3 · n_layer · order · n_embd · (10 · log2(2T) + 6) (each long convolution is an rFFT and an irFFT of
  length 2T, 2.5 · n · log2(n) FLOPs each, and a complex product per frequency); the implicit-filter MLP runs once
  per batch, not per token, and is left out.
- a module of your own: 6 × all its parameters, with no mixing term.

Peak: a GPU's dense bf16 peak from :data:`PEAK_BF16_DENSE` by ``torch.cuda.get_device_name`` (None for a card it
does not list: no MFU then); on a CPU, a float32 GEMM measured here (:func:`cpu_gemm_peak`, once per process and
thread count). Standard library and torch only: exported submissions inline this module.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

# dense (no sparsity) bf16 tensor-core peaks, FLOP/s; matched in order on the lower-cased device name
PEAK_BF16_DENSE: tuple[tuple[str, float], ...] = (
    ("h200", 989e12),
    ("h100 pcie", 756e12),
    ("h100", 989e12),  # SXM ("NVIDIA H100 80GB HBM3")
    ("a100", 312e12),
)
CPU_GEMM_SIZE = 512  # square float32 matrices of the CPU peak's timing
CPU_GEMM_SECONDS = 0.15  # timing per repeat; the best of three repeats is the peak
_cpu_peaks: dict[int, float] = {}  # threads -> measured FLOP/s, per process


def table_peak(device_name: str | None) -> float | None:
    """The dense bf16 peak of a GPU by its name (``torch.cuda.get_device_name``); None when the table lacks it."""
    name = (device_name or "").lower()
    return next((peak for key, peak in PEAK_BF16_DENSE if key in name), None)


def cpu_gemm_peak(threads: int | None = None) -> float:
    """FLOP/s of a float32 ``torch.mm`` of two CPU_GEMM_SIZE² matrices on ``threads`` torch threads (default:
    torch's current count), measured once per process and thread count (about half a second)."""
    threads = threads or torch.get_num_threads()
    if threads not in _cpu_peaks:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            a = torch.randn(CPU_GEMM_SIZE, CPU_GEMM_SIZE, generator=torch.Generator().manual_seed(0))
            torch.mm(a, a)  # warm-up
            best = 0.0
            for _ in range(3):
                count, started = 0, time.perf_counter()
                while (elapsed := time.perf_counter() - started) < CPU_GEMM_SECONDS or count == 0:
                    torch.mm(a, a)
                    count += 1
                best = max(best, 2 * CPU_GEMM_SIZE**3 * count / elapsed)
        finally:
            torch.set_num_threads(before)
        _cpu_peaks[threads] = best
    return _cpu_peaks[threads]


def device_peak(device: str, device_name: str | None, threads: int | None = None) -> tuple[float | None, str]:
    """(peak FLOP/s, where it came from) for a run on ``device`` ("cuda", "cuda:0", "cpu")."""
    if device.startswith("cuda"):
        peak = table_peak(device_name)
        return peak, f"bf16 dense table: {device_name}" if peak else f"unknown GPU {device_name!r}: no peak"
    return cpu_gemm_peak(threads), f"float32 GEMM {CPU_GEMM_SIZE}² measured on {threads or torch.get_num_threads()} threads"


def width_of(config: dict[str, Any]) -> int:
    return int(config["n_embd"] if "n_embd" in config else config["d_model"])


def layer_params(model_name: str, config: dict[str, Any]) -> int:
    """Weights of one block's matrix products (and depthwise convolutions), from the Config's fields."""
    d = width_of(config)
    if model_name == "transformer":
        return 4 * d * d + 2 * config["mlp_ratio"] * d * d  # qkv + out projection, MLP
    if model_name == "mamba":
        inner, rank, state = config["expand"] * d, config["dt_rank"] or math.ceil(d / 16), config["d_state"]
        return d * 2 * inner + inner * config["d_conv"] + inner * (rank + 2 * state) + rank * inner + inner * d
    if model_name == "hyena":
        mixed = (config["order"] + 1) * d
        return d * mixed + mixed * config["short_filter_size"] + d * d + 2 * config["mlp_ratio"] * d * d
    raise ValueError(f"no parameter count for model {model_name!r}")


def non_embedding_params(model_name: str, config: dict[str, Any]) -> int:
    """N of the sizing rule: every block's matrix weights, without the embedding / output head."""
    return config["n_layer"] * layer_params(model_name, config)


def mixing_flops(model_name: str, config: dict[str, Any], block: int) -> int:
    """Training FLOPs per token of the sequence mixing that 6N does not count (see the module's docstring)."""
    layers, d = config["n_layer"], width_of(config)
    if model_name == "transformer":
        return 12 * layers * d * block
    if model_name == "mamba":
        return 27 * layers * config["expand"] * d * config["d_state"]
    if model_name == "hyena":
        return round(3 * layers * config["order"] * d * (10 * math.log2(2 * block) + 6))
    return 0


def flops_per_token(model_name: str, config: dict[str, Any], block: int, params: int | None = None) -> int:
    """Model FLOPs of one training token (forward + backward) at training window ``block``; ``params`` (all the
    module's parameters) stands in for N for a module of your own."""
    if model_name not in ("transformer", "mamba", "hyena"):
        return 6 * int(params or 0)
    n = non_embedding_params(model_name, config) + config["vocab_size"] * width_of(config)
    return 6 * n + mixing_flops(model_name, config, block)


def mfu(tokens_per_s: float | None, flops: int | None, peak: float | None) -> float | None:
    """Model FLOPs utilisation: achieved FLOP/s (tokens/s × FLOPs per token) over the peak."""
    if not tokens_per_s or not flops or not peak:
        return None
    return tokens_per_s * flops / peak


def accounting(facts: dict[str, Any], device: str, tokens: int, seconds: float, threads: int | None) -> dict[str, Any]:
    """A run's ``facts`` (flops_per_token, device_name, step_s, compile_s, data_s, probe_s, written while
    training) completed with tokens/s, achieved FLOP/s, the peak and MFU over the whole training time (probe,
    compilation, data and validation included) and over the steps alone."""
    peak, source = device_peak(device, facts.get("device_name"), threads)
    flops = facts.get("flops_per_token")
    tokens_per_s = tokens / seconds if seconds > 0 else None
    step_s = facts.get("step_s") or 0.0
    step_tokens_per_s = tokens / step_s if step_s > 0 else None
    return {
        **facts,
        "tokens_per_s": tokens_per_s,
        "flops_per_s": tokens_per_s * flops if tokens_per_s and flops else None,
        "peak_flops": peak,
        "peak_source": source,
        "mfu": mfu(tokens_per_s, flops, peak),
        "mfu_steps": mfu(step_tokens_per_s, flops, peak),
        "data_fraction": facts.get("data_s", 0.0) / seconds if seconds > 0 else None,
    }
