"""Attention for the translation models: masked softmax, additive (Bahdanau) and scaled
dot-product scoring, and multi-head attention with an optional key/value cache.

``mask`` is bool and True where a key may be attended; masked keys get exactly zero weight.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn


def masked_softmax(scores: Tensor, mask: Optional[Tensor]) -> Tensor:
    """Softmax over the last dim with masked entries at exactly 0 (every row needs one True)."""
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))  # exp(-inf) == 0
    return torch.softmax(scores, dim=-1)


class AdditiveAttention(nn.Module):
    """Bahdanau's MLP score w_v . tanh(W_q q + W_k k) for one query per sentence."""

    def __init__(self, query_size: int, key_size: int, num_hiddens: int, dropout: float):
        super().__init__()
        self.W_q = nn.Linear(query_size, num_hiddens, bias=False)
        self.W_k = nn.Linear(key_size, num_hiddens, bias=False)
        self.w_v = nn.Linear(num_hiddens, 1, bias=False)
        self.dropout = nn.Dropout(dropout)

    def project_keys(self, keys: Tensor) -> Tensor:
        """(B, S, key_size) -> (B, S, num_hiddens): computed once per source, reused at every step."""
        return self.W_k(keys)

    def forward(self, query: Tensor, projected_keys: Tensor, values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """query (B, Dq), projected keys (B, S, H), values (B, S, Dv), mask (B, S) -> (B, Dv), weights (B, S)."""
        features = torch.tanh(self.W_q(query)[:, None, :] + projected_keys)  # (B, S, H)
        weights = masked_softmax(self.w_v(features).squeeze(-1), mask)  # (B, S)
        return torch.bmm(self.dropout(weights)[:, None, :], values).squeeze(1), weights


class DotProductAttention(nn.Module):
    """Scaled dot-product score q . k / sqrt(d) for one query per sentence (query and keys of size d)."""

    def __init__(self, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)

    def project_keys(self, keys: Tensor) -> Tensor:
        return keys

    def forward(self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        scores = torch.bmm(keys, query[:, :, None]).squeeze(-1) / math.sqrt(query.shape[-1])  # (B, S)
        weights = masked_softmax(scores, mask)
        return torch.bmm(self.dropout(weights)[:, None, :], values).squeeze(1), weights


class MultiHeadAttention(nn.Module):
    """``num_heads`` scaled dot-product heads of size num_hiddens / num_heads, in one set of matmuls."""

    def __init__(self, num_hiddens: int, num_heads: int, dropout: float):
        super().__init__()
        if num_hiddens % num_heads:
            raise ValueError(f"num_hiddens {num_hiddens} is not a multiple of num_heads {num_heads}")
        self.num_heads = num_heads
        self.W_q, self.W_k, self.W_v, self.W_o = (nn.Linear(num_hiddens, num_hiddens, bias=False) for _ in range(4))
        self.dropout = nn.Dropout(dropout)

    def split_heads(self, x: Tensor) -> Tensor:
        """(B, T, D) -> (B, heads, T, D / heads)."""
        return x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)

    def project_kv(self, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values (B, S, D) -> per-head (B, heads, S, D / heads): cacheable."""
        return self.split_heads(self.W_k(keys)), self.split_heads(self.W_v(values))

    def forward(self, queries: Tensor, k: Tensor, v: Tensor, mask: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        """queries (B, Tq, D); k, v from ``project_kv`` (B, heads, Tk, D/heads); mask broadcastable to
        (B, Tq, Tk). Returns (B, Tq, D) and the weights (B, heads, Tq, Tk)."""
        q = self.split_heads(self.W_q(queries))  # (B, heads, Tq, D/heads)
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (B, heads, Tq, Tk)
        weights = masked_softmax(scores, None if mask is None else mask[:, None])
        out = (self.dropout(weights) @ v).transpose(1, 2).flatten(2)  # (B, Tq, D)
        return self.W_o(out), weights
