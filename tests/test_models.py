"""Neural zoo models: they learn, stream exactly like teacher forcing, branch, and count their parameters."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from eval.errors import UserError
from subchar.lm import TokenLM
from zoo import mamba
from zoo.registry import MODELS, lookup, num_params
from zoo.streaming import TorchTokenLM, next_token_probs
from zoo.train import train
from zoo.transformer import RopeTable, apply_rope, rope_angles

VOCAB = 17
BLOCK = 8
NEURAL = ("transformer", "mamba", "hyena")
# float32 models, log-probs compared in float64: observed errors are ~1e-5 at worst (Mamba's scan at length 20).
ATOL = 1e-4


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors gain nothing from threads, and on a busy 2-core machine OpenMP threads spinning against
    other processes made these tests ~10x slower."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def tiny(name: str, **overrides) -> torch.nn.Module:
    width = {"d_model": 32} if name == "mamba" else {"n_embd": 32}
    config_cls, model_cls = lookup(name)
    return model_cls(config_cls(**{"vocab_size": VOCAB, "block_size": BLOCK, "n_layer": 2, **width, **overrides}))


def sharpened(name: str, seed: int = 0, **overrides) -> torch.nn.Module:
    """A tiny model with noise added to every weight, so its predictions are far from uniform and a
    streaming bug cannot hide inside the tolerance."""
    torch.manual_seed(seed)
    model = tiny(name, **overrides)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model.eval()


def teacher_forced(model: torch.nn.Module, tokens: list[int]) -> np.ndarray:
    with torch.no_grad():
        return torch.log_softmax(model(torch.tensor([tokens])).double(), dim=-1)[0].numpy()


def streamed(lm: TorchTokenLM, tokens: list[int]) -> np.ndarray:
    state, rows = lm.start(), []
    for token in tokens:
        state = lm.step(state, token)
        rows.append(lm.logprobs(state))
    return np.stack(rows)


def test_registry_names_the_three_neural_models():
    assert set(NEURAL) <= set(MODELS)
    with pytest.raises(UserError, match="unknown model 'gpt5'"):
        lookup("gpt5")


@pytest.mark.parametrize("name", NEURAL)
def test_a_few_adamw_steps_lower_the_loss_on_a_periodic_sequence(name):
    torch.manual_seed(0)
    model = tiny(name)
    data = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6] * 3]) % VOCAB  # period 8, longer than the context
    x, y = data[:, :-1][:, :BLOCK], data[:, 1:][:, :BLOCK]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(np.log(VOCAB), abs=0.1)  # small init: near-uniform predictions
    assert losses[-1] < 0.3 * losses[0]


@pytest.mark.parametrize("name", NEURAL)
@pytest.mark.parametrize("length", [BLOCK, 2 * BLOCK + 5])  # within and past the training context
def test_streaming_equals_teacher_forcing(name, length):
    model = sharpened(name)
    tokens = torch.randint(0, VOCAB, (length,), generator=torch.Generator().manual_seed(1)).tolist()
    expected = teacher_forced(model, tokens)
    assert expected.std() > 0.5  # the comparison is not between two near-uniform distributions
    got = streamed(TorchTokenLM(model), tokens)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0)


def test_untied_transformer_streams_exactly_too():
    model = sharpened("transformer", tie_embeddings=False)
    tokens = [5, 0, 16, 2, 2, 7, 11, 3, 9, 1]
    np.testing.assert_allclose(streamed(TorchTokenLM(model), tokens), teacher_forced(model, tokens), atol=ATOL)


@pytest.mark.parametrize("name", NEURAL)
def test_branching_leaves_every_state_valid(name):
    model = sharpened(name, seed=2)
    lm = TorchTokenLM(model)
    prefix = [4, 8, 15, 16, 2, 3, 7, 1, 0]  # longer than BLOCK: branches happen past the context window
    state = lm.start()
    for token in prefix:
        state = lm.step(state, token)
    before = lm.logprobs(state).copy()
    after_a = lm.step(state, 5)
    after_b = lm.step(state, 6)
    after_a_then_c = lm.step(after_a, 9)
    after_a_again = lm.step(state, 5)
    np.testing.assert_array_equal(lm.logprobs(state), before)
    np.testing.assert_array_equal(lm.logprobs(after_a_again), lm.logprobs(after_a))
    np.testing.assert_allclose(lm.logprobs(after_b), teacher_forced(model, prefix + [6])[-1], atol=ATOL)
    np.testing.assert_allclose(lm.logprobs(after_a_then_c), teacher_forced(model, prefix + [5, 9])[-1], atol=ATOL)
    assert after_a_then_c.length == len(prefix) + 2


def test_next_token_probabilities_are_float64_rows_close_to_a_float64_softmax_and_none_underflows():
    torch.manual_seed(0)
    logits = torch.randn(5, 300) * 4
    logits[2, :7] -= 150.0  # float32 would take these below its normal range (or to 0): that row is made in float64
    logits[4] += 1e4  # a large offset, as logits can have
    exact = torch.softmax(logits.double(), dim=-1).numpy()
    probs = next_token_probs(logits)
    assert probs.dtype == np.float64 and probs.shape == (5, 300)
    assert (probs > 0).all()
    np.testing.assert_allclose(probs, exact, rtol=1e-5, atol=0)  # the float32 softmax: as exact as its logits
    np.testing.assert_array_equal(probs[2], exact[2])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(next_token_probs(logits.double()), exact)  # a float64 model: float64 throughout
    halves = next_token_probs(logits[:2].bfloat16())  # half precision: computed in float32, not rounded to bf16
    np.testing.assert_allclose(halves, torch.softmax(logits[:2].bfloat16().double(), dim=-1).numpy(), rtol=1e-5)


def test_token_lm_protocol_start_and_bad_tokens():
    lm = TorchTokenLM(sharpened("transformer"))
    assert isinstance(lm, TokenLM)
    assert lm.vocab_size == VOCAB
    start = lm.logprobs(lm.start())
    np.testing.assert_allclose(start, np.full(VOCAB, -np.log(VOCAB)))  # empty context: uniform
    probs = np.exp(lm.logprobs(lm.step(lm.start(), 3)))
    assert probs.sum() == pytest.approx(1.0, abs=1e-12)
    assert not lm.logprobs(lm.start()).flags.writeable
    with pytest.raises(UserError, match="outside the model's vocabulary 0..16"):
        lm.step(lm.start(), VOCAB)


@pytest.mark.parametrize(
    "name, expected",
    [
        # wte 17*32 + 2 layers * (norms 32+32 + qk-norms 8+8 + c_attn 32*96 + c_proj 32*32 + MLP 2*32*128) + ln_f 32
        ("transformer", 544 + 2 * (64 + 16 + 3072 + 1024 + 8192) + 32),
        # emb + 2 * (norm 32 + in_proj 32*128 + conv 64*4+64 + x_proj 64*(2+32) + dt_proj 2*64+64
        #            + A_log 64*16 + D 64 + out_proj 64*32) + norm_f
        ("mamba", 544 + 2 * (32 + 4096 + 320 + 2176 + 192 + 1024 + 64 + 2048) + 32),
        # emb + 2 * (norms 64 + in_proj 32*96 + short conv 96*3+96 + filter MLP (17*64+64 + 64 + 64*64+64 + 64
        #            + 64*64) + filter_bias 2*32 + out_proj 32*32 + MLP 2*32*128) + ln_f
        ("hyena", 544 + 2 * (64 + 3072 + 384 + 9536 + 64 + 1024 + 8192) + 32),
    ],
)
def test_num_params_counts_tied_weights_once(name, expected):
    assert num_params(tiny(name)) == expected


def test_transformer_config_rejects_odd_head_size():
    with pytest.raises(ValueError, match="n_embd=36 must be a multiple of 2\\*n_head=8"):
        lookup("transformer")[0](vocab_size=VOCAB, n_embd=36, n_head=4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_transformer_normalises_and_rotates_q_and_k_as_one_tensor_bit_for_bit(dtype):
    """``qkv`` treats q and k as one tensor (fewer torch calls per streaming step): on CPU that must give exactly
    the ``q_norm`` / ``k_norm`` modules applied one at a time, so old checkpoints answer as before."""
    attn = sharpened("transformer").to(dtype).blocks[0].attn
    x = torch.randn(3, 5, 32, dtype=dtype)
    cos, sin = rope_angles(torch.arange(7, 12), attn.head_dim, 10000.0)
    q, k, v = attn.c_attn(x).view(3, 5, 3, attn.n_head, attn.head_dim).permute(2, 0, 3, 1, 4)
    expected = (apply_rope(attn.q_norm(q), cos, sin), apply_rope(attn.k_norm(k), cos, sin), v)
    for got, want in zip(attn.qkv(x, cos, sin), expected):
        assert torch.equal(got, want)


def test_rope_table_rows_are_the_computed_angles_bit_for_bit():
    """The streaming step looks rotation angles up in a table grown on demand: every row must be what
    ``rope_angles`` computes for that position alone (positions past the table's first size included)."""
    table = RopeTable(16, 10000.0)
    for positions in ([0], [5, 3, 1023], [1024, 7], [70_000, 2, 65_535], list(range(40))):
        cos, sin = table.rows(positions, torch.device("cpu"))
        want_cos, want_sin = rope_angles(torch.tensor(positions), 16, 10000.0)
        assert torch.equal(cos, want_cos) and torch.equal(sin, want_sin)
    assert len(table.table[0]) == 1 << 17  # grown by doubling to cover position 70,000


def test_the_trainer_turns_a_bad_setting_into_a_user_error():
    with pytest.raises(UserError, match="n_embd=36 must be a multiple of 2\\*n_head=8"):
        train("transformer", np.arange(64) % VOCAB, VOCAB, overrides={"n_embd": 36, "n_head": 4}, device="cpu")


@pytest.mark.parametrize("name", NEURAL)
def test_config_round_trips_through_json(name):
    config_cls, _ = lookup(name)
    cfg = config_cls(vocab_size=VOCAB)
    restored = config_cls(**json.loads(json.dumps(dataclasses.asdict(cfg))))
    assert restored == cfg


@pytest.mark.skipif(mamba.FUSED_AVAILABLE, reason="mamba-ssm is installed here")
def test_mamba_fused_kernels_need_mamba_ssm():
    with pytest.raises(ValueError, match="pip install 'subchar\\[cuda\\]'"):
        tiny("mamba").use_fused_kernels(True)


@pytest.mark.parametrize("name", NEURAL)
def test_the_models_share_one_naming_scheme(name):
    names = set(tiny(name).state_dict())
    assert {"wte.weight", "ln_f.weight", "blocks.0.ln_1.weight"} <= names
    assert tiny(name).vocab_size == VOCAB and tiny(name).block_size == BLOCK


def test_mamba_loads_weights_saved_under_its_old_names():
    model = sharpened("mamba")
    renames = (("wte.", "embedding."), ("ln_f.", "norm_f."), (".ln_1.", ".norm."))
    old = {}
    for key, value in model.state_dict().items():
        for new, before in renames:
            key = key.replace(new, before, 1)
        old[key] = value
    assert {"embedding.weight", "norm_f.weight", "blocks.1.norm.weight"} <= set(old)
    restored = tiny("mamba")
    restored.load_state_dict(old)
    assert all(torch.equal(restored.state_dict()[k], v) for k, v in model.state_dict().items())
