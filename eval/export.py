"""``subchar export RUN --out DIR``: one self-contained ``submission.py`` for the benchmark harness.

The harness (cybertronai/wikitext) loads a single file in an image holding only torch, numpy and tiktoken (with
its dependency regex) beside the standard library, times and meters its ``train(train_text)`` (300 s cap) and
scores the CharModel it returns. The file is *generated from this package's own sources*, so it runs the code
the run was measured with:

1. The tokenizer becomes data: the run's byte-level BPE as tiktoken's constructor arguments (merge ranks as
   base64, the pre-tokenisation regex, the special tokens), rebuilt into a ``tiktoken.Encoding`` in-process.
   Its ids equal the run's tokenizer's (tokenizers_local.tiktoken_bridge); the merges were learned on the
   run's (proxy) train split, so ``train()`` only encodes.
2. The modules the model needs are inlined in dependency order (the ``Part`` lists below): whole modules, or the
   named top-level definitions of a module whose other parts need the rest of the package (zoo.train). Imports
   of this project are removed (their names are then defined by earlier parts or by the template); imports
   of the standard library and the image stay where they are.
3. A small template ties them together: ``train()`` encodes (threads), counts or trains with the run's settings
   and returns the CharAdapter (the run's mode and beam) over the model.

Every export checks the file it writes: it compiles, no top-level name is defined twice, every global name it
uses at run time is defined (``symtable``), and it imports nothing outside the image except under
``try/except ImportError``. A failure there means this module's part lists are out of date with the sources.
"""

from __future__ import annotations

import argparse
import ast
import base64
import builtins
import importlib.util
import json
import re
import symtable
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval.errors import UserError
from eval.records import utc_now, write_text_atomic

SUBMISSION_FILE = "submission.py"
IMAGE_PACKAGES = frozenset({"torch", "numpy", "tiktoken", "regex"})  # the benchmark image, beside the stdlib
PROJECT_PACKAGES = frozenset({"eval", "subchar", "tokenizers_local", "zoo"})
SUBSTITUTED_PACKAGES = frozenset({"tqdm"})  # the template defines a silent stand-in
EXPORTABLE_FAMILY = "bytebpe"
TRAIN_BUDGET_S = 285.0  # the harness disqualifies at 300 s; the trainer plans its own stop inside this
RANKS_PER_LINE = 12


@dataclass(frozen=True)
class Part:
    """Source to inline: a module of this project, whole (no ``names``) or only the named definitions."""

    module: str
    names: tuple[str, ...] = ()


CONTRACT = (Part("eval.contract"), Part("eval.errors"))
ADAPTER = (
    Part("tokenizers_local.text_stream", ("CHUNK_BOUNDARY", "DEFAULT_CHUNK_CHARS", "chunks")),
    Part("subchar.tokenizer_view"),
    Part("subchar.surface_index"),
    Part("subchar.commit_point"),
    Part("subchar.lm", ("step_many", "logprobs_many")),
    Part("subchar.lm_cache"),
    Part("subchar.frontier"),
    Part("subchar.adapter"),
    Part("subchar.batch_engine"),
)
NGRAM_TRAINER = (
    Part("zoo.ngram"),
    Part("zoo.train", ("NGRAM", "NGRAM_DEFAULT_ORDER", "TrainResult", "check_ids", "count_ngram")),
)
NEURAL_TRAINER = (
    Part("eval.guard", ("TIMEOUT_REASON", "TrainingTimeoutError")),
    Part("zoo.streaming"),
    Part("zoo.train", (
        "log", "CPU_MAX_BLOCK_SIZE", "COMPILE_MIN_BUDGET_S", "TrainSettings", "TrainResult", "resolve_device",
        "seed_everything", "check_ids", "build_model", "make_optimizer", "lr_at", "Batches", "next_token_loss",
        "train_neural", "validation_loss",
    )),
)
MODEL_PARTS = {
    "transformer": (Part("zoo.transformer"),),
    "mamba": (Part("zoo.mamba"),),
    "hyena": (Part("zoo.transformer", ("MLP",)), Part("zoo.hyena")),
}
NGRAM_MODEL = "ngram"


# --- the template --------------------------------------------------------------------------------------------
def head(neural: bool) -> str:
    """``from __future__`` first (every inlined module relies on it), then what the template itself imports."""
    stdlib = ["base64", "concurrent.futures", "gc", "itertools", "os", "sys", *(["time"] if neural else []), "types"]
    third_party = ["numpy as np", "tiktoken", *(["torch"] if neural else [])]
    return "\n".join(["from __future__ import annotations", "", *(f"import {name}" for name in stdlib), "",
                      *(f"import {name}" for name in third_party)]) + "\n"


REGISTER = '''
def _register_module() -> None:
    """Put this module in sys.modules when the loader did not.

    The harness's run_eval.py executes this file with ``spec.loader.exec_module`` and never registers it, while
    ``dataclasses`` looks a class's module up in ``sys.modules`` to read string annotations (this file uses
    ``from __future__ import annotations``) and fails when it is missing.
    """
    if __name__ in sys.modules:
        return
    namespace = globals()
    for referrer in gc.get_referrers(namespace):
        if isinstance(referrer, types.ModuleType) and referrer.__dict__ is namespace:
            sys.modules[__name__] = referrer
            return
    raise ImportError(f"{__name__}: cannot find this module to register it in sys.modules")


_register_module()
'''

BASE_CLASS = '''
# ==== the base class the caller checks: the harness's, else subchar's, else the copy above ====
try:  # inside the harness: run_eval.py checks isinstance(model, wikitext.CharModel)
    from wikitext import CharModel
except ImportError:
    try:  # run by subchar: its evaluator checks against eval.contract.CharModel
        from eval.contract import CharModel
    except ImportError:
        pass  # standalone: eval/contract.py as inlined above
'''

TOKENIZER = '''
# ==== the run's tokenizer, rebuilt in-process (nothing is downloaded) ====
def build_encoding() -> tiktoken.Encoding:
    """The run's byte-level BPE as a tiktoken Encoding: same ids; its merges were learned on the train split."""
    special_ids = set(SPECIAL_TOKENS.values())
    ranks = (rank for rank in itertools.count() if rank not in special_ids)
    mergeable_ranks = {base64.b64decode(piece): rank for piece, rank in zip(MERGEABLE_RANKS.split(), ranks)}
    return tiktoken.Encoding(ENCODING_NAME, pat_str=PAT_STR, mergeable_ranks=mergeable_ranks,
                             special_tokens=SPECIAL_TOKENS, explicit_n_vocab=VOCAB_SIZE)


def encode(encoding: tiktoken.Encoding, text: str) -> np.ndarray:
    """Token ids of ``text``, equal to encoding it whole: it is cut only at pre-token boundaries
    (text_stream.chunks) and the pieces are encoded in threads (tiktoken releases the GIL; the harness loads
    this file so that multiprocessing could not pickle its functions)."""
    pieces = list(chunks(text, ENCODE_CHUNK_CHARS))
    if not pieces:
        return np.zeros(0, dtype=np.int64)

    def encode_piece(piece: str) -> np.ndarray:
        return np.asarray(encoding.encode_ordinary(piece), dtype=np.int64)

    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return np.concatenate(list(pool.map(encode_piece, pieces)))
'''

NGRAM_TRAIN = '''
# ==== the entry point ====
def train(train_text: str, valid_text: str | None = None) -> CharModel:
    """Encode ``train_text``, count its n-grams exactly as the run did (zoo.train.count_ngram) and return the
    character model. ``valid_text`` is not used: training sees only the train split."""
    encoding = build_encoding()
    ids = check_ids(encode(encoding, train_text), VOCAB_SIZE)
    lm = count_ngram(ids, VOCAB_SIZE, {"order": ORDER}).model
    return CharAdapter(lm, encoding, mode=MODE, beam=BEAM)
'''

NEURAL_SUPPORT = '''
# ==== what the inlined trainer takes from modules this file does not carry ====
class tqdm:
    """Silent stand-in for tqdm (not in the benchmark image): the inlined trainer's progress bar."""

    def __init__(self, *args, **kwargs) -> None:
        self.n = 0.0

    def update(self, n: float = 1) -> None:
        self.n += n

    def set_postfix(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


def lookup(name: str) -> tuple[type, type]:
    """zoo.registry.lookup for the one model this file carries."""
    if name != MODEL_NAME:
        raise UserError(f"this submission carries only the {MODEL_NAME} model, not {name!r}")
    return Config, Model


class NoGradCharAdapter(CharAdapter):
    """The CharAdapter with autograd off while streaming: the harness neither sets no_grad nor eval mode
    (TorchTokenLM puts the model in eval mode)."""

    @torch.no_grad()
    def reset(self) -> None:
        super().reset()

    @torch.no_grad()
    def predict(self) -> str:
        return super().predict()

    @torch.no_grad()
    def observe(self, char: str) -> None:
        super().observe(char)


# ==== the entry point ====
def train(train_text: str, valid_text: str | None = None) -> CharModel:
    """Encode ``train_text``, train the run's model from scratch with its config, seed and settings for its
    number of steps (zoo.train.train_neural; a planned stop inside TRAIN_BUDGET_S comes first if the device is
    slower) and return the character model. ``valid_text`` is not used: training sees only the train split."""
    started = time.monotonic()
    encoding = build_encoding()
    ids = check_ids(encode(encoding, train_text), VOCAB_SIZE)
    seed_everything(SEED)
    budget_s = TRAIN_BUDGET_S - (time.monotonic() - started)
    result = train_neural(MODEL_NAME, ids, VOCAB_SIZE, budget_s, CONFIG, "auto", TrainSettings(**SETTINGS))
    return NoGradCharAdapter(TorchTokenLM(result.model, result.device), encoding, mode=MODE, beam=BEAM)
'''


# --- what a run holds ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunFacts:
    """What the export needs from a run folder (``subchar compare``) or a checkpoint (``subchar train --out``)."""

    name: str
    checkpoint: Any  # zoo.checkpoint.Checkpoint
    mode: str
    beam: int | None
    seed: int
    record: dict[str, Any] | None  # the run's record.json (scores), when the folder has one


def read_run(
    run: str | Path, mode: str | None = None, beam: int | None = None, seed: int | None = None
) -> RunFacts:
    """Load and verify the run; ``mode``/``beam``/``seed`` override what it recorded (``beam=0``: no beam)."""
    from eval.pipeline import CellOptions
    from zoo.checkpoint import MANIFEST, load_checkpoint

    folder = Path(run).expanduser()
    if not folder.is_dir():
        raise UserError(f"no run folder at {folder}; pass a run of `subchar compare` or a `subchar train --out` folder")
    options: dict[str, Any] = {}
    record = None
    if (folder / "cell.json").is_file():
        cell_file = read_json(folder / "cell.json")
        cell, options = cell_file["cell"], cell_file["options"]
        if cell["family"] is None:
            raise UserError(f"{folder} is the {cell['model']} baseline, which has no tokenizer; export a subword run")
        if (folder / "record.json").is_file():
            record = read_json(folder / "record.json")
        checkpoint_dir = folder / "checkpoint"
        if not (checkpoint_dir / MANIFEST).is_file():
            reason = f" ({record['reason']})" if record and record.get("reason") else ""
            raise UserError(f"{folder} has no checkpoint: its training did not finish{reason}; run the cell again")
        name = f"{cell['family']}{cell['vocab_size']}-{cell['model']}"
    elif (folder / MANIFEST).is_file():
        checkpoint_dir, name = folder, folder.resolve().name
    else:
        raise UserError(f"{folder} is not a subchar run: it holds neither cell.json (subchar compare) nor "
                        f"{MANIFEST} (subchar train --out)")
    checkpoint = load_checkpoint(checkpoint_dir)
    family = checkpoint.tokenizer.family
    if family != EXPORTABLE_FAMILY:
        raise UserError(f"only {EXPORTABLE_FAMILY} runs can be exported (the benchmark image has tiktoken, not "
                        f"tokenizers or sentencepiece); this run's tokenizer is {family!r}")
    if checkpoint.model_name != NGRAM_MODEL and checkpoint.model_name not in MODEL_PARTS:
        raise UserError(f"cannot export model {checkpoint.model_name!r}: choose a run of "
                        f"{', '.join([NGRAM_MODEL, *MODEL_PARTS])}")
    defaults = CellOptions()
    chosen_beam = options.get("beam", defaults.beam) if beam is None else (beam or None)
    return RunFacts(
        name=name,
        checkpoint=checkpoint,
        mode=mode or options.get("mode", defaults.mode),
        beam=chosen_beam,
        seed=options.get("seed", defaults.seed) if seed is None else seed,
        record=record,
    )


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{path} is corrupt (not JSON); run the cell again") from None


def train_settings(facts: RunFacts, batch_size: int | None, lr: float | None) -> dict[str, Any]:
    """The TrainSettings that replay the run: its step count (the schedule then follows steps), its batch size
    (from tokens seen = steps x batch x block) and learning rate; no validation passes (they change no weight)."""
    from zoo.train import TrainSettings

    manifest, config = facts.checkpoint.manifest, facts.checkpoint.config
    steps = int(manifest["steps"])
    if steps <= 0:
        raise UserError(f"{facts.checkpoint.path} took no training step; train the run longer before exporting it")
    if batch_size is None:
        batch_size, rest = divmod(int(manifest["tokens_seen"]), steps * int(config["block_size"]))
        if rest or batch_size <= 0:
            raise UserError(f"cannot tell the batch size {facts.checkpoint.path} was trained with; pass --batch-size")
    return {"batch_size": batch_size, "lr": TrainSettings.lr if lr is None else lr, "max_steps": steps,
            "evals": 0, "progress": False}


# --- generating the file ---------------------------------------------------------------------------------------
def build_submission(facts: RunFacts, batch_size: int | None = None, lr: float | None = None,
                     author: str | None = None) -> str:
    """The text of submission.py for ``facts`` (checked, see the module docstring)."""
    from tokenizers_local import to_tiktoken

    checkpoint = facts.checkpoint
    model = checkpoint.model_name
    state = to_tiktoken(checkpoint.tokenizer).__getstate__()  # tiktoken's pickle state: its constructor arguments
    constants: dict[str, Any] = {
        "ENCODING_NAME": state["name"],
        "VOCAB_SIZE": int(checkpoint.manifest["vocab_size"]),
        "PAT_STR": state["pat_str"],
        "SPECIAL_TOKENS": state["special_tokens"],
        "ENCODE_CHUNK_CHARS": 1 << 20,
        "MODE": facts.mode,
        "BEAM": facts.beam,
    }
    settings = None
    if model == NGRAM_MODEL:
        parts = (*ADAPTER, *NGRAM_TRAINER)
        constants["ORDER"] = int(checkpoint.config["order"])
        entry = NGRAM_TRAIN
    else:
        parts = (*ADAPTER, *MODEL_PARTS[model], *NEURAL_TRAINER)
        settings = train_settings(facts, batch_size, lr)
        constants.update(MODEL_NAME=model, TRAIN_BUDGET_S=TRAIN_BUDGET_S, SEED=facts.seed, SETTINGS=settings,
                         CONFIG={k: v for k, v in checkpoint.config.items() if k != "vocab_size"})
        entry = NEURAL_SUPPORT
    sections = [
        f'"""{header_docstring(facts, settings)}"""\n',
        head(neural=settings is not None),
        *([f"__author__ = {author!r}\n"] if author else []),
        REGISTER,
        *(inline(part) for part in CONTRACT),
        BASE_CLASS,
        *(inline(part) for part in parts),
        "\n# ==== the run ====\n" + "".join(f"{name} = {value!r}\n" for name, value in constants.items()),
        ranks_literal(state["mergeable_ranks"], set(state["special_tokens"].values())),
        TOKENIZER,
        entry,
    ]
    source = "\n".join(section.rstrip("\n") + "\n" for section in sections)
    check_submission(source)
    return source


def header_docstring(facts: RunFacts, settings: dict[str, Any] | None) -> str:
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
    if settings is None:
        recipe = f"train() counts the train text's {config['order']}-grams (modified Kneser-Ney), as the run did."
    else:
        exact = ("It planned its steps too, so on the run's device the weights are the run's."
                 if manifest.get("stop_reason") == "max_steps" else
                 "The run stopped on its clock, with a time-based learning-rate schedule; the export replays its "
                 "step count with a step-based one: the same recipe, not bit-identical weights.")
        recipe = (f"train() trains {facts.checkpoint.model_name} {config} from scratch: seed {facts.seed}, "
                  f"{settings['max_steps']} steps of batch {settings['batch_size']}, lr {settings['lr']:g}, as "
                  f"the run (on {manifest.get('device')}). {exact}")
    lines = [
        f"subchar submission {facts.name}: {facts.checkpoint.tokenizer.family}{manifest['vocab_size']} tokens, "
        f"{facts.checkpoint.model_name}, read per character by subchar's CharAdapter ({facts.mode} mode, {beam}).",
        "",
        f"Exported from {facts.checkpoint.path.resolve()} (trained on {manifest.get('train_source')}, "
        f"{manifest.get('train_chars'):,} chars, {split}): {scored}.",
        "",
        f"The tokenizer's merges were learned on that {'proxy ' if proxy else ''}train text and are embedded below "
        "(MERGEABLE_RANKS); train() only encodes with them. " + recipe,
        "",
        f"Generated by `subchar export` on {utc_now()} from subchar's own sources (the sections marked "
        "'inlined from'); regenerate it rather than editing it. It needs only the standard library, "
        + ("torch, " if settings else "") + "numpy and tiktoken (with its dependency regex).",
    ]
    text = "\n".join(textwrap.fill(line, 116) if line else "" for line in lines) + "\n"
    return text.replace("\\", "\\\\").replace('"""', "'''")  # it goes into a """ literal


def ranks_literal(mergeable_ranks: dict[bytes, int], special_ids: set[int]) -> str:
    """MERGEABLE_RANKS: every token's bytes in base64, in rank order (special ids skipped), as one string."""
    ordered = sorted(mergeable_ranks.items(), key=lambda item: item[1])
    expected = [rank for rank in range(len(ordered) + len(special_ids)) if rank not in special_ids][: len(ordered)]
    if [rank for _, rank in ordered] != expected:
        raise UserError("this tokenizer's ranks have gaps besides its special tokens; train the tokenizer again")
    pieces = [base64.b64encode(token).decode("ascii") for token, _ in ordered]
    rows = [" ".join(pieces[i : i + RANKS_PER_LINE]) for i in range(0, len(pieces), RANKS_PER_LINE)]
    return 'MERGEABLE_RANKS = """\n' + "\n".join(rows) + '\n"""\n'


def source_of(module: str) -> tuple[Path, str]:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"export part {module!r} is not an importable module; fix eval/export.py")
    path = Path(spec.origin)
    return path, path.read_text(encoding="utf-8")


def import_root(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.ImportFrom):
        return ["." if node.level else (node.module or "").split(".")[0]]
    return [alias.name.split(".")[0] for alias in node.names]


def guarded_imports(tree: ast.AST) -> set[int]:
    """ids of the import statements inside ``try`` blocks that catch ImportError (optional dependencies)."""
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(catches_import_error(h) for h in node.handlers):
            guarded.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
    return guarded


def catches_import_error(handler: ast.ExceptHandler) -> bool:
    caught = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(c, ast.Name) and c.id in ("ImportError", "ModuleNotFoundError") for c in caught)


def inline(part: Part) -> str:
    """The part's source without its imports of this project (``from __future__`` moves to the file head)."""
    path, source = source_of(part.module)
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    dropped = project_import_lines(tree, path)
    if part.names:
        blocks = selected_blocks(tree, lines, part, path)
        banner = f"only {', '.join(part.names)}"
    else:
        blocks = [[(1, len(lines))]]
        banner = "whole module"
    texts = ["".join(lines[i - 1] for start, end in block for i in range(start, end + 1) if i not in dropped)
             for block in blocks]
    body = re.sub(r"\n{4,}", "\n\n\n", "\n\n\n".join(text.strip("\n") for text in texts if text.strip()))
    relative = path.relative_to(path.parents[1]).as_posix()
    return f"\n# ==== inlined from {relative} ({banner}) ====\n{body}\n"


def project_import_lines(tree: ast.Module, path: Path) -> set[int]:
    """Lines of the imports to remove (this project's, substituted ones, ``__future__``); any other import must
    be the stdlib's or the image's, unless it sits under ``try/except ImportError`` (an optional speed-up)."""
    guarded = guarded_imports(tree)
    dropped: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        roots = set(import_root(node))
        if roots & (PROJECT_PACKAGES | SUBSTITUTED_PACKAGES | {"__future__"}):
            dropped.update(range(node.lineno, node.end_lineno + 1))
        elif id(node) not in guarded and not roots <= allowed_roots():
            raise RuntimeError(f"{path} imports {', '.join(sorted(roots))}, which the benchmark image lacks; "
                               "the export cannot inline it")
    return dropped


def selected_blocks(tree: ast.Module, lines: list[str], part: Part, path: Path) -> list[list[tuple[int, int]]]:
    """Line spans: one block with the imports the named top-level definitions use, then one block per
    definition, with the comment lines right above it."""
    wanted = set(part.names)
    chosen = [stmt for stmt in tree.body if defined_names(stmt) & wanted]
    missing = wanted - set().union(*(defined_names(stmt) for stmt in chosen))
    if missing:
        raise RuntimeError(f"{path} no longer defines {', '.join(sorted(missing))}; update the export parts")
    used = {node.id for stmt in chosen for node in ast.walk(stmt) if isinstance(node, ast.Name)}
    imports = [(stmt.lineno, stmt.end_lineno) for stmt in tree.body if isinstance(stmt, (ast.Import, ast.ImportFrom))
               and {alias.asname or alias.name.split(".")[0] for alias in stmt.names} & used]
    definitions = []
    for stmt in chosen:
        start = first_line(stmt)
        while start > 1 and lines[start - 2].lstrip().startswith("#"):
            start -= 1
        definitions.append([(start, stmt.end_lineno)])
    return [imports, *definitions]


def defined_names(stmt: ast.stmt) -> set[str]:
    """Names a top-level statement defines (imports excluded)."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {stmt.name}
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target] if isinstance(stmt, ast.AnnAssign) else []
    return {node.id for target in targets for node in ast.walk(target)
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)}


def first_line(stmt: ast.stmt) -> int:
    decorators = getattr(stmt, "decorator_list", [])
    return min([stmt.lineno, *(d.lineno for d in decorators)])


# --- checks on the generated file ------------------------------------------------------------------------------
def allowed_roots() -> frozenset[str]:
    return IMAGE_PACKAGES | frozenset(sys.stdlib_module_names)


def unguarded_imports(source: str) -> list[str]:
    """Top-level packages the file imports outside ``try/except ImportError`` that the benchmark image lacks."""
    tree = ast.parse(source)
    guarded = guarded_imports(tree)
    bad = {root for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in guarded
           for root in import_root(node) if root not in allowed_roots()}
    return sorted(bad)


def undefined_names(source: str) -> list[str]:
    """Global names the file reads at run time but never defines (annotations are not evaluated: ``from
    __future__ import annotations``, so symtable does not list them)."""
    table = symtable.symtable(source, SUBMISSION_FILE, "exec")
    defined = {s.get_name() for s in table.get_symbols() if s.is_assigned() or s.is_imported() or s.is_namespace()}
    known = defined | set(dir(builtins)) | {"__file__", "__spec__", "__loader__", "__builtins__"}
    missing: set[str] = set()
    pending = [table]
    while pending:
        scope = pending.pop()
        pending.extend(scope.get_children())
        for symbol in scope.get_symbols():
            is_global = symbol.is_global() or scope.get_type() == "module"
            if symbol.is_referenced() and is_global and symbol.get_name() not in known:
                missing.add(symbol.get_name())
    return sorted(missing)


def duplicate_definitions(source: str) -> list[str]:
    seen: set[str] = set()
    twice: set[str] = set()
    for stmt in ast.parse(source).body:
        for name in defined_names(stmt):
            (twice if name in seen else seen).add(name)
    return sorted(twice)


def check_submission(source: str) -> None:
    """The self-checks of the module docstring; RuntimeError names what the part lists got wrong."""
    compile(source, SUBMISSION_FILE, "exec")
    problems = {
        "defines twice": duplicate_definitions(source),
        "uses undefined": undefined_names(source),
        "imports outside the benchmark image": unguarded_imports(source),
    }
    found = "; ".join(f"{what} {', '.join(names)}" for what, names in problems.items() if names)
    if found:
        raise RuntimeError(f"generated {SUBMISSION_FILE} {found}: update the parts in eval/export.py")


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
) -> Path:
    """Write ``out/submission.py`` for the run in ``run``; returns its path."""
    if mode not in (None, "spec", "exact"):
        raise UserError(f"mode must be spec or exact, not {mode!r}")
    if beam is not None and beam < 0:
        raise UserError(f"--beam must be a positive width (0: no beam), got {beam}")
    facts = read_run(run, mode=mode, beam=beam, seed=seed)
    target = Path(out).expanduser() / SUBMISSION_FILE
    write_text_atomic(target, build_submission(facts, batch_size=batch_size, lr=lr, author=author))
    return target


def register(subparsers) -> None:
    parser = subparsers.add_parser("export", help="write a single-file benchmark submission (submission.py) from a run")
    parser.add_argument("run", help="a run folder of `subchar compare` (runs/<cell>) or a `subchar train --out` folder")
    parser.add_argument("--out", required=True, help="folder to write submission.py into")
    parser.add_argument("--mode", choices=("spec", "exact"), help="adapter mode (default: the run's; exact)")
    parser.add_argument("--beam", type=int, help="adapter beam width, 0 for none (default: the run's; none)")
    parser.add_argument("--seed", type=int, help="training seed (default: the run's; 0 as in `subchar train`)")
    parser.add_argument("--batch-size", type=int, help="neural runs: sequences per step (default: the run's)")
    parser.add_argument("--lr", type=float, help="neural runs: the --lr given to `subchar train` (default 3e-3)")
    parser.add_argument("--author", help='contributor shown on the leaderboard, e.g. "@you" (__author__)')
    parser.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    target = export_run(args.run, args.out, mode=args.mode, beam=args.beam, seed=args.seed,
                        batch_size=args.batch_size, lr=args.lr, author=args.author)
    size_kb = target.stat().st_size / 1024
    print(f"wrote {target} ({size_kb:,.0f} KiB): one file whose train(train_text) returns the run's CharModel; "
          "put it at submissions/<name>/submission.py in the benchmark repository")
    return 0
