"""Training throughput of each neural model at the size zoo.sizing chooses on this device, as one markdown table.

For transformer, mamba and hyena: the size chosen (the rule's record: applied or why not), tokens/s, model FLOPs per
token, achieved FLOP/s, MFU (zoo.hardware: a GPU's bf16 dense peak from its table, a CPU's measured float32 GEMM),
seconds compiling and the share spent loading data, J/token (eval.energy's meter where NVML works, else the 50 W
floor × the train phase's seconds) and the trainer's validation loss after ``--seconds`` of training. The text is
``--text`` (default: the proxy ``../shared/wikitext/wiki.test.raw``; a synthetic text when it is absent), encoded
by a bytebpe tokenizer of ``--vocab`` ids learned on it.

    .venv/bin/python scripts/bench_train.py --seconds 20                  # this device, every neural model
    .venv/bin/python scripts/bench_train.py --seconds 60 --device cuda --models transformer
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eval.data import SplitText  # noqa: E402
from eval.energy import FLOOR_WATTS, EnergyMeter  # noqa: E402
from tokenizers_local import train_tokenizer  # noqa: E402
from zoo.train import TrainSettings, resolve_device, train  # noqa: E402

DEFAULT_TEXT = ROOT.parent / "shared" / "wikitext" / "wiki.test.raw"
WORDS = ("the cat dog sat ran on in a an of to and was is it he she they we house river stone music garden "
         "winter summer city road night morning light water old new small great first last").split()


def synthetic_text(chars: int, seed: int = 0) -> str:
    """Sentences of common words: a stand-in when the proxy text is absent."""
    rng = random.Random(seed)
    parts, size = [], 0
    while size < chars:
        sentence = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 14))).capitalize() + ". "
        parts.append(sentence)
        size += len(sentence)
    return "".join(parts)


def load_ids(path: Path, vocab: int, max_chars: int) -> tuple[np.ndarray, int, str]:
    if path.is_file():
        text, source = path.read_text(encoding="utf-8")[:max_chars], str(path)
    else:
        text, source = synthetic_text(max_chars), "synthetic"
    split = SplitText(text, "train", source, proxy=True)
    tokenizer = train_tokenizer(split, "bytebpe", vocab, progress=False)
    return np.asarray(tokenizer.encode(text), dtype=np.int64), tokenizer.vocab_size, source


def size_text(summary: dict) -> str:
    config, rule = summary["config"], summary["size_rule"] or {}
    width = config.get("n_embd", config.get("d_model"))
    heads = f"×{config['n_head']}h" if "n_head" in config else ""
    chosen = f"d{width} L{config['n_layer']}{heads} T{summary['hardware']['block']}"
    how = f"rule rung {rule['rung']}" if rule.get("applied") else f"default ({rule.get('why', '?')})"
    return f"{chosen}, {how}"


def row(name: str, ids: np.ndarray, vocab: int, args, cuda: bool) -> str:
    meter = EnergyMeter() if cuda else EnergyMeter(gpu=None, cpu=None)
    result = train(name, ids, vocab, budget_s=args.seconds, device=args.device, meter=meter,
                   settings=TrainSettings(progress=False, threads=args.threads))
    summary = result.summary()
    hw = summary["hardware"]
    phase = result.energy
    measured = phase is not None and phase.gpu_available
    joules = phase.total_energy_J if measured else (phase.duration_s if phase else result.seconds) * FLOOR_WATTS
    val = f"{result.val_losses[-1][1]:.3f}" if result.val_losses else "-"
    mfu = f"{hw['mfu']:.1%}" if hw["mfu"] is not None else "-"
    return (f"| {name} | {size_text(summary)} | {hw['tokens_per_s']:,.0f} | {hw['flops_per_token'] / 1e6:.2f} M | "
            f"{hw['flops_per_s'] / 1e9:.2f} G | {mfu} | {hw['compile_s']:.1f} | {hw['data_fraction']:.1%} | "
            f"{joules / max(result.tokens_seen, 1) * 1e3:.3f} ({'NVML' if measured else '50 W floor'}) | "
            f"{result.steps} | {val} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="training budget per model (default 20)")
    parser.add_argument("--models", nargs="+", default=["transformer", "mamba", "hyena"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--text", type=Path, default=DEFAULT_TEXT)
    parser.add_argument("--max-chars", type=int, default=2_000_000, help="characters of the text to use")
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=None, help="CPU torch threads (default: the trainer's choice)")
    args = parser.parse_args()
    started = time.monotonic()
    ids, vocab, source = load_ids(args.text, args.vocab, args.max_chars)
    dev = resolve_device(args.device)
    cuda = dev.type == "cuda"
    name = torch.cuda.get_device_name(dev) if cuda else f"CPU, {args.threads or 'chosen'} thread(s)"
    print(f"{len(ids):,} tokens of {source} (bytebpe {vocab}), {time.monotonic() - started:.1f} s to encode; "
          f"{args.seconds:g} s per model on {name}\n")
    print("| model | size | tokens/s | FLOPs/token | FLOP/s | MFU | compile s | data | mJ/token | steps | val loss |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for model in args.models:
        print(row(model, ids, vocab, args, cuda), flush=True)


if __name__ == "__main__":
    main()
