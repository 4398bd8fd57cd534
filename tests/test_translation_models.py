"""The translation models: shapes, learning, padding invariance, incremental decoding, attention masks.

Tests loop over every model registered as a translation model, so a new one is tested the day it
is registered. Sizes are tiny: each model test runs in well under a second on one CPU thread.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dlexp.errors import ConfigError
from dlexp.models import MODELS
from dlexp.models.attention import AdditiveAttention, DotProductAttention, MultiHeadAttention, masked_softmax
from dlexp.models.seq2seq_base import TRANSLATION, Seq2SeqModel, model_task

NAMES = [name for name in MODELS.names() if model_task(name) == TRANSLATION]
SRC_VOCAB, TGT_VOCAB = 13, 11
SMALL = {"num_hiddens": 16, "dropout": 0.1}
EXTRA = {"seq2seq": {"embed_size": 8}, "seq2seq_attention": {"embed_size": 8}, "transformer": {"num_heads": 2, "ffn_num_hiddens": 8}}


def _build(name: str, **overrides) -> Seq2SeqModel:
    return MODELS.build(name, (6,), TGT_VOCAB, SRC_VOCAB, **{**SMALL, **EXTRA.get(name, {}), **overrides})


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """3 sources of lengths 6, 4, 2 (with <eos>, right-padded with 0) and teacher-forcing inputs (3, 5)."""
    gen = torch.Generator().manual_seed(seed)
    src_len = torch.tensor([6, 4, 2])
    src = torch.randint(4, SRC_VOCAB, (3, 6), generator=gen)
    src[torch.arange(6)[None, :] >= src_len[:, None]] = 0
    src[torch.arange(3), src_len - 1] = 2  # <eos> ends each source
    tgt_in = torch.randint(4, TGT_VOCAB, (3, 5), generator=gen)
    tgt_in[:, 0] = 1  # <bos>
    return src, src_len, tgt_in


def test_the_translation_models_are_registered():
    assert {"seq2seq", "seq2seq_attention", "transformer"} <= set(NAMES)
    assert model_task("mlp") == "any"
    assert "src_vocab_size" not in MODELS.config_keys("seq2seq")  # from the data, not a YAML key


@pytest.mark.parametrize("name", NAMES)
def test_forward_shape_and_every_parameter_learns(name):
    torch.manual_seed(0)
    model = _build(name)
    src, src_len, tgt_in = _batch()
    logits = model(src, src_len, tgt_in)
    assert logits.shape == (3, 5, TGT_VOCAB)
    F.cross_entropy(logits.flatten(0, 1), torch.randint(2, TGT_VOCAB, (15,))).backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), pname


@pytest.mark.parametrize("name", NAMES)
def test_a_few_steps_learn_to_copy(name):
    """Copy task: the target is the source. Seeded, so the loss curve is the same on every run."""
    torch.manual_seed(0)
    model = _build(name, num_hiddens=32, dropout=0.0)
    src = torch.randint(4, TGT_VOCAB, (32, 5))
    src[:, -1] = 2  # <eos>
    src_len = torch.full((32,), 5)
    tgt_in = torch.cat([torch.ones(32, 1, dtype=torch.long), src[:, :-1]], dim=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(20):
        loss = F.cross_entropy(model(src, src_len, tgt_in).flatten(0, 1), src.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses[::5]


@pytest.mark.parametrize("name", NAMES)
def test_padded_source_positions_change_nothing(name):
    torch.manual_seed(0)
    model = _build(name).eval()
    src, src_len, tgt_in = _batch()
    other = src.clone()
    padded = torch.arange(6)[None, :] >= src_len[:, None]
    other[padded] = torch.randint(3, SRC_VOCAB, (int(padded.sum()),))  # real words where pads were
    with torch.no_grad():
        assert torch.allclose(model(src, src_len, tgt_in), model(other, src_len, tgt_in), atol=1e-6)
        emb = next(m for m in model.modules() if isinstance(m, torch.nn.Embedding) and m.num_embeddings == SRC_VOCAB)
        emb.weight[0] = 5.0  # the <pad> embedding itself
        assert torch.allclose(model(src, src_len, tgt_in), model(other, src_len, tgt_in), atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_decode_steps_reproduce_teacher_forcing(name):
    torch.manual_seed(0)
    model = _build(name).eval()
    src, src_len, tgt_in = _batch()
    with torch.no_grad():
        full = model(src, src_len, tgt_in)
        state = model.encode(src, src_len)
        for t in range(tgt_in.shape[1]):
            logits, state = model.decode_step(tgt_in[:, t], state)
            assert torch.allclose(logits, full[:, t], atol=1e-5), t
            if "attention" in state:  # weights over the source: none on padding, summing to 1
                weights = state["attention"]
                assert weights.shape == (3, 6) and torch.all(weights[src == 0] == 0)
                assert torch.allclose(weights.sum(1), torch.ones(3), atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_reorder_state_selects_sentences(name):
    torch.manual_seed(0)
    model = _build(name).eval()
    src, src_len, tgt_in = _batch()
    index = torch.tensor([2, 2, 0])
    with torch.no_grad():
        state = model.reorder_state(model.encode(src, src_len), index)
        logits, _ = model.decode_step(tgt_in[index, 0], state)
        expected, _ = model.decode_step(tgt_in[index, 0], model.encode(src[index], src_len[index]))
    assert torch.allclose(logits, expected, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_init_reaches_the_recurrent_and_embedding_weights(name):
    from dlexp.models.init import InitConfig, apply_init

    model = apply_init(_build(name), InitConfig(init="constant", init_value=0.02))
    for pname, param in model.named_parameters():
        if param.dim() >= 2:  # every kernel: embeddings, GRU weight_ih/hh, linear layers
            assert torch.all(param == 0.02), pname
        elif "bias" in pname and "norm" not in pname:
            assert torch.all(param == 0), pname


def test_attention_masks_give_padded_keys_exactly_zero_weight():
    scores = torch.randn(2, 4)
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    weights = masked_softmax(scores, mask)
    assert torch.all(weights[0, 2:] == 0) and torch.allclose(weights.sum(1), torch.ones(2))
    assert torch.allclose(weights[1], torch.softmax(scores[1], 0))
    keys, values, query = torch.randn(2, 4, 6), torch.randn(2, 4, 6), torch.randn(2, 6)
    for attention in (AdditiveAttention(6, 6, 5, 0.0), DotProductAttention(0.0)):
        out, w = attention(query, attention.project_keys(keys), values, mask)
        assert out.shape == (2, 6) and torch.all(w[0, 2:] == 0)
        assert torch.allclose(out[0], w[0, :2] @ values[0, :2], atol=1e-6)  # padded values never mix in
    mha = MultiHeadAttention(6, 2, 0.0)
    out, w = mha(torch.randn(2, 3, 6), *mha.project_kv(keys, values), mask[:, None, :])
    assert out.shape == (2, 3, 6) and w.shape == (2, 2, 3, 4) and torch.all(w[0, :, :, 2:] == 0)


def test_bad_model_settings_are_config_errors():
    with pytest.raises(ConfigError, match="use a translation dataset, e.g. dataset=numbers"):
        MODELS.build("seq2seq", (8,), 10)  # an image-style call: no source vocabulary
    with pytest.raises(ConfigError, match="model.attention must be one of additive, dot, got 'mlp'"):
        _build("seq2seq_attention", attention="mlp")
    with pytest.raises(ConfigError, match="model.num_hiddens=18 must be an even multiple of model.num_heads=4"):
        _build("transformer", num_hiddens=18, num_heads=4)
