"""Greedy and beam-search decoding for the translation models (``dlexp.models.seq2seq_base``).

Both run batched on the model's device: B sentences (x K beams) advance one step per model call,
and stop when every sentence has produced ``<eos>`` or reached its ``max_len`` (one host sync per
step for that check). Lengths count generated tokens, ``<eos>`` included; ``<bos>`` is not output.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Union

import torch
from torch import Tensor

MAX_LEN_A, MAX_LEN_B = 1.5, 5  # default output limit: 1.5 x source length (with <eos>) + 5 tokens


class Decoded(NamedTuple):
    tokens: Tensor  # (B, L) int64; after <eos> (or for no step at all) the pad id
    scores: Tensor  # (B,) greedy: sum of log-probabilities; beam: log P / L^alpha
    attention: Optional[Tensor] = None  # greedy, attention models: (B, L, S) weights over the source per step


def max_lengths(src_len: Tensor, a: float = MAX_LEN_A, b: int = MAX_LEN_B) -> Tensor:
    """Per-sentence output limit ``floor(a * src_len + b)`` (B,) int64, as fairseq's max_len_a/b."""
    return (a * src_len.double() + b).floor().long().clamp(min=1)


def _limits(max_len: Union[int, Tensor], batch: int, device: torch.device) -> Tensor:
    limits = torch.as_tensor(max_len, device=device).long()
    return limits.expand(batch) if limits.dim() == 0 else limits


@torch.no_grad()
def greedy(
    model, src: Tensor, src_len: Tensor, *, bos: int, eos: int, max_len: Union[int, Tensor], pad: int = 0
) -> Decoded:
    """The most likely next token at every step. ``max_len``: an int or (B,) limits."""
    batch = src.shape[0]
    limits = _limits(max_len, batch, src.device)
    state = model.encode(src, src_len)
    prev = torch.full((batch,), bos, dtype=torch.long, device=src.device)
    done = torch.zeros(batch, dtype=torch.bool, device=src.device)
    scores = torch.zeros(batch, device=src.device)
    tokens, attention = [], []
    for step in range(int(limits.max())):
        logits, state = model.decode_step(prev, state)
        logp = torch.log_softmax(logits.float(), dim=-1)  # (B, V)
        best, token = logp.max(dim=-1)
        live = ~done
        scores = scores + best * live
        token = torch.where(live, token, torch.full_like(token, pad))
        tokens.append(token)
        if "attention" in state:
            attention.append(state["attention"] * live[:, None])
        done = done | (token == eos) | (step + 1 >= limits)
        prev = token
        if bool(done.all()):
            break
    out = torch.stack(tokens, dim=1) if tokens else src.new_full((batch, 0), pad)
    return Decoded(out, scores, torch.stack(attention, dim=1) if attention else None)


def _expand(model, src: Tensor, src_len: Tensor, beam_size: int) -> dict[str, Tensor]:
    """The encoder state of each sentence, copied ``beam_size`` times: rows b*K .. b*K+K-1 are sentence b."""
    state = model.encode(src, src_len)
    rows = torch.arange(src.shape[0], device=src.device).repeat_interleave(beam_size)
    return model.reorder_state(state, rows)


@torch.no_grad()
def beam_search(
    model, src: Tensor, src_len: Tensor, *, bos: int, eos: int, beam_size: int, max_len: Union[int, Tensor],
    length_penalty: float = 0.75, pad: int = 0, nbest: bool = False,
) -> Decoded:
    """The ``beam_size`` most likely prefixes (by log P) per sentence at each step; a beam that has
    emitted ``<eos>`` stays in its slot unchanged. The answer is the beam with the best
    ``log P / L**length_penalty``. ``nbest``: every beam, best first, tokens (B, K, L) and scores (B, K).
    beam_size=1 is greedy decoding."""
    batch, k, device = src.shape[0], beam_size, src.device
    limits = _limits(max_len, batch, device).repeat_interleave(k)  # (B*K,)
    state = _expand(model, src, src_len, k)
    prev = torch.full((batch * k,), bos, dtype=torch.long, device=device)
    logp_sum = torch.zeros(batch, k, device=device)
    logp_sum[:, 1:] = float("-inf")  # the K copies are identical: start from the first only
    done = torch.zeros(batch * k, dtype=torch.bool, device=device)
    length = torch.zeros(batch * k, dtype=torch.long, device=device)
    history = torch.zeros(batch * k, 0, dtype=torch.long, device=device)
    base = torch.arange(batch, device=device)[:, None] * k  # (B, 1): row of each sentence's first beam
    for step in range(int(limits.max())):
        logits, state = model.decode_step(prev, state)
        logp = torch.log_softmax(logits.float(), dim=-1)  # (B*K, V)
        vocab = logp.shape[-1]
        frozen = torch.full_like(logp, float("-inf"))
        frozen[:, pad] = 0.0  # a finished beam's only continuation: pad, at no cost
        logp = torch.where(done[:, None], frozen, logp)
        logp_sum, index = (logp_sum.reshape(-1, 1) + logp).view(batch, k * vocab).topk(k, dim=1)  # (B, K)
        rows = (base + index // vocab).flatten()  # the beam each survivor extends
        token = (index % vocab).flatten()
        state = model.reorder_state(state, rows)
        history = torch.cat([history[rows], token[:, None]], dim=1)
        length = length[rows] + (~done[rows]).long()
        done = done[rows] | (token == eos) | (step + 1 >= limits)
        prev = token
        if bool(done.all()):
            break
    final = logp_sum / length.view(batch, k).clamp(min=1).double().pow(length_penalty).float()  # (B, K)
    order = final.argsort(dim=1, descending=True)
    ranked = history.view(batch, k, -1).gather(1, order[:, :, None].expand(-1, -1, history.shape[1]))
    scores = final.gather(1, order)
    return Decoded(ranked, scores) if nbest else Decoded(ranked[:, 0], scores[:, 0])
