"""The layers hold: lab > {subchar, tokenizers_local, zoo} > eval, and zoo's model files stand alone.

The contracts live in pyproject.toml ([tool.importlinter]); this runs them as `lint-imports` does.
"""

from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True)
    assert code == 0, capsys.readouterr().out
