"""Translation as a task on the shared training core: loss, metrics, decoding settings, outputs,
resume, sweeps and the user's mistakes, on tiny ``numbers`` data (a few hundred pairs, 1-2 epochs). The
commands run in this process; the run the translate command reads is trained once (``cli_run``)."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import FAST, assert_one_line_error, compose_cfg, read_json, run_in, untimed_rows
from dlexp.config.schema import DecodeConfig
from dlexp.data.text import PAD_ID, numbers
from dlexp.models.decoding import beam_search
from dlexp.errors import ConfigError
from dlexp.models import MODELS
from dlexp.tasks import Batch, build_task

# A small model on numbers below 200: seconds per run on one thread.
TINY = ["dataset=numbers", "dataset.high=200", "model=seq2seq_attention", "model.embed_size=16", "model.num_hiddens=32",
        "model.num_layers=1", "model.dropout=0", "trainer.batch_size=32", "optim.lr=0.01"]


def _tsv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory) -> tuple[Path, str]:
    """One tiny attention run through the CLI, shared by the output checks."""
    root = tmp_path_factory.mktemp("mt")
    proc = run_in(root, *FAST, *TINY, "trainer.epochs=2", f"hydra.run.dir={root / 'run'}")
    assert proc.returncode == 0, proc.stderr
    return root / "run", proc.stdout


def test_cli_run_scores_bleu_and_writes_translations_and_attention(cli_run):
    run_dir, stdout = cli_run
    summary = read_json(run_dir / "summary.json")
    assert summary["monitor"] == "val/bleu" and summary["mode"] == "max"
    assert 0.0 <= summary["test/bleu"] <= 100.0 and 0.0 <= summary["test/token_acc"] <= 1.0
    assert summary["bleu_signature"].startswith("nrefs:1|") and "tok:13a" in summary["bleu_signature"]
    rows = _tsv(run_dir / "translations.tsv")
    assert len(rows) == 20  # every test number of 0..199 (test_fraction 0.1)
    sources = {r["source"] for r in rows}
    assert "one hundred and twenty - one" in sources or len(sources) == 20  # real sentences, each once
    for row in rows:
        score = float(row["bleu"])
        assert 0.0 <= score <= 1.0
        assert (score == 1.0) == (row["prediction"] == row["reference"])  # the course's BLEU of k = 2
    first = rows[0]
    assert f"{first['source']} => {first['prediction']}, bleu {float(first['bleu']):.3f}" in stdout
    pixels = np.asarray(Image.open(run_dir / "attention.png").convert("RGB"))  # (H, W, 3)
    assert pixels.shape[0] >= 200 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20


def test_translation_model_without_attention_writes_no_attention_plot(run_train):
    _, run_dir = run_train(*TINY, "model=seq2seq", "trainer.epochs=1")
    assert (run_dir / "translations.tsv").is_file() and not (run_dir / "attention.png").exists()


def _without_seconds(run_dir: Path) -> list[dict[str, str]]:
    return untimed_rows(run_dir)


def _tiny_task_and_model(decode: DecodeConfig):
    torch.manual_seed(0)
    source = numbers(high=60)
    task = build_task("translation", context=source.context, decode=decode)
    model = MODELS.build("seq2seq_attention", (source.train[0].shape[1],), source.num_classes, embed_size=8,
                         num_hiddens=16, num_layers=1, dropout=0.0, **task.model_args()).eval()
    rows = torch.arange(16)
    batch = Batch(source.train[0][:16], source.train[1][:16], {"row": rows})
    return task, model, batch


def test_beam_of_one_through_the_task_equals_greedy():
    task, model, batch = _tiny_task_and_model(DecodeConfig(beam_size=1))
    _, greedy_sentences = task.evaluate_batch(model, batch)
    src_len = (batch.inputs != PAD_ID).sum(dim=1)
    limits = (1.5 * src_len.double() + 5).floor().long()
    beam = beam_search(model, batch.inputs, src_len, bos=1, eos=2, beam_size=1, max_len=limits)
    assert task.sentences(beam.tokens) == greedy_sentences


def test_loss_is_a_mean_over_real_tokens_weighted_by_their_count():
    task, model, batch = _tiny_task_and_model(DecodeConfig())
    out = task.step(model, batch)
    real = batch.targets != PAD_ID
    assert int(out.weight) == int(real.sum())
    logp = torch.log_softmax(out.outputs, dim=-1)  # (B, T, V)
    nll = -logp.gather(-1, batch.targets[..., None])[..., 0]  # (B, T)
    assert out.loss.item() == pytest.approx(nll[real].mean().item(), rel=1e-5)
    smoothed = build_task("translation", context=task.context, label_smoothing=0.1).step(model, batch)
    uniform = -logp.mean(dim=-1)  # (B, T): cross-entropy against the uniform distribution
    assert smoothed.loss.item() == pytest.approx((0.9 * nll + 0.1 * uniform)[real].mean().item(), rel=1e-5)


def test_mid_epoch_resume_of_a_translation_run_is_exact(run_train, tmp_path, monkeypatch):
    """A stop request in the middle of epoch 2 (as SIGTERM makes one) checkpoints there; resuming gives the
    numbers of the uninterrupted run, with an lr schedule that steps per optimizer step."""
    common = [*TINY, "trainer.epochs=2", "trainer.batch_size=16", "scheduler=inverse_sqrt", "scheduler.warmup_steps=5",
              "scheduler.timescale=5"]
    reference, _ = run_train(*common, run_dir=tmp_path / "reference")
    from dlexp.training.trainer import Trainer

    def stop_in_epoch_2(self, progress):  # the Trainer's per-step hook: ask to stop after step 3 of epoch 2
        if self.completed == 1 and progress.batches == 3:
            self.stop.signum = 15
        return original(self, progress)

    original = Trainer.checkpoint_if_due
    monkeypatch.setattr(Trainer, "checkpoint_if_due", stop_in_epoch_2)
    stopped, run_dir = run_train(*common, run_dir=tmp_path / "run")
    assert stopped.summary["status"] == "interrupted"
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 1 and state["partial"]["batches"] == 4  # the step under way finishes first
    monkeypatch.undo()
    resumed, _ = run_train(*common, f"resume={run_dir}", run_dir=run_dir)
    for key in ("best/val/bleu", "test/bleu", "test/token_acc", "test/loss"):
        assert resumed.summary[key] == reference.summary[key], key
    rows = _without_seconds(run_dir)
    assert rows == _without_seconds(tmp_path / "reference") and len(rows) == 2  # the lr column included
    assert _tsv(run_dir / "translations.tsv") == _tsv(tmp_path / "reference" / "translations.tsv")


def test_two_job_sweep_over_models_ranks_by_bleu(tmp_path, in_process):
    sweep_dir = tmp_path / "sweep"
    tiny = [f"++{o}" if o.startswith("model.") else o for o in TINY if not o.startswith("model=")]  # ++: see the error
    proc = in_process("-m", *FAST, *tiny, "trainer.epochs=1", "model=seq2seq,seq2seq_attention",
                   f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with open(sweep_dir / "summary.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["model"] for r in rows) == ["seq2seq", "seq2seq_attention"]
    for row in rows:
        assert math.isfinite(float(row["best/val/bleu_mean"])) and math.isfinite(float(row["test/bleu_mean"]))
    assert "val/bleu" in (sweep_dir / "summary.md").read_text()


def test_decode_settings_on_a_classification_task_are_an_error():
    with pytest.raises(ConfigError, match=r"decode.beam_size=4 is set, but a classification task does not decode"):
        build_task("classification", decode=DecodeConfig(beam_size=4))
    build_task("classification", decode=DecodeConfig())  # the defaults are fine


def test_label_smoothing_works_for_classification_and_is_refused_for_regression():
    logits, y = torch.tensor([[4.0, 0.0, 0.0]]), torch.tensor([0])
    plain = build_task("classification").loss_fn(logits, y)
    smoothed = build_task("classification", label_smoothing=0.3).loss_fn(logits, y)
    assert smoothed.item() > plain.item()
    with pytest.raises(ConfigError, match="trainer.label_smoothing=0.2 applies to a cross-entropy loss"):
        build_task("regression", label_smoothing=0.2)


def _file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("case", ["no_tab", "empty", "language", "decode", "model"])
def test_user_mistakes_get_one_line(tmp_path, in_process, case):
    no_tab = _file(tmp_path, "a.txt", "Go.\tVa !\nHi. Salut.\n")
    empty = _file(tmp_path, "b.txt", "")
    args = {
        "no_tab": ["dataset=translation", f"dataset.path={no_tab}"],
        "empty": ["dataset=translation", f"dataset.path={empty}"],
        "language": ["dataset=numbers", "dataset.tgt_lang=xx"],
        "decode": ["decode.beam_size=3"],
        "model": ["dataset=numbers", "dataset.high=50", "model=mlp"],
    }[case]
    message = {
        "no_tab": "line 2 has no tab", "empty": "has no sentence pairs", "language": "num2words has no language 'xx'",
        "decode": "decode.beam_size=3 is set, but a classification task", "model": "model mlp does not translate",
    }[case]
    proc = in_process(*FAST, "trainer.epochs=1", *args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert_one_line_error(proc, message)


def test_decode_keys_are_validated():
    from dlexp.train import validate

    with pytest.raises(ConfigError, match="decode.beam_size"):
        validate(compose_cfg("decode.beam_size=0"))
    with pytest.raises(ConfigError, match="unknown config key 'decode.beam'"):
        validate(compose_cfg("+decode.beam=2"))


def test_translate_command_reproduces_the_runs_test_translations(cli_run, tmp_path, in_process):
    run_dir, _ = cli_run
    rows = _tsv(run_dir / "translations.tsv")[:3]
    proc = in_process(str(run_dir), *(r["source"].replace(" - ", "-") for r in rows), "--beam", "1", cwd=tmp_path,
                      module="dlexp.translate")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    # sentences are preprocessed as in training (hyphens split), and the output's hyphens are joined again
    assert lines == [f"{r['source'].replace(' - ', '-')} => {r['prediction'].replace(' - ', '-')}" for r in rows]
    assert "warning" not in proc.stderr  # every word is known


def test_translate_warns_of_words_outside_the_vocabulary(cli_run, tmp_path, in_process):
    run_dir, _ = cli_run
    proc = in_process(str(run_dir), "I like the mouse.", "twelve", cwd=tmp_path, module="dlexp.translate")
    assert proc.returncode == 0, proc.stderr
    said = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(said) == 1 and said[0].startswith("warning: not in the training vocabulary")
    assert said[0].split("read as <unk>: ")[1].startswith("i, like, the, mouse, .;")
    assert len(proc.stdout.splitlines()) == 2


@pytest.mark.parametrize("case", ["missing", "no_checkpoint"])
def test_translate_command_errors_in_one_line(tmp_path, in_process, case):
    run_dir = tmp_path / "run"
    if case == "no_checkpoint":
        run_dir.mkdir()
    proc = in_process(str(run_dir), "go .", cwd=tmp_path, module="dlexp.translate")
    assert_one_line_error(proc, "is not a directory" if case == "missing" else "has no checkpoints/best.pt")


def _padded(lengths: list[int], width: int) -> torch.Tensor:
    """(N, width) ids: row i has lengths[i] tokens 5 + i % 7, then pads."""
    x = torch.full((len(lengths), width), PAD_ID)
    for i, n in enumerate(lengths):
        x[i, :n] = 5 + i % 7
    return x


def _bucket_loader(seed: int = 0):
    from dlexp.data.batching import BucketLoader

    gen = torch.Generator().manual_seed(seed)
    src_len, tgt_len = torch.randint(1, 12, (50,), generator=gen), torch.randint(1, 12, (50,), generator=gen)
    x, y = _padded(src_len.tolist(), 12), _padded(tgt_len.tolist(), 12)
    lengths = torch.stack([src_len, tgt_len], dim=1)
    return BucketLoader(x, y, 8, lengths=lengths, shuffle=True, seed=3, extras={"row": torch.arange(50)}), lengths


def test_length_buckets_hold_similar_lengths_trimmed_to_the_longest():
    loader, lengths = _bucket_loader()
    batches = list(loader)
    rows = torch.cat([b.extras["row"] for b in batches])
    assert sorted(rows.tolist()) == list(range(50))  # every example once per epoch
    ranges = []
    for batch in batches:
        mine = lengths[batch.extras["row"]]  # (B, 2)
        assert batch.inputs.shape[1] == int(mine[:, 0].max()) and batch.targets.shape[1] == int(mine[:, 1].max())
        assert (batch.inputs != PAD_ID).sum(dim=1).tolist() == mine[:, 0].tolist()  # trimming cut only pads
        total = mine.sum(dim=1)
        ranges.append((int(total.min()), int(total.max())))
    full = sorted(ranges[:-1])  # the full batches: consecutive slices of the length-sorted order
    assert all(a[1] <= b[0] for a, b in zip(full, full[1:]))
    assert [r for r in ranges[:-1]] != full  # ... whose order is shuffled


def test_length_buckets_resume_exactly_mid_epoch():
    loader, _ = _bucket_loader()
    list(loader)  # epoch 1
    epoch2 = loader.batches()
    seen = [next(epoch2) for _ in range(3)]
    state = loader.state_dict(mid_epoch=True)  # what a checkpoint taken during epoch 2 holds
    rest = list(epoch2)
    resumed, _ = _bucket_loader()
    resumed.load_state_dict(state)
    replay = list(resumed.batches(skip=3))
    assert len(seen) + len(rest) == 7 and len(replay) == len(rest)
    for a, b in zip(rest, replay):
        assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
        assert torch.equal(a.extras["row"], b.extras["row"])


def test_a_bucketed_translation_run_trains(run_train):
    result, run_dir = run_train(*TINY, "dataset.bucket=true", "trainer.epochs=1")
    assert result.summary["status"] == "completed" and math.isfinite(result.summary["test/token_acc"])


def test_numbers_can_sample_a_large_range():
    source = numbers(low=0, high=10**7, count=300, split_seed=1)
    assert len(source.train[0]) + len(source.test[0]) == 300
    assert any(len(t.split()) > 12 for _, t in source.context["test_pairs"] + source.context["train_pairs"])  # long numbers
    again = numbers(low=0, high=10**7, count=300, split_seed=1)
    assert source.context["test_pairs"] == again.context["test_pairs"]
    with pytest.raises(ConfigError, match="dataset.count must be in"):
        numbers(high=10, count=20)


def test_several_numbers_per_line_come_from_one_split():
    single = numbers(high=100)
    train_numbers = {s for s, _ in single.context["train_pairs"]}
    test_numbers = {s for s, _ in single.context["test_pairs"]}
    lines = numbers(high=100, per_line=3)
    assert len(lines.context["train_pairs"]) == len(train_numbers) and len(lines.context["test_pairs"]) == len(test_numbers)
    for part, allowed in (("train_pairs", train_numbers), ("test_pairs", test_numbers)):
        for src, tgt in lines.context[part]:
            assert len(src.split(" ; ")) == 3 == len(tgt.split(" ; ")) and set(src.split(" ; ")) <= allowed


def test_translate_writes_number_words_as_the_training_data_did(cli_run, tmp_path, in_process):
    """Without num2words' commas and hyphens ("four thousand three hundred and twelve", "forty two"), a
    sentence of the numbers data gets the translation of its training spelling, and no warning."""
    run_dir, _ = cli_run
    rows = _tsv(run_dir / "translations.tsv")[:3]
    loose = [r["source"].replace(",", "").replace(" - ", " ") for r in rows]
    assert any("," in r["source"] or " - " in r["source"] for r in rows)  # the rows do test a normalization
    proc = in_process(str(run_dir), *loose, "--beam", "1", cwd=tmp_path, module="dlexp.translate")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"{s} => {r['prediction'].replace(' - ', '-')}" for s, r in zip(loose, rows)]
    assert "warning" not in proc.stderr


@pytest.mark.parametrize("text, value", [
    ("four thousand three hundred and twelve", 4312), ("four thousand, three hundred and twelve", 4312),
    ("Forty two.", 42), ("forty-two", 42), ("nine thousand nine hundred ninety nine", 9999), ("zero", 0),
    ("three hundred one", 301), ("five five", None), ("twenty thirty", None), ("hundred", None),
    ("one thousand thousand", None), ("I like the mouse.", None), ("", None),
])
def test_english_number_words_are_read_however_they_are_punctuated(text, value):
    from dlexp.data.text import _english_number, canonical_numbers

    assert _english_number(text) == value
    if value is not None:
        from num2words import num2words

        assert canonical_numbers(text, "en") == num2words(value, lang="en")
    assert canonical_numbers(text, "fr") == text  # only English is read back
