"""The course: each preset's claim (``findings``: the machinery; ``lessons``: the claims) measured from
the files its run or sweep wrote, and ``python -m dlexp.curriculum``, which runs every CPU preset.

Optional: called from the command line only (after a run, after a sweep, by the report command);
the core never calls up into it. May import results, runs and config.
"""
from dlexp.course import concept, hpo, lessons  # noqa: F401  (register the course's findings in FINDINGS)
