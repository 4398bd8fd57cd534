"""Fold assembly: from a ``Source`` and the run config to the ``DataBundle`` of each fold.

For every (train, val) fold of the pool: fit preprocessing on the train part only,
apply it to val, test and the shifted test, move the tensors to the device once,
and wrap each part in a loader. Augmentation goes on the training loader only.
The test set is never split, fitted on or used to choose anything.
"""
from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor

from dlexp.config.registry import builder_kwargs
from dlexp.data.arrays import MemmapRows
from dlexp.data.augment import Augmenter
from dlexp.data.base import AUGMENTS, DATASETS, SHIFTS, SPLITS, DataBundle, OutputsOf, Pair, Pool, Source, class_labels
from dlexp.data.batching import BucketLoader, TensorLoader
from dlexp.data.checks import check_source
from dlexp.data.images import ImageFiles, StreamLoader, fit_stream_normalizer
from dlexp.data.partition import pool_size, pool_targets, take
from dlexp.data.preprocess import Normalizer, choose_resize, resize_images
from dlexp.data.splits import partition_in_place
from dlexp.data.shift import fold_corrections
from dlexp.errors import ConfigError, DataError
from dlexp.models import input_size

RESIZE_ONCE_MAX_BYTES = 1 << 30  # resize a whole dataset once up to 1 GiB of float32; beyond that, per batch


def build_source(cfg: DictConfig) -> Source:
    """The dataset named in ``cfg`` (a validated run config), its contents checked."""
    source: Source = DATASETS.build(cfg.dataset.name, **builder_kwargs(cfg.dataset))
    check_source(source, cfg.dataset.name)  # empty splits, NaN/inf: fail here, not as a diverged loss
    return source


def load_folds(cfg: DictConfig, *, seed: int, device: torch.device, shard: tuple[int, int] = (0, 1),
               reuse_pool: bool = False, source: Optional[Source] = None) -> "Folds":
    """The dataset named in ``cfg`` (or ``source``, already built from it), split into folds.

    ``shard`` is (rank, world size) under torchrun: each loader yields this rank's part of every global batch.
    ``reuse_pool``: a holdout split may reorder the pool's tensors in place (one copy of the data, not two);
    the caller must not read ``Source.train`` afterwards."""
    folds = Folds(cfg, source if source is not None else build_source(cfg), seed=seed, device=device, shard=shard)
    folds.reuse_pool = reuse_pool
    return folds


class Folds:
    """The data bundles of one run: k for ``split=kfold``, one for a holdout split.

    Bundles are built on demand (``folds[i]``), so only one fold's tensors live at a time.
    """

    def __init__(self, cfg: DictConfig, source: Source, *, seed: int, device: torch.device, shard: tuple[int, int] = (0, 1)):
        self.cfg, self.source, self.seed, self.device, self.shard = cfg, source, seed, device, shard
        self.reuse_pool = False  # see load_folds
        self.name = cfg.dataset.name
        if source.val is not None:
            if cfg.split.name != "holdout":
                raise ConfigError(
                    f"split={cfg.split.name} needs one training pool, but dataset '{self.name}' comes with its own "
                    f"val set; use split=holdout (the given val set is used as is)"
                )
            self.indices: Optional[list] = None
        else:
            self.indices = self._split()
        self.shift = SHIFTS.build(cfg.shift.name, **builder_kwargs(cfg.shift))
        self.augment_ops = AUGMENTS.build(cfg.augment.name, **builder_kwargs(cfg.augment))
        self.shifted_test, self.shift_batch = self._shift_test()
        self.resize = self._choose_resize()
        self.capped_batch = False  # whether the batch-size notice was printed

    def _choose_resize(self) -> Optional[int]:
        """dataset.resize for this run's model: decided once per run, announced once when ``auto`` resizes."""
        pool = self.source.train
        if self.source.resize is None:
            return None
        shape = (pool.channels, *pool.size) if isinstance(pool, ImageFiles) else tuple(pool[0].shape[1:])
        if len(shape) != 3:
            if str(self.source.resize).lower() == "auto":
                return None  # flat data: nothing to resize
            raise ConfigError(f"dataset.resize needs image data (N, C, H, W); this dataset has examples of shape {shape}")
        model = self.cfg.model.name
        size, notice = choose_resize(self.source.resize, shape[1:], model, input_size(model, builder_kwargs(self.cfg.model)))
        if notice:
            print(notice, flush=True)
        return size

    def _split(self) -> list:
        pool, cfg = self.source.train, self.cfg
        if pool_size(pool) == 0:
            raise DataError(f"dataset '{self.name}' has no training examples; check its files and settings")
        labels = class_labels(self.source.task, pool_targets(pool))
        try:
            return SPLITS.build(cfg.split.name, pool_size(pool), labels, self.seed, **builder_kwargs(cfg.split))
        except ValueError as err:  # e.g. too few examples of a class to stratify
            raise DataError(
                f"cannot split the {pool_size(pool)} training examples of '{self.name}' with split={cfg.split.name}: "
                f"{str(err).splitlines()[0]}; change split.* (e.g. split.stratify=false)"
            ) from None

    def __len__(self) -> int:
        return 1 if self.indices is None else len(self.indices)

    def __getitem__(self, i: int) -> DataBundle:
        if not 0 <= i < len(self):
            raise IndexError(f"fold {i} of {len(self)}")
        if self.indices is None:
            return self._bundle(self.source.train, self.source.val)
        train_idx, val_idx = self.indices[i]
        pool, rows = self.source.train, (train_idx, val_idx)
        if self.reuse_pool and len(self) == 1 and isinstance(pool, tuple) and isinstance(pool[0], Tensor):
            return self._bundle(*partition_in_place(pool, train_idx, val_idx), rows)
        return self._bundle(take(pool, train_idx), take(pool, val_idx), rows)

    def __iter__(self) -> Iterator[DataBundle]:
        for i in range(len(self)):
            yield self[i]

    def write_mean_predictions(self, run_dir: Path) -> None:
        """k-fold: the fold-averaged predictions, when the dataset has unlabeled inputs to predict."""
        if self.source.predict is not None:
            self.source.predict.write_mean(run_dir)

    # -- shift -------------------------------------------------------------
    def _shift_test(self) -> tuple[Optional[Pool], Optional[Callable[[Tensor], Tensor]]]:
        """The shifted copy of the raw test set, plus a per-batch input shift for streamed images."""
        shift, src = self.shift, self.source
        if shift is None:
            return None, None
        if src.test is None:
            raise DataError(
                f"shift={self.cfg.shift.name} is applied to the test set, but dataset '{self.name}' has none; "
                f"give it one (e.g. dataset.test_fraction=0.2) or use shift=none"
            )
        test = src.test
        if not isinstance(test, ImageFiles) and isinstance(test[0], MemmapRows):
            raise ConfigError(f"shift={self.cfg.shift.name} needs the test inputs in memory; use dataset.mmap=false")
        self._check_correction(test)
        if shift.select is not None:
            labels = class_labels(src.task, pool_targets(test))
            if labels is None:
                raise ConfigError(
                    f"shift={self.cfg.shift.name} resamples class priors, but dataset '{self.name}' is a "
                    f"{src.task} task; use shift=covariate"
                )
            test = take(test, shift.select(labels))
        if shift.inputs is None:
            return test, None
        if isinstance(test, ImageFiles):
            return test, shift.inputs  # per-image ops: the same whether applied per batch or to the whole set
        return (shift.inputs(test[0].float(), src.covariate_mask), test[1]), None

    def _check_correction(self, test: Pool) -> None:
        """A shift.correct that cannot apply to this data fails before any training."""
        correct, src = self.shift.correct, self.source
        if correct == "none":
            return
        if isinstance(test, ImageFiles) or isinstance(src.train, ImageFiles) or isinstance(src.train[0], MemmapRows):
            raise ConfigError(f"shift.correct={correct} needs the whole dataset in memory, but dataset '{self.name}' "
                              f"is streamed from files; use shift.correct=none (or dataset.mmap=false)")
        if correct == "bbse" and src.task != "classification":
            raise ConfigError(f"shift.correct=bbse estimates class priors from softmax outputs, but dataset "
                              f"'{self.name}' is a {src.task} task; use shift.correct=none")

    # -- one fold ------------------------------------------------------------
    def _batch_sizes(self, n_train: int) -> tuple[int, int]:
        trainer = self.cfg.trainer  # batch sizes >= 1 by the trainer schema
        eval_bs = trainer.eval_batch_size or 4 * trainer.batch_size
        world = self.shard[1]
        if trainer.batch_size % world:  # the global batch must split evenly, so every rank's step is alike
            raise ConfigError(
                f"trainer.batch_size={trainer.batch_size} is the global batch and must divide evenly over the {world} "
                f"processes; use a multiple of {world}, e.g. trainer.batch_size={trainer.batch_size // world * world or world}"
            )
        if trainer.batch_size > n_train:  # small data (e.g. 20 examples): one full batch, said once per run
            full = n_train // world * world
            if not self.capped_batch:
                print(
                    f"trainer.batch_size={trainer.batch_size} is larger than the {n_train} training examples; "
                    f"training on full batches of {full}", flush=True,
                )
                self.capped_batch = True
            return full, eval_bs
        return trainer.batch_size, eval_bs

    def _row_ids(self, rows: Optional[tuple[np.ndarray, np.ndarray]]) -> dict[str, Optional[Tensor]]:
        """Source.row_ids: each split's rows in the train pool (test: after it), as in ``Source.row_ids``."""
        src = self.source
        if not src.row_ids:
            return {}
        n_pool = pool_size(src.train)
        if rows is None:  # the pool is train as a whole; a given val set is numbered after the test set
            n_test = 0 if src.test is None else pool_size(src.test)
            rows = (np.arange(n_pool), n_pool + n_test + np.arange(pool_size(src.val)))
        ids = {"train": rows[0], "val": rows[1], "test": None if src.test is None else n_pool + np.arange(pool_size(src.test))}
        return {k: None if v is None else torch.as_tensor(np.asarray(v), dtype=torch.int64, device=self.device)
                for k, v in ids.items()}

    def _bundle(self, train: Pool, val: Pool, rows: Optional[tuple[np.ndarray, np.ndarray]] = None) -> DataBundle:
        for part, pool in (("train", train), ("val", val)):
            if pool_size(pool) == 0:
                raise DataError(f"the {part} split of dataset '{self.name}' is empty; use more data or change split.*")
        batch_size, eval_bs = self._batch_sizes(pool_size(train))
        if isinstance(train, ImageFiles):
            return self._stream_bundle(train, val, batch_size, eval_bs)
        if isinstance(train[0], MemmapRows):
            return self._memmap_bundle(train, val, batch_size, eval_bs)
        src = self.source
        raw = {"train": train, "val": val, "test": src.test, "shifted": self.shifted_test}
        given = {k: None if p is None else p[0].data_ptr() for k, p in raw.items()}
        raw, resize = self._resize(raw)
        # inputs no one else holds (a fold's rows taken from the pool, a resized copy) are normalized in place
        private = {
            k: p is not None and ((self.indices is not None and k in ("train", "val")) or p[0].data_ptr() != given[k])
            for k, p in raw.items()
        }
        prep = self._fit_preprocess(raw["train"][0], resize, eval_bs)
        # (targets,) mean of the train part, subtracted from every split's targets: the model starts near it
        offset = train[1].mean(dim=0) if src.center_targets and src.task == "regression" else None

        def prepared(pair: Optional[Pair], private: bool) -> Optional[Pair]:
            if pair is None:
                return None
            y = pair[1] if offset is None else pair[1] - offset
            if not pair[0].is_floating_point() and src.normalize == "none":  # token ids: used as they are
                return pair[0].to(self.device), y.to(self.device)
            x = pair[0].float()  # no copy when already float32
            if resize is None:  # else per batch: resize, then prep
                x = prep(x, inplace=private or x.data_ptr() != pair[0].data_ptr()) if isinstance(prep, Normalizer) else prep(x)
            return x.to(self.device), y.to(self.device)  # .to() is free when the device is the CPU

        parts = {k: prepared(p, private[k]) for k, p in raw.items()}
        transform = None if resize is None else (lambda x: prep(resize(x)))  # noqa: E731
        example = parts["train"][0][:1] if transform is None else transform(parts["train"][0][:1])
        augment = self._augmenter(example)

        loader = partial(self._tensor_loader, transform=transform, row_ids=self._row_ids(rows))

        ready = (lambda x: x) if transform is None else transform  # noqa: E731  inputs as the model sees them
        writer = self._predictions_writer(prep, offset, eval_bs)
        weights, after_fit = fold_corrections(self.shift, parts, ready, eval_bs, writer, src.num_classes)
        return DataBundle(
            train=loader(parts["train"], batch_size, "train", shuffle=True, seed=self.seed, augment=augment, extras=weights),
            val=loader(parts["val"], eval_bs, "val"),
            test=loader(parts["test"], eval_bs, "test"),
            task=src.task,
            input_shape=tuple(example.shape[1:]),
            num_classes=src.num_classes,
            task_args=src.task_args,
            context=src.context,
            extra_tests={"test_shifted": loader(parts["shifted"], eval_bs)} if parts["shifted"] else {},
            after_fit=after_fit,
            preprocess=prep,
            train_targets=parts["train"][1],
        )

    def _tensor_loader(self, pair: Optional[Pair], bs: int, part: str = "", *, transform: Optional[Callable],
                       row_ids: dict[str, Optional[Tensor]], **kw: Any) -> Optional[TensorLoader]:
        """The loader of one in-memory split (``part``: train, val, test or shifted)."""
        if pair is None:
            return None
        extras = dict(kw.pop("extras", None) or {})  # e.g. importance weights for the training loader
        if row_ids.get(part) is not None:  # e.g. which reference sentence each row is
            extras["row"] = row_ids[part]
        kw["extras"] = extras or None
        if part == "train" and self.source.bucket is not None:  # dataset.bucket=true: similar lengths per batch
            return BucketLoader(*pair, bs, lengths=self.source.bucket(*pair), transform=transform, shard=self.shard, **kw)
        return TensorLoader(*pair, bs, transform=transform, shard=self.shard, **kw)

    def _resize(self, parts: dict[str, Optional[Pair]]) -> tuple[dict[str, Optional[Pair]], Optional[Callable]]:
        """The raw images resized once, before preprocessing is fitted, when the result is small;
        else the raw images and a per-batch resize (applied before the preprocessing, so the two agree)."""
        size = self.resize
        if size is None:
            return parts, None
        x = parts["train"][0]
        resize = partial(resize_images, size=size)
        total = sum(len(p[0]) for p in parts.values() if p is not None) * x.shape[1] * size * size * 4
        if total > RESIZE_ONCE_MAX_BYTES:
            return parts, resize
        return {k: None if p is None else (resize(p[0].float()), p[1]) for k, p in parts.items()}, None

    def _fit_preprocess(self, x: Tensor, resize: Optional[Callable], chunk: int) -> Callable[[Tensor], Tensor]:
        """Preprocessing fitted on the train part ``x``; with a per-batch ``resize``, on its resized chunks."""
        src = self.source
        if src.preprocess:
            return src.preprocess(x.float())
        if resize is None:
            return Normalizer.fit(x.float(), src.normalize, src.stats)
        chunks = (resize(x[i : i + chunk].float()) for i in range(0, len(x), chunk))
        return Normalizer.fit_chunks(chunks, src.normalize, src.stats)

    def _augmenter(self, example: Tensor) -> Optional[Augmenter]:
        if not self.augment_ops:
            return None
        if example.dim() != 4 and any(op.needs_images for op in self.augment_ops):
            raise ConfigError(
                f"augment={self.cfg.augment.name} needs image data (N, C, H, W), but dataset '{self.name}' has "
                f"examples of shape {tuple(example.shape[1:])}; use augment=noise or augment=none"
            )
        return Augmenter(self.augment_ops, device=example.device)

    def _predictions_writer(self, prep: Callable, offset: Optional[Tensor], eval_bs: int) -> Optional[Callable]:
        pred = self.source.predict
        if pred is None:
            return None
        x = prep(resize_images(pred.x.float(), self.resize)).to(self.device)

        def write(outputs_of: OutputsOf, run_dir: Path) -> None:
            outputs = outputs_of(x, eval_bs)
            pred.write(run_dir, outputs if offset is None else outputs + offset)

        return write

    def _stream_bundle(self, train: ImageFiles, val: ImageFiles, batch_size: int, eval_bs: int) -> DataBundle:
        """Image files too big for memory: DataLoader workers decode, the device normalizes and augments."""
        src = self.source
        if self.resize is not None:  # decode every image at the resized size
            train, val = (replace(f, size=(self.resize, self.resize)) for f in (train, val))
        prep = fit_stream_normalizer(train, src.normalize, src.stats)
        example = torch.zeros(1, train.channels, *train.size, device=self.device)
        augment = self._augmenter(example)

        def loader(files: Optional[ImageFiles], bs: int, **kw: Any) -> Optional[StreamLoader]:
            return None if files is None else StreamLoader(files, bs, device=self.device, preprocess=prep, shard=self.shard, **kw)

        shifted = loader(self._sized(self.shifted_test), eval_bs, shift=self.shift_batch)
        return DataBundle(
            train=loader(train, batch_size, shuffle=True, seed=self.seed, augment=augment),
            val=loader(val, eval_bs),
            test=loader(self._sized(src.test), eval_bs),
            task=src.task,
            input_shape=tuple(example.shape[1:]),
            num_classes=src.num_classes,
            task_args=src.task_args,
            context=src.context,
            extra_tests={"test_shifted": shifted} if shifted is not None else {},
            preprocess=prep,
            train_targets=train.y,
        )

    def _memmap_bundle(self, train: Pair, val: Pair, batch_size: int, eval_bs: int) -> DataBundle:
        """Inputs memory-mapped from .npy files: each batch is read from disk, then resized and normalized."""
        src = self.source
        resize = (lambda x: x) if self.resize is None else partial(resize_images, size=self.resize)  # noqa: E731
        prep = Normalizer.fit_chunks((resize(c) for c in train[0].chunks(eval_bs)), src.normalize, src.stats)

        def transform(x: Tensor) -> Tensor:  # (B, *shape) float32 from the file -> the device, resized, normalized
            return prep(resize(x.to(self.device)), inplace=True)

        example = transform(train[0][:1])
        augment = self._augmenter(example)

        def loader(pair: Optional[Pair], bs: int, **kw: Any) -> Optional[TensorLoader]:
            return None if pair is None else TensorLoader(pair[0], pair[1].to(self.device), bs, transform=transform, shard=self.shard, **kw)

        return DataBundle(
            train=loader(train, batch_size, shuffle=True, seed=self.seed, augment=augment),
            val=loader(val, eval_bs),
            test=loader(src.test, eval_bs),
            task=src.task,
            input_shape=tuple(example.shape[1:]),
            num_classes=src.num_classes,
            task_args=src.task_args,
            context=src.context,
            preprocess=prep,
            train_targets=train[1],
        )

    def _sized(self, files: Optional[ImageFiles]) -> Optional[ImageFiles]:
        return files if files is None or self.resize is None else replace(files, size=(self.resize, self.resize))
