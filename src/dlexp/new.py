"""``python -m dlexp.new DIR``: a starter project of your own (``dlexp.cli.new``)."""
import sys

from dlexp.cli.new import main

if __name__ == "__main__":
    sys.exit(main())
