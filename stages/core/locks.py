"""One writer per artifact: an exclusive lock file per signature on shared storage.

The lock is ``{root}/{stage}/.{signature}.lock``, a small JSON file naming its owner (host, PID,
process start time, boot id, Slurm or submitit job id, start time). It is created atomically:
the owner record is written to a private temporary file which is then hard-linked to the lock
name. ``link(2)`` fails with EEXIST when the name exists, and it is atomic on local filesystems,
on NFSv3 and later and on Lustre, so exactly one writer wins, and a reader never sees a
half-written owner. Where hard links are not supported, ``O_CREAT|O_EXCL`` (equally atomic on
NFSv3+ and Lustre) is used instead. Nothing relies on ``fcntl``/``flock``, whose behaviour on
NFS depends on lockd and on Lustre on mount options.

A lock is stale, and is taken over, when its owner is provably gone: a dead PID (or a reused
one, told apart by its start time) on this host, a host that rebooted, a Slurm job that
`squeue`/`sacct` report as finished, or an earlier attempt of this same (requeued) job. An
owner on another host that cannot be checked is treated as alive: the waiting run says so and
names the lock file to remove by hand.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import math
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

#: Slurm states after which a job holds nothing.
FINAL_SLURM_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
                      "BOOT_FAIL", "DEADLINE", "PREEMPTED", "REVOKED", "SPECIAL_EXIT"}
LOCK_MODES = ("wait", "refuse")


#: A lock file that cannot be parsed is stale once it stayed unchanged this long, as we
#: measure it (its mtime may be in the future: another host's clock, or planted).
GARBAGE_STALE_S = 60.0


class ArtifactBusy(RuntimeError):
    """Another live run holds the artifact's lock (raised with lock=refuse)."""


class BadLockFile(ArtifactBusy):
    """The lock path holds something that is not a lock file (a symlink, a directory)."""


def lock_path(root: Path, stage: str, signature: str) -> Path:
    return Path(root) / stage / f".{signature}.lock"


def current_job() -> tuple[str | None, str | None, int]:
    """(job id, scheduler, attempt) of this process; all ranks of one job share them. A local
    submitit job wins over an enclosing Slurm allocation (several local jobs can run in one
    `salloc`); the attempt counts Slurm requeues."""
    if os.environ.get("SUBMITIT_LOCAL_JOB_ID"):
        return os.environ["SUBMITIT_LOCAL_JOB_ID"], "local", 0
    if os.environ.get("SLURM_JOB_ID"):
        return os.environ["SLURM_JOB_ID"], "slurm", int(os.environ.get("SLURM_RESTART_COUNT") or 0)
    return None, None, 0


def _boot_id() -> str | None:
    with contextlib.suppress(OSError):
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    return None


def process_start_ticks(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (Linux), to tell a reused PID apart."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    return None


def pid_alive(pid: int) -> bool:
    """True while the process runs on this host (a zombie, exited but not yet reaped, is dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    return True


def slurm_job_finished(job_id: str) -> bool | None:
    """True/False from squeue (then sacct); None when neither can tell."""
    if shutil.which("squeue"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            proc = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True,
                                  timeout=20, check=False)
            states = set(proc.stdout.split())
            if proc.returncode == 0 and states:
                return states <= FINAL_SLURM_STATES
    if shutil.which("sacct"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            proc = subprocess.run(["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State"], capture_output=True,
                                  text=True, timeout=20, check=False)
            states = {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}
            if proc.returncode == 0 and states:
                return states <= FINAL_SLURM_STATES
    return None


#: (inode, mtime_ns) of each unparsable lock seen -> when this process first saw it.
_GARBAGE_SEEN: dict[tuple, float] = {}


@dataclasses.dataclass
class Owner:
    """Who holds a lock."""

    host: str
    pid: int
    job_id: str | None = None
    start_ticks: int | None = None
    boot_id: str | None = None
    since: float = 0.0
    scheduler: str | None = None  # "slurm" | "local" | None
    attempt: int = 0

    @classmethod
    def me(cls) -> Owner:
        job_id, scheduler, attempt = current_job()
        return cls(socket.gethostname(), os.getpid(), job_id, process_start_ticks(os.getpid()), _boot_id(),
                   time.time(), scheduler, attempt)

    def describe(self) -> str:
        job = f", job {self.job_id}" if self.job_id else ""
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since)) if self.since else "?"
        return f"host {self.host} pid {self.pid}{job}, since {since}"

    def gone(self) -> str | None:
        """Why this owner is certainly dead, or None when it is (or may be) alive."""
        mine, scheduler, attempt = current_job()
        if self.job_id and (self.job_id, self.scheduler) == (mine, scheduler) == (mine, "slurm") \
                and (self.attempt or 0) < attempt:
            return f"left by an earlier attempt of job {mine} (requeued)"
        if self.host == "?":
            # Old by its mtime, or unchanged for a minute as we watch it (a future mtime never ages).
            first_seen = _GARBAGE_SEEN.setdefault((self.start_ticks, self.boot_id), time.monotonic())
            if 0 <= time.time() - self.since > GARBAGE_STALE_S or time.monotonic() - first_seen >= GARBAGE_STALE_S:
                return "the lock file is unreadable and unchanged for a minute"
            return None
        if self.host == socket.gethostname():
            if self.boot_id and _boot_id() and self.boot_id != _boot_id():
                return "the host rebooted since"
            if not pid_alive(self.pid):
                return f"process {self.pid} is gone"
            if self.start_ticks is not None and process_start_ticks(self.pid) not in (None, self.start_ticks):
                return f"process {self.pid} is gone (its PID was reused)"
            return None
        if self.job_id and self.scheduler == "slurm" and slurm_job_finished(self.job_id):
            return f"Slurm job {self.job_id} has finished"
        return None


def _valid(data: object) -> bool:
    """A lock record with the types `Owner.gone` relies on (a pid of "abc" or 1e30 is garbage)."""
    if not isinstance(data, dict):
        return False
    pid, host, since = data.get("pid"), data.get("host"), data.get("since", 0.0)
    return (isinstance(pid, int) and not isinstance(pid, bool) and 0 < pid < 1 << 31 and isinstance(host, str)
            and isinstance(since, (int, float)) and math.isfinite(since)
            and all(data.get(k) is None or isinstance(data.get(k), str) for k in ("job_id", "boot_id", "scheduler"))
            and isinstance(data.get("start_ticks"), (int, type(None))) and isinstance(data.get("attempt", 0), int))


def _check_lock_path(path: Path, st: os.stat_result) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise BadLockFile(f"{path} is a symlink, not a lock file (planted?); remove it (`rm {path}`) and rerun")
    if not stat.S_ISREG(st.st_mode):
        raise BadLockFile(f"{path} is a directory or special file, not a lock file; remove it and rerun")


def read_owner(path: Path) -> Owner | None:
    """The owner recorded in a lock file; None if there is no lock. A record that cannot be
    parsed, or has wrong types, gives an owner with host "?" (see `GARBAGE_STALE_S`). A symlink,
    directory or FIFO at the lock path raises `BadLockFile`: it is never followed or read."""
    path = Path(path)
    try:
        st = os.lstat(path)
        _check_lock_path(path, st)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        with os.fdopen(fd, "rb") as handle:
            data = json.loads(handle.read(1 << 16))
        if _valid(data):
            return Owner(**{f.name: data.get(f.name) for f in dataclasses.fields(Owner) if f.name in data})
    except (OSError, ValueError, TypeError, RecursionError):  # half-written by the O_EXCL fallback, or garbage
        pass
    return Owner(host="?", pid=-1, since=st.st_mtime, start_ticks=st.st_ino, boot_id=str(st.st_mtime_ns))


def _try_create(path: Path, record: str) -> bool:
    """Create the lock atomically with `record` inside; False if it already exists. The record is
    written to a fresh O_EXCL temporary file with an unpredictable name (never through a name
    another user could have planted) and hard-linked to the lock name."""
    fd, tmp_name = tempfile.mkstemp(prefix=f"{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    with os.fdopen(fd, "w") as handle:
        handle.write(record)
    os.chmod(tmp, 0o644)  # other users' runs read who holds it
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        try:  # filesystem without hard links: exclusive create
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as handle:
            handle.write(record)
        return True
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _break_stale(path: Path, stale: Owner) -> None:
    """Remove a stale lock, unless someone replaced it meanwhile (a second breaker-lock keeps
    two waiters from both breaking it and one of them deleting the other's fresh lock)."""
    breaker = path.with_name(path.name + ".break")
    if not _try_create(breaker, json.dumps(dataclasses.asdict(Owner.me()))):
        with contextlib.suppress(FileNotFoundError):
            st = os.lstat(breaker)
            _check_lock_path(breaker, st)
            if abs(time.time() - st.st_mtime) > GARBAGE_STALE_S:  # a breaker that died mid-break
                breaker.unlink()
        time.sleep(0.05)  # another waiter is breaking it: do not spin
        return
    try:
        if read_owner(path) == stale:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    finally:
        with contextlib.suppress(OSError):
            breaker.unlink()


class ArtifactLock:
    """An acquired lock; `release()` removes it if this process still owns it."""

    def __init__(self, path: Path, owner: Owner):
        self.path, self.owner = Path(path), owner

    def release(self) -> None:
        if read_owner(self.path) == self.owner:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


def acquire(path: Path, on_busy: str = "wait", log: logging.Logger | None = None, poll_s: float = 2.0,
            report_every_s: float = 60.0) -> ArtifactLock:
    """Take the lock at `path`. A live owner makes this wait (`on_busy="wait"`, logging who it
    waits for) or raise `ArtifactBusy` with one line naming the owner (`on_busy="refuse"`)."""
    if on_busy not in LOCK_MODES:
        raise ValueError(f"lock={on_busy!r}: choose one of {', '.join(LOCK_MODES)}")
    log = log or logging.getLogger("wikigraph")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    me = Owner.me()
    record = json.dumps(dataclasses.asdict(me))
    last_report = 0.0
    while True:
        if _try_create(path, record):
            return ArtifactLock(path, me)
        owner = read_owner(path)
        if owner is None:
            continue  # released between our attempt and the read
        reason = owner.gone()
        if reason:
            log.warning("taking over the stale lock %s (%s; %s)", path, owner.describe(), reason)
            _break_stale(path, owner)
            continue
        if on_busy == "refuse":
            raise ArtifactBusy(f"{path.parent.name}/{path.name[1:].removesuffix('.lock')} is being written by "
                               f"{owner.describe()} (lock {path}); wait for it (lock=wait) or stop that run")
        if time.time() - last_report >= report_every_s:
            log.warning("waiting for %s/%s: written by %s (lock %s; remove it only if that run is dead)",
                        path.parent.name, path.name[1:].removesuffix(".lock"), owner.describe(), path)
            last_report = time.time()
        time.sleep(poll_s)


def wait_for_job_lock(path: Path, on_busy: str = "wait", poll_s: float = 1.0, log: logging.Logger | None = None,
                      done=lambda: False) -> None:
    """Ranks other than 0 wait until their own job's rank 0 holds the lock, so they never write
    into a partial directory another run owns, or until `done()` (the artifact got committed
    meanwhile). Without a job id there is nothing to match."""
    mine, scheduler, _ = current_job()
    if mine is None:
        return
    log = log or logging.getLogger("wikigraph")
    reported = False
    while True:
        owner = read_owner(path)
        if owner is not None and (owner.job_id, owner.scheduler) == (mine, scheduler) or done():
            return
        if owner is not None and on_busy == "refuse" and owner.gone() is None:
            raise ArtifactBusy(f"{path} is held by {owner.describe()}; wait for it (lock=wait) or stop that run")
        if not reported and owner is not None:
            log.info("waiting for rank 0 of job %s to take %s (now %s)", mine, path, owner.describe())
            reported = True
        time.sleep(poll_s)
