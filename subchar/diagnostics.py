"""What one ``CharAdapter`` did: LM traffic, commits, and every fallback or approximation it used (the fields
are explained in ``subchar.adapter``'s docstring)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Diagnostics:
    """What the adapter did: LM traffic, commits, and every fallback or approximation it used."""

    chars_observed: int = 0
    lm_logprobs_calls: int = 0
    lm_step_calls: int = 0
    lm_batched_calls: int = 0
    commits: int = 0
    committed_tokens: int = 0
    lossy_commits: int = 0
    forced_commits: int = 0
    eager_commits: int = 0
    zero_mass_chars: int = 0
    backoff_distributions: int = 0
    expansions: int = 0
    merged_coverings: int = 0
    max_coverings: int = 0
    kept_end_coverings: int = 0
    pruned_mass: list[float] = field(default_factory=list)
    pruned_expansion_mass: list[float] = field(default_factory=list)

    @property
    def lm_calls(self) -> int:
        return self.lm_logprobs_calls + self.lm_step_calls
