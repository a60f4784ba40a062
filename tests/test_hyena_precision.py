"""Hyena's long convolution runs as FFTs in float32 whatever the autocast dtype: exact to float32 rounding against
a direct causal convolution in float64, at every window length the size ladder reaches (zoo.sizing.LADDER)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from zoo.hyena import fft_causal_conv
from zoo.sizing import LADDER


def direct_causal_conv(u: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """y[b, c, i] = sum_{j <= i} h[c, j] u[b, c, i - j], in float64, by a depthwise convolution."""
    T = u.size(-1)
    return F.conv1d(F.pad(u.double(), (T - 1, 0)), h[:, :T].double().flip(-1)[:, None, :], groups=u.size(1))


@pytest.mark.parametrize("T", sorted({1, 7, 128, *(shape.block_size for shape in LADDER)}))
def test_the_fft_convolution_is_exact_to_float32_and_bf16_inputs_cost_only_the_output_rounding(T):
    generator = torch.Generator().manual_seed(T)
    u = torch.randn(2, 3, T, generator=generator, dtype=torch.float64)
    h = torch.randn(3, T, generator=generator, dtype=torch.float64) / T**0.5
    exact = direct_causal_conv(u, h)
    scale = float(exact.abs().max())
    assert float((fft_causal_conv(u.float(), h.float()).double() - exact).abs().max()) < 1e-6 * scale
    rounded_u, rounded_h = u.to(torch.bfloat16), h.to(torch.bfloat16)
    got = fft_causal_conv(rounded_u, rounded_h)
    assert got.dtype == torch.bfloat16
    of_rounded = direct_causal_conv(rounded_u, rounded_h)
    # one bf16 rounding of the output (8 significant bits), plus float32 noise
    assert bool(((got.double() - of_rounded).abs() <= 2.0**-8 * of_rounded.abs() + 1e-6 * scale).all())
