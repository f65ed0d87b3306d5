"""Writes that never leave a half-written file or directory behind.

:func:`write_atomic` writes a file's bytes beside it and moves them into place;
:func:`staged_directory` builds a whole directory at ``<name>.partial`` and swaps it in
only once the block that fills it has finished.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory, flushed to
    disk, then os.replace. A failed write (disk full) leaves the previous file intact; a
    symbolic link at ``path`` is replaced by the file, never written through."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def staged_directory(directory: Path) -> Iterator[Path]:
    """Yield an empty ``<directory>.partial/`` to fill; when the block ends without an error,
    it replaces ``directory`` (an existing one is moved aside first and removed after).

    An interrupted block leaves ``directory`` as it was and ``.partial`` to be cleared by the
    next save.
    """
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = directory.with_name(directory.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    yield staging
    old = directory.with_name(f"{directory.name}.old-{os.getpid()}")
    if directory.exists():
        directory.rename(old)
    staging.rename(directory)
    shutil.rmtree(old, ignore_errors=True)
