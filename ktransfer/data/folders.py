"""Class folders (ROOT/<class>/...), shared by the modalities that read them."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def class_folders(root: Path, flag: str, warn: bool = True) -> list[Path]:
    """The class sub-folders of `root`, sorted. Hidden ones (`.name`: `.git`,
    `.ipynb_checkpoints`, ...) are not classes: they are left out, with one warning naming
    them (`warn`)."""
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    hidden = [p.name for p in folders if p.name.startswith(".")]
    if hidden and warn:
        log.warning("--%s: left out %d hidden folder(s) of %s, which are not classes: %s", flag,
                    len(hidden), root, ", ".join(hidden[:5]) + (" ..." if len(hidden) > 5 else ""))
    return [p for p in folders if not p.name.startswith(".")]
