"""What every translation (sequence-to-sequence) model provides, so that training and decoding
(``dlexp.models.decoding``) work with any of them.

Shapes: B sentences, S source steps, T target steps, V target vocabulary. Sequences are int64 ids,
right-padded with id 0 (``<pad>``); ``src_len`` (B,) counts each source's tokens including ``<eos>``.

- ``forward(src, src_len, tgt_in) -> logits (B, T, V)``, teacher forcing: ``tgt_in`` is
  ``<bos>`` + the target without its last step.
- ``encode(src, src_len) -> state``: a dict of tensors, each with the batch in dim 0.
- ``decode_step(prev (B,), state) -> (logits (B, V), state)``: one incremental step; step t of a
  decode fed tgt_in[:, t] gives forward's logits[:, t].
- ``reorder_state(state, index (B',)) -> state``: beam search keeps, copies or drops sentences.
- Attention models leave the last step's weights over the source in ``state["attention"]`` (B, S);
  padded source positions get exactly zero weight.

Builders take ``(input_shape, num_classes, src_vocab_size)``: input_shape is (S,), num_classes
the target vocabulary size; ``src_vocab_size`` comes from the data, not from the YAML.
"""
from __future__ import annotations

from typing import Callable

from torch import Tensor, nn

from dlexp.errors import ConfigError
from dlexp.models.base import MODELS

State = dict[str, Tensor]
TRANSLATION = "translation"


class Seq2SeqModel(nn.Module):
    """Base class of the translation models: the shared ``reorder_state``; subclasses define the rest."""

    def forward(self, src: Tensor, src_len: Tensor, tgt_in: Tensor) -> Tensor:
        raise NotImplementedError

    def encode(self, src: Tensor, src_len: Tensor) -> State:
        raise NotImplementedError

    def decode_step(self, prev: Tensor, state: State) -> tuple[Tensor, State]:
        raise NotImplementedError

    def reorder_state(self, state: State, index: Tensor) -> State:
        return {key: value.index_select(0, index) for key, value in state.items()}


def register_translation(name: str) -> Callable:
    """``MODELS.register`` that also marks the builder as a translation model (``model_task``)."""

    def decorator(builder: Callable) -> Callable:
        builder.task = TRANSLATION
        return MODELS.register(name)(builder)

    return decorator


def model_task(name: str) -> str:
    """``translation`` for a sequence-to-sequence model; ``any`` for a model of fixed-size inputs."""
    return getattr(MODELS.get(name), "task", "any")


def check_vocab_sizes(model: str, src_vocab_size: int, num_classes: int) -> None:
    if src_vocab_size < 5 or num_classes < 5:  # 4 reserved tokens and at least one word
        raise ConfigError(
            f"model {model} translates between vocabularies (got source {src_vocab_size}, target {num_classes} tokens); "
            "use a translation dataset, e.g. dataset=numbers"
        )


def source_mask(src_len: Tensor, steps: int) -> Tensor:
    """(B,) lengths -> (B, steps) bool, True at real (unpadded) source positions."""
    positions = src_len.new_tensor(range(steps)) if steps else src_len.new_zeros(0)
    return positions[None, :] < src_len[:, None]
