"""Atomic file writes: every file effnet writes (weights, checkpoints, exports, results) appears whole or not at all.

Everything is staged beside its destination (same folder, so the final rename is atomic and never a copy across
filesystems), under a hidden name carrying the writer's PID: `.<name>.<pid>.<random>.tmp` for a file and
`.<name>.<pid>.<random>.staging` for a folder. The next write to the same destination removes what dead writers
left (`remove_stale_staging`), and restores a previous .xml/.bin pair that a killed replacement had set aside.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

# Leftovers without a PID in their name (written before names carried one) count as stale after this long.
_UNNAMED_STALE_S = 3600.0


def current_umask() -> int:
    """The process umask (read from /proc where possible: setting it to read it is not thread-safe)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[str], object]) -> Path:
    """Call `write(tmp_path)` on a temp file beside `path`, fsync it, then rename it over `path`.

    The file ends with the mode a plain `open(path, "w")` would give (0666 minus the umask, usually 0644), not
    the 0600 of the temp file.
    """
    path = prepare_destination(path)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    os.close(handle)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())
        with open(tmp, "rb") as written:  # the data must be on disk before the rename makes it visible
            os.fsync(written.fileno())
        os.replace(tmp, path)
    except OSError as err:  # a full disk while writing names no file: name the output, not nothing
        if err.filename is None:
            err.filename = str(path)
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write `text` to `path` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def write_section(path: str | Path, marker: str, body: str) -> Path:
    """Put `body` after `marker` in a markdown file (up to the next `<!-- section:` marker), leaving the rest alone.

    Benchmarks record their tables this way in BENCHMARKS.md; a missing file or marker is appended to.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n\n"
    section = f"{marker}\n{body.rstrip()}\n\n"
    if marker in text:
        pattern = re.compile(re.escape(marker) + r".*?(?=<!-- section:|\Z)", re.S)
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip() + "\n\n" + section
    return write_text_atomic(path, text)


def prepare_destination(path: str | Path) -> Path:
    """Check that `path` can be an output file (its folder is created), and clear dead writers' leftovers there.

    Raises ValueError naming the output path when it is a folder or sits under a file, instead of an OS error
    about a temp file nobody asked for.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(
            f"output {path} is a folder: give a file name (e.g. {path / ('model' + (path.suffix or '.out'))})"
        )
    for parent in (path.parent, *path.parent.parents):
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise ValueError(f"output {path}: {parent} is a file, not a folder; choose another output path")
            break
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(path)
    return path


def prepare_folder(path: str | Path, what: str = "output folder") -> Path:
    """Create the output folder `path`, or raise ValueError naming it when it, or a folder above it, is a file."""
    path = Path(path)
    for folder in (path, *path.parents):
        if folder.exists() or folder.is_symlink():
            if not folder.is_dir():
                where = "is a file" if folder == path else f"is under {folder}, which is a file"
                raise ValueError(f"{what} {path} {where}; give a folder (a new or an existing one)")
            break
    path.mkdir(parents=True, exist_ok=True)
    return path


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (ours or another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def _stale(entry: Path, prefix: str) -> bool:
    """Whether a hidden staging entry for a destination was left by a writer that is gone."""
    pid, _, rest = entry.name[len(prefix) :].partition(".")
    if pid.isdigit() and rest:
        return int(pid) != os.getpid() and not pid_alive(int(pid))
    try:
        return time.time() - entry.lstat().st_mtime > _UNNAMED_STALE_S
    except FileNotFoundError:
        return False


def remove_stale_staging(path: str | Path) -> list[Path]:
    """Remove the staging files and folders that killed writers of `path` left beside it; returns them.

    A staging folder still holding a previous .xml/.bin pair set aside by `replace_files` (killed before the new
    pair was in place) gives that pair back first, so a killed replacement never loses the old artefact.
    """
    path = Path(path)
    prefix = f".{path.name}."
    removed = []
    try:
        entries = [entry for entry in path.parent.iterdir() if entry.name.startswith(prefix)]
    except OSError:
        return []
    for entry in entries:
        if entry.name.endswith(".tmp") and entry.is_file() and _stale(entry, prefix):
            entry.unlink(missing_ok=True)
            removed.append(entry)
        elif entry.name.endswith(".staging") and entry.is_dir() and not entry.is_symlink() and _stale(entry, prefix):
            _restore_set_aside(entry, path)
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


@contextlib.contextmanager
def staging_dir(path: str | Path) -> Iterator[Path]:
    """A hidden folder beside `path` to build its files in (removed afterwards, whatever happens)."""
    path = prepare_destination(path)
    folder = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".staging"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


_SET_ASIDE = "previous"  # sub-folder of a staging folder holding the old files while the new ones move in


def replace_files(staged: list[Path], final: list[Path]) -> None:
    """Move staged files (in a `staging_dir` of final[0]) over `final`, the first file last and each rename atomic.

    Readers find a set of files by its first (an OpenVINO .xml, whose .bin must match): the old first file is set
    aside before any other is replaced and the new one renamed in last, so at every instant the first file is
    either absent or matches the others. The old set is kept (hard links) in the staging folder until the new one
    is whole; a kill in between is undone by the next `remove_stale_staging` of final[0].
    """
    folder = staged[0].parent
    aside = folder / _SET_ASIDE
    aside.mkdir()
    for old in final:
        if old.exists():
            try:  # a hard link on the same filesystem: the old bytes stay whole whatever happens next
                os.link(old, aside / old.name)
            except OSError:  # a filesystem without hard links
                shutil.copy2(old, aside / old.name)
    if final[0].exists():
        os.replace(final[0], aside / (final[0].name + ".moved"))  # from here readers see no (stale) pair
    for new, old in list(zip(staged, final, strict=True))[1:]:
        _durable(new)
        os.replace(new, old)
    _durable(staged[0])
    os.replace(staged[0], final[0])
    _sync_dir(final[0].parent)


def _restore_set_aside(folder: Path, final: Path) -> None:
    """Give back the files `replace_files` set aside when it was killed before the new first file was in place."""
    aside = folder / _SET_ASIDE
    if not (aside / final.name).is_file() or final.exists():
        return  # nothing set aside, or the new set completed
    for old in aside.iterdir():
        if not old.name.endswith(".moved"):
            os.replace(old, final.parent / old.name)


def _durable(path: Path) -> None:
    with open(path, "rb") as written:
        os.fsync(written.fileno())


def _sync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        handle = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


class LockHeld(Exception):
    """Another live process holds the lock; `holder` is the pid it wrote ("" when unknown)."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


def lock_exclusively(path: Path) -> int:
    """Open `path`, take an exclusive non-blocking fcntl lock on it and write our pid; raise LockHeld if taken.

    The OS drops the lock when its process dies, so a killed holder never leaves the file locked. A holder that
    removes the file on release may do so between our open and our lock: then we lock the new file instead.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip()
            os.close(fd)
            raise LockHeld(holder) from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd
