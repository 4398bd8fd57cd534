"""GRU encoder-decoders, as in the course's seq2seq chapters.

``seq2seq``: the encoder's final hidden state initializes the decoder, and its top layer's final
state (the context) is appended to every decoder input. ``seq2seq_attention``: Bahdanau's decoder,
which at each step attends over all encoder outputs with its previous top-layer state as the query.
The encoder runs on packed sequences, so padded source positions never reach a hidden state.
Interface: ``dlexp.models.seq2seq_base``.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from dlexp.config.constraints import Fraction, PositiveInt
from dlexp.errors import ConfigError
from dlexp.models.attention import AdditiveAttention, DotProductAttention
from dlexp.models.seq2seq_base import Seq2SeqModel, State, check_vocab_sizes, register_translation, source_mask

ATTENTIONS = ("additive", "dot")


class GRUEncoder(nn.Module):
    def __init__(self, vocab_size: int, embed_size: int, num_hiddens: int, num_layers: int, dropout: float):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_size, padding_idx=0)
        self.rnn = nn.GRU(embed_size, num_hiddens, num_layers, dropout=dropout, batch_first=True)

    def forward(self, src: Tensor, src_len: Tensor) -> tuple[Tensor, Tensor]:
        """src (B, S) -> outputs (B, S, H) (zeros past each length), final state (layers, B, H)."""
        packed = pack_padded_sequence(self.embedding(src), src_len.cpu(), batch_first=True, enforce_sorted=False)
        outputs, hidden = self.rnn(packed)  # hidden: each sentence's state at its own last token
        outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=src.shape[1])
        return outputs, hidden


def _batch_first(hidden: Tensor) -> Tensor:
    return hidden.transpose(0, 1)  # (layers, B, H) <-> (B, layers, H): states keep the batch in dim 0


class GRUSeq2Seq(Seq2SeqModel):
    def __init__(self, src_vocab: int, tgt_vocab: int, embed_size: int, num_hiddens: int, num_layers: int, dropout: float):
        super().__init__()
        self.encoder = GRUEncoder(src_vocab, embed_size, num_hiddens, num_layers, dropout)
        self.embedding = nn.Embedding(tgt_vocab, embed_size, padding_idx=0)
        self.rnn = nn.GRU(embed_size + num_hiddens, num_hiddens, num_layers, dropout=dropout, batch_first=True)
        self.dense = nn.Linear(num_hiddens, tgt_vocab)

    def encode(self, src: Tensor, src_len: Tensor) -> State:
        _, hidden = self.encoder(src, src_len)
        return {"hidden": _batch_first(hidden), "context": hidden[-1]}  # (B, layers, H), (B, H)

    def forward(self, src: Tensor, src_len: Tensor, tgt_in: Tensor) -> Tensor:
        state = self.encode(src, src_len)
        x = self.embedding(tgt_in)  # (B, T, E)
        context = state["context"][:, None, :].expand(-1, x.shape[1], -1)  # (B, T, H)
        out, _ = self.rnn(torch.cat([x, context], dim=-1), _batch_first(state["hidden"]).contiguous())
        return self.dense(out)  # (B, T, V)

    def decode_step(self, prev: Tensor, state: State) -> tuple[Tensor, State]:
        x = torch.cat([self.embedding(prev), state["context"]], dim=-1)[:, None, :]  # (B, 1, E + H)
        out, hidden = self.rnn(x, _batch_first(state["hidden"]).contiguous())
        return self.dense(out[:, 0]), {**state, "hidden": _batch_first(hidden)}


class AttentionSeq2Seq(Seq2SeqModel):
    def __init__(
        self, src_vocab: int, tgt_vocab: int, embed_size: int, num_hiddens: int, num_layers: int, dropout: float,
        attention: str,
    ):
        super().__init__()
        self.encoder = GRUEncoder(src_vocab, embed_size, num_hiddens, num_layers, dropout)
        if attention == "additive":
            self.attention: nn.Module = AdditiveAttention(num_hiddens, num_hiddens, num_hiddens, dropout)
        else:
            self.attention = DotProductAttention(dropout)
        self.embedding = nn.Embedding(tgt_vocab, embed_size, padding_idx=0)
        self.rnn = nn.GRU(embed_size + num_hiddens, num_hiddens, num_layers, dropout=dropout, batch_first=True)
        self.dense = nn.Linear(num_hiddens, tgt_vocab)

    def encode(self, src: Tensor, src_len: Tensor) -> State:
        outputs, hidden = self.encoder(src, src_len)  # (B, S, H), (layers, B, H)
        mask = source_mask(src_len, src.shape[1])
        return {
            "keys": self.attention.project_keys(outputs), "values": outputs, "mask": mask,
            "hidden": _batch_first(hidden), "attention": mask.float() / src_len[:, None],  # placeholder until a step
        }

    def decode_step(self, prev: Tensor, state: State) -> tuple[Tensor, State]:
        query = state["hidden"][:, -1]  # (B, H): the top layer's previous state
        context, weights = self.attention(query, state["keys"], state["values"], state["mask"])  # (B, H), (B, S)
        x = torch.cat([context, self.embedding(prev)], dim=-1)[:, None, :]  # (B, 1, H + E)
        out, hidden = self.rnn(x, _batch_first(state["hidden"]).contiguous())
        return self.dense(out[:, 0]), {**state, "hidden": _batch_first(hidden), "attention": weights}

    def forward(self, src: Tensor, src_len: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher forcing runs the steps one by one: each query is the previous step's state."""
        state = self.encode(src, src_len)
        logits = []
        for t in range(tgt_in.shape[1]):
            step, state = self.decode_step(tgt_in[:, t], state)
            logits.append(step)
        return torch.stack(logits, dim=1)  # (B, T, V)


@register_translation("seq2seq")
def seq2seq(
    input_shape: tuple[int, ...],
    num_classes: int,
    src_vocab_size: int = 0,
    *,
    embed_size: PositiveInt = 256,
    num_hiddens: PositiveInt = 256,
    num_layers: PositiveInt = 2,
    dropout: Fraction = 0.2,
) -> nn.Module:
    check_vocab_sizes("seq2seq", src_vocab_size, num_classes)
    return GRUSeq2Seq(src_vocab_size, num_classes, embed_size, num_hiddens, num_layers, dropout)


@register_translation("seq2seq_attention")
def seq2seq_attention(
    input_shape: tuple[int, ...],
    num_classes: int,
    src_vocab_size: int = 0,
    *,
    embed_size: PositiveInt = 256,
    num_hiddens: PositiveInt = 256,
    num_layers: PositiveInt = 2,
    dropout: Fraction = 0.2,
    attention: str = "additive",
) -> nn.Module:
    check_vocab_sizes("seq2seq_attention", src_vocab_size, num_classes)
    if attention not in ATTENTIONS:
        raise ConfigError(f"model.attention must be one of {', '.join(ATTENTIONS)}, got '{attention}'")
    return AttentionSeq2Seq(src_vocab_size, num_classes, embed_size, num_hiddens, num_layers, dropout, attention)
