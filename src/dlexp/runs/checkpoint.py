"""The checkpoint file: written atomically, loaded with ``torch.load(..., weights_only=True)``.

A checkpoint is a flat dict of plain containers and tensors: model and optimizer
state dicts, scheduler state, epoch, best metric and the resolved config. It is
written to a temp file in the same directory, fsynced, then ``os.replace``d over
the old one, so a crash at any instant leaves either the old or the new file.
"""
from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from dlexp.errors import UserError


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        io_error = _os_error_in(err)
        if io_error is not None:  # disk full, quota, file too large, ...: the old checkpoint is untouched
            reason = io_error.strerror or str(io_error)
            raise UserError(f"could not write checkpoint {path}: {reason}; free disk space or change hydra.run.dir") from None
        raise
    _fsync_dir(path.parent)  # make the rename itself durable


def _os_error_in(err: BaseException) -> "OSError | None":
    """The OSError behind ``err``: torch.save re-raises a failed write as a RuntimeError."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot fsync a directory; the rename is still atomic
    finally:
        os.close(fd)


def load_checkpoint(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; check the path")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as err:
        if not zipfile.is_zipfile(path):  # torch saves checkpoints as zip archives: this file is something else
            raise UserError(f"{path} is not a checkpoint (not a file torch.save wrote); give a run dir, or its "
                            "checkpoints/last.pt") from None
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"checkpoint {path} is corrupt or truncated ({first[:200]}); use another checkpoint") from None
    except Exception:  # noqa: BLE001  (torch.load reading a file that is no checkpoint raises anything: IndexError...)
        raise UserError(f"{path} is not a checkpoint (not a file torch.save wrote); give a run dir, or its "
                        "checkpoints/last.pt") from None
    if not isinstance(state, dict) or "model" not in state:
        raise UserError(f"checkpoint {path} is not a dlexp checkpoint (no 'model' entry)")
    return state
