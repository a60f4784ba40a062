"""Run records are strict JSON: a parser that rejects NaN and Infinity reads every file subchar writes."""

from __future__ import annotations

import json
import math

import pytest

from eval.records import RunRecord, write_json_atomic


def strict_loads(text: str):
    def reject(constant: str):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=reject)


def test_infinite_bits_per_char_is_saved_as_null_beside_the_p0_count(tmp_path):
    record = RunRecord("cell", None, 1.0, None, 50.0, 0.5, 10, None, bits_per_char=math.inf,
                       extra={"zero_prob_chars": 3, "covered_bits_per_char": 2.5, "test_bits_per_char": math.nan})
    record.save(tmp_path / "record.json")
    saved = strict_loads((tmp_path / "record.json").read_text())
    assert saved["bits_per_char"] is None and saved["extra"]["test_bits_per_char"] is None
    assert saved["extra"]["zero_prob_chars"] == 3 and saved["extra"]["covered_bits_per_char"] == 2.5


def test_non_finite_numbers_are_refused_not_written(tmp_path):
    with pytest.raises(ValueError):
        write_json_atomic(tmp_path / "x.json", {"energy": math.inf})
    assert not (tmp_path / "x.json").exists()


def test_outputs_follow_the_umask(tmp_path):
    """Results, tables and saved folders are ordinary files (0644 / 0755 under the usual umask 022)."""
    import os

    from eval.records import replace_directory, write_text_atomic

    previous = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "table.md", "| a |\n")
        staging = tmp_path / "staging"
        staging.mkdir(mode=0o700)
        replace_directory(staging, tmp_path / "checkpoint")
        os.umask(0o077)
        write_text_atomic(tmp_path / "private.md", "x")
    finally:
        os.umask(previous)
    assert (tmp_path / "table.md").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "checkpoint").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "private.md").stat().st_mode & 0o777 == 0o600
