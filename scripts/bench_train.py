"""Training throughput of each neural model at the size zoo.sizing chooses on this device, as one markdown table.

For transformer, mamba and hyena: the size chosen (the rule's record: applied or why not), tokens/s, model FLOPs per
token, achieved FLOP/s, MFU (zoo.hardware: a GPU's bf16 dense peak from its table, a CPU's measured float32 GEMM),
seconds compiling and the share spent loading data, J/token (eval.energy's meter where NVML works, else the 50 W
floor × the train phase's seconds) and the trainer's validation loss after ``--seconds`` of training. The text is
``--text`` (default: the proxy ``../shared/wikitext/wiki.test.raw``; a synthetic text when it is absent), encoded
by a bytebpe tokenizer of ``--vocab`` ids learned on it.

``--compare`` trains each model twice, side by side: ``optimizer`` with AdamW and with Muon (zoo.optimizers: the
lower val loss after the same seconds wins), ``compile`` eager and through torch.compile. For ``compile`` it adds
the measured compile seconds, the compiled steps' speedup and the budget at which compiling breaks even
(zoo.compile_payback), and prints the lines that record them in ``zoo.compile_payback.MEASURED``.

    .venv/bin/python scripts/bench_train.py --seconds 20                  # this device, every neural model
    .venv/bin/python scripts/bench_train.py --seconds 60 --device cuda --models transformer
    .venv/bin/python scripts/bench_train.py --seconds 60 --compare optimizer
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eval.data import SplitText  # noqa: E402
from eval.energy import FLOOR_WATTS, EnergyMeter  # noqa: E402
from eval.guard import TrainingTimeoutError  # noqa: E402
from tokenizers_local import train_tokenizer  # noqa: E402
from zoo.compile_payback import break_even_s, device_class  # noqa: E402
from zoo.train import TrainResult, TrainSettings, resolve_device, train  # noqa: E402

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


VARIANTS = {  # --compare: the TrainSettings fields each side of the comparison sets
    "none": {"": {}},
    "optimizer": {"adamw": {"optimizer": "adamw"}, "muon": {"optimizer": "muon"}},
    "compile": {"eager": {"compile": False}, "compiled": {"compile": True}},
}


def cold_compile_caches() -> None:
    """Fresh, empty on-disk caches for inductor and Triton: a benchmark container compiles cold, so a compile
    that reuses kernels an earlier run (or process) left behind would understate the cost."""
    folder = tempfile.mkdtemp(prefix="bench_train_compile_")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(folder, "inductor")
    os.environ["TRITON_CACHE_DIR"] = os.path.join(folder, "triton")
    torch._dynamo.reset()


def run(name: str, ids: np.ndarray, vocab: int, args, cuda: bool, fields: dict) -> TrainResult | None:
    """The training run, or None when it passed its budget (a cold compile can take all of it)."""
    if fields.get("compile"):
        cold_compile_caches()
    meter = EnergyMeter() if cuda else EnergyMeter(gpu=None, cpu=None)
    try:
        return train(name, ids, vocab, budget_s=args.seconds, device=args.device, meter=meter,
                     settings=TrainSettings(progress=False, threads=args.threads, **fields))
    except TrainingTimeoutError:
        return None


def row(name: str, variant: str, result: TrainResult) -> str:
    summary = result.summary()
    hw = summary["hardware"]
    phase = result.energy
    measured = phase is not None and phase.gpu_available
    joules = phase.total_energy_J if measured else (phase.duration_s if phase else result.seconds) * FLOOR_WATTS
    val = f"{result.val_losses[-1][1]:.3f}" if result.val_losses else "-"
    mfu = f"{hw['mfu']:.1%}" if hw["mfu"] is not None else "-"
    label = f"{name} {variant}".strip()
    return (f"| {label} | {size_text(summary)} | {hw['tokens_per_s']:,.0f} | {hw['flops_per_token'] / 1e6:.2f} M | "
            f"{hw['flops_per_s'] / 1e9:.2f} G | {mfu} | {hw['compile_s']:.1f} | {hw['data_fraction']:.1%} | "
            f"{joules / max(result.tokens_seen, 1) * 1e3:.3f} ({'NVML' if measured else '50 W floor'}) | "
            f"{result.steps} | {val} |")


def step_rate(result: TrainResult) -> float:
    """Tokens/s of the steps alone (no compilation, probe, data or validation)."""
    hw = result.summary()["hardware"]
    return result.tokens_seen / hw["step_s"] if hw["step_s"] > 0 else 0.0


def payback_line(name: str, eager: TrainResult, compiled: TrainResult | None, device_class: str, machine: str,
                 seconds: float) -> str:
    """The measurement as zoo.compile_payback.MEASURED records it, with its break-even budget."""
    if compiled is None:
        return f"    # {name}: the compiled run passed its {seconds:g} s budget (compiling took it): measure with more"
    compile_s = compiled.summary()["hardware"]["compile_s"]
    speedup = step_rate(compiled) / step_rate(eager)
    return (f"    ({name!r}, {device_class!r}): Payback({compile_s:.1f}, {speedup:.3f}, {machine!r}),  "
            f"# break-even {break_even_s(compile_s, speedup):,.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="training budget per model (default 20)")
    parser.add_argument("--models", nargs="+", default=["transformer", "mamba", "hyena"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--text", type=Path, default=DEFAULT_TEXT)
    parser.add_argument("--max-chars", type=int, default=2_000_000, help="characters of the text to use")
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=None, help="CPU torch threads (default: the trainer's choice)")
    parser.add_argument("--compare", choices=tuple(VARIANTS), default="none",
                        help="train each model both ways: optimizer (adamw, muon) or compile (eager, compiled)")
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
    paybacks = []
    for model in args.models:
        results = {}
        for variant, fields in VARIANTS[args.compare].items():
            results[variant] = run(model, ids, vocab, args, cuda, fields)
            print(row(model, variant, results[variant]) if results[variant] else
                  f"| {model} {variant} | passed its {args.seconds:g} s budget: disqualified |", flush=True)
        if args.compare == "compile" and results["eager"]:
            paybacks.append(payback_line(model, results["eager"], results["compiled"],
                                         device_class("cuda" if cuda else "cpu", name) or name,
                                         f"{name}, {args.seconds:g} s runs", args.seconds))
    if paybacks:
        print("\nzoo.compile_payback.MEASURED entries (compile s, steps speedup):\n" + "\n".join(paybacks))


if __name__ == "__main__":
    main()
