"""Sentence pairs for machine translation: preprocessing, tokens, vocabularies, and two datasets.

- ``translation``: a tab-separated file of ``source<TAB>target[<TAB>anything]`` lines, e.g. the
  course's English-French Tatoeba pairs (``fra-eng/fra.txt``), downloaded on first use.
- ``numbers``: integers written out in words by ``num2words`` in two real languages, split into
  train and test BY NUMBER, so no test number is ever seen in training.

Both return the pairs as id tensors, x = (N, S) source ids and y = (N, T) target ids, each sentence
ending in ``<eos>`` and right-padded with ``<pad>``. The vocabularies and the sentences themselves
travel in ``Source.context``.

Token modes (``tokens``):
- ``word``: the preprocessed text split on spaces (punctuation is its own word after ``preprocess``).
- ``char``: one token per character, with each space kept as the visible token ``▁`` (U+2581), so
  ``detokenize`` restores the words. Needed where a word is a whole number, e.g. German ``neunundneunzig``.
"""
from __future__ import annotations

import functools
import hashlib
import random
import zipfile
from collections import Counter
from pathlib import Path
from typing import Iterable, Optional, Sequence

import torch
from torch import Tensor

from dlexp.data.base import DATASETS, Source
from dlexp.data.vision import DOWNLOAD_TIMEOUT_S, _socket_timeout, data_root
from dlexp.errors import ConfigError, DataError

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
RESERVED = (PAD, BOS, EOS, UNK)  # ids 0, 1, 2, 3 in every vocabulary
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(4)
SPACE = "\u2581"  # the word boundary in char mode
TOKEN_MODES = ("word", "char")

FRA_ENG_URL = "http://d2l-data.s3-accelerate.amazonaws.com/fra-eng.zip"
FRA_ENG_SHA1 = "94646ad1522d915e7b0f9296181140edcf86a4f5"
FRA_ENG_FILE = "fra-eng/fra.txt"  # inside the archive, and under dataset.root once unpacked


def preprocess(text: str, *, split_hyphens: bool = False) -> str:
    """The course's cleaning: no-break spaces become spaces, lowercase, a space before , . ! ?

    ``split_hyphens`` also makes each hyphen between letters a word of its own
    (``quatre-vingt`` -> ``quatre - vingt``), as the ``numbers`` dataset does.
    """
    text = text.replace("\u202f", " ").replace("\xa0", " ").lower()
    out = []
    for i, char in enumerate(text):
        if char in ",.!?" and i > 0 and text[i - 1] != " ":
            out.append(" ")
        out.append(char)
    text = "".join(out)
    if split_hyphens:
        text = text.replace("-", " - ")
    return " ".join(text.split())  # one space between words, none at the ends


def tokenize(text: str, mode: str = "word") -> list[str]:
    if mode == "word":
        return text.split()
    if mode == "char":
        return [SPACE if c == " " else c for c in " ".join(text.split())]
    raise ConfigError(f"dataset.tokens must be one of {', '.join(TOKEN_MODES)}, got '{mode}'")


def detokenize(tokens: Sequence[str], mode: str = "word") -> str:
    """The inverse of ``tokenize`` (on preprocessed text)."""
    if mode == "char":
        return "".join(tokens).replace(SPACE, " ")
    return " ".join(tokens)


class Vocab:
    """Token <-> id. Ids 0-3 are ``<pad> <bos> <eos> <unk>``; then tokens seen at least ``min_freq``
    times, most frequent first, ties in alphabetical order, so the same corpus always gives the same ids."""

    def __init__(self, sentences: Iterable[Sequence[str]] = (), min_freq: int = 1):
        counts = Counter(token for sentence in sentences for token in sentence)
        kept = sorted((t for t, n in counts.items() if n >= min_freq and t not in RESERVED), key=lambda t: (-counts[t], t))
        self._set_tokens(list(RESERVED) + kept)

    def _set_tokens(self, tokens: list[str]) -> None:
        self.idx_to_token = tokens
        self.token_to_idx = {t: i for i, t in enumerate(tokens)}

    def __len__(self) -> int:
        return len(self.idx_to_token)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        return [self.token_to_idx.get(t, UNK_ID) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens up to the first ``<eos>``, without ``<pad>`` and ``<bos>``."""
        out = []
        for i in ids:
            i = int(i)
            if i == EOS_ID:
                break
            if i not in (PAD_ID, BOS_ID):
                out.append(self.idx_to_token[i])
        return out

    def to_state(self) -> list[str]:
        """A plain list of tokens (index = id): loadable with ``torch.load(weights_only=True)``."""
        return list(self.idx_to_token)

    @classmethod
    def from_state(cls, tokens: Sequence[str]) -> "Vocab":
        if tuple(tokens[: len(RESERVED)]) != RESERVED:
            raise DataError(f"a saved vocabulary must start with {' '.join(RESERVED)}")
        vocab = cls()
        vocab._set_tokens([str(t) for t in tokens])
        return vocab


def encode_pairs(
    pairs: Sequence[tuple[Sequence[str], Sequence[str]]], src_vocab: Vocab, tgt_vocab: Vocab, num_steps: int
) -> tuple[Tensor, Tensor, int]:
    """Token-list pairs -> (src (N, num_steps) int64, tgt (N, num_steps) int64, pairs truncated).

    Each side is its ids + ``<eos>``, right-padded with ``<pad>``; a longer side keeps its first
    num_steps - 1 tokens and the ``<eos>``.
    """
    if num_steps < 2:
        raise ConfigError(f"dataset.num_steps must be >= 2 (a token and <eos>), got {num_steps}")
    src = torch.full((len(pairs), num_steps), PAD_ID, dtype=torch.int64)
    tgt = torch.full((len(pairs), num_steps), PAD_ID, dtype=torch.int64)
    truncated = 0
    for row, (s, t) in enumerate(pairs):
        cut = False
        for out, vocab, tokens in ((src, src_vocab, s), (tgt, tgt_vocab, t)):
            ids = vocab.encode(tokens[: num_steps - 1]) + [EOS_ID]
            cut |= len(tokens) > num_steps - 1
            out[row, : len(ids)] = torch.tensor(ids)
        truncated += cut
    return src, tgt, truncated


def lengths(ids: Tensor) -> Tensor:
    """(N, S) right-padded ids -> (N,) int64 lengths including ``<eos>``."""
    return (ids != PAD_ID).sum(dim=1)


def _split_by_index(n: int, test_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A seeded random test subset of range(n) (sorted), and the rest."""
    if not 0.0 <= test_fraction < 1.0:
        raise ConfigError(f"dataset.test_fraction must be in [0, 1), got {test_fraction}")
    n_test = round(test_fraction * n)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(order[n_test:]), sorted(order[:n_test])


def _source(
    pairs: list[tuple[str, str]], test_idx: list[int], train_idx: list[int], *, num_steps: int, min_freq: int, tokens: str,
    split_hyphens: bool = False, bucket: bool = False, numbers_lang: Optional[str] = None,
) -> Source:
    """Preprocessed sentence pairs -> a ``Source`` with vocabularies built on the training pool only."""
    toks = [(tokenize(s, tokens), tokenize(t, tokens)) for s, t in pairs]
    train = [toks[i] for i in train_idx]
    src_vocab = Vocab((s for s, _ in train), min_freq)
    tgt_vocab = Vocab((t for _, t in train), min_freq)
    train_x, train_y, cut_train = encode_pairs(train, src_vocab, tgt_vocab, num_steps)
    test_x, test_y, cut_test = encode_pairs([toks[i] for i in test_idx], src_vocab, tgt_vocab, num_steps)
    if cut_train + cut_test:
        print(
            f"note: {cut_train + cut_test} of {len(pairs)} sentence pairs are longer than dataset.num_steps={num_steps} "
            "tokens (with <eos>) and were truncated"
        )
    context = {
        "src_vocab": src_vocab, "tgt_vocab": tgt_vocab, "pad_id": PAD_ID, "bos_id": BOS_ID, "eos_id": EOS_ID,
        "tokens": tokens, "split_hyphens": split_hyphens,  # how new source sentences are preprocessed
        "numbers_lang": numbers_lang,  # source sentences are numbers spelled by num2words in this language
        # the preprocessed sentences, row-aligned with train and test: untruncated references for BLEU
        "train_pairs": [pairs[i] for i in train_idx], "test_pairs": [pairs[i] for i in test_idx],
    }
    return Source(
        train=(train_x, train_y), test=(test_x, test_y) if test_idx else None, task="translation",
        num_classes=len(tgt_vocab), normalize="none", context=context, row_ids=True,
        bucket=_pair_lengths if bucket else None,
    )


def _pair_lengths(src: Tensor, tgt: Tensor) -> Tensor:
    """(N, 2) tokens (with <eos>) of each source and target: what length bucketing sorts by."""
    return torch.stack([lengths(src), lengths(tgt)], dim=1)


def read_pairs(path: Path) -> list[tuple[str, str]]:
    """``source<TAB>target[<TAB>...]`` lines (blank lines skipped), as raw strings."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or str(err).splitlines()[0]
        raise DataError(f"cannot read {path}: {reason}; give a UTF-8 text file of source<TAB>target lines") from None
    pairs = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise DataError(f"{path} line {number} has no tab; each line must be source<TAB>target")
        pairs.append((fields[0], fields[1]))
    if not pairs:
        raise DataError(f"{path} has no sentence pairs; each line must be source<TAB>target")
    return pairs


def _download_fra_eng(root: Path) -> None:
    """The course's archive into ``root``, checked against its published SHA-1, then unpacked."""
    from torch.hub import download_url_to_file

    root.mkdir(parents=True, exist_ok=True)
    archive = root / "fra-eng.zip"
    hint = f"place {Path(FRA_ENG_FILE).name} at {root / FRA_ENG_FILE} or set dataset.path=<your file>"
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            download_url_to_file(FRA_ENG_URL, str(archive), progress=False)
    except OSError as err:  # URLError and timeouts are OSErrors
        reason = str(getattr(err, "reason", "") or err).strip() or type(err).__name__
        raise DataError(f"could not download {FRA_ENG_URL} ({reason}); {hint}") from None
    if hashlib.sha1(archive.read_bytes()).hexdigest() != FRA_ENG_SHA1:
        archive.unlink()
        raise DataError(f"the download of {FRA_ENG_URL} is corrupt (SHA-1 mismatch); {hint}")
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(root)


@DATASETS.register("translation")
def translation(
    *,
    path: Optional[str] = None,
    num_examples: Optional[int] = None,
    num_steps: int = 9,
    min_freq: int = 2,
    tokens: str = "word",
    test_fraction: float = 0.1,
    test_seed: int = 0,
    download: bool = True,
    root: Optional[str] = None,
    bucket: bool = False,
) -> Source:
    """Sentence pairs from a tab-separated file; ``path=None`` is the course's English-French file
    ``<root>/fra-eng/fra.txt``, downloaded on first use. ``num_examples`` keeps the first N pairs, as
    the course does. The test part is a seeded random subset (``test_seed``); the vocabularies are
    built on the rest, the pool that the split group divides into train and val."""
    tokenize("", tokens)  # rejects an unknown mode before any reading
    if path is not None:
        file = Path(path).expanduser()
        if not file.is_file():
            raise DataError(f"dataset.path={path} does not exist; give a file of source<TAB>target lines")
    else:
        base = data_root(root)
        file = base / FRA_ENG_FILE
        if not file.is_file():
            if not download:
                raise DataError(f"{file} is missing; place fra.txt there, set dataset.path=<your file>, or dataset.download=true")
            _download_fra_eng(base)
    pairs = read_pairs(file)
    if num_examples is not None:
        if num_examples < 1:
            raise ConfigError(f"dataset.num_examples must be >= 1 or null (all), got {num_examples}")
        pairs = pairs[:num_examples]
    pairs = [(preprocess(s), preprocess(t)) for s, t in pairs]
    train_idx, test_idx = _split_by_index(len(pairs), test_fraction, test_seed)
    return _source(pairs, test_idx, train_idx, num_steps=num_steps, min_freq=min_freq, tokens=tokens, bucket=bucket)


def _lines_of_numbers(
    pairs: list[tuple[str, str]], train_idx: list[int], test_idx: list[int], per_line: int, seed: int
) -> tuple[list[tuple[str, str]], list[int], list[int]]:
    """One sentence per number of each split: that number, then per_line - 1 others drawn from the
    same split, joined by `` ; `` on both sides. A test sentence holds test numbers only."""
    rng = random.Random(seed)
    lines = []
    for part in (train_idx, test_idx):
        for i in part:
            group = [i] + [rng.choice(part) for _ in range(per_line - 1)]
            lines.append(tuple(" ; ".join(pairs[j][side] for j in group) for side in (0, 1)))
    return lines, list(range(len(train_idx))), list(range(len(train_idx), len(lines)))


_EN_UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())}
_EN_TENS = {w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), start=2)}
_EN_SCALES = {"thousand": 10**3, "million": 10**6, "billion": 10**9}


def _english_number(text: str) -> Optional[int]:
    """The integer that English number words spell, however they are punctuated ("four thousand three
    hundred and twelve", "four thousand, three hundred and twelve", "forty-two"); None if they are not one."""
    words = [w.strip(".!?") for w in text.lower().replace("-", " ").replace(",", " ").split()]
    words = [w for w in words if w and w != "and"]
    if not words:
        return None
    total, current, last_scale = 0, None, None
    for word in words:
        if word in _EN_UNITS or word in _EN_TENS:
            value = _EN_UNITS.get(word, _EN_TENS.get(word))
            if current is not None and not (current % 100 == 0 or (current % 10 == 0 and current % 100 >= 20
                                                                   and value < 10)):
                return None  # "five five", "twenty thirty": not a number
            current = (current or 0) + value
        elif word == "hundred" and current is not None and 0 < current < 10:
            current *= 100
        elif word in _EN_SCALES and current is not None and (last_scale is None or _EN_SCALES[word] < last_scale):
            total, current, last_scale = total + current * _EN_SCALES[word], None, _EN_SCALES[word]
        else:
            return None
    return total + (current or 0)


def canonical_numbers(sentence: str, lang: Optional[str]) -> str:
    """A source sentence of the ``numbers`` dataset written as its training sentences were: each part
    (parts are joined by ``;``) that English number words spell is spelled again by num2words, so missing
    commas or hyphens do not make it unfamiliar. Other text, and other languages, pass as they are."""
    if lang != "en":
        return sentence
    from num2words import num2words

    parts = []
    for part in sentence.split(";"):
        value = _english_number(part)
        parts.append(part if value is None else num2words(value, lang="en"))
    return " ; ".join(p.strip() for p in parts)


def _spell(numbers: Sequence[int], lang: str) -> list[str]:
    return list(_spelled(tuple(numbers), lang))


@functools.lru_cache(maxsize=4)
def _spelled(numbers: tuple[int, ...], lang: str) -> tuple[str, ...]:
    """Kept for the process: num2words takes ~0.7 s per 10,000 numbers, and the jobs of a sweep run in
    one process (the basic launcher) spell the same numbers again."""
    from num2words import CONVERTER_CLASSES, num2words

    try:
        return tuple(preprocess(num2words(n, lang=lang), split_hyphens=True) for n in numbers)
    except NotImplementedError:
        some = ", ".join(sorted(CONVERTER_CLASSES)[:12])
        raise ConfigError(f"num2words has no language '{lang}'; use e.g. one of {some}, ...") from None


@DATASETS.register("numbers")
def numbers(
    *,
    src_lang: str = "en",
    tgt_lang: str = "fr",
    low: int = 0,
    high: int = 10000,
    test_fraction: float = 0.1,
    split_seed: int = 0,
    num_steps: Optional[int] = None,
    tokens: str = "word",
    min_freq: int = 1,
    bucket: bool = False,
    count: Optional[int] = None,
    per_line: int = 1,
) -> Source:
    """The integers low..high-1 (or ``count`` of them, drawn without replacement with ``split_seed``) written out by num2words in ``src_lang`` and ``tgt_lang`` (e.g.
    321: ``three hundred and twenty - one`` -> ``trois cent vingt et un``). Hyphens become words of
    their own, so ``quatre - vingt - dix`` shares ``vingt`` and ``dix`` with other numbers (a smaller
    vocabulary that generalizes to unseen numbers). The test numbers are a seeded random subset of the
    range (``split_seed``), never seen in training. ``num_steps=null`` fits the longest sentence.
    German writes a number as one word: use ``tokens=char`` for ``tgt_lang=de``. ``per_line`` > 1
    makes each sentence that many numbers joined by `` ; `` (longer inputs), all from the same split."""
    if high - low < 2:
        raise ConfigError(f"dataset.numbers needs high - low >= 2 numbers, got low={low} high={high}")
    tokenize("", tokens)
    values = list(range(low, high))
    if count is not None:  # a sample of a range too big to spell out whole (e.g. up to 10**7)
        if not 2 <= count <= high - low:
            raise ConfigError(f"dataset.count must be in [2, high - low = {high - low}] or null (all), got {count}")
        values = sorted(random.Random(split_seed).sample(range(low, high), count))
    pairs = list(zip(_spell(values, src_lang), _spell(values, tgt_lang)))
    train_idx, test_idx = _split_by_index(len(values), test_fraction, split_seed)
    if per_line < 1:
        raise ConfigError(f"dataset.per_line must be >= 1, got {per_line}")
    if per_line > 1:
        pairs, train_idx, test_idx = _lines_of_numbers(pairs, train_idx, test_idx, per_line, split_seed)
    if num_steps is None:  # the longest side in tokens, plus <eos>
        num_steps = 1 + max(len(tokenize(s, tokens)) for pair in pairs for s in pair)
    return _source(pairs, test_idx, train_idx, num_steps=num_steps, min_freq=min_freq, tokens=tokens, split_hyphens=True,
                   bucket=bucket, numbers_lang=src_lang)
