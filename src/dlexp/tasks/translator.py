"""A trained translation run used on new sentences: its best weights, vocabularies and decoding settings.

The checkpoint holds everything needed besides the weights: the model's config, the vocabularies
and how the training sentences were preprocessed (``checkpoint["task"]``), so the data need not be
at hand. Sentences are preprocessed as the training data was (lowercase, a space before , . ! ?).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from omegaconf import OmegaConf

from dlexp.data.text import (BOS_ID, EOS_ID, PAD_ID, UNK_ID, Vocab, canonical_numbers, detokenize, lengths, preprocess,
                             tokenize)
from dlexp.errors import UserError
from dlexp.models import build_model
from dlexp.models.decoding import beam_search, greedy, max_lengths
from dlexp.runs.checkpoint import load_checkpoint
from dlexp.runs.files import checkpoint_file


def load_translator(run_dir: Path) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """(model in eval mode, the checkpoint's task facts, the run's config) from ``run_dir/checkpoints/best.pt``."""
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a directory; pass a run dir such as outputs/<date>/<time>")
    path = checkpoint_file(run_dir, best=True)
    if not path.is_file():
        raise UserError(f"{run_dir} has no checkpoints/best.pt; pass the dir of a translation run trained with "
                        "trainer.checkpoints=true")
    state = load_checkpoint(path)
    task = state.get("task")
    if task is None:
        raise UserError(f"{path} records no vocabularies (a checkpoint from an older dlexp); train the run again")
    if task.get("name") != "translation":
        raise UserError(f"{path} is not from a translation run (its task is {task.get('name')}); "
                        "pass the dir of a run on dataset=numbers or dataset=translation")
    config = state["config"]
    model = build_model(OmegaConf.create(config["model"]), tuple(task["input_shape"]), task["num_classes"],
                        context={"src_vocab_size": len(task["src_vocab"])})
    model.load_state_dict(state["model"])
    return model.eval(), task, config


def encode_sentences(sentences: Sequence[str], task: dict[str, Any]) -> Any:
    """Raw sentences -> source ids (B, S): preprocessed and tokenized as in training, cut to S - 1
    tokens + <eos>, right-padded."""
    vocab, steps = Vocab.from_state(task["src_vocab"]), task["input_shape"][0]
    ids = torch.full((len(sentences), steps), PAD_ID, dtype=torch.int64)
    for row, sentence in enumerate(sentences):
        tokens = source_tokens(sentence, task)
        encoded = vocab.encode(tokens[: steps - 1]) + [EOS_ID]
        ids[row, : len(encoded)] = torch.tensor(encoded)
    return ids


def source_tokens(sentence: str, task: dict[str, Any]) -> list[str]:
    """A raw sentence as the training sentences were written and cut into tokens: the ``numbers`` data's
    number words spelled again as num2words spells them (commas, hyphens), then the course's cleaning."""
    sentence = canonical_numbers(sentence, task.get("numbers_lang"))  # absent from older checkpoints: as is
    return tokenize(preprocess(sentence, split_hyphens=task["split_hyphens"]), task["tokens"])


def unknown_words(sentences: Sequence[str], task: dict[str, Any]) -> list[str]:
    """The source tokens of ``sentences`` that the training vocabulary lacks (the model reads each as
    ``<unk>``), in order of appearance, each once."""
    vocab, seen = Vocab.from_state(task["src_vocab"]), {}
    for sentence in sentences:
        for token in source_tokens(sentence, task):
            if vocab.encode([token]) == [UNK_ID]:
                seen.setdefault(token, None)
    return list(seen)


def translate(run_dir: Path, sentences: Sequence[str], beam: Optional[int] = None,
              warn: Optional[Callable[[str], None]] = None) -> list[str]:
    """The run's translations of ``sentences``; ``beam`` overrides the run's decode.beam_size."""
    model, task, config = load_translator(run_dir)
    decode = config.get("decode", {})
    beam = beam or decode.get("beam_size", 1)
    unknown = unknown_words(sentences, task)
    if unknown and warn is not None:
        warn(f"not in the training vocabulary ({len(Vocab.from_state(task['src_vocab']))} tokens), read as <unk>: "
             f"{', '.join(unknown)}; translations of these sentences are guesses")
    src = encode_sentences(sentences, task)
    src_len = lengths(src)
    limits = max_lengths(src_len, decode.get("max_len_a", 1.5), decode.get("max_len_b", 5))
    if beam == 1:
        out = greedy(model, src, src_len, bos=BOS_ID, eos=EOS_ID, max_len=limits, pad=PAD_ID)
    else:
        out = beam_search(model, src, src_len, bos=BOS_ID, eos=EOS_ID, beam_size=beam, max_len=limits,
                          length_penalty=decode.get("length_penalty", 0.75), pad=PAD_ID)
    vocab = Vocab.from_state(task["tgt_vocab"])
    sentences = [detokenize(vocab.decode(row), task["tokens"]) for row in out.tokens.tolist()]
    if task["split_hyphens"]:  # the data split hyphens into words: join them again (quatre-vingt-dix-neuf)
        sentences = [s.replace(" - ", "-") for s in sentences]
    return sentences
