"""``python -m dlexp.report SWEEP_DIR``: a sweep's summary rebuilt from its files (``dlexp.cli.report``)."""
import sys

from dlexp.cli.report import main

if __name__ == "__main__":
    sys.exit(main())
