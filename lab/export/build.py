"""``subchar export RUN --out DIR``: one self-contained ``submission.py`` for the benchmark harness.

The harness (cybertronai/wikitext) loads a single file in an image holding only torch, numpy and tiktoken (with
its dependency regex) beside the standard library, times and meters its ``train(train_text)`` (300 s cap) and
scores the CharModel it returns. The file is *generated from this package's own sources*, so it runs the code
the run was measured with:

1. The tokenizer becomes data: the run's byte-level BPE as tiktoken's constructor arguments (merge ranks as
   base64, the pre-tokenisation regex, the special tokens), rebuilt into a ``tiktoken.Encoding`` in-process.
   Its ids equal the run's tokenizer's (tokenizers_local.tiktoken_bridge); the merges were learned on the
   run's (proxy) train split, so ``train()`` only encodes. Learning them is outside the harness's measured
   window, so the file states what it cost (``TOKENIZER``, and the docstring).
2. The modules the model needs are inlined in dependency order (``lab.export.parts``; ``lab.export.inline``):
   whole modules, or the named top-level definitions of a module whose other parts need the rest of the package.
3. The templates (``lab/export/templates/``, real modules) tie them together: ``train()`` encodes (threads) and
   calls the grid cell's own step from token ids to the character model (``lab.cell.ngram_char_model``,
   ``mixture_char_model`` or ``neural_char_model``) with the run's settings, and the harness's seed when it passes
   one. An n-gram run that adapted (``ADAPT``) gives a model that also learns from the text it is scored on
   (``zoo.online_ngram``). A mixture run (``ngram+char-kn``) also counts the char baseline on the train text
   (``CHAR_ORDER``) and mixes the two per character (``CHAR_WEIGHT`` on the char model, ``subchar.mixture``).

The file names no local path: sources appear by file name only.

Every export checks the file it writes (``lab.export.checks``). A failure there means the part lists are out of
date with the sources.
"""

from __future__ import annotations

import base64
import pprint
import textwrap
from pathlib import Path
from typing import Any

from eval.errors import UserError
from eval.guard import MAX_TRAIN_SECONDS
from eval.records import utc_now, write_text_atomic
from lab.export import parts
from lab.export.checks import SUBMISSION_FILE, check_submission
from lab.export.inline import inline
from lab.export.run import RunFacts, read_run, train_settings
from lab.export.templates import run as run_template
from tokenizers_local import to_tiktoken
from zoo.kinds import kind_of

# the harness disqualifies past MAX_TRAIN_SECONDS; a submission's trainer plans its own stop inside that less this
TRAIN_BUDGET_MARGIN_S = 15.0
TRAIN_BUDGET_S = MAX_TRAIN_SECONDS - TRAIN_BUDGET_MARGIN_S
RANKS_PER_LINE = 12
FLOATS_PER_LINE = 5


# --- generating the file ---------------------------------------------------------------------------------------
def build_submission(facts: RunFacts, batch_size: int | None = None, lr: float | None = None,
                     author: str | None = None) -> str:
    """The text of submission.py for ``facts`` (checked, see the module docstring)."""
    checkpoint = facts.checkpoint
    model = checkpoint.model_name
    state = to_tiktoken(checkpoint.tokenizer).__getstate__()  # tiktoken's pickle state: its constructor arguments
    constants: dict[str, Any] = {
        "ENCODING_NAME": state["name"],
        "VOCAB_SIZE": int(checkpoint.manifest["vocab_size"]),
        "PAT_STR": state["pat_str"],
        "SPECIAL_TOKENS": state["special_tokens"],
        "ENCODE_CHUNK_CHARS": 1 << 20,
        "TRAIN_CHARS": facts.train_chars,
        "COUNTED_CHARS": facts.counted_chars,
        "MODE": facts.mode,
        "BEAM": facts.beam,
    }
    settings = None
    if kind_of(model).counted:
        body = (*parts.ADAPTER, *parts.NGRAM_TRAINER)
        constants["ORDER"] = int(checkpoint.config["order"])
        constants["ADAPT"] = facts.adapt
        entry = parts.NGRAM_ENTRY
        if kind_of(model).mixture:
            body = (*body, *parts.MIXTURE_PARTS)
            constants["CHAR_ORDER"] = int(checkpoint.config["char_order"])
            constants["CHAR_WEIGHT"] = float(checkpoint.config["char_weight"])
            entry = parts.MIXTURE_ENTRY
    else:
        body = (*parts.ADAPTER, *parts.MODEL_PARTS[model], *parts.NEURAL_TRAINER)
        settings = train_settings(facts, batch_size, lr)
        constants.update(MODEL_NAME=model, TRAIN_BUDGET_S=TRAIN_BUDGET_S, SEED=facts.seed, SETTINGS=settings,
                         LR_SCHEDULE=checkpoint.manifest.get("lr_schedule"),
                         CONFIG={k: v for k, v in checkpoint.config.items() if k != "vocab_size"})
        entry = parts.NEURAL_ENTRY
    constants["TOKENIZER"] = tokenizer_facts(facts)
    constants["MERGEABLE_RANKS"] = ranks_text(state["mergeable_ranks"], set(state["special_tokens"].values()))
    unknown = set(constants) - set(run_template.__annotations__)
    if unknown:
        raise RuntimeError(f"{', '.join(sorted(unknown))} not declared in lab/export/templates/run.py")
    sections = [
        f'"""{header_docstring(facts, settings, constants["TOKENIZER"])}"""\n',
        "from __future__ import annotations\n",
        *([f"__author__ = {author!r}\n"] if author else []),
        *(inline(part) for part in (*parts.HEAD, *parts.CONTRACT, *body)),
        "\n# ==== the run ====\n" + "".join(constant_line(name, value) for name, value in constants.items()),
        *(inline(part) for part in (*parts.TOKENIZER, *entry)),
    ]
    source = "\n".join(section.rstrip("\n") + "\n" for section in sections)
    check_submission(source)
    return source


def tokenizer_facts(facts: RunFacts) -> dict[str, Any]:
    """What the tokenizer is, the text it was learned on and what learning it cost (the run record's "tokenizer"
    energy phase; a tokenizer from `subchar tokenizer train` has its seconds, no joules). Its merges are learned
    before train() and embedded, so that cost falls outside the harness's measured train() window."""
    tokenizer = facts.checkpoint.tokenizer
    info = tokenizer.info
    phase = ((facts.record or {}).get("energy_phases") or {}).get("tokenizer")
    return {
        "family": tokenizer.family,
        "vocab_size": int(facts.checkpoint.manifest["vocab_size"]),
        "learned_on": public_name(info.train_source),
        "learned_on_proxy": info.train_proxy,  # a stand-in for the train split (development runs)
        "learned_on_chars": info.train_chars,
        "learned_on_sha256": info.train_sha256,
        "learning_seconds": phase["duration_s"] if phase else info.training_seconds,
        "learning_joules": phase["total_energy_J"] if phase else None,
        "cost_counted": "no: learned before train(), outside the harness's measured window",
    }


def public_name(source: str | None) -> str:
    """A data source without the local folders it was read from: a generated file must not carry them."""
    return Path(source).name if source else "an unrecorded text"


def header_docstring(facts: RunFacts, settings: dict[str, Any] | None, tokenizer: dict[str, Any]) -> str:
    manifest, config = facts.checkpoint.manifest, facts.checkpoint.config
    proxy = bool(manifest.get("proxy_train"))
    split = "a PROXY for the train split" if proxy else "the train split"
    record = facts.record or {}
    if record.get("val_char_accuracy") is not None:
        scored = (f"val char accuracy {record['val_char_accuracy']:.4f} over {record['val_chars']:,} chars"
                  + (f" (disqualified: {record['reason']})" if record.get("disqualified") else "")
                  + (" - a development figure (proxy train text), not a benchmark result" if proxy else ""))
    else:
        scored = "no val accuracy recorded with this checkpoint (score it with `subchar eval`)"
    beam = "no beam" if facts.beam is None else f"beam {facts.beam}"
    mixture = kind_of(facts.checkpoint.model_name).mixture
    if settings is None and mixture:
        recipe = (f"train() counts the train text's {config['order']}-grams of tokens and its {config['char_order']}-"
                  "grams of characters (modified Kneser-Ney, the char model's vocabulary every character it "
                  "counts), as the run did, and reads the two per character, mixed with weight "
                  f"{config['char_weight']:g} on the char model (CHAR_WEIGHT, subchar.mixture); counting is "
                  "deterministic, so it takes no seed. "
                  + ("Both models also learn from the text they are scored on (ADAPT, zoo.online_ngram: the harness "
                     "asks predict() strictly before observe()), as the run's did." if facts.adapt else
                     "Neither model learns while it is scored (ADAPT off), as the run's did not."))
    elif settings is None:
        recipe = (f"train() counts the train text's {config['order']}-grams (modified Kneser-Ney), as the run did; "
                  "counting is deterministic, so it takes no seed. "
                  + ("The model also learns from the text it is scored on, each token once the adapter commits it "
                     "(ADAPT, zoo.online_ngram: the harness asks predict() strictly before observe()), as the run "
                     "did." if facts.adapt else "The model does not learn while it is scored (ADAPT off), as the "
                     "run did not."))
    else:
        if "lr_schedule" in manifest:
            schedule = ("the learning rate the run used at each step (LR_SCHEDULE, recorded by the run"
                        + ("" if manifest.get("stop_reason") == "max_steps" else ", whose schedule followed its clock")
                        + f"), {'compiled' if settings['compile'] else 'eager'} as the run was")
            exact = ("Given the run's train text, on the run's device and seed, the weights are the run's, bit for "
                     "bit; another device (e.g. a GPU for a CPU run) rounds differently.")
        else:
            schedule = f"a step-based learning-rate schedule from lr {settings['lr']:g}"
            exact = ("It planned its steps too, so on the run's device the weights are the run's."
                     if manifest.get("stop_reason") == "max_steps" else
                     "The run stopped on its clock, with a time-based schedule, and its checkpoint predates recorded "
                     "schedules: the same recipe, not bit-identical weights.")
        recipe = (f"train() trains {facts.checkpoint.model_name} {config} from scratch: seed {facts.seed} (SEED; "
                  "the harness's when it sets the SEED environment variable, as `submit.py --seed N` does), "
                  f"{manifest['steps']} steps of batch {settings['batch_size']} with {schedule}, as the run (on "
                  f"{manifest.get('device')}). {exact}")
    joules = tokenizer["learning_joules"]
    cost = f"{tokenizer['learning_seconds']:.2f} s and " + (
        f"{joules:,.1f} J" if joules is not None else "unmeasured joules (`subchar tokenizer train` has no meter)")
    learned_on = (f"{tokenizer['learned_on']} ({tokenizer['learned_on_chars']:,} chars"
                  + (", a proxy for the train split" if tokenizer["learned_on_proxy"] else "")
                  + f", sha256 {tokenizer['learned_on_sha256']})")
    lines = [
        f"subchar submission {facts.name}: {tokenizer['family']}{tokenizer['vocab_size']} tokens, "
        f"{facts.checkpoint.model_name}, read per character by subchar's CharAdapter ({facts.mode} mode, {beam})"
        + (", mixed with a char n-gram." if mixture else "."),
        "",
        f"Exported from the run {facts.name} (trained on {public_name(manifest.get('train_source'))}, "
        f"{manifest.get('train_chars'):,} chars, {split}): {scored}. {text_taken(facts)}",
        "",
        f"The tokenizer's merges were learned on {learned_on} at a cost of {cost}, before train(): that cost is "
        "outside the harness's measured train() window (TOKENIZER below). They are embedded below (MERGEABLE_RANKS); "
        "train() only encodes with them. " + recipe,
        "",
        f"Generated by `subchar export` on {utc_now()} from subchar's own sources (the sections marked "
        "'inlined from'); regenerate it rather than editing it. It needs only the standard library, "
        "torch, numpy and tiktoken (with its dependency regex).",
    ]
    text = "\n".join(textwrap.fill(line, 116) if line else "" for line in lines) + "\n"
    return text.replace("\\", "\\\\").replace('"""', "'''")  # it goes into a """ literal


def text_taken(facts: RunFacts) -> str:
    """What of the text it is given train() trains on: what the run trained on of its own (TRAIN_CHARS,
    COUNTED_CHARS; lab.export.templates.tokenizer.run_text), never more than the run's plan kept to."""
    if facts.counted_chars is not None:
        return (f"Its plan encoded and trained on only the first {facts.counted_chars:,} of them (cut at a pre-token "
                "boundary) to fit the time and memory it planned for, and train() takes the same prefix of the text "
                "it is given (COUNTED_CHARS): on the run's text, exactly what the run trained on.")
    if facts.train_chars is not None:
        return (f"The run kept only the first {facts.train_chars:,} chars of its text (--train-chars), and train() "
                "likewise keeps the first as many of the text it is given (TRAIN_CHARS).")
    return "train() trains on all of the text it is given, as the run did."


def constant_line(name: str, value: Any) -> str:
    if name == "MERGEABLE_RANKS":  # one token per base64 word, many per line: readable and diff-friendly
        return f'{name} = """\n{value}\n"""\n'
    if isinstance(value, list):  # a float per step, FLOATS_PER_LINE to a line (repr round-trips a float exactly)
        items = [repr(item) for item in value]
        rows = ("    " + ", ".join(items[i : i + FLOATS_PER_LINE]) + "," for i in range(0, len(items), FLOATS_PER_LINE))
        return f"{name} = [\n" + "\n".join(rows) + "\n]\n"
    if isinstance(value, dict):  # one entry to a line when they do not fit on one
        return f"{name} = {pprint.pformat(value, width=116, sort_dicts=False)}\n"
    return f"{name} = {value!r}\n"


def ranks_text(mergeable_ranks: dict[bytes, int], special_ids: set[int]) -> str:
    """Every token's bytes in base64, in rank order (special ids skipped), RANKS_PER_LINE to a line."""
    ordered = sorted(mergeable_ranks.items(), key=lambda item: item[1])
    expected = [rank for rank in range(len(ordered) + len(special_ids)) if rank not in special_ids][: len(ordered)]
    if [rank for _, rank in ordered] != expected:
        raise UserError("this tokenizer's ranks have gaps besides its special tokens; train the tokenizer again")
    pieces = [base64.b64encode(token).decode("ascii") for token, _ in ordered]
    return "\n".join(" ".join(pieces[i : i + RANKS_PER_LINE]) for i in range(0, len(pieces), RANKS_PER_LINE))


# --- entry points ----------------------------------------------------------------------------------------------
def export_run(
    run: str | Path,
    out: str | Path,
    *,
    mode: str | None = None,
    beam: int | None = None,
    seed: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    author: str | None = None,
    adapt: bool | None = None,
) -> Path:
    """Write ``out/submission.py`` for the run in ``run``; returns its path. ``mode``, ``beam``, ``seed`` and
    ``adapt`` override the run's (None: as the run did)."""
    if mode not in (None, "spec", "exact"):
        raise UserError(f"mode must be spec or exact, not {mode!r}")
    if beam is not None and beam < 0:
        raise UserError(f"--beam must be a positive width (0: no beam), got {beam}")
    facts = read_run(run, mode=mode, beam=beam, seed=seed, adapt=adapt)
    target = Path(out).expanduser() / SUBMISSION_FILE
    write_text_atomic(target, build_submission(facts, batch_size=batch_size, lr=lr, author=author))
    return target


