"""The course's Transformer: sinusoidal positions, post-norm blocks (add & norm after multi-head
attention and after the position-wise FFN), a causal decoder with cross-attention to the encoder.

Incremental decoding caches each decoder layer's projected keys/values of the steps so far
(``self_k{i}``/``self_v{i}``, (B, heads, t, D/heads)) and of the source (``mem_k{i}``/``mem_v{i}``),
so step t costs O(t), not a re-run of the prefix. Interface: ``dlexp.models.seq2seq_base``.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from dlexp.config.constraints import Fraction, PositiveInt
from dlexp.errors import ConfigError
from dlexp.models.attention import MultiHeadAttention
from dlexp.models.seq2seq_base import Seq2SeqModel, State, check_vocab_sizes, register_translation, source_mask


def positional_encoding(positions: Tensor, num_hiddens: int) -> Tensor:
    """(T,) positions -> (T, D): sin on even features, cos on odd, wavelengths 2*pi .. 10000*2*pi."""
    freqs = torch.pow(10000.0, -torch.arange(0, num_hiddens, 2, device=positions.device) / num_hiddens)  # (D/2,)
    angles = positions.float()[:, None] * freqs[None, :]  # (T, D/2)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)  # interleaved: (T, D)


def _ffn(num_hiddens: int, ffn_num_hiddens: int) -> nn.Module:
    return nn.Sequential(nn.Linear(num_hiddens, ffn_num_hiddens), nn.ReLU(), nn.Linear(ffn_num_hiddens, num_hiddens))


class EncoderBlock(nn.Module):
    def __init__(self, num_hiddens: int, num_heads: int, ffn_num_hiddens: int, dropout: float):
        super().__init__()
        self.attention = MultiHeadAttention(num_hiddens, num_heads, dropout)
        self.ffn = _ffn(num_hiddens, ffn_num_hiddens)
        self.norm1, self.norm2 = nn.LayerNorm(num_hiddens), nn.LayerNorm(num_hiddens)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x (B, S, D), mask (B, 1, S) -> (B, S, D)."""
        y, _ = self.attention(x, *self.attention.project_kv(x, x), mask)
        x = self.norm1(x + self.dropout(y))
        return self.norm2(x + self.dropout(self.ffn(x)))


class DecoderBlock(nn.Module):
    def __init__(self, num_hiddens: int, num_heads: int, ffn_num_hiddens: int, dropout: float):
        super().__init__()
        self.self_attention = MultiHeadAttention(num_hiddens, num_heads, dropout)
        self.cross_attention = MultiHeadAttention(num_hiddens, num_heads, dropout)
        self.ffn = _ffn(num_hiddens, ffn_num_hiddens)
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(num_hiddens) for _ in range(3))
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, x: Tensor, past: Optional[tuple[Tensor, Tensor]], memory: tuple[Tensor, Tensor], src_mask: Tensor
    ) -> tuple[Tensor, tuple[Tensor, Tensor], Tensor]:
        """x (B, T, D): the new steps; past: cached (k, v) of earlier steps; memory: the source's (k, v).
        Returns (B, T, D), the (k, v) of all steps so far, cross-attention weights (B, heads, T, S)."""
        k, v = self.self_attention.project_kv(x, x)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        new, seen = x.shape[1], k.shape[2]
        rows = torch.arange(seen - new, seen, device=x.device)  # absolute position of each new step
        causal = (torch.arange(seen, device=x.device)[None, :] <= rows[:, None])[None]  # (1, T, seen)
        y, _ = self.self_attention(x, k, v, causal)
        x = self.norm1(x + self.dropout(y))
        y, weights = self.cross_attention(x, *memory, src_mask[:, None, :])
        x = self.norm2(x + self.dropout(y))
        return self.norm3(x + self.dropout(self.ffn(x))), (k, v), weights


class Transformer(Seq2SeqModel):
    def __init__(
        self, src_vocab: int, tgt_vocab: int, num_hiddens: int, num_blks: int, num_heads: int, ffn_num_hiddens: int,
        dropout: float,
    ):
        super().__init__()
        self.num_hiddens = num_hiddens
        self.src_embedding = nn.Embedding(src_vocab, num_hiddens, padding_idx=0)
        self.tgt_embedding = nn.Embedding(tgt_vocab, num_hiddens, padding_idx=0)
        args = (num_hiddens, num_heads, ffn_num_hiddens, dropout)
        self.encoder_blocks = nn.ModuleList(EncoderBlock(*args) for _ in range(num_blks))
        self.decoder_blocks = nn.ModuleList(DecoderBlock(*args) for _ in range(num_blks))
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(num_hiddens, tgt_vocab)

    def _embed(self, embedding: nn.Embedding, ids: Tensor, start: int) -> Tensor:
        """ids (B, T) at positions start.. -> (B, T, D); embeddings scaled by sqrt(D) to match the encoding."""
        positions = torch.arange(start, start + ids.shape[1], device=ids.device)
        x = embedding(ids) * math.sqrt(self.num_hiddens) + positional_encoding(positions, self.num_hiddens)
        return self.dropout(x)

    def encode(self, src: Tensor, src_len: Tensor) -> State:
        mask = source_mask(src_len, src.shape[1])  # (B, S)
        x = self._embed(self.src_embedding, src, 0)
        for block in self.encoder_blocks:
            x = block(x, mask[:, None, :])
        state: State = {"mask": mask, "attention": mask.float() / src_len[:, None]}  # attention: until a step
        for i, block in enumerate(self.decoder_blocks):
            state[f"mem_k{i}"], state[f"mem_v{i}"] = block.cross_attention.project_kv(x, x)
            empty = state[f"mem_k{i}"][:, :, :0]  # (B, heads, 0, D/heads): no steps decoded yet
            state[f"self_k{i}"], state[f"self_v{i}"] = empty, empty
        return state

    def _decode(self, ids: Tensor, state: State, cached: bool) -> tuple[Tensor, State]:
        """ids (B, T) after the cached steps -> logits (B, T, V), the state with these steps added."""
        x = self._embed(self.tgt_embedding, ids, state["self_k0"].shape[2])
        state = dict(state)
        for i, block in enumerate(self.decoder_blocks):
            past = (state[f"self_k{i}"], state[f"self_v{i}"]) if cached else None
            x, (state[f"self_k{i}"], state[f"self_v{i}"]), weights = block(
                x, past, (state[f"mem_k{i}"], state[f"mem_v{i}"]), state["mask"]
            )
        state["attention"] = weights[:, :, -1].mean(dim=1)  # last layer, last step, averaged over heads: (B, S)
        return self.dense(x), state

    def forward(self, src: Tensor, src_len: Tensor, tgt_in: Tensor) -> Tensor:
        return self._decode(tgt_in, self.encode(src, src_len), cached=False)[0]

    def decode_step(self, prev: Tensor, state: State) -> tuple[Tensor, State]:
        logits, state = self._decode(prev[:, None], state, cached=True)
        return logits[:, 0], state


@register_translation("transformer")
def transformer(
    input_shape: tuple[int, ...],
    num_classes: int,
    src_vocab_size: int = 0,
    *,
    num_hiddens: PositiveInt = 256,
    num_blks: PositiveInt = 2,
    num_heads: PositiveInt = 4,
    ffn_num_hiddens: PositiveInt = 64,
    dropout: Fraction = 0.2,
) -> nn.Module:
    check_vocab_sizes("transformer", src_vocab_size, num_classes)
    if num_heads < 1 or num_hiddens % (2 * num_heads):
        raise ConfigError(
            f"model.num_hiddens={num_hiddens} must be an even multiple of model.num_heads={num_heads} "
            "(equal heads; sin/cos feature pairs)"
        )
    return Transformer(src_vocab_size, num_classes, num_hiddens, num_blks, num_heads, ffn_num_hiddens, dropout)
