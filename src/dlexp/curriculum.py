"""``python -m dlexp.curriculum``: run the course's CPU presets and write docs/curriculum.md (``dlexp.course.curriculum``)."""
import sys

from dlexp.course.curriculum import main

if __name__ == "__main__":
    sys.exit(main())
