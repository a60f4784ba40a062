"""The budget planner never plans past the budget, whatever the probes measured; a cell resumes from cached ids."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab import cell_phases
from eval.data import SplitText
from eval.energy import EnergyMeter
from eval.guard import TrainingTimeoutError
from lab.phase_plan import MAX_SAMPLE_CHARS, MIN_SAMPLE_CHARS, Throughputs, on_grid, plan_phases
from lab.cell import Cell, CellOptions, run_cell
from test_compare import fixture_dir

rates = st.floats(min_value=1e-3, max_value=1e9, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(budget=st.floats(1.0, 3600.0), chars=st.integers(1, 10**9), probe_s=st.floats(0.0, 5000.0),
       tok=rates, enc=rates, cpt=st.floats(1.0, 8.0), count=st.one_of(st.none(), rates), neural=st.booleans())
def test_plan_never_passes_the_budget(budget, chars, probe_s, tok, enc, cpt, count, neural):
    plan = plan_phases(budget, chars, Throughputs(probe_s, tok, enc, 2, cpt, None if neural else (count or 1.0)), neural)
    assert all(seconds >= 0 for seconds in plan.planned_s.values())
    if probe_s <= budget:
        assert sum(plan.planned_s.values()) <= budget * (1 + 1e-12)
    else:  # the probe alone overran: nothing else is planned
        assert plan.tokenizer_s == plan.encode_s == plan.train_s == plan.margin_s == 0 and not plan.feasible
    assert 0 <= plan.encode_chars <= chars and 0 <= plan.tokenizer_sample_chars <= min(chars, MAX_SAMPLE_CHARS)
    # the planned seconds cover the planned work at the probed rates
    assert plan.tokenizer_sample_chars / tok <= plan.tokenizer_s * (1 + 1e-9) + 1e-9
    assert plan.encode_chars / enc <= plan.encode_s * (1 + 1e-9) + 1e-9
    if not neural:
        assert plan.encode_chars / cpt / (count or 1.0) <= plan.train_s * (1 + 1e-9) + 1e-6


def test_fast_machine_encodes_everything_and_samples_the_tokenizer():
    fast = Throughputs(probe_s=3.0, tokenizer_chars_per_s=2e6, encode_chars_per_s=30e6, encode_threads=2,
                       chars_per_token=4.0, count_tokens_per_s=5e6)
    plan = plan_phases(300.0, 540_000_000, fast, neural=False)
    assert plan.feasible and plan.encode_chars == 540_000_000 and plan.encode_threads == 2
    assert MIN_SAMPLE_CHARS <= plan.tokenizer_sample_chars <= MAX_SAMPLE_CHARS
    assert plan.train_s >= 540e6 / 4 / 5e6
    neural = plan_phases(300.0, 540_000_000, fast, neural=True)
    assert neural.train_s >= 0.5 * (300.0 - 3.0 - neural.margin_s - neural.tokenizer_s)


def test_slow_probes_shrink_the_work_instead_of_overrunning():
    slow = Throughputs(probe_s=20.0, tokenizer_chars_per_s=5e3, encode_chars_per_s=1e5, encode_threads=1,
                       chars_per_token=4.0, count_tokens_per_s=1e4)
    plan = plan_phases(60.0, 540_000_000, slow, neural=False)
    assert plan.feasible and plan.tokenizer_sample_chars < MIN_SAMPLE_CHARS and plan.encode_chars < 540_000_000
    assert on_grid(3 * MIN_SAMPLE_CHARS + 5) == 2 * MIN_SAMPLE_CHARS and on_grid(1000) == 1000
    assert sum(plan.planned_s.values()) <= 60.0
    overrun = plan_phases(60.0, 540_000_000, Throughputs(61.0, 1e6, 1e6, 1, 4.0, 1e6), neural=True)
    assert not overrun.feasible and sum(overrun.planned_s.values()) == 61.0


def test_cell_stops_when_probing_took_the_budget(synthetic_train_text, tmp_path, monkeypatch):
    monkeypatch.setattr(cell_phases, "probe_rates", lambda *args: Throughputs(50.0, 1e6, 1e6, 1, 4.0, 1e6))
    train = SplitText(synthetic_train_text[:100_000], "train", "synthetic", proxy=True)
    with pytest.raises(TrainingTimeoutError, match="probing took 50.0 s"):
        cell_phases.prepare_ids("bytebpe", 300, 3, train, 30.0, EnergyMeter(gpu=False, cpu=False), tmp_path)


def test_sample_text_takes_evenly_spaced_slices(synthetic_train_text):
    text = synthetic_train_text
    sample = cell_phases.sample_text(text, 64_000, slices=8)
    assert 64_000 <= len(sample) < 80_000
    assert sample[:1000] == text[:1000] and sample[-500:] in text[len(text) * 7 // 8 :]
    assert cell_phases.sample_text(text, len(text)) == text


def test_cell_resumes_from_the_cached_id_file(synthetic_train_text, tmp_path, monkeypatch):
    data, _ = fixture_dir(tmp_path)  # val text of its own: the synthetic text's sentences would trip the leak guard
    train_file = tmp_path / "train.txt"
    train_file.write_text(synthetic_train_text[:150_000], encoding="utf-8")
    options = CellOptions(budget_s=60, mode="exact", beam=4, eval_chars=150, test_chars=0, progress=False,
                          overrides={"ngram": {"order": 3}})
    cell = Cell("ngram", "bytebpe", 320)
    first = run_cell(cell, options, tmp_path / "runs" / "a", str(data), str(train_file))
    assert not first["extra"]["data"]["ids_cache_hit"]

    from tokenizers_local import encode_ids

    def no_encoding(*args, **kwargs):
        raise AssertionError("a resumed cell must not encode again")

    monkeypatch.setattr(encode_ids, "encode_groups", no_encoding)
    again = run_cell(cell, options, tmp_path / "runs" / "a", str(data), str(train_file))
    assert again["extra"]["data"]["ids_cache_hit"]
    assert again["extra"]["data"]["ids_file"] == first["extra"]["data"]["ids_file"]
    assert again["val_char_accuracy"] == first["val_char_accuracy"]
    assert again["bits_per_char"] == first["bits_per_char"]
    saved = json.loads((tmp_path / "runs" / "a" / "record.json").read_text())
    assert saved["extra"]["plan"]["feasible"] and saved["extra"]["plan"]["encode_chars"] == 150_000


def test_count_rate_probe_removes_fixed_costs_and_corrects_for_the_sort():
    rate = cell_phases.extrapolated_count_rate
    # 1000 tokens: 0.6 s for half, 1.0 s for all -> 0.4 s per 500 tokens at the margin = 1250 tokens/s
    assert rate(1000, 0.6, 1.0, expected_tokens=1000) == pytest.approx(1250.0)
    assert rate(1000, 0.6, 1.0, expected_tokens=10**6) == pytest.approx(1250.0 / 2.0)  # log(1e6) / log(1e3)
    assert rate(1000, 0.1, 1.0, expected_tokens=1000) == pytest.approx(1000.0)  # never below the whole probe's
    assert rate(1000, 1.0, 1.0, expected_tokens=1000) == pytest.approx(8000.0)  # noise: capped at 8 times it
    count_rate, (tokens, rows, exponent) = cell_phases.count_probe(np.arange(2000) % 50, 3, 50, expected_tokens=10**6)
    assert 0 < count_rate < float("inf")
    # a period-50 sequence: 50 distinct k-grams per order, whether 1000 or 2000 tokens are counted
    assert (tokens, rows, exponent) == (2000.0, 150.0, 0.0)


def test_the_prefix_is_cut_where_the_tables_fit_memory():
    from lab.phase_plan import MAX_TABLE_ROWS, chars_that_fit_memory

    fast = dict(probe_s=1.0, tokenizer_chars_per_s=1e9, encode_chars_per_s=1e9, encode_threads=1, chars_per_token=4.0,
                count_tokens_per_s=1e9)
    # 1M probe tokens made MAX/100 rows growing linearly: 100x the tokens fit, 4 chars each
    linear = Throughputs(**fast, table_rows=(1e6, MAX_TABLE_ROWS / 100, 1.0))
    assert chars_that_fit_memory(linear) == pytest.approx(4e8, rel=1e-9)
    plan = plan_phases(300.0, 10**10, linear, neural=False)
    assert plan.memory_chars == pytest.approx(4e8, rel=1e-9) and plan.encode_chars <= plan.memory_chars
    # rows growing as the square root: 100x the rows allow 10,000x the tokens
    root = Throughputs(**fast, table_rows=(1e6, MAX_TABLE_ROWS / 100, 0.5))
    assert chars_that_fit_memory(root) == pytest.approx(4e10, rel=1e-9)
    assert plan_phases(300.0, 10**8, root, neural=False).encode_chars == 10**8  # all of a smaller text fits
    assert chars_that_fit_memory(Throughputs(**fast)) is None  # no probe of the tables: no memory cap
    assert plan_phases(300.0, 10**10, linear, neural=True).memory_chars is None  # a network has no tables


def test_only_a_neural_model_leaves_the_margin():
    plan = plan_phases(300.0, 10**8, Throughputs(2.0, 1e6, 1e7, 2, 4.0, 1e6), neural=False)
    assert cell_phases.train_budget(100.0, plan, counting=True) == 100.0
    assert cell_phases.train_budget(100.0, plan, counting=False) == 100.0 - plan.margin_s
