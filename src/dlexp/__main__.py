"""``python -m dlexp``: the same app as the ``dlexp`` console script."""
from dlexp.train import entry

entry()
