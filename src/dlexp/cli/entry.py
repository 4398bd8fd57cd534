"""The ``dlexp`` console script and ``python -m dlexp``: checks before Hydra, torchrun's process group,
the Hydra app, and a fast exit after a single run.

Under torchrun every rank joins the process group first and takes rank 0's run dir
(``dlexp.training.distributed``); only rank 0 writes files.
"""
from __future__ import annotations

import logging
import os
import sys

from dlexp.cli.help import before_hydra
from dlexp.errors import UserError
from dlexp.training import distributed


def cli() -> tuple[bool, object]:
    """Catch common command-line mistakes before Hydra does, then run. Returns (whether a single run on
    one process finished and closed its files, its exit code); anything else leaves through SystemExit."""
    before_hydra(sys.argv[1:])  # --version and a bare --help at once; a run's first line
    from dlexp.cli.app import run_app  # Hydra and the checks: only once --help and --version are answered
    from dlexp.cli.preflight import preflight  # (with the app, as above)

    try:
        preflight(sys.argv[1:])
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    if not distributed.launched_by_torchrun():
        return run_app()
    distributed.quiet_other_ranks()
    distributed.join_process_group(sys.argv)
    try:
        run_app()
    finally:
        distributed.leave_process_group()
    return False, 0


def entry() -> None:
    """``cli``, then, after a single run on one process, leave without the interpreter's teardown.

    Tearing down the modules torch._dynamo brings in takes about a second (measured: ``import
    torch._dynamo`` exits 0.9 s later than the same with ``os._exit``) and does nothing for a run
    whose files are all written, flushed and closed. Sweeps (their launchers and the sweep summary
    use exit hooks), torchrun ranks and crashes leave the usual way."""
    finished, code = cli()
    if not finished or not isinstance(code, (int, type(None))) or distributed.launched_by_torchrun():
        sys.exit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code or 0)
