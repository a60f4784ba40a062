"""Throughput of the neural zoo models at their default configs: streaming tokens/s (TorchTokenLM.step with a
full context window) and training tokens/s (forward + backward, batch x block_size). Prints a table.

On CPU the rates are per second of this process's CPU time (one thread by default), which stays meaningful on
a machine shared with other work; on CUDA they are per wall-clock second.

    python scripts/bench_models.py [--vocab 8192] [--device cpu] [--threads 1]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from zoo.registry import MODELS, num_params
from zoo.streaming import TorchTokenLM

NEURAL = ("transformer", "mamba", "hyena")


def seconds(device: str) -> Callable[[], float]:
    return time.perf_counter if device.startswith("cuda") else time.process_time


def streaming_tokens_per_s(model: torch.nn.Module, device: str, timed: int) -> float:
    """Steps past one full block_size of context (so the Transformer's window is full), then times ``timed``."""
    lm = TorchTokenLM(model, device=device)
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, lm.vocab_size, (model.cfg.block_size + timed,), generator=generator).tolist()
    state = lm.start()
    for token in tokens[: model.cfg.block_size]:
        state = lm.step(state, token)
    clock = seconds(device)
    start = clock()
    for token in tokens[model.cfg.block_size :]:
        state = lm.step(state, token)
    return timed / (clock() - start)


def training_tokens_per_s(model: torch.nn.Module, device: str, batch: int, iters: int) -> float:
    model.train()
    idx = torch.randint(0, model.cfg.vocab_size, (batch, model.cfg.block_size), device=device)

    def one_step() -> None:
        logits = model(idx)
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), idx.roll(-1, 1).flatten()).backward()

    one_step()  # warm-up
    clock = seconds(device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = clock()
    for _ in range(iters):
        one_step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return iters * idx.numel() / (clock() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--stream-tokens", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--train-iters", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"device={args.device} threads={args.threads} vocab={args.vocab} (default configs otherwise)")
    print(f"{'model':<12} {'params':>10} {'stream tok/s':>13} {'train tok/s':>12}")
    for name in NEURAL:
        config_cls, model_cls = MODELS[name]
        torch.manual_seed(0)
        model = model_cls(config_cls(vocab_size=args.vocab)).to(args.device)
        train = training_tokens_per_s(model, args.device, args.batch, args.train_iters)
        stream = streaming_tokens_per_s(model, args.device, args.stream_tokens)
        print(f"{name:<12} {num_params(model):>10,} {stream:>13,.0f} {train:>12,.0f}")


if __name__ == "__main__":
    main()
