"""The ``dlexp`` console script and ``python -m dlexp``: signal handling from the first line, checks before
Hydra, torchrun's process group, the Hydra app, and a fast exit after a single run.

Under torchrun every rank joins the process group first and takes rank 0's run dir
(``dlexp.training.distributed``); only rank 0 writes files.
"""
from __future__ import annotations

import logging
import os
import sys

from dlexp.training import distributed
from dlexp.hooks import point
from dlexp.runs import hints
from dlexp.training.interrupt import STOP, Interrupted, signal_name


def cli() -> tuple[bool, object]:
    """Catch common command-line mistakes before Hydra does, then run. Returns (whether a single run on
    one process finished and closed its files, its exit code); anything else leaves through SystemExit."""
    from dlexp.cli.help import before_hydra, with_project_config_dir  # after the signal handlers: a Ctrl-C here is one line too

    sys.argv[1:] = with_project_config_dir(sys.argv[1:])  # DLEXP_CONFIG_DIR: a project's own options, everywhere
    before_hydra(sys.argv[1:])  # --version and a bare --help at once; a run's first line
    hints.set_command(sys.argv[1:])  # the hints that name a command repeat this one
    point("startup")
    from dlexp.cli.app import HydraApp, hydra_main  # Hydra and the checks: only once --help and --version are answered
    from dlexp.cli.preflight import preflight, run_dir_target  # (with the app, as above)
    from dlexp.errors import UserError  # (with the app, as above)
    from dlexp.runs.rundir import DirSnapshot  # (with the app, as above)

    STOP.check()  # a signal during the imports: stop before Hydra makes any dir
    try:
        preflight(sys.argv[1:])
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    app = HydraApp(DirSnapshot.take(run_dir_target(sys.argv[1:])))  # which folders exist before Hydra makes the run dir
    torchrun = distributed.launched_by_torchrun()
    if torchrun:
        distributed.quiet_other_ranks()
        distributed.join_process_group(sys.argv)
    try:
        hydra_main(app)()  # called here, not in a helper: the run's stack stays short (docs: architecture)
    except SystemExit as stop:
        return app.ended(stop)
    finally:
        if torchrun:
            distributed.leave_process_group()
    return app.finished_single_run and not torchrun, 0


def entry() -> None:
    """``cli``, then, after a single run on one process, leave without the interpreter's teardown.

    Tearing down the modules torch._dynamo brings in takes about a second (measured: ``import
    torch._dynamo`` exits 0.9 s later than the same with ``os._exit``) and does nothing for a run
    whose files are all written, flushed and closed. Sweeps (their launchers and the sweep summary
    use exit hooks), torchrun ranks and crashes leave the usual way."""
    with STOP.installed():  # first of all: from here on a signal stops the command in one line, at any moment
        try:
            finished, code = cli()
        except Interrupted as stop:  # before Hydra started a run: nothing is on disk
            print(f"interrupted by {signal_name(stop.signum)} before the run started; nothing was written",
                  file=sys.stderr, flush=True)
            sys.exit(stop.exit_code)
    if not finished or not isinstance(code, (int, type(None))) or distributed.launched_by_torchrun():
        sys.exit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code or 0)
