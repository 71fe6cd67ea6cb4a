"""Build-once model cache: a folder appears complete or not at all, even with racing processes."""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("autellix.models")

# Written last, inside the temp folder, before the rename: a target without it is debris.
COMPLETE_MARKER = ".autellix-complete"


def cache_root() -> Path:
    """Where built models live: $AUTELLIX_CACHE, else ~/.cache/autellix."""
    configured = os.environ.get("AUTELLIX_CACHE")
    root = Path(configured) if configured else Path.home() / ".cache" / "autellix"
    return root.expanduser()


def is_complete(folder: Path) -> bool:
    return (folder / COMPLETE_MARKER).is_file()


@contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    # flock is released by the kernel if the holder dies, so a crash never wedges later builds.
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _current_umask() -> int:
    # Reading it is racy through os.umask (set then restore) when other threads create files;
    # Linux reports it in /proc without changing it.
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def _make_shareable(folder: Path) -> None:
    # mkdtemp makes 0700 folders and some writers 0600 files (they write via mkstemp); a cache
    # should get the usual permissions, as if created plainly under the umask.
    umask = _current_umask()
    folder.chmod(0o777 & ~umask)
    for path in folder.rglob("*"):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def _lock_path(target: Path) -> Path:
    return target.parent / f".{target.name}.lock"


def update_in_place(
    target: Path, is_current: Callable[[Path], bool], update: Callable[[Path], object]
) -> bool:
    """Bring a complete `target` up to date without rebuilding it; True if `update` ran.

    For cheap, file-level changes (a new chat template) that must reach caches built before them.
    `update` runs under the build lock, only while `is_current` says no, and must replace files
    atomically: other processes may be reading the folder meanwhile.
    """
    if is_current(target):
        return False
    with _exclusive_lock(_lock_path(target)):
        if is_current(target):  # another process updated it while we waited for the lock
            return False
        update(target)
    return True


def build_once(target: Path, build: Callable[[Path], object]) -> Path:
    """Return `target`, calling `build(tmp_dir)` first if it does not exist yet.

    The build runs in a temp folder beside `target` (same filesystem, so the final rename is
    atomic) under a file lock, so two processes asking at once build it once between them.
    """
    if is_complete(target):
        return target
    with _exclusive_lock(_lock_path(target)):
        if is_complete(target):  # another process finished it while we waited for the lock
            return target
        if target.exists():  # debris from a build that predates the marker or was tampered with
            shutil.rmtree(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        log.info("building model %s (once, into %s)", target.name, target.parent)
        started = time.monotonic()
        try:
            build(tmp)
            (tmp / COMPLETE_MARKER).write_text("ok\n")
            _make_shareable(tmp)
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("built model %s in %.1f s", target.name, time.monotonic() - started)
    return target
