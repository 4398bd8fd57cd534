"""Machine translation: source ids (B, S) -> target ids (B, T), with a sequence-to-sequence model.

Training is teacher-forced: the decoder reads ``<bos>`` + the target without its last step and
predicts every target step; the loss is the cross-entropy over real target tokens (pads ignored),
averaged per token, so a batch weighs as many tokens as it holds. Evaluation also decodes (greedy,
or beam search per ``decode.*``) and scores the detokenized sentences with sacreBLEU against the
untruncated references, which the batches point to by row (``extras["row"]``, see ``Source.row_ids``).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

from dlexp.data.base import Batch, Loader
from dlexp.data.text import BOS_ID, PAD_ID, detokenize, lengths
from dlexp.errors import ConfigError
from dlexp.models.decoding import MAX_LEN_A, MAX_LEN_B, Decoded, beam_search, greedy, max_lengths
from dlexp.models.seq2seq_base import TRANSLATION, model_task
from dlexp.runs.files import ATTENTION_FILE, TRANSLATIONS_FILE, atomic_write
from dlexp.tasks.base import LOSSES, TASKS, StepOutput, Task
from dlexp.tasks.bleu import corpus_bleu, sentence_bleu_d2l
from dlexp.tasks.metrics import CorpusMetric, MeanMetric, Metric

SHOWN_EXAMPLES = 5  # translations printed after the test, as the course prints them
ATTENTION_EXAMPLES = 4  # test sentences whose attention weights go to attention.json (drawn as attention.png)


class TokenCrossEntropy(nn.Module):
    """Mean cross-entropy over the real target tokens: logits (B, T, V), targets (B, T), pads ignored."""

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.loss = nn.CrossEntropyLoss(ignore_index=PAD_ID, label_smoothing=label_smoothing)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return self.loss(logits.flatten(0, 1), targets.flatten())  # (B*T, V) against (B*T,)


@LOSSES.register("token_cross_entropy")
def token_cross_entropy(*, label_smoothing: float = 0.0) -> nn.Module:
    return TokenCrossEntropy(label_smoothing)


class TokenAccuracy(MeanMetric):
    """Share of real target tokens whose arg-max logit is right, under teacher forcing."""

    name = "token_acc"
    mode = "max"

    def batch_stat(self, outputs: Tensor, batch: Batch) -> tuple[Tensor, Tensor]:
        real = batch.targets != PAD_ID  # (B, T)
        return ((outputs.argmax(dim=-1) == batch.targets) & real).sum(), real.sum()


def _unwrap(model: nn.Module) -> nn.Module:
    """The Seq2SeqModel under DistributedDataParallel (``module``) or torch.compile (``_orig_mod``)."""
    for attr in ("module", "_orig_mod"):
        model = getattr(model, attr, model)
    return model


@TASKS.register(TRANSLATION)
class Translation(Task):
    name = TRANSLATION
    default_loss = "token_cross_entropy"
    default_metric = "bleu"
    decodes = True
    metric_names = ("bleu", "token_acc")

    def expected_outputs(self, num_classes: int) -> Optional[int]:
        return None  # logits over the target vocabulary, per token

    def __init__(self, *, context: Optional[dict[str, Any]] = None, **kwargs: Any):
        ctx = context or {}
        self.src_vocab, self.tgt_vocab, self.tokens = ctx["src_vocab"], ctx["tgt_vocab"], ctx["tokens"]
        pairs = list(ctx["train_pairs"]) + list(ctx["test_pairs"])  # indexed by Batch.extras["row"]
        self.sources, self.references = [s for s, _ in pairs], [t for _, t in pairs]
        self.bleu_signature = ""
        super().__init__(context=ctx, **kwargs)
        if self.decode is None:  # built outside a run: greedy, with decode.py's output limit
            self.decode = SimpleNamespace(beam_size=1, length_penalty=0.75, max_len_a=MAX_LEN_A, max_len_b=MAX_LEN_B)

    def metrics(self) -> list[Metric]:
        """Corpus BLEU and token accuracy; the chosen ``trainer.metric`` first (it is the monitored one)."""
        if self.metric_name not in self.metric_names:
            raise ConfigError(f"trainer.metric={self.metric_name} is not a translation metric; use "
                              f"{' or '.join(self.metric_names)} (or auto = bleu)")
        bleu = CorpusMetric("bleu", "max", self._bleu, lambda batch: [self.references[i] for i in batch.extras["row"].tolist()])
        both = [bleu, TokenAccuracy()]
        return both if self.metric_name == "bleu" else both[::-1]

    def _bleu(self, hyps: list[str], refs: list[str]) -> float:
        score, self.bleu_signature = corpus_bleu(hyps, refs)
        return score

    def state_dict(self) -> dict[str, Any]:
        """The vocabularies and text settings: what ``dlexp.translate`` needs besides the weights."""
        return {"src_vocab": self.src_vocab.to_state(), "tgt_vocab": self.tgt_vocab.to_state(), "tokens": self.tokens,
                "split_hyphens": bool(self.context.get("split_hyphens", False)),
                "numbers_lang": self.context.get("numbers_lang")}

    def check_model(self, name: str) -> None:
        if model_task(name) != TRANSLATION:
            raise ConfigError(f"model {name} does not translate; use model=seq2seq, seq2seq_attention or transformer")

    def model_args(self) -> dict[str, Any]:
        return {"src_vocab_size": len(self.src_vocab)}

    def forward(self, model: nn.Module, batch: Batch) -> Tensor:
        """Teacher forcing: logits (B, T, V) for every target step, from <bos> + target[:, :-1]."""
        src, tgt = batch.inputs, batch.targets
        tgt_in = torch.cat([torch.full_like(tgt[:, :1], BOS_ID), tgt[:, :-1]], dim=1)  # (B, T)
        return model(src, lengths(src), tgt_in)

    def step(self, model: nn.Module, batch: Batch) -> StepOutput:
        logits = self.forward(model, batch)
        # the loss is a mean over the real target tokens: the batch's weight
        return StepOutput(self.loss_fn(logits, batch.targets), self.count_tokens(batch), logits)

    def count_tokens(self, batch: Batch) -> Tensor:
        """The target tokens that are not padding (what the loss is over, as fairseq counts them), 0-d."""
        return (batch.targets != PAD_ID).sum()

    def evaluate_batch(self, model: nn.Module, batch: Batch) -> tuple[StepOutput, list[str]]:
        return self.step(model, batch), self.sentences(self.translate(model, batch.inputs).tokens)

    def translate(self, model: nn.Module, src: Tensor, beam_size: Optional[int] = None) -> Decoded:
        """``dlexp.models.decoding.Decoded`` for source ids (B, S), per ``decode.*`` (``beam_size`` overrides it)."""
        model, dec = _unwrap(model), self.decode
        beam = dec.beam_size if beam_size is None else beam_size
        src_len = lengths(src)
        limits = max_lengths(src_len, dec.max_len_a, dec.max_len_b)
        if beam == 1:
            return greedy(model, src, src_len, bos=BOS_ID, eos=self.context["eos_id"], max_len=limits, pad=PAD_ID)
        return beam_search(model, src, src_len, bos=BOS_ID, eos=self.context["eos_id"], beam_size=beam,
                           max_len=limits, length_penalty=dec.length_penalty, pad=PAD_ID)

    def sentences(self, tokens: Tensor) -> list[str]:
        """Output ids (B, L) -> detokenized sentences, each up to its first <eos>."""
        return [detokenize(self.tgt_vocab.decode(row), self.tokens) for row in tokens.tolist()]

    def write_outputs(self, model: nn.Module, loader: Loader, run_dir: Path, say: Callable[[str], None]) -> dict[str, Any]:
        """translations.tsv for the test set, its first lines on the console, and the attention weights of
        a few sentences (attention.json, which the run's plots draw as attention.png)."""
        model.eval()
        rows, attention = [], None
        with torch.no_grad():
            for batch in loader:
                hyps = self.sentences(self.translate(model, batch.inputs).tokens)
                for i, hyp in zip(batch.extras["row"].tolist(), hyps):
                    ref = self.references[i]
                    rows.append((self.sources[i], hyp, ref, sentence_bleu_d2l(hyp, ref)))
                if attention is None:
                    attention = self._attention_examples(model, batch)
        _write_tsv(run_dir / TRANSLATIONS_FILE, rows)
        for src, hyp, _, score in rows[:SHOWN_EXAMPLES]:
            say(f"{src} => {hyp}, bleu {score:.3f}")
        if attention:
            _write_attention(run_dir / ATTENTION_FILE, attention)
        return {"bleu_signature": self.bleu_signature} if self.bleu_signature else {}

    def _attention_examples(self, model: nn.Module, batch: Batch) -> list[tuple[list[str], list[str], list[list[float]]]]:
        """(source tokens, output tokens, weights (L, S)) of the first test sentences, greedy; [] without attention."""
        src = batch.inputs[:ATTENTION_EXAMPLES]
        decoded = self.translate(model, src, beam_size=1)
        if decoded.attention is None:
            return []
        out = []
        for s, t, w in zip(src.tolist(), decoded.tokens.tolist(), decoded.attention.float().cpu()):
            s_len = len(self.src_vocab.decode(s)) + 1  # with <eos>
            t_tokens = self.tgt_vocab.decode(t) + ["<eos>"]
            t_len = min(len(t_tokens), w.shape[0])
            out.append((self.src_vocab.decode(s) + ["<eos>"], t_tokens[:t_len], w[:t_len, :s_len].tolist()))
        return out


def _write_tsv(path: Path, rows: list[tuple[str, str, str, float]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["source", "prediction", "reference", "bleu"])
        writer.writerows((s, h, r, f"{b:.3f}") for s, h, r, b in rows)


def _write_attention(path: Path, examples: list[tuple[list[str], list[str], list[list[float]]]]) -> None:
    """[{source tokens, output tokens, weights (L, S)}, ...], written atomically."""
    data = [{"source": source, "output": output, "weights": weights} for source, output, weights in examples]
    atomic_write(path, json.dumps(data) + "\n")
