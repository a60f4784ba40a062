"""Tokenizers learned on the train split only, lossless for every string, with a tiktoken bridge.

Families: ``bpe`` (character BPE + byte fallback), ``bytebpe`` (GPT-2 byte-level BPE), ``unigram``
(SentencePiece), ``wordpiece`` and ``word`` (unknowns spelled by characters, then bytes).
"""

from tokenizers_local.base import END_OF_TEXT, LocalTokenizer, TrainInfo
from tokenizers_local.families import FAMILIES
from tokenizers_local.storage import load
from tokenizers_local.tiktoken_bridge import to_tiktoken
from tokenizers_local.training import train_tokenizer

__all__ = ["END_OF_TEXT", "FAMILIES", "LocalTokenizer", "TrainInfo", "load", "to_tiktoken", "train_tokenizer"]
