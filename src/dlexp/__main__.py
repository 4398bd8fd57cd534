"""``python -m dlexp``: the same app as the ``dlexp`` console script."""
from dlexp.cli.entry import entry

entry()
