"""``python -m dlexp.translate RUN_DIR SENTENCE...``: a translation run's best weights on new sentences
(``dlexp.cli.translate``)."""
import sys

from dlexp.cli.translate import main

if __name__ == "__main__":
    sys.exit(main())
