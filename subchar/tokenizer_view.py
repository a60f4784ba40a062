"""One uniform view of any supported tokenizer: stream bytes per id, special ids, encode, pre-token spans.

The adapter never looks at a tokenizer object directly; it needs four facts, derived here per library:

- ``surfaces[i]``: the exact bytes token ``i`` adds to the character stream (``b""`` for special tokens).
  Byte-level BPE maps its printable alphabet back to raw bytes (GPT-2's byte<->unicode table), SentencePiece
  and Metaspace turn ``▁`` into a space, byte-fallback pieces ``<0xNN>`` are the byte NN, WordPiece ``##x``
  continues a word (surface ``x``) while a word-initial piece ``x`` follows a space (surface ``" x"``), and
  WordLevel words likewise follow a space. The last two conventions mirror the libraries' decoders, which join
  words with spaces; a stream that does not start with a space therefore cannot spell its first word exactly.
- ``special_ids``: ids that stand for no text; they never take part in a spelling.
- ``encode(text)``: the tokenizer's own (canonical) ids for ``text``, no special tokens added.
- ``span_starts(text)``: character offsets where a pre-token starts (tokens never cross them), from the
  tokenizer's ``pretokenize`` spans or the library's own pre-tokenizer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eval.errors import UserError

BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


@dataclass(frozen=True)
class TokenizerView:
    """What the adapter needs from a tokenizer, whatever library it comes from."""

    family: str
    surfaces: list[bytes]
    special_ids: frozenset[int]
    encode: Callable[[str], list[int]]
    span_starts: Callable[[str], list[int]]  # sorted char offsets > 0 where a pre-token starts

    def spelled(self, ids: list[int]) -> bytes:
        """The stream bytes of ``ids`` (what decode would give, as bytes)."""
        return b"".join(self.surfaces[i] for i in ids)


def surfaces_of(tokenizer: Any) -> list[bytes]:
    """The bytes each token id adds to the character stream (``b""`` for specials); see the module docstring."""
    return view_of(tokenizer).surfaces


def view_of(tokenizer: Any) -> TokenizerView:
    """Build the uniform view for a tokenizers.Tokenizer, SentencePieceProcessor, tiktoken.Encoding or any
    object with ``surfaces()`` / ``special_ids()`` / ``encode()`` / ``pretokenize()`` (tokenizers_local)."""
    if isinstance(tokenizer, TokenizerView):
        return tokenizer
    if hasattr(tokenizer, "surfaces") and callable(tokenizer.surfaces):
        return _local_view(tokenizer)
    module = type(tokenizer).__module__.split(".")[0]
    if module == "tokenizers":
        return _hf_view(tokenizer)
    if module == "sentencepiece":
        return _spm_view(tokenizer)
    if module == "tiktoken":
        return _tiktoken_view(tokenizer)
    raise UserError(
        f"unsupported tokenizer type {type(tokenizer).__name__}; pass a tokenizers.Tokenizer, "
        "sentencepiece.SentencePieceProcessor, tiktoken.Encoding or an object with a surfaces() method"
    )


def starts_from_spans(spans: list[tuple[int, int]]) -> list[int]:
    """Pre-token start offsets (> 0) from (start, end) spans.

    A gap between spans (whitespace a pre-tokenizer drops) belongs to the span after it, as the word-initial
    surfaces (" x") carry it, so each boundary sits at the end of the previous span.
    """
    ordered = sorted(spans)
    return sorted({end for (_, end), _next in zip(ordered, ordered[1:]) if end > 0})


def _local_view(tok: Any) -> TokenizerView:
    specials = frozenset(tok.special_ids()) if hasattr(tok, "special_ids") else frozenset()
    return TokenizerView(
        family=str(getattr(tok, "family", type(tok).__name__)),
        surfaces=list(tok.surfaces()),
        special_ids=specials,
        encode=tok.encode,
        span_starts=lambda text: starts_from_spans(tok.pretokenize(text)),
    )


def gpt2_unicode_to_byte() -> dict[str, int]:
    """Inverse of GPT-2's byte->printable-char table used by byte-level BPE vocabularies.

    Printable Latin-1 bytes stand for themselves; the other bytes are assigned code points 256, 257, ... in
    byte order.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    table = {chr(b): b for b in printable}
    extra = 0
    for b in range(256):
        if b not in printable:
            table[chr(256 + extra)] = b
            extra += 1
    return table


def _decoder_parts(spec: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not spec:
        return []
    if spec.get("type") == "Sequence":
        return [part for sub in spec.get("decoders", []) for part in _decoder_parts(sub)]
    return [spec]


def _hf_view(tok: Any) -> TokenizerView:
    spec = json.loads(tok.to_str())
    model = spec["model"]
    decoders = {part["type"]: part for part in _decoder_parts(spec.get("decoder"))}
    supported = {"ByteLevel", "Metaspace", "WordPiece", "ByteFallback", "BPEDecoder", "Replace", "Fuse", "Strip"}
    unknown = set(decoders) - supported
    if unknown:
        raise UserError(f"tokenizer decoder {sorted(unknown)} is not supported; use ByteLevel/Metaspace/WordPiece")
    byte_level = "ByteLevel" in decoders
    byte_fallback = "ByteFallback" in decoders or bool(model.get("byte_fallback"))
    metaspace = decoders.get("Metaspace", {}).get("replacement")
    for part in decoders.values():  # Llama style: Replace("▁", " ") does Metaspace's job
        if part["type"] == "Replace" and part.get("content") == " ":
            metaspace = part["pattern"].get("String", metaspace)
    if "WordPiece" in decoders:
        word_prefix: str | None = decoders["WordPiece"].get("prefix", "##")
    else:
        word_prefix = model.get("continuing_subword_prefix")
    suffix = decoders.get("BPEDecoder", {}).get("suffix")
    joins_words = not (byte_level or metaspace or suffix) and model["type"] in {"WordPiece", "WordLevel", "BPE"}
    unicode_to_byte = gpt2_unicode_to_byte() if byte_level else {}

    specials = {added["id"] for added in spec.get("added_tokens", []) if added.get("special")}
    added = {added["id"] for added in spec.get("added_tokens", []) if not added.get("special")}
    size = tok.get_vocab_size(with_added_tokens=True)
    surfaces = [b""] * size
    for piece, i in tok.get_vocab(with_added_tokens=True).items():
        if i in specials:
            continue
        if i in added:
            surfaces[i] = piece.encode("utf-8")
            continue
        fallback = BYTE_FALLBACK.match(piece) if byte_fallback else None
        if fallback:
            surfaces[i] = bytes([int(fallback.group(1), 16)])
        elif byte_level:
            surfaces[i] = bytes(unicode_to_byte[ch] for ch in piece)
        elif metaspace:
            surfaces[i] = piece.replace(metaspace, " ").encode("utf-8")
        elif suffix:
            surfaces[i] = piece.replace(suffix, " ").encode("utf-8")
        elif joins_words and word_prefix and piece.startswith(word_prefix):
            surfaces[i] = piece[len(word_prefix):].encode("utf-8")
        elif joins_words:
            surfaces[i] = (" " + piece).encode("utf-8")
        else:
            surfaces[i] = piece.encode("utf-8")

    def span_starts(text: str) -> list[int]:
        if tok.pre_tokenizer is None:
            return []
        return starts_from_spans([offsets for _, offsets in tok.pre_tokenizer.pre_tokenize_str(text)])

    return TokenizerView(
        family=f"hf-{model['type'].lower()}" + ("-bytelevel" if byte_level else ""),
        surfaces=surfaces,
        special_ids=frozenset(specials),
        encode=lambda text: tok.encode(text, add_special_tokens=False).ids,
        span_starts=span_starts,
    )


def _spm_view(sp: Any) -> TokenizerView:
    size = sp.get_piece_size()
    surfaces, specials = [], set()
    for i in range(size):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            surfaces.append(b"")
            specials.add(i)
        elif sp.is_byte(i):
            surfaces.append(bytes([int(sp.id_to_piece(i)[3:5], 16)]))
        else:
            surfaces.append(sp.id_to_piece(i).replace("▁", " ").encode("utf-8"))

    def span_starts(text: str) -> list[int]:  # SentencePiece pieces never contain ▁ past their first char
        return [i for i, ch in enumerate(text) if ch == " " and i > 0]

    return TokenizerView(
        family="sentencepiece",
        surfaces=surfaces,
        special_ids=frozenset(specials),
        encode=lambda text: sp.encode(text, out_type=int),
        span_starts=span_starts,
    )


def _tiktoken_view(enc: Any) -> TokenizerView:
    try:
        import regex as pattern_engine  # tiktoken patterns use \p{L}; the stdlib re cannot compile them
    except ImportError as err:
        raise UserError("tiktoken pre-tokenization needs the `regex` package; pip install regex") from err
    # tiktoken exposes its split pattern only as _pat_str; it is what encode_ordinary splits on.
    pattern = pattern_engine.compile(enc._pat_str)
    specials = {enc.encode_single_token(name) for name in enc.special_tokens_set}
    surfaces = []
    for i in range(enc.n_vocab):
        if i in specials:
            surfaces.append(b"")
            continue
        try:
            surfaces.append(enc.decode_single_token_bytes(i))
        except KeyError:  # gaps in the id space stand for no text
            surfaces.append(b"")
            specials.add(i)

    def span_starts(text: str) -> list[int]:
        return [m.start() for m in pattern.finditer(text) if m.start() > 0]

    return TokenizerView(
        family="tiktoken",
        surfaces=surfaces,
        special_ids=frozenset(specials),
        encode=enc.encode_ordinary,
        span_starts=span_starts,
    )
