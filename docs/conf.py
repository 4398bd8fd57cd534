"""Sphinx settings of the dlexp documentation site (``make docs``): Markdown pages read by MyST."""
from __future__ import annotations

import re
from pathlib import Path

_version = re.search(r'^version = "(.+)"', (Path(__file__).parents[1] / "pyproject.toml").read_text(), re.M)

project = "dlexp"
author = "dlexp developers"
release = version = _version[1] if _version else "unknown"

extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
root_doc = "index"
# _generated/ holds the transcripts the pages include; _build/ is the output.
exclude_patterns = ["_build", "_generated"]

# A heading of levels 1 to 4 is a link target: [text](page.md#a-heading-s-slug).
myst_heading_anchors = 4
myst_enable_extensions = ["colon_fence"]
# Console transcripts and configs are shown as written; a block that does not lex is shown plain.
highlight_language = "none"

html_theme = "furo"
html_title = "dlexp"
