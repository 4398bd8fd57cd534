"""A run's dir: refused or accepted before anything is written into it, and its record written once accepted.

Hydra makes the run dir before dlexp sees the config, but writes nothing into it
(``hydra.output_subdir`` is null): dlexp decides whether the run may start there (a new run,
a resumed one, or a refusal) and only then writes its record, ``.hydra/config.yaml``,
``hydra.yaml`` and ``overrides.yaml`` (``.hydra_resume/`` for a resumed run, beside the
original). A refused command leaves every byte as it was, and removes the folders that
Hydra made for it (``DirSnapshot``, taken before Hydra starts, says which those are).
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig, ListConfig, OmegaConf

from dlexp.errors import RunDirInUse, UserError
from dlexp.runs import files
from dlexp.runs.hints import resume_command
from dlexp.runs.record import RunDir
from dlexp.runs.status import Status


def prepare_run_dir(run_dir: Path) -> Path:
    """``run_dir``, created if needed, once a probe file could be written there; else a one-line error."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise UserError(f"cannot write to output dir {run_dir} ({err.strerror}); set hydra.run.dir=<writable path>") from None
    return run_dir


def earlier_run_files(run_dir: Path) -> list[str]:
    """The files by which ``run_dir`` holds another run (a failed run's summary does not count)."""
    earlier = [p for p in (files.METRICS_FILE, f"{files.CHECKPOINT_DIR}/{files.LAST_CHECKPOINT}", files.FOLD_DIR.format(1))
               if (run_dir / p).exists()]
    if RunDir(run_dir).has(files.SUMMARY_FILE) and RunDir(run_dir).status() != Status.FAILED:
        earlier.append(files.SUMMARY_FILE)
    return earlier


def refuse_earlier_run(run_dir: Path) -> None:
    """A new run must not write over another run's files (e.g. a reused hydra.run.dir)."""
    earlier = earlier_run_files(run_dir)
    if earlier:
        raise RunDirInUse(
            f"{run_dir} already holds a run ({', '.join(earlier)}); continue it with: {resume_command(run_dir)}; "
            f"or choose another dir (hydra.run.dir=...)"
        )


def write_record(run_dir: Path, task_cfg: DictConfig, hydra_cfg: DictConfig, overrides: ListConfig,
                 *, resumed: bool = False) -> None:
    """The run's record, as Hydra would have written it: the composed config, Hydra's own config (the
    options chosen among it) and the command line; each file written whole (temp file, then rename)."""
    folder = Path(run_dir) / (files.RESUME_HYDRA_DIR if resumed else files.HYDRA_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    for name, node in ((files.CONFIG_RECORD, task_cfg), (files.HYDRA_RECORD, hydra_cfg), (files.OVERRIDES_RECORD, overrides)):
        files.atomic_write(folder / name, OmegaConf.to_yaml(node))


@dataclass
class DirSnapshot:
    """Which folders on the way to a run dir existed before Hydra made it, so that a refused command can
    remove exactly the folders made for it (``outputs/<date>/<time>``, or an explicit new dir) and no other.

    ``base`` is the deepest folder known before Hydra resolves the dir (``outputs`` for
    ``outputs/${now:...}``); ``entries`` its contents then; ``existing`` every folder that existed
    between the root and the explicit dir."""

    base: Optional[Path] = None
    entries: set[str] = field(default_factory=set)
    existing: set[Path] = field(default_factory=set)

    @classmethod
    def take(cls, target: str) -> "DirSnapshot":
        static = target.split("${", 1)[0].rpartition("/")[0] if "${" in target else target
        base = Path(static or ".").expanduser().absolute()
        snapshot = cls(base=base)
        path = base
        while True:
            if path.is_dir():
                snapshot.existing.add(path)
            if path == path.parent:
                break
            path = path.parent
        if base.is_dir():
            snapshot.entries = set(os.listdir(base))
        return snapshot

    def made_now(self, folder: Path) -> bool:
        folder = folder.absolute()
        if self.base is None or folder in self.existing:
            return False
        if folder.parent == self.base and self.base in self.existing:  # e.g. outputs/<date>: new unless listed
            return folder.name not in self.entries
        return folder == self.base or self.base in folder.parents or folder in self.base.parents

    def remove_run(self, run_dir: Path) -> None:
        """A new run refused once it had written: its dir goes if this command made it (the folders above it
        too, while empty), else the files a run writes go and whatever else the dir held stays."""
        folder = Path(run_dir).absolute()
        if self.made_now(folder):
            shutil.rmtree(folder, ignore_errors=True)
            self.remove_made(folder.parent)
            return
        for name in files.RUN_FILES:
            path = folder / name
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        for pattern in (files.TENSORBOARD_GLOB, files.FOLD_DIR.format("*")):
            for path in folder.glob(pattern):
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)

    def remove_made(self, run_dir: Path) -> None:
        """Remove ``run_dir`` and the folders above it that this command made, while they are empty."""
        folder = Path(run_dir).absolute()
        while self.made_now(folder) and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent

