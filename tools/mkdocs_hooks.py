"""mkdocs hook: docstrings use Sphinx roles (:class:`Name`); show them as plain code. An
``Example::`` line (reStructuredText's literal-block marker) reads as a heading of its example."""

from __future__ import annotations

import re
from typing import Any

ROLE = re.compile(r":(?:class|func|meth|attr|mod|exc|data|obj):(?=<code>)")
EXAMPLE = re.compile(r"<p>(Examples?)::</p>")


def on_page_content(html: str, **kwargs: Any) -> str:
    return EXAMPLE.sub(r"<p><strong>\1</strong></p>", ROLE.sub("", html))
