"""``python -m dlexp.summary``: each layer's output shape and parameter count (``dlexp.cli.summary``)."""
import sys

from dlexp.cli.summary import main

if __name__ == "__main__":
    sys.exit(main())
