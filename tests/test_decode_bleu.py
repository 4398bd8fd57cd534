"""Greedy and beam-search decoding, and the BLEU scores."""
from __future__ import annotations

import math

import pytest
import torch

from dlexp.tasks.bleu import corpus_bleu, sentence_bleu_d2l
from dlexp.models.decoding import beam_search, greedy, max_lengths
from dlexp.models import MODELS
from dlexp.models.seq2seq_base import TRANSLATION, Seq2SeqModel, model_task

PAD, BOS, EOS, A, B = range(5)


class Bigram(Seq2SeqModel):
    """A hand-set model whose next-token distribution depends on the previous token only.

    After <bos>: A 0.6, B 0.4. After A: <eos> 0.4, A 0.3, B 0.3. After B: <eos> 0.98.
    Greedy takes A then <eos> (P = 0.24); the better sentence is B <eos> (P = 0.392).
    """

    def __init__(self):
        super().__init__()
        probs = torch.full((5, 5), 1e-3)
        probs[BOS, [A, B]] = torch.tensor([0.6, 0.4])
        probs[A, [EOS, A, B]] = torch.tensor([0.4, 0.3, 0.3])
        probs[B, [EOS, A, B]] = torch.tensor([0.98, 0.01, 0.01])
        probs[EOS, EOS] = 1.0
        self.register_buffer("table", (probs / probs.sum(1, keepdim=True)).log())

    def encode(self, src, src_len):
        return {"src_len": src_len}  # a state with the batch in dim 0, to exercise reorder_state

    def decode_step(self, prev, state):
        return self.table[prev], state


def test_beam_search_finds_the_sentence_greedy_misses():
    src, src_len = torch.zeros(1, 3, dtype=torch.long), torch.tensor([3])
    g = greedy(Bigram(), src, src_len, bos=BOS, eos=EOS, max_len=5)
    assert g.tokens.tolist() == [[A, EOS]] and g.scores.exp().item() == pytest.approx(0.6 * 0.4, rel=1e-2)
    model = Bigram()
    b = beam_search(model, src, src_len, bos=BOS, eos=EOS, beam_size=2, max_len=5)
    assert b.tokens.tolist() == [[B, EOS]]
    log_p = model.table[BOS, B] + model.table[B, EOS]
    assert b.scores.item() == pytest.approx(log_p.item() / 2**0.75, rel=1e-5)  # log P / L^0.75, L = 2 with <eos>


def _random_model(name: str):
    torch.manual_seed(0)
    small = {"transformer": {"num_hiddens": 16, "num_heads": 2}}.get(name, {"num_hiddens": 16, "embed_size": 8})
    return MODELS.build(name, (6,), 9, 12, **small).eval()


@pytest.mark.parametrize("name", [n for n in MODELS.names() if model_task(n) == TRANSLATION])
def test_beam_of_one_is_greedy_and_wider_beams_score_no_worse(name):
    model = _random_model(name)
    src = torch.randint(4, 12, (5, 6))
    src_len = torch.tensor([6, 5, 3, 2, 6])
    src[torch.arange(6)[None, :] >= src_len[:, None]] = PAD
    limits = max_lengths(src_len, a=1.0, b=2)
    g = greedy(model, src, src_len, bos=BOS, eos=EOS, max_len=limits)
    b1 = beam_search(model, src, src_len, bos=BOS, eos=EOS, beam_size=1, max_len=limits, length_penalty=0.0)
    assert torch.equal(g.tokens, b1.tokens)  # exactly the same tokens
    assert torch.allclose(g.scores, b1.scores, atol=1e-5)  # alpha=0: the plain log P
    lengths = (g.tokens != PAD).sum(1)
    assert torch.all(lengths <= limits)  # each sentence stops at its own limit
    if g.attention is not None:
        assert g.attention.shape == (5, g.tokens.shape[1], 6) and torch.all(g.attention[src[:, None, :].expand_as(g.attention) == PAD] == 0)
    b4 = beam_search(model, src, src_len, bos=BOS, eos=EOS, beam_size=4, max_len=limits, nbest=True)
    assert b4.tokens.shape[:2] == (5, 4) and torch.all(b4.scores[:, :-1] >= b4.scores[:, 1:])  # best first


def test_greedy_pads_after_eos_and_max_lengths_follow_the_source():
    src, src_len = torch.zeros(2, 4, dtype=torch.long), torch.tensor([4, 2])
    g = greedy(Bigram(), src, src_len, bos=BOS, eos=EOS, max_len=torch.tensor([5, 1]))
    assert g.tokens.tolist() == [[A, EOS], [A, PAD]]  # the second stopped at its limit of one token
    assert max_lengths(torch.tensor([2, 10])).tolist() == [8, 20]  # floor(1.5 * len + 5)


def test_corpus_bleu_identical_is_100_and_records_its_tokenizer():
    refs = ["va !", "il est calme .", "trois cent vingt et un"]
    score, signature = corpus_bleu(refs, refs)
    assert score == pytest.approx(100.0) and "tok:13a" in signature and "nrefs:1" in signature
    assert corpus_bleu(["x y z w"] * 3, refs)[0] == pytest.approx(0.0)
    partial, _ = corpus_bleu(["il est mouillé ."], ["il est calme ."])
    assert 0 < partial < 100
    with pytest.raises(ValueError, match="2 hypotheses but 3 references"):
        corpus_bleu(refs[:2], refs)


def test_sentence_bleu_matches_the_course_examples():
    assert sentence_bleu_d2l("go .", "va !") == 0.0
    assert sentence_bleu_d2l("va !", "va !") == 1.0
    assert sentence_bleu_d2l("je perdu .", "j'ai perdu .") == pytest.approx(0.687, abs=1e-3)
    assert sentence_bleu_d2l(["il", "est", "mouillé", "."], ["il", "est", "calme", "."]) == pytest.approx(0.658, abs=1e-3)
    assert sentence_bleu_d2l("va", "va !") == pytest.approx(math.exp(1 - 2))  # brevity penalty only
