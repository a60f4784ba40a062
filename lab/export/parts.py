"""What a submission is made of, in dependency order: the modules (or named definitions) ``build`` inlines.

The templates (``lab/export/templates/``) are parts like any other; their imports of this project only name
what earlier parts define. A stale list shows up as a failed check on the generated file (``checks``).
"""

from __future__ import annotations

from lab.export.inline import Part
from zoo.kinds import NGRAM as NGRAM_MODEL
from zoo.kinds import exportable_names

HEAD = (Part("lab.export.templates.register"),)
CONTRACT = (Part("eval.contract"), Part("eval.errors"), Part("lab.export.templates.base_class"))
ADAPTER = (
    Part("tokenizers_local.text_stream", ("CHUNK_BOUNDARY", "DEFAULT_CHUNK_CHARS", "chunks")),
    Part("subchar.tokenizer_view"),
    Part("subchar.surface_index"),
    Part("subchar.commit_point"),
    Part("subchar.lm", ("LMCapabilities", "capabilities_of", "logprobs_many", "states_along")),
    Part("subchar.lm_cache"),
    Part("subchar.frontier"),
    Part("subchar.coverings"),
    Part("subchar.diagnostics"),
    Part("subchar.adapter"),
    Part("subchar.forking"),
    Part("subchar.replay_plan"),
    Part("subchar.cohort"),
    Part("subchar.batch_engine"),
)
NGRAM_TRAINER = (
    Part("zoo.ngram"),
    Part("zoo.online_ngram", ("Context", "_versions", "OnlineKneserNey")),  # its State alias is zoo.ngram's name
    Part("zoo.ngram_count"),
    Part("zoo.kinds", ("NGRAM",)),
    Part("zoo.train", ("NGRAM_DEFAULT_ORDER", "TrainResult", "resolve_device", "check_ids", "ngram_order",
                       "count_ngram_chunked", "ngram_result")),
)
# the mixture's char baseline (with stand-ins for what it names from eval.progress and eval.data) and the mixture
MIXTURE_PARTS = (
    Part("lab.export.templates.standins", ("tqdm", "phase", "require_train")),
    Part("zoo.char_baseline"),
    Part("subchar.mixture"),
    Part("zoo.kinds", ("MIXTURE",)),
)
NEURAL_TRAINER = (
    Part("eval.guard", ("TIMEOUT_REASON", "TrainingTimeoutError", "caused_by_timeout")),
    Part("lab.export.templates.standins"),
    Part("zoo.streaming"),
    Part("zoo.threads"),
    Part("zoo.hardware"),
    Part("zoo.sizing"),
    Part("zoo.optimizers"),
    Part("zoo.compile_payback"),
    Part("zoo.train", (
        "log", "CPU_MAX_BLOCK_SIZE", "CPU_BATCH_SIZE", "CUDA_BATCH_SIZE", "TrainSettings",
        "TrainResult", "resolve_device", "seed_everything", "check_ids", "build_model", "own_model", "neural_optimizer",
        "lr_at", "Batches", "next_token_loss", "train_neural", "planned_steps", "validation_loss",
    )),
)
MODEL_PARTS = {
    "transformer": (Part("zoo.kv_tree"), Part("zoo.step_graphs"), Part("zoo.transformer")),
    "mamba": (Part("zoo.extend"), Part("zoo.mamba")),
    "hyena": (Part("zoo.transformer", ("MLP",)), Part("zoo.extend"), Part("zoo.kv_tree", ("TrunkBranch",)),
              Part("zoo.hyena_trunk"), Part("zoo.hyena")),
}
TOKENIZER = (Part("lab.cell_phases", ("prefix_through",)), Part("lab.export.templates.tokenizer"))
# train(): the grid cell's own step from token ids to the character model, then the template that calls it
NGRAM_ENTRY = (Part("lab.cell", ("ngram_char_model",)), Part("lab.export.templates.ngram_entry"))
MIXTURE_ENTRY = (Part("lab.cell", ("ngram_char_model", "mixture_char_model")),
                 Part("lab.export.templates.mixture_entry"))
NEURAL_ENTRY = (Part("lab.cell", ("neural_char_model",)), Part("lab.export.templates.neural_entry"))
EXPORTABLE_MODELS = exportable_names()  # the n-gram (NGRAM_TRAINER), the mixture and every model of MODEL_PARTS
