"""File access on shared storage that other users can write to.

The artifact root is shared: another user, or a neighbour's job, may plant a symlink, a FIFO
or a device at any name we are about to open, or list `../../etc/passwd` in a manifest. So:

- a path taken from a manifest must be relative, normalised and inside its artifact
  (`check_relpath`), and every component of it a real directory or regular file, never a
  symlink (`lstat_inside`);
- files are opened with O_NOFOLLOW | O_NONBLOCK and checked with fstat (`open_regular`), so a
  symlink swapped in after the check is refused and a FIFO cannot block us;
- temporary files get unpredictable names and are created with O_EXCL (`atomic_write`), so
  nothing is written through a name someone could have planted.

Files and directories we publish are group-readable by default (`publish_mode`); a site that
wants otherwise sets ``WIKIGRAPH_ARTIFACT_MODE`` (an octal file mode such as 600 or 640).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path, PurePosixPath

#: Octal file mode for published artifacts (default 644: group and others may read).
MODE_ENV = "WIKIGRAPH_ARTIFACT_MODE"
DEFAULT_FILE_MODE = 0o644


class UnsafePath(ValueError):
    """A path from shared storage that escapes its artifact or is not a plain file."""


def check_relpath(rel: object, where: str) -> PurePosixPath:
    """`rel` as a relative, normalised path with no `..`; else `UnsafePath` naming `where`."""
    if not isinstance(rel, str) or not rel or "\x00" in rel:
        raise UnsafePath(f"{where}: file entry {rel!r} is not a path; the manifest is damaged, rebuild the artifact")
    path = PurePosixPath(rel)
    if path.is_absolute() or any(part in ("..", ".", "") for part in rel.split("/")):
        raise UnsafePath(f"{where}: file entry {rel!r} is not a normalised path inside the artifact; "
                         "the manifest was edited, rebuild the artifact with force=true")
    return path


def lstat_inside(base: Path, rel: PurePosixPath, where: str) -> os.stat_result:
    """lstat of `base/rel`, refusing a symlink at any component and anything but a regular
    file at the end. Raises FileNotFoundError when it is missing."""
    current = Path(base)
    for i, part in enumerate(rel.parts):
        current = current / part
        st = os.lstat(current)
        last = i == len(rel.parts) - 1
        if stat.S_ISLNK(st.st_mode):
            raise UnsafePath(f"{current} is a symlink; artifacts hold regular files only, remove it and rebuild "
                             f"{where} with force=true")
        if last and not stat.S_ISREG(st.st_mode):
            raise UnsafePath(f"{current} is not a regular file (a FIFO, device or directory); remove it and "
                             f"rebuild {where} with force=true")
        if not last and not stat.S_ISDIR(st.st_mode):
            raise UnsafePath(f"{current} is not a directory; rebuild {where} with force=true")
    return st


def open_regular(path: Path, where: str) -> int:
    """A read-only descriptor of the regular file `path` (never through a symlink, never
    blocking on a FIFO); the caller closes it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOTDIR):  # O_NOFOLLOW met a symlink
            raise UnsafePath(f"{path} is a symlink; remove it and rebuild {where} with force=true") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafePath(f"{path} is not a regular file; remove it and rebuild {where} with force=true")
    return fd


def publish_mode() -> int:
    """The file mode published artifacts get (`WIKIGRAPH_ARTIFACT_MODE`, default 644)."""
    text = os.environ.get(MODE_ENV, "").strip()
    if not text:
        return DEFAULT_FILE_MODE
    try:
        mode = int(text, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777 or not mode & 0o400:
        raise ValueError(f"{MODE_ENV}={text!r}: give an octal file mode the owner can read, e.g. 644, 640 or 600")
    return mode


def dir_mode(file_mode: int) -> int:
    """A directory mode matching `file_mode`: searchable wherever readable, writable by the owner only."""
    return (file_mode | ((file_mode & 0o444) >> 2)) & ~0o022 | 0o700


def publish_tree(directory: Path) -> None:
    """Give every file and directory under `directory` (ours, just written) the published mode:
    some writers create 0600 files, which a second user of the group could not read."""
    file_mode = publish_mode()
    dmode = dir_mode(file_mode)
    for current, dirs, files in os.walk(directory):
        os.chmod(current, dmode, follow_symlinks=False)
        for name in files:
            path = os.path.join(current, name)
            if not os.path.islink(path):
                os.chmod(path, file_mode)


def atomic_write(path: Path, data: bytes, mode: int | None = None, durable: bool = True) -> None:
    """Write `data` to `path` through a fresh O_EXCL temporary file in the same directory,
    fsynced (unless `durable=False`: a cache whose loss costs only a recomputation), then
    renamed: readers never see half a file, and no planted name is followed."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.chmod(tmp, publish_mode() if mode is None else mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable (best effort where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def fsync_tree(directory: Path) -> None:
    """fsync every regular file and directory under `directory`, before it is renamed into place."""
    for current, _dirs, files in os.walk(directory):
        for name in files:
            with contextlib.suppress(OSError):
                fd = os.open(os.path.join(current, name), os.O_RDONLY | os.O_NOFOLLOW)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        fsync_dir(Path(current))


def owned_dir(path: Path) -> bool:
    """True if `path` is a real directory (not a symlink) owned by this user."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()


_OS_FIXES = {
    errno.EROFS: "the file system is read-only: pass a writable root= (or set WIKIGRAPH_ROOT)",
    errno.EACCES: "no permission to write there: pass a root= you can write to, or ask its owner",
    errno.EPERM: "no permission to write there: pass a root= you can write to, or ask its owner",
    errno.ENOSPC: "the disk is full: free space there or pass a root= on another disk",
    errno.EDQUOT: "the disk quota is exhausted: free space there or pass a root= on another disk",
    errno.ENOTDIR: "a file stands where a directory is needed: move that file away",
    errno.EEXIST: "something already stands at that name: move it away",
    errno.EISDIR: "a directory stands where a file is needed: move it away",
}


def describe_os_error(err: OSError) -> str:
    """One line for a file-system error: the path, what went wrong, and the fix. For ENOTDIR the
    path named is the file that stands where a directory is needed, not the path beneath it."""
    path = err.filename
    if err.errno == errno.ENOTDIR and path:
        for parent in Path(path).parents:
            if parent.exists() and not parent.is_dir():
                path = parent
                break
    fix = _OS_FIXES.get(err.errno, "check that the path is writable and has free space")
    return f"{path or '?'}: {err.strerror or err}; {fix}"
