"""A new run's dir: writable, and not holding another run's files (which a new run would overwrite)."""
from __future__ import annotations

from pathlib import Path

from dlexp.errors import RunDirInUse, UserError
from dlexp.runs import files


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


def refuse_earlier_run(run_dir: Path) -> None:
    """A new run must not write over another run's files (e.g. a reused hydra.run.dir)."""
    earlier = [p for p in (files.METRICS_FILE, f"{files.CHECKPOINT_DIR}/{files.LAST_CHECKPOINT}", files.FOLD_DIR.format(1))
               if (run_dir / p).exists()]
    summary = run_dir / files.SUMMARY_FILE
    if summary.exists() and '"failed"' not in summary.read_text():
        earlier.append(files.SUMMARY_FILE)
    if earlier:
        raise RunDirInUse(
            f"{run_dir} already holds a run ({', '.join(earlier)}); continue it with resume={run_dir}, "
            f"or choose another dir (hydra.run.dir=...)"
        )
