"""Translation data: the course's preprocessing, vocabularies, id tensors, the file dataset and the numbers dataset."""
from __future__ import annotations

import urllib.error

import pytest
import torch

from conftest import assert_one_line_error
from datafiles import write_fra_eng
from dlexp.data import DATASETS
from dlexp.data.text import EOS_ID, PAD_ID, UNK_ID, Vocab, detokenize, encode_pairs, lengths, preprocess, tokenize
from dlexp.errors import ConfigError, DataError


def test_preprocess_is_the_courses():
    assert preprocess("Va\u202f!") == "va !"  # the narrow no-break space of fra.txt's first line
    assert preprocess("Ça\xa0alors !") == "ça alors !"
    assert preprocess("Hello,world.") == "hello ,world ."  # a space goes BEFORE , . ! ? only
    assert preprocess("I won!") == preprocess("I won !") == "i won !"
    assert preprocess("quatre-vingt-dix", split_hyphens=True) == "quatre - vingt - dix"


def test_char_tokens_keep_the_word_boundaries():
    tokens = tokenize("va  !", "char")
    assert tokens == ["v", "a", "\u2581", "!"]
    assert detokenize(tokens, "char") == "va !"
    assert detokenize(tokenize("il est calme .", "word")) == "il est calme ."
    with pytest.raises(ConfigError, match="dataset.tokens must be one of word, char, got 'bpe'"):
        tokenize("x", "bpe")


def test_vocab_ids_are_reserved_then_by_frequency_then_alphabetical():
    vocab = Vocab([["b", "a", "c"], ["c", "b", "d"], ["c"]], min_freq=2)
    assert vocab.idx_to_token == ["<pad>", "<bos>", "<eos>", "<unk>", "c", "b"]  # a and d seen once: dropped
    assert Vocab([["z", "y"], ["y", "z"]]).idx_to_token[4:] == ["y", "z"]  # a tie: alphabetical
    assert vocab.encode(["c", "a", "b"]) == [4, UNK_ID, 5]
    assert vocab.decode([1, 4, 5, 0, 2, 4]) == ["c", "b"]  # bos and pad skipped, stops at eos
    assert len(vocab) == 6


def test_vocab_survives_a_weights_only_checkpoint(tmp_path):
    vocab = Vocab([["va", "!"], ["va", "."]])
    torch.save({"src_vocab": vocab.to_state()}, tmp_path / "ckpt.pt")
    loaded = Vocab.from_state(torch.load(tmp_path / "ckpt.pt", weights_only=True)["src_vocab"])
    assert loaded.idx_to_token == vocab.idx_to_token and loaded.encode(["va", "?"]) == vocab.encode(["va", "?"])
    with pytest.raises(DataError, match="must start with <pad> <bos> <eos> <unk>"):
        Vocab.from_state(["a", "b"])


def test_encode_pairs_appends_eos_pads_and_counts_truncations():
    vocab = Vocab([["a", "b", "c", "d"]])
    pairs = [(["a"], ["b", "c"]), (["a", "b", "c", "d"], ["d"]), (["a"], ["a", "b", "c", "d", "a"])]
    src, tgt, truncated = encode_pairs(pairs, vocab, vocab, num_steps=4)
    a, b, c = vocab.encode(["a", "b", "c"])
    assert src.dtype == torch.int64 and src.shape == tgt.shape == (3, 4)
    assert src[0].tolist() == [a, EOS_ID, PAD_ID, PAD_ID] and tgt[0].tolist() == [b, c, EOS_ID, PAD_ID]
    assert src[1].tolist() == [a, b, c, EOS_ID] and tgt[2].tolist() == [a, b, c, EOS_ID]  # first 3 tokens + eos
    assert truncated == 2
    assert lengths(src).tolist() == [2, 4, 2]
    with pytest.raises(ConfigError, match="num_steps must be >= 2"):
        encode_pairs(pairs, vocab, vocab, num_steps=1)


def test_translation_reads_the_course_file_format(tmp_path, capsys):
    write_fra_eng(tmp_path)
    source = DATASETS.build("translation", root=str(tmp_path), download=False, min_freq=1, test_fraction=0.25)
    ctx = source.context
    assert source.task == "translation" and source.num_classes == len(ctx["tgt_vocab"]) and source.val is None
    assert (ctx["pad_id"], ctx["bos_id"], ctx["eos_id"], ctx["tokens"]) == (0, 1, 2, "word")
    pairs = ctx["train_pairs"] + ctx["test_pairs"]
    assert ("go .", "va !") in pairs and len(pairs) == 20 and len(ctx["test_pairs"]) == 5  # attribution column dropped
    x, y = source.train
    assert x.shape == (15, 9) and y.shape == (15, 9) and source.test[0].shape == (5, 9)
    row = ctx["train_pairs"].index(("he's calm .", "il est calme ."))
    assert ctx["tgt_vocab"].decode(y[row].tolist()) == ["il", "est", "calme", "."]
    # vocabularies come from the training pool only
    train_words = {w for _, t in ctx["train_pairs"] for w in t.split()}
    assert set(ctx["tgt_vocab"].idx_to_token[4:]) == train_words
    assert "note:" not in capsys.readouterr().out  # nothing was truncated


def test_translation_first_examples_and_truncation_note(tmp_path, capsys):
    write_fra_eng(tmp_path)
    source = DATASETS.build("translation", root=str(tmp_path), download=False, num_examples=8, num_steps=3, test_fraction=0.0)
    assert source.test is None and len(source.context["train_pairs"]) == 8 and source.train[0].shape == (8, 3)
    out = capsys.readouterr().out.strip().splitlines()
    # over 2 tokens + <eos>: "ça alors !", "i see ." / "je comprends .", "i try ." -> one note with the count
    assert out == ["note: 3 of 8 sentence pairs are longer than dataset.num_steps=3 tokens (with <eos>) and were truncated"]


@pytest.mark.parametrize(
    "content, message",
    [
        ("Go.\tVa !\nHi. Salut.\n", "line 2 has no tab; each line must be source<TAB>target"),
        ("", "has no sentence pairs"),
        (b"Go.\t\xff\xfe\n", "cannot read"),
    ],
)
def test_bad_translation_files_are_one_line_data_errors(tmp_path, content, message):
    path = tmp_path / "pairs.txt"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DataError, match=message) as err:
        DATASETS.build("translation", path=str(path))
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match=r"dataset.path=.*nope.txt does not exist"):
        DATASETS.build("translation", path=str(tmp_path / "nope.txt"))


def test_offline_download_says_where_to_put_the_file(tmp_path, monkeypatch):
    def offline(url, dst, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("torch.hub.download_url_to_file", offline)
    with pytest.raises(DataError) as err:
        DATASETS.build("translation", root=str(tmp_path))
    message = str(err.value)
    assert "could not download http://d2l-data.s3-accelerate.amazonaws.com/fra-eng.zip (no network)" in message
    assert f"place fra.txt at {tmp_path / 'fra-eng' / 'fra.txt'}" in message and "\n" not in message
    with pytest.raises(DataError, match="fra.txt is missing; place fra.txt there"):
        DATASETS.build("translation", root=str(tmp_path), download=False)


def test_bad_file_through_the_cli_is_one_line(tmp_path, in_process):
    (tmp_path / "pairs.txt").write_text("Go.\tVa !\nno tab here\n")
    proc = in_process("dataset=translation", "dataset.path=pairs.txt", "model=seq2seq", "trainer.progress=false", cwd=tmp_path)
    assert_one_line_error(proc, "pairs.txt line 2 has no tab")


def test_numbers_are_real_translations_split_by_number():
    source = DATASETS.build("numbers", high=400, test_fraction=0.25)
    ctx = source.context
    train_src = {s for s, _ in ctx["train_pairs"]}
    assert len(ctx["test_pairs"]) == 100 and len(train_src) == 300
    assert not train_src & {s for s, _ in ctx["test_pairs"]}  # no test number is seen in training
    everything = dict(ctx["train_pairs"] + ctx["test_pairs"])
    assert everything["three hundred and twenty - one"] == "trois cent vingt et un"
    assert everything["ninety - nine"] == "quatre - vingt - dix - neuf"
    longest = max(len(s.split()) for pair in everything.items() for s in pair)
    assert source.train[0].shape[1] == longest + 1  # num_steps=null: the longest sentence and <eos>
    again = DATASETS.build("numbers", high=400, test_fraction=0.25)
    assert again.context["test_pairs"] == ctx["test_pairs"]  # split_seed fixes the test numbers
    other = DATASETS.build("numbers", high=400, test_fraction=0.25, split_seed=1)
    assert other.context["test_pairs"] != ctx["test_pairs"]


def test_numbers_to_german_need_char_tokens_and_bad_languages_are_config_errors():
    source = DATASETS.build("numbers", tgt_lang="de", tokens="char", high=100, test_fraction=0.0)
    pairs = dict(source.context["train_pairs"])
    assert pairs["ninety - nine"] == "neunundneunzig"
    assert source.context["tgt_vocab"].decode(source.train[1][99].tolist()) == list("neunundneunzig")
    with pytest.raises(ConfigError, match="num2words has no language 'xx'; use e.g. one of .*en"):
        DATASETS.build("numbers", tgt_lang="xx", high=10)


def test_numbers_are_spelled_once_per_process_for_the_jobs_of_a_sweep(monkeypatch):
    import num2words

    calls = []
    real = num2words.num2words
    monkeypatch.setattr(num2words, "num2words", lambda n, lang: calls.append(lang) or real(n, lang=lang))
    first = DATASETS.build("numbers", low=5000, high=5050, test_fraction=0.2)
    spelled = len(calls)
    assert spelled == 100  # 50 numbers in 2 languages
    again = DATASETS.build("numbers", low=5000, high=5050, test_fraction=0.2, split_seed=3)  # another job, same numbers
    assert len(calls) == spelled and sorted(again.context["train_pairs"] + again.context["test_pairs"]) == sorted(
        first.context["train_pairs"] + first.context["test_pairs"])
