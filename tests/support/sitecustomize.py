"""Python imports this at start-up when tests/support is on PYTHONPATH (conftest.py puts it there for every
process the tests start): it arms dlexp's point hook for a process started with a fault to inject."""
import os

if any(os.environ.get(v) for v in ("DLEXP_SIGNAL_AT", "DLEXP_KILL_AT", "DLEXP_KILL_PARENT_AT", "DLEXP_HOLD_AT",
                                     "DLEXP_PAUSE_AT")):
    from faults import arm_from_env  # tests/support/faults.py, beside this file

    arm_from_env()
