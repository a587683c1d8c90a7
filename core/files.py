"""Files written safely, the same way everywhere: a directory replaced atomically, a file's sha256.

Checkpoints (``tl.training.resume``), saved models (``tl.models.saved``), pulled assets
(``tl.assets.wheels``) and base-model hashes (``tl.models.base_model``) use these."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path


def replace_dir(tmp: Path, final: Path) -> None:
    """Rename the complete directory ``tmp`` to ``final``. An existing ``final`` is moved aside first
    and removed only once ``tmp`` is in its place; if that rename fails, it is put back."""
    if not final.exists():
        tmp.rename(final)
        return
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    final.rename(old)
    try:
        tmp.rename(final)
    except BaseException:
        old.rename(final)
        raise
    shutil.rmtree(old, ignore_errors=True)


def sha256_file(path: Path, fsync: bool = False) -> str:
    """``path``'s sha256, read in 1 MiB chunks (``fsync``: flushed to disk first, for a file just written)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        if fsync:
            os.fsync(fh.fileno())
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
