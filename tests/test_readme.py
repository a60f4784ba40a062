"""The README's Python examples run as written (from the repository root, like a reader would)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, monkeypatch):
    code = BLOCKS[index]
    if "../shared/wikitext" in code and not (ROOT.parent / "shared" / "wikitext" / "wiki.valid.raw").is_file():
        pytest.skip("example reads ../shared/wikitext")
    monkeypatch.chdir(ROOT)
    exec(compile(code, f"README.md block {index}", "exec"), {"__name__": "readme_example"})


def test_readme_examples_check_what_they_show():
    """Each example asserts its result, so running it proves something; none was dropped by accident."""
    assert len(BLOCKS) >= 4
    assert [index for index, code in enumerate(BLOCKS) if "assert " not in code] == []
