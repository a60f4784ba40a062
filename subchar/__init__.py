"""subchar: character probabilities out of subword language models."""

from subchar.adapter import CharAdapter
from subchar.batch_engine import batch_adapter
from subchar.diagnostics import Diagnostics
from subchar.lm import TokenLM
from subchar.tokenizer_view import TokenizerView, surfaces_of, view_of

__all__ = ["CharAdapter", "Diagnostics", "batch_adapter", "TokenLM", "TokenizerView", "surfaces_of", "view_of"]
