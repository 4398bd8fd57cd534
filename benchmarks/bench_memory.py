"""Peak memory (max RSS) of training on in-memory and memory-mapped arrays, each case in a fresh process.

    python benchmarks/bench_memory.py [--rows 100000] [--features 784]

Writes ``rows x features`` float32 inputs and int64 labels (4 classes) as a
``.npz`` file and as a directory of ``.npy`` files, plus a 1,000-row copy, and
measures ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` at the end of a one-epoch
``dataset=arrays`` run (MLP, one hidden layer of 64, ``normalize=channel``) on each:

- ``baseline``: the run on the 1,000-row ``.npz``: imports, model, optimizer and
  plots, with next to no data;
- ``arrays .npz``: the run on the full ``.npz`` file (in memory);
- ``arrays mmap``: the run on the ``.npy`` directory with ``dataset.mmap=true``.

"copies" is (peak - baseline) / the size of the inputs: 1.0 means one copy of the
data on top of the baseline, the floor for in-memory training.
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

RUN = ["model=mlp", "model.hidden=[64]", "dataset.normalize=channel", "trainer.epochs=1", "trainer.batch_size=256", "trainer.progress=false",
       "trainer.checkpoints=false", "split.stratify=false",
       "dataset.test_fraction=0"]  # the training data's memory alone, as the numbers in docs/benchmarks.md were measured


def child(case: str, folder: Path) -> None:
    """Run one case in this process and print its peak RSS in MiB."""
    from hydra import compose, initialize_config_dir

    from dlexp.config.files import CONFIG_DIR
    from dlexp.train import train

    mmap = case == "arrays mmap"
    path = {"baseline": folder / "tiny.npz", "arrays .npz": folder / "data.npz", "arrays mmap": folder / "npy"}[case]
    overrides = ["dataset=arrays", f"dataset.path={path}", f"dataset.mmap={str(mmap).lower()}", *RUN]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    train(cfg, folder / case.replace(" ", "_").replace(".", ""))
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # KiB on Linux -> MiB


def write_data(folder: Path, rows: int, features: int) -> float:
    """The inputs as data.npz and npy/{x,y}.npy; returns their size in MiB."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, features), dtype=np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + 2 * (x[:, 1] > 0).astype(np.int64)  # a learnable signal, 4 classes
    (folder / "npy").mkdir()
    np.save(folder / "npy" / "x.npy", x)
    np.save(folder / "npy" / "y.npy", y)
    np.savez(folder / "data.npz", x=x, y=y)
    np.savez(folder / "tiny.npz", x=x[:1000], y=y[:1000])
    return x.nbytes / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=784)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, Path(args.dir))
    with tempfile.TemporaryDirectory() as tmp:
        size = write_data(Path(tmp), args.rows, args.features)
        peaks = {}
        for case in ("baseline", "arrays .npz", "arrays mmap"):
            proc = subprocess.run([sys.executable, __file__, "--child", case, "--dir", tmp], capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"error: case '{case}' failed:\n{proc.stderr}")
            peaks[case] = float(proc.stdout.strip().splitlines()[-1])
    base = peaks["baseline"]
    print(f"inputs: {args.rows} x {args.features} float32 = {size:.0f} MiB")
    print(f"{'case':<14} {'peak RSS MiB':>13} {'copies':>7} {'/ (baseline + one copy)':>24}")
    for case, peak in peaks.items():
        print(f"{case:<14} {peak:13.0f} {(peak - base) / size:7.2f} {peak / (base + size):24.2f}")


if __name__ == "__main__":
    main()
