"""eval.memory: each stretch of work (a cell) gets its own peak resident memory."""

from __future__ import annotations

import numpy as np
import pytest

from eval.memory import peak_rss_gb, reset_peak_rss


@pytest.mark.skipif(peak_rss_gb() is None, reason="needs Linux's /proc/self/status")
def test_peak_rss_is_measured_per_stretch_of_work():
    reset_peak_rss()
    block = np.ones(200_000_000 // 8)
    with_block = peak_rss_gb()
    del block
    reset_peak_rss()
    assert with_block - peak_rss_gb() > 0.15
