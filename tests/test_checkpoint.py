"""zoo.checkpoint: round trips for both model kinds, vocabulary mismatch, corrupt and foreign folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import tokenizers_local
from eval.data import SplitText
from eval.energy import EnergyMeter
from eval.errors import UserError
from eval.records import file_sha256
from zoo.checkpoint import load_checkpoint, save_checkpoint
from zoo.streaming import TorchTokenLM
from zoo.registry import lookup
from zoo.train import NGRAM, TrainSettings, model_names, train

WORDS = [a + b + c for a in "bcdfglmnpst" for b in "aeiou" for c in "nrstx"]  # 275 made-up words, many merges
TEXT = SplitText(" ".join(WORDS[(i * 37) % len(WORDS)] for i in range(3000)) + ".", "train", "fixture")


@pytest.fixture(scope="module")
def tokenizer_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tok")
    small = tokenizers_local.train_tokenizer(TEXT, "bytebpe", 300).save(root / "small")
    large = tokenizers_local.train_tokenizer(TEXT, "bytebpe", 320).save(root / "large")
    return small, large


def trained(name: str, tokenizer_dir):
    tokenizer = tokenizers_local.load(tokenizer_dir)
    ids = np.array(tokenizer.encode(TEXT.text))
    overrides = {"order": 3} if name == NGRAM else {"n_layer": 1, "block_size": 16}
    if name != NGRAM:
        fields = lookup(name)[0].__dataclass_fields__
        overrides = {k: v for k, v in overrides.items() if k in fields}
    settings = TrainSettings(batch_size=2, max_steps=2, progress=False, evals=1)
    return train(name, ids, tokenizer.vocab_size, budget_s=60, overrides=overrides, device="cpu", settings=settings,
                 meter=EnergyMeter(gpu=None, cpu=None))


@pytest.mark.parametrize("name", [NGRAM, next(n for n in model_names() if n != NGRAM)])
def test_round_trip_gives_identical_predictions(tmp_path, tokenizer_dirs, name):
    result = trained(name, tokenizer_dirs[0])
    run = save_checkpoint(tmp_path / "run", result, tokenizer_dirs[0], TEXT, records={"train_record.json": {"a": 1}})
    loaded = load_checkpoint(run)
    assert loaded.model_name == name and loaded.config == result.config
    assert loaded.manifest["tokens_seen"] == result.tokens_seen and loaded.manifest["proxy_train"] is False
    assert loaded.manifest["train_text_sha256"] == TEXT.digest()
    assert json.loads((run / "train_record.json").read_text()) == {"a": 1}
    assert loaded.tokenizer.vocab_size == result.config["vocab_size"]
    ids = loaded.tokenizer.encode("the cat sat")
    lm_before = result.model if name == NGRAM else TorchTokenLM(result.model)
    lm_after = loaded.token_lm()
    before, after = lm_before.start(), lm_after.start()
    for token in ids:
        before, after = lm_before.step(before, token), lm_after.step(after, token)
        np.testing.assert_array_equal(lm_before.logprobs(before), lm_after.logprobs(after))


def test_saving_replaces_an_old_checkpoint_but_not_other_folders(tmp_path, tokenizer_dirs):
    result = trained(NGRAM, tokenizer_dirs[0])
    run = save_checkpoint(tmp_path / "run", result, tokenizer_dirs[0], TEXT)
    save_checkpoint(run, result, tokenizer_dirs[0], TEXT)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging or old folders left behind
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("keep")
    with pytest.raises(UserError, match="not a checkpoint folder"):
        save_checkpoint(tmp_path / "precious", result, tokenizer_dirs[0], TEXT)


def test_vocab_mismatch_is_a_clear_error(tmp_path, tokenizer_dirs):
    small, large = tokenizer_dirs
    result = trained(NGRAM, small)
    with pytest.raises(UserError, match="has 3.. ids but the model has 3..; use the tokenizer the model was trained"):
        save_checkpoint(tmp_path / "run", result, large, TEXT)
    run = save_checkpoint(tmp_path / "run", result, small, TEXT)
    with pytest.raises(UserError, match="ids but the model has"):
        load_checkpoint(run, tokenizer_dir=large)


@pytest.mark.parametrize("victim", ["weights", "config.json", "manifest.json", "tokenizer"])
def test_corrupt_files_are_reported(tmp_path, tokenizer_dirs, victim):
    name = next(n for n in model_names() if n != NGRAM)
    run = save_checkpoint(tmp_path / "run", trained(name, tokenizer_dirs[0]), tokenizer_dirs[0], TEXT)
    if victim == "weights":
        path = run / "weights.pt"
        path.write_bytes(path.read_bytes()[:100])
        message = "weights.pt does not match its checksum"
    elif victim == "tokenizer":
        path = next(p for p in (run / "tokenizer").iterdir() if p.name != "manifest.json")
        path.write_bytes(path.read_bytes() + b" ")
        message = "corrupt"
    else:
        (run / victim).write_text("{not json")
        message = "checksum" if victim == "config.json" else "is corrupt \\(not JSON\\)"
    with pytest.raises(UserError, match=message):
        load_checkpoint(run)


def test_missing_or_foreign_folder(tmp_path):
    with pytest.raises(UserError, match="no checkpoint folder"):
        load_checkpoint(tmp_path / "absent")
    (tmp_path / "half").mkdir()
    with pytest.raises(UserError, match="has no manifest.json"):
        load_checkpoint(tmp_path / "half")


def test_weights_that_do_not_fit_the_config_are_reported(tmp_path, tokenizer_dirs):
    name = next(n for n in model_names() if n != NGRAM)
    run = save_checkpoint(tmp_path / "run", trained(name, tokenizer_dirs[0]), tokenizer_dirs[0], TEXT)
    torch.save({"nonsense": torch.zeros(1)}, run / "weights.pt")
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["files"]["weights.pt"] = file_sha256(run / "weights.pt")
    (run / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="cannot rebuild"):
        load_checkpoint(run)
