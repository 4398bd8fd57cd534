"""``python -m dlexp``: the same app as the ``dlexp`` console script."""
from dlexp.cli.entry import entry

if __name__ == "__main__":  # not when a slot's worker process (spawn) imports it
    entry()
