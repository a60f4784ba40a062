"""The base class the caller checks: the harness's, else subchar's, else the copy of eval/contract.py above it."""

from __future__ import annotations

try:  # inside the harness: run_eval.py checks isinstance(model, wikitext.CharModel)
    from wikitext import CharModel
except ImportError:
    try:  # run by subchar: its evaluator checks against eval.contract.CharModel
        from eval.contract import CharModel
    except ImportError:
        pass  # standalone: eval/contract.py as inlined above

__all__ = ["CharModel"]
