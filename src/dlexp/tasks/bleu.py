"""Translation quality: corpus BLEU through sacreBLEU, and the course's per-sentence BLEU for examples."""
from __future__ import annotations

import math
from collections import Counter
from typing import Sequence, Union

BLEU_TOKENIZE = "13a"  # sacreBLEU's standard (WMT) tokenizer; "char" for languages written without spaces


def corpus_bleu(hyps: Sequence[str], refs: Sequence[str], tokenize: str = BLEU_TOKENIZE) -> tuple[float, str]:
    """Corpus BLEU (0..100) of detokenized hypotheses against one reference each, and sacreBLEU's
    signature (e.g. ``nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0``) to report with it."""
    from sacrebleu.metrics import BLEU

    if len(hyps) != len(refs):
        raise ValueError(f"corpus_bleu: {len(hyps)} hypotheses but {len(refs)} references")
    metric = BLEU(tokenize=tokenize)
    score = metric.corpus_score(list(hyps), [list(refs)])
    return float(score.score), str(metric.get_signature())


def sentence_bleu_d2l(pred_tokens: Union[str, Sequence[str]], label_tokens: Union[str, Sequence[str]], k: int = 2) -> float:
    """The course's BLEU of one sentence (0..1): exp(min(0, 1 - len_label/len_pred)) * prod_n p_n^(1/2^n)
    over n = 1..k, where p_n is the clipped n-gram precision. Not comparable with ``corpus_bleu``."""
    pred = pred_tokens.split() if isinstance(pred_tokens, str) else list(pred_tokens)
    label = label_tokens.split() if isinstance(label_tokens, str) else list(label_tokens)
    if not pred:
        return 0.0
    score = math.exp(min(0.0, 1 - len(label) / len(pred)))
    for n in range(1, min(k, len(pred)) + 1):
        pred_ngrams = Counter(tuple(pred[i : i + n]) for i in range(len(pred) - n + 1))
        label_ngrams = Counter(tuple(label[i : i + n]) for i in range(len(label) - n + 1))
        matches = sum(min(count, label_ngrams[gram]) for gram, count in pred_ngrams.items())
        score *= math.pow(matches / (len(pred) - n + 1), math.pow(0.5, n))
    return score
