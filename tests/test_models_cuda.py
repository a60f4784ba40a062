"""GPU checks: mamba-ssm's fused kernels agree with the pure-torch Mamba path on the same weights, and every
model streams exactly on CUDA. Skipped without CUDA; the kernel comparisons also need mamba-ssm."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zoo import mamba
from zoo.registry import lookup
from zoo.streaming import TorchTokenLM

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
needs_scan_kernel = pytest.mark.skipif(mamba.selective_scan_fn is None, reason="needs mamba-ssm's compiled scan")
needs_step_kernel = pytest.mark.skipif(mamba.selective_state_update is None, reason="needs mamba-ssm (Triton)")

VOCAB = 50
# fp32 everywhere; the kernels use fast exp approximations and another summation order.
ATOL, RTOL = 2e-4, 1e-3


@pytest.fixture(autouse=True)
def exact_fp32():
    """cuDNN convolutions default to TF32, which alone would exceed the tolerance."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def sharpen(model: torch.nn.Module) -> torch.nn.Module:
    """Noise on every weight, so predictions are far from uniform and a mismatch cannot hide in the tolerance."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def mamba_model(seed: int = 0) -> mamba.Model:
    torch.manual_seed(seed)
    return sharpen(mamba.Model(mamba.Config(vocab_size=VOCAB, n_layer=2, d_model=64))).cuda()


def test_mamba_pure_torch_path_is_used_when_kernels_are_off():
    model = mamba_model()
    model.use_fused_kernels(False)
    assert not any(block.mixer.use_fused for block in model.blocks)


@needs_scan_kernel
def test_mamba_fused_scan_matches_pure_torch_forward_and_gradients():
    model = mamba_model()
    idx = torch.randint(0, VOCAB, (3, 96), device="cuda")
    results = []
    for fused in (True, False):
        model.use_fused_kernels(fused)
        model.zero_grad()
        logits = model(idx)
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), idx.roll(-1, 1).flatten()).backward()
        results.append((logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (fused_logits, fused_grads), (torch_logits, torch_grads) = results
    torch.testing.assert_close(fused_logits, torch_logits, atol=ATOL, rtol=RTOL)
    for name, grad in torch_grads.items():
        torch.testing.assert_close(fused_grads[name], grad, atol=ATOL, rtol=RTOL, msg=f"gradient of {name}")


@needs_scan_kernel
def test_mamba_mixer_equals_mamba_ssm_reference_module():
    """Same parameter names and conventions as mamba_ssm.Mamba: its state dict loads strictly, outputs agree."""
    from mamba_ssm import Mamba

    cfg = mamba.Config(vocab_size=VOCAB, d_model=64)
    torch.manual_seed(0)
    mixer = mamba.Mixer(cfg).cuda()
    reference = Mamba(d_model=64, d_state=cfg.d_state, d_conv=cfg.d_conv, expand=cfg.expand, use_fast_path=False)
    reference.load_state_dict(mixer.state_dict(), strict=True)
    reference.cuda()
    x = torch.randn(2, 40, 64, device="cuda")
    mixer.use_fused = False
    with torch.no_grad():
        torch.testing.assert_close(mixer(x), reference(x), atol=ATOL, rtol=RTOL)


@needs_step_kernel
def test_mamba_fused_step_matches_pure_torch_step_and_forward():
    model = mamba_model(seed=1).eval()
    tokens = torch.randint(0, VOCAB, (40,), generator=torch.Generator().manual_seed(2)).tolist()
    model.use_fused_kernels(False)
    with torch.no_grad():
        expected = torch.log_softmax(model(torch.tensor([tokens], device="cuda")).double(), -1)[0].cpu().numpy()
    for fused in (True, False):
        model.use_fused_kernels(fused)
        lm = TorchTokenLM(model, device="cuda")
        state = lm.start()
        for position, token in enumerate(tokens):
            state = lm.step(state, token)
            np.testing.assert_allclose(lm.logprobs(state), expected[position], atol=ATOL, err_msg=f"fused={fused}")


@pytest.mark.parametrize("name", ["transformer", "mamba", "hyena"])
def test_streaming_equals_teacher_forcing_on_cuda(name):
    config_cls, model_cls = lookup(name)
    torch.manual_seed(0)
    model = sharpen(model_cls(config_cls(vocab_size=VOCAB, block_size=16, n_layer=2))).cuda().eval()
    tokens = torch.randint(0, VOCAB, (40,), generator=torch.Generator().manual_seed(3)).tolist()
    with torch.no_grad():
        expected = torch.log_softmax(model(torch.tensor([tokens], device="cuda")).double(), -1)[0].cpu().numpy()
    assert expected.std() > 0.5
    lm = TorchTokenLM(model, device="cuda")
    state = lm.start()
    for position, token in enumerate(tokens):
        state = lm.step(state, token)
        np.testing.assert_allclose(lm.logprobs(state), expected[position], atol=ATOL)


def test_transformer_cuda_graph_replays_equal_eager_steps_batch_after_batch():
    """Each bucket's graph is captured once and replayed on refilled buffers: every batch, shared window or a
    window per row, with and without chains, equals the eager step of the same states (a twin model, graphs off)."""
    config_cls, model_cls = lookup("transformer")
    models = []
    for graphs in (True, False):
        torch.manual_seed(0)
        model = sharpen(model_cls(config_cls(vocab_size=VOCAB, block_size=16, n_layer=2))).cuda().eval()
        models.append(TorchTokenLM(model, device="cuda", cuda_graphs=graphs))
    graphed, eager = models
    assert graphed.model.step_graphs is not None and graphed.model.step_graphs.capture
    assert eager.model.step_graphs is None
    tokens = torch.randint(0, VOCAB, (60,), generator=torch.Generator().manual_seed(3)).tolist()
    far = eager.states_along(eager.start(), tokens, [1, 2, 30, 60])
    for batch in range(4):  # the same buckets again and again, with other contents
        states = [far[(batch + i) % 4] for i in range(3)] + [eager.step(far[batch], batch + 1)]
        steps = [(batch * 7 + i) % VOCAB for i in range(len(states))]
        expected = [eager.logprobs(s) for s in eager.step_many(states, steps)]
        for got, want in zip(graphed.step_many(states, steps), expected):
            np.testing.assert_allclose(graphed.logprobs(got), want, atol=ATOL)
    buckets = graphed.model.step_graphs.buckets
    assert buckets and all(b.graph is not None for b in buckets.values())
