"""Sphinx configuration: the pages are Markdown (MyST), the API reference is
autodoc reading the package's own docstrings (reST inline markup: ``literal``,
:func:`...`, and ``#:`` comments on attributes, all of which autodoc reads as
they are). CI builds with ``sphinx-build -W --keep-going``: a warning fails it.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the checkout's package, also when it is not installed

import reactor  # noqa: E402

project = "reactor"
author = "the reactor authors"
copyright = "the reactor authors"
release = version = reactor.__version__

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# GitHub's heading anchors, so that a link to page.md#section works both on
# GitHub (a reader of the repository) and in the built pages.
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "undoc-members": False}

html_theme = "alabaster"
html_title = f"reactor {release}"
