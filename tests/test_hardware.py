"""zoo.hardware: FLOPs per token from a Config, MFU arithmetic, the peak table, the CPU GEMM peak."""

from __future__ import annotations

import math
from dataclasses import asdict

import pytest
import torch

from zoo import hardware
from zoo.hardware import accounting, flops_per_token, mfu, non_embedding_params, table_peak
from zoo.registry import lookup

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def config_of(name: str, **values) -> dict:
    return asdict(lookup(name)[0](vocab_size=256, **values))


def test_transformer_flops_per_token_is_6n_plus_the_attention_term():
    config = config_of("transformer", n_layer=4, n_embd=128, mlp_ratio=4, block_size=256)
    blocks = 4 * (4 * 128 * 128 + 8 * 128 * 128)  # qkv + out, MLP: 786,432
    head = 256 * 128
    assert non_embedding_params("transformer", config) == blocks == 786_432
    assert flops_per_token("transformer", config, 128) == 6 * (blocks + head) + 12 * 4 * 128 * 128 == 5_701_632


def test_mamba_and_hyena_terms():
    mamba = config_of("mamba", n_layer=2, d_model=64, d_state=16, expand=2)
    assert flops_per_token("mamba", mamba, 128) == (
        6 * (non_embedding_params("mamba", mamba) + 256 * 64) + 27 * 2 * 128 * 16)
    hyena = config_of("hyena", n_layer=2, n_embd=64, order=2)
    assert flops_per_token("hyena", hyena, 128) == (
        6 * (non_embedding_params("hyena", hyena) + 256 * 64) + round(3 * 2 * 2 * 64 * (10 * math.log2(256) + 6)))
    assert flops_per_token("MyModule", {}, 128, params=1000) == 6000  # a module of your own: 6 x its parameters


@pytest.mark.parametrize("name, values, skip", [
    ("transformer", {"n_layer": 3, "n_embd": 96, "n_head": 3}, ()),
    ("mamba", {"n_layer": 3, "d_model": 96}, ("A_log",)),  # the scan's, counted in its own term
    ("hyena", {"n_layer": 3, "n_embd": 96}, (".filter.", "filter_bias")),  # per batch / elementwise
])
def test_the_counted_parameters_are_the_built_models_matrix_weights(name, values, skip):
    config = config_of(name, **values)
    model = lookup(name)[1](lookup(name)[0](**config))
    weights = sum(p.numel() for n, p in model.named_parameters()
                  if p.dim() >= 2 and n != "wte.weight" and not any(s in n for s in skip))
    assert non_embedding_params(name, config) == weights


def test_mfu_arithmetic():
    assert mfu(100_000, 6_000_000, 1e12) == pytest.approx(0.6)
    assert mfu(None, 6, 1e12) is None and mfu(1.0, 6, None) is None


@pytest.mark.parametrize("device_name, peak", [
    ("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA H200", 989e12), ("NVIDIA A100-SXM4-80GB", 312e12),
    ("NVIDIA A100 80GB PCIe", 312e12), ("NVIDIA H100 PCIe", 756e12), ("Tesla T4", None), (None, None),
])
def test_the_peak_table_matches_on_the_device_name(device_name, peak):
    assert table_peak(device_name) == peak


def test_the_cpu_peak_is_a_measured_gemm_cached_per_process(monkeypatch):
    monkeypatch.setattr(hardware, "_cpu_peaks", {})
    monkeypatch.setattr(hardware, "CPU_GEMM_SECONDS", 0.01)
    before = torch.get_num_threads()
    peak = hardware.cpu_gemm_peak(1)
    assert peak > 1e8 and torch.get_num_threads() == before
    assert hardware.cpu_gemm_peak(1) == peak  # cached: the same figure, not a new timing
    gpu, source = hardware.device_peak("cuda:0", "NVIDIA H100 80GB HBM3")
    assert gpu == 989e12 and "H100" in source


def test_accounting_completes_the_runs_facts(monkeypatch):
    monkeypatch.setattr(hardware, "_cpu_peaks", {1: 1e11})
    facts = {"flops_per_token": 1_000_000, "step_s": 1.0, "data_s": 0.5, "compile_s": 0.0, "probe_s": 0.0}
    done = accounting(facts, "cpu", tokens=20_000, seconds=2.0, threads=1)
    assert done["tokens_per_s"] == 10_000 and done["flops_per_s"] == 1e10
    assert done["mfu"] == pytest.approx(0.1) and done["mfu_steps"] == pytest.approx(0.2)
    assert done["data_fraction"] == 0.25 and done["peak_flops"] == 1e11
    assert accounting(facts, "cuda", 20_000, 2.0, None)["mfu"] is None  # a GPU the table lacks: no MFU
