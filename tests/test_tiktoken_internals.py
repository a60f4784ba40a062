"""tiktoken internals subchar relies on, pinned in pyproject.toml: if one of these fails, a new tiktoken changed them.

- ``Encoding._pat_str``: the split pattern, which ``subchar.tokenizer_view`` needs for pre-token boundaries;
- ``Encoding.__getstate__()``: the constructor arguments, which ``subchar export`` writes into a submission.
"""

import tiktoken

PATTERN = r"\S+|\s+"
RANKS = {bytes([i]): i for i in range(256)} | {b"ab": 256}
SPECIALS = {"<|endoftext|>": 257}


def probe() -> tiktoken.Encoding:
    return tiktoken.Encoding("probe", pat_str=PATTERN, mergeable_ranks=RANKS, special_tokens=SPECIALS)


def test_encoding_keeps_its_split_pattern_as_pat_str():
    encoding = probe()
    assert getattr(encoding, "_pat_str", None) == PATTERN, (
        f"tiktoken {tiktoken.__version__} no longer keeps Encoding._pat_str; subchar/tokenizer_view.py reads it: "
        "pin tiktoken below this version in pyproject.toml or read the pattern another way"
    )


def test_getstate_gives_the_constructor_arguments():
    state = probe().__getstate__()
    assert isinstance(state, dict) and set(state) == {"name", "pat_str", "mergeable_ranks", "special_tokens"}, (
        f"tiktoken {tiktoken.__version__} changed Encoding.__getstate__ (got {type(state).__name__} "
        f"{sorted(state) if isinstance(state, dict) else state!r}); lab/export/build.py reads it: pin tiktoken lower"
    )
    assert (state["name"], state["pat_str"], state["mergeable_ranks"], state["special_tokens"]) == (
        "probe", PATTERN, RANKS, SPECIALS)
    rebuilt = tiktoken.Encoding(state["name"], pat_str=state["pat_str"], mergeable_ranks=state["mergeable_ranks"],
                                special_tokens=state["special_tokens"])
    assert rebuilt.encode_ordinary("ab ba") == probe().encode_ordinary("ab ba") == [256, 32, 98, 97]
