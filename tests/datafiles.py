"""Tiny datasets written in the real on-disk formats: IDX (MNIST, Fashion-MNIST), the CIFAR python
pickle batches, folders of PNGs, CSVs, .npz and .pt files. Each has a learnable signal."""
from __future__ import annotations

import hashlib
import pickle
import struct
from pathlib import Path

import numpy as np
import torch


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX: 0x0000, type 0x08 (ubyte), ndim, big-endian uint32 dims, then the bytes."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.tobytes())


def class_images(labels: np.ndarray, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """uint8 images (N, *shape) with noise and a bright horizontal bar whose row depends on the class.

    ``shape`` is (H, W) or (H, W, C); the bar for class k starts at row 2k (mod H - 3)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, size=(len(labels), *shape)).astype(np.uint8)
    for i, k in enumerate(labels):
        row = (2 * int(k)) % (shape[0] - 3)
        images[i, row : row + 3] = 230
    return images


def write_mnist(root: Path, folder: str = "FashionMNIST", n_train: int = 200, n_test: int = 60, seed: int = 0) -> Path:
    """torchvision's layout: root/<MNIST|FashionMNIST>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte."""
    raw = Path(root) / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n, s in (("train", n_train, seed), ("t10k", n_test, seed + 1)):
        labels = np.arange(n) % 10
        write_idx(raw / f"{prefix}-images-idx3-ubyte", class_images(labels, (28, 28), s))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return Path(root)


def _pickle(path: Path, obj: dict) -> str:
    path.write_bytes(pickle.dumps(obj, protocol=2))
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_cifar(root: Path, classes: int = 10, per_file: int = 30, n_test: int = 40, seed: int = 0) -> dict:
    """The python pickle batches of CIFAR-10 (5 data batches, test_batch, batches.meta) or CIFAR-100
    (train, test, meta). Returns {file name: md5} of what was written."""
    root = Path(root)
    cifar100 = classes == 100
    folder = root / ("cifar-100-python" if cifar100 else "cifar-10-batches-py")
    folder.mkdir(parents=True, exist_ok=True)
    label_key = "fine_labels" if cifar100 else "labels"
    files = ["train"] if cifar100 else [f"data_batch_{i}" for i in range(1, 6)]
    md5 = {}
    for i, name in enumerate(files + ["test" if cifar100 else "test_batch"]):
        n = n_test if i == len(files) else per_file * (5 if cifar100 else 1)
        labels = (np.arange(n) + i) % classes
        hwc = class_images(labels % 10, (32, 32, 3), seed + i)
        data = hwc.transpose(0, 3, 1, 2).reshape(n, 3072)  # CIFAR rows: 1024 red, 1024 green, 1024 blue
        entry = {"batch_label": name, label_key: labels.tolist(), "data": data, "filenames": [f"{j}.png" for j in range(n)]}
        if cifar100:
            entry["coarse_labels"] = (labels // 5).tolist()
        md5[name] = _pickle(folder / name, entry)
    if cifar100:
        meta = {"fine_label_names": [f"c{k}" for k in range(100)], "coarse_label_names": [f"s{k}" for k in range(20)]}
        md5["meta"] = _pickle(folder / "meta", meta)
    else:
        meta = {"label_names": [f"c{k}" for k in range(10)], "num_cases_per_batch": per_file, "num_vis": 3072}
        md5["batches.meta"] = _pickle(folder / "batches.meta", meta)
    return md5


def trust_cifar_files(monkeypatch, md5: dict, classes: int = 10) -> None:
    """torchvision md5-checks every CIFAR file against the published archive; point it at our tiny files."""
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR100 if classes == 100 else CIFAR10
    monkeypatch.setattr(cls, "train_list", [[f, md5[f]] for f, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[f, md5[f]] for f, _ in cls.test_list])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5[cls.meta["filename"]]})


def write_png_folder(root: Path, classes=("cat", "dog", "owl"), per_class: int = 12, size: int = 12, seed: int = 0) -> Path:
    """root/<class>/<i>.png, RGB; class k is dominated by colour channel k."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for k, name in enumerate(classes):
        (Path(root) / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = rng.integers(0, 80, size=(size, size, 3)).astype(np.uint8)
            image[..., k % 3] += 150
            Image.fromarray(image).save(Path(root) / name / f"{i}.png")
    return Path(root)


def write_image_csv(root: Path, n: int = 40, binary: bool = False, size: int = 10, seed: int = 0) -> Path:
    """root/img/<i>.png (gray) and root/scores.csv with columns file,score; the score grows with brightness."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    (Path(root) / "img").mkdir(parents=True, exist_ok=True)
    rows = ["file,score"]
    for i in range(n):
        level = rng.uniform(0, 1)
        image = np.clip(level * 200 + rng.integers(0, 40, size=(size, size)), 0, 255).astype(np.uint8)
        Image.fromarray(image, mode="L").save(Path(root) / "img" / f"{i}.png")
        score = int(level > 0.5) if binary else round(1 + 4 * level, 3)  # a 1-5 score
        rows.append(f"img/{i}.png,{score}")
    (Path(root) / "scores.csv").write_text("\n".join(rows) + "\n")
    return Path(root)


def write_house_prices(folder: Path, n_train: int = 120, n_test: int = 30, seed: int = 0) -> tuple[Path, Path]:
    """Kaggle's layout: train.csv (Id, features, SalePrice) and test.csv (Id, features), with NAs;
    test_prices.csv holds the test set's true prices."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    n = n_train + n_test
    area = rng.uniform(4000, 15000, n)
    quality = rng.integers(1, 11, n)
    frontage = rng.uniform(40, 120, n)
    frontage[rng.random(n) < 0.2] = np.nan  # missing numbers
    zoning = rng.choice(["RL", "RM", "FV"], n).astype(object)
    zoning[rng.random(n) < 0.1] = None  # missing categories
    street = rng.choice(["Pave", "Grvl"], n)
    zoning_effect = np.array([{"RL": 0.1, "RM": -0.1, "FV": 0.2}.get(z, 0.0) for z in zoning])
    price = np.exp(11.0 + 0.12 * quality + 4e-5 * area + zoning_effect + rng.normal(0, 0.05, n))
    frame = pd.DataFrame({
        "Id": np.arange(1, n + 1), "LotArea": area, "OverallQual": quality, "LotFrontage": frontage,
        "MSZoning": zoning, "Street": street, "SalePrice": price.round(0),
    })
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    frame.iloc[:n_train].to_csv(folder / "train.csv", index=False)
    frame.iloc[n_train:].drop(columns="SalePrice").to_csv(folder / "test.csv", index=False)
    frame.iloc[n_train:][["Id", "SalePrice"]].to_csv(folder / "test_prices.csv", index=False)  # the answers
    return folder / "train.csv", folder / "test.csv"


def write_table(path: Path, n: int = 120, seed: int = 0) -> Path:
    """A table of every column kind dataset=csv infers, with missing values and a learnable signal: ``id``
    (1..n), ``size`` (floats, 10% missing), ``rooms`` (integers 1-5), ``colour`` (text, 10% missing),
    ``garden`` (booleans), ``built`` (ISO dates), ``species`` (text labels: yew where the colour is blue,
    else ash or oak by size) and ``price`` (floats in the tens of thousands, from size, colour and rooms).
    CSV, or Parquet for a ``.parquet`` path."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    size = rng.uniform(0, 10, n)
    colour = rng.choice(["red", "green", "blue"], n).astype(object)
    rooms = rng.integers(1, 6, n)
    species = np.where(colour == "blue", "yew", np.where(size < 5, "ash", "oak"))
    effect = np.array([{"red": 4000.0, "green": 0.0, "blue": -4000.0}[c] for c in colour])
    price = 20000 + 3000 * size + effect + 1500 * rooms + rng.normal(0, 500, n)
    size[rng.random(n) < 0.1] = np.nan  # missing numbers, after the labels were drawn from them
    colour[rng.random(n) < 0.1] = None  # missing categories
    built = pd.Timestamp("2001-01-01") + pd.to_timedelta(rng.integers(0, 8000, n), unit="D")
    frame = pd.DataFrame({
        "id": np.arange(1, n + 1), "size": size.round(2), "rooms": rooms, "colour": colour, "garden": rng.random(n) < 0.5,
        "built": built.strftime("%Y-%m-%d"), "species": species, "price": price.round(2),
    })
    path = Path(path)
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def write_table_with_a_typo(path: Path) -> Path:
    """``write_table``'s CSV with the size of row 7 (line 8) written as 'unknown': text among numbers."""
    import pandas as pd

    frame = pd.read_csv(write_table(path))
    frame["size"] = frame["size"].astype(object)
    frame.loc[6, "size"] = "unknown"
    frame.to_csv(path, index=False)
    return path


def write_png_bytes(path: Path) -> Path:
    """A file that starts as a PNG image does, whatever its name says."""
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    return Path(path)


def write_arrays(path: Path, n: int = 90, shape=(5,), task: str = "classification", seed: int = 0, extra=()) -> Path:
    """``path`` (.npz or .pt) with x, y (+ the splits named in ``extra``: "val", "test")."""
    rng = np.random.default_rng(seed)
    data = {}
    for part in ("", *[f"_{e}" for e in extra]):
        x = rng.normal(size=(n, *shape)).astype(np.float32)
        signal = x.reshape(n, -1)[:, 0]
        if task == "classification":
            y = (signal > 0).astype(np.int64) + (signal > 1).astype(np.int64)  # 3 classes
        elif task == "binary":
            y = signal > 0
        else:
            y = (2 * signal + 1).astype(np.float32)
        data[f"x{part}"], data[f"y{part}"] = x, y
    path = Path(path)
    if path.suffix == ".npz":
        np.savez(path, **data)
    else:
        torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in data.items()}, path)
    return path


# English-French pairs in the course's fra.txt layout: source<TAB>target<TAB>attribution, with the
# narrow no-break space (U+202F) that French puts before ! and ?.
FRA_LINES = [
    ("Go.", "Va\u202f!"), ("Hi.", "Salut."), ("Run!", "Cours\u202f!"), ("Run!", "Courez\u202f!"),
    ("Who?", "Qui\u202f?"), ("Wow!", "Ça alors\u202f!"), ("I see.", "Je comprends."), ("I try.", "J'essaye."),
    ("I won!", "J'ai gagné\u202f!"), ("I lost.", "J'ai perdu."), ("He ran.", "Il a couru."), ("He's calm.", "Il est calme."),
    ("I'm OK.", "Je vais bien."), ("Be calm.", "Sois calme."), ("I'm calm.", "Je suis calme."), ("He is OK.", "Il va bien."),
    ("We lost.", "Nous avons perdu."), ("We won.", "Nous avons gagné."), ("We ran.", "Nous avons couru."),
    ("I ran.", "J'ai couru."),
]


def write_fra_eng(root: Path, lines=FRA_LINES) -> Path:
    """``<root>/fra-eng/fra.txt``, where the translation dataset looks by default."""
    path = root / "fra-eng" / "fra.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{en}\t{fr}\tCC-BY 2.0 (France) Attribution: tatoeba.org #{i}\n" for i, (en, fr) in enumerate(lines)),
                    encoding="utf-8")
    return path


class TinyDatasets:
    """One tiny copy of every file format under ``root``, written on first use, and the overrides
    that point each file-based dataset option at it."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._md5: dict[int, dict] = {}

    def _once(self, name: str, write) -> Path:
        path = self.root / name
        if not path.exists():
            write(path)
        return path

    def overrides(self, option: str, monkeypatch) -> list[str]:
        """Overrides for ``dataset=<option>`` (empty for bundled datasets); trusts the tiny CIFAR files."""
        vision = self.root / "vision"
        if option in ("mnist", "fashion_mnist"):
            write_mnist(vision, "MNIST" if option == "mnist" else "FashionMNIST")
            return [f"dataset.root={vision}", "dataset.download=false"]
        if option in ("cifar10", "cifar100"):
            classes = 10 if option == "cifar10" else 100
            if classes not in self._md5:
                self._md5[classes] = write_cifar(vision, classes=classes)
            trust_cifar_files(monkeypatch, self._md5[classes], classes)
            return [f"dataset.root={vision}", "dataset.download=false"]
        if option == "image_folder":
            return [f"dataset.root={self._once('png', write_png_folder)}", "dataset.num_workers=0", "trainer.batch_size=8"]
        if option == "image_csv":
            root = self._once("faces", write_image_csv)
            return [f"dataset.root={root}", "dataset.csv=scores.csv", "dataset.num_workers=0", "trainer.batch_size=8"]
        if option == "house_prices":
            folder = self._once("house", write_house_prices)
            return [f"dataset.train_csv={folder / 'train.csv'}", f"dataset.test_csv={folder / 'test.csv'}"]
        if option == "translation":
            write_fra_eng(self.root / "text")
            return [f"dataset.root={self.root / 'text'}", "dataset.download=false", "dataset.min_freq=1"]
        if option == "csv":
            return [f"dataset.path={self._once('table.csv', write_table)}", "dataset.target=species", "trainer.batch_size=8"]
        if option == "arrays":
            return [f"dataset.path={self._once('arrays.npz', write_arrays)}", "trainer.batch_size=8"]
        return []
