"""MkDocs hook: the site's home page is the README, its links made relative to ``docs/``.

The README is the front page on GitHub and of the site alike (one text); on the site ``docs/`` is the root, so
``docs/guide/cells.md`` becomes ``guide/cells.md``.
"""

from __future__ import annotations

import re
from pathlib import Path


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri != "index.md":
        return markdown
    readme = (Path(config["docs_dir"]).parent / "README.md").read_text()
    return re.sub(r"\]\(docs/", "](", readme)
