"""Where a submission's kernel runs: a fresh folder, a scrubbed environment, optionally bubblewrap.

Every submission gets its own temporary folder (:class:`RunDir`) outside the repository::

    drdd-grade-XXXX/
        work/   the kernel's working folder (empty; figures go to work/figures)
        home/   $HOME, $IPYTHONDIR, $MPLCONFIGDIR
        pkg/    a copy of the ``drdd_edu`` package (the only code of the project the kernel sees)
        conn/   the kernel's connection file and its unix sockets (no TCP ports)
        tmp/    $TMPDIR without the sandbox

The kernel's environment is built from scratch (:func:`kernel_env`): nothing of the instructor's
environment is passed on except thread-count variables. With ``sandbox=True`` the kernel runs under
bubblewrap (:func:`bwrap_command`): its own user, PID, network, IPC and mount namespaces, no network,
read-only system folders and Python environment, and only ``work``, ``home`` and ``conn`` of the run
folder writable; the repository, the instructor's notebooks and the submissions are not mounted.
In both modes the kernel gets an address-space limit, no core files and a file-size limit
(:func:`limited_command`), and :func:`kill_tree` ends its whole process tree with SIGKILL.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "RunDir",
    "SandboxUnavailable",
    "bwrap_command",
    "kernel_env",
    "kill_tree",
    "limited_command",
    "package_dir",
    "prepare_run_dir",
    "repo_root",
    "sandbox_problem",
]

#: environment variables passed through to the kernel (thread counts only: nothing secret, no paths)
PASSED_THROUGH = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
#: /etc files a Python kernel needs (dynamic linker cache, user names, time zone); the rest of /etc
#: is not mounted in the sandbox
ETC_FILES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/localtime",
    "/etc/alternatives",
    "/etc/fonts",
    "/etc/mime.types",
)
MARKER_VAR = "DRDD_EDU_GRADING_RUN"
TMPFS_BYTES = 512 * 2**20  # the sandbox's /tmp


class SandboxUnavailable(RuntimeError):
    """``sandbox=True`` was asked for but bubblewrap is missing or cannot create namespaces here."""


def package_dir() -> Path:
    """The folder of the ``drdd_edu`` package this process imported."""
    return Path(__file__).resolve().parents[1]


def repo_root() -> Path:
    """The folder holding the package (the repository for a source checkout or editable install)."""
    return package_dir().parent


@dataclass(frozen=True)
class RunDir:
    """The temporary folders of one grading run (see the module docstring)."""

    root: Path

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def pkg(self) -> Path:
        return self.root / "pkg"

    @property
    def conn(self) -> Path:
        return self.root / "conn"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    def cleanup(self) -> None:
        """Remove the folder, even where the kernel made files read-only."""

        def force(func, path, _exc):  # noqa: ANN001
            try:
                os.chmod(path, 0o700)
                func(path)
            except OSError:
                pass

        for path, dirs, _files in os.walk(self.root):
            for d in dirs:
                try:
                    os.chmod(os.path.join(path, d), 0o700)
                except OSError:
                    pass
        shutil.rmtree(self.root, onerror=force)


def prepare_run_dir() -> RunDir:
    """A fresh run folder in the system temporary folder, with a copy of the package."""
    root = Path(tempfile.mkdtemp(prefix="drdd-grade-")).resolve()
    run = RunDir(root)
    for folder in (run.work, run.home, run.conn, run.tmp, run.home / ".config" / "matplotlib"):
        folder.mkdir(parents=True)
    shutil.copytree(
        package_dir(),
        run.pkg / "drdd_edu",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    # read-only copy (without the sandbox the owner could chmod it back: it is a throwaway copy)
    for path, _dirs, files in os.walk(run.pkg, topdown=False):
        for name in files:
            os.chmod(os.path.join(path, name), 0o444)
        os.chmod(path, 0o555)
    _copy_font_cache(run.home / ".config" / "matplotlib")
    return run


def _copy_font_cache(target: Path) -> None:
    """Copy matplotlib's font list (not secret) so that each kernel does not rescan the fonts."""
    try:
        import matplotlib

        for cached in Path(matplotlib.get_cachedir()).glob("fontlist-*.json"):
            shutil.copy2(cached, target / cached.name)
    except Exception:  # noqa: BLE001 — only a speed-up
        pass


def kernel_env(run: RunDir, extra: dict[str, str], marker: str, sandbox: bool) -> dict[str, str]:
    """The kernel's whole environment: built from scratch, never copied from the grader's."""
    python_bin = str(Path(sys.executable).parent)
    env = {
        "PATH": os.pathsep.join([python_bin, "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": str(run.home),
        "IPYTHONDIR": str(run.home / ".ipython"),
        "MPLCONFIGDIR": str(run.home / ".config" / "matplotlib"),
        "JUPYTER_CONFIG_DIR": str(run.home / ".jupyter"),
        "JUPYTER_DATA_DIR": str(run.home / ".local" / "share" / "jupyter"),
        "JUPYTER_RUNTIME_DIR": str(run.conn),
        "JUPYTER_PLATFORM_DIRS": "1",
        "TMPDIR": "/tmp" if sandbox else str(run.tmp),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(run.pkg),
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MPLBACKEND": "Agg",
        "DRDD_EDU_FIGURES": str(run.work / "figures"),
        MARKER_VAR: marker,
    }
    for name in PASSED_THROUGH:
        if name in os.environ:
            env[name] = os.environ[name]
    env.update(extra)
    env[MARKER_VAR] = marker  # the kill sweep relies on it
    return env


# ----------------------------------------------------------------------------- resource limits

_LIMITS = """
import os, resource, sys
mem, fsize = int(sys.argv[1]), int(sys.argv[2])
if mem > 0:
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
os.execv(sys.argv[3], sys.argv[3:])
"""


def limited_command(argv: list[str], memory_mb: int | None, file_size_mb: int = 1024) -> list[str]:
    """``argv`` run under an address-space limit (``memory_mb``, per process), no core files and a
    ``file_size_mb`` limit on any file written: a few lines of Python that set the limits and exec."""
    mem = int(memory_mb) * 2**20 if memory_mb else 0
    return [sys.executable, "-s", "-c", _LIMITS, str(mem), str(file_size_mb * 2**20), *argv]


# ----------------------------------------------------------------------------- the sandbox


def _python_paths() -> list[Path]:
    """The folders the Python interpreter and its installed packages live in."""
    paths = {
        Path(p).resolve()
        for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)
    }
    paths.add(Path(os.path.realpath(sys.executable)).parent.parent)
    for p in site.getsitepackages():
        if os.path.isdir(p):
            paths.add(Path(p).resolve())
    # keep the outermost folders only, and nothing already under /usr
    kept = []
    for p in sorted(paths, key=lambda q: len(q.parts)):
        if p == Path("/") or p.is_relative_to("/usr") or any(p.is_relative_to(k) for k in kept):
            continue
        kept.append(p)
    return kept


def bwrap_command(run: RunDir, argv: list[str], env: dict[str, str]) -> list[str]:
    """``argv`` under bubblewrap: new namespaces (no network), read-only system and Python folders,
    the run folder's ``work``, ``home`` and ``conn`` writable, nothing else of the host.

    Raises:
        SandboxUnavailable: the Python environment contains the repository (it would be visible).
    """
    repo = repo_root()
    cmd = [
        "bwrap",
        "--unshare-all",  # user, pid, net, ipc, uts, cgroup namespaces: no network at all
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--ro-bind",
        "/usr",
        "/usr",
    ]
    for name in ("bin", "lib", "lib64", "lib32", "sbin"):
        host = Path("/") / name
        if host.is_symlink():
            cmd += ["--symlink", os.readlink(host), str(host)]
        elif host.is_dir():
            cmd += ["--ro-bind", str(host), str(host)]
    for etc in ETC_FILES:
        cmd += ["--ro-bind-try", etc, etc]
    # /tmp first: a Python environment (or the run folder) under /tmp is bound on top of it, not
    # hidden by it
    if _bwrap_supports("--size"):  # /tmp is memory: cap it (bubblewrap >= 0.8)
        cmd += ["--size", str(TMPFS_BYTES)]
    cmd += ["--tmpfs", "/tmp"]
    for path in _python_paths():
        if repo.is_relative_to(path):
            raise SandboxUnavailable(
                f"the Python environment {path} contains the repository {repo}; the sandbox would "
                "expose it (use a virtual environment or an installed package)"
            )
        cmd += ["--ro-bind", str(path), str(path)]
    cmd += ["--ro-bind-try", "/sys/devices/system/cpu", "/sys/devices/system/cpu"]
    cmd += ["--proc", "/proc", "--dev", "/dev"]
    cmd += ["--ro-bind", str(run.pkg), str(run.pkg)]
    for folder in (run.work, run.home, run.conn):
        cmd += ["--bind", str(folder), str(folder)]
    # the sandbox's root is bubblewrap's own tmpfs, holding the mount points' parent folders (e.g.
    # the repository's path when the virtual environment lives inside it): read-only, so nothing
    # can be written outside work, home, conn and /tmp
    cmd += ["--remount-ro", "/"]
    cmd += ["--chdir", str(run.work), "--clearenv"]
    for key, value in env.items():
        cmd += ["--setenv", key, value]
    return [*cmd, "--", *argv]


@functools.cache
def _bwrap_supports(option: str) -> bool:
    try:
        text = subprocess.run(["bwrap", "--help"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return option in (text.stdout + text.stderr)


@functools.lru_cache(maxsize=1)
def sandbox_problem() -> str | None:
    """None if bubblewrap can run a sandboxed Python here, else why not (one line)."""
    if shutil.which("bwrap") is None:
        return "bubblewrap (bwrap) is not installed"
    run = RunDir(Path(tempfile.mkdtemp(prefix="drdd-probe-")).resolve())
    try:
        for folder in (run.work, run.home, run.conn, run.pkg):
            folder.mkdir()
        cmd = bwrap_command(run, [sys.executable, "-s", "-c", "print('ok')"], {"PATH": "/usr/bin"})
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except SandboxUnavailable as err:
        return str(err)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"bubblewrap failed to start ({err})"
    finally:
        shutil.rmtree(run.root, ignore_errors=True)
    if proc.returncode != 0 or proc.stdout.strip() != "ok":
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return "bubblewrap cannot create a sandbox here: " + (lines[-1] if lines else "no output")
    return None


# ----------------------------------------------------------------------------- killing


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(ppid, pgrp, session) of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode(errors="replace")
    except OSError:
        return None
    fields = data[data.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[2]), int(fields[3])


def _has_marker(pid: int, marker: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return marker in f.read().split(b"\0")
    except OSError:
        return False


def _tree(root: int, marker: str) -> set[int]:
    """The processes of one run: the root's session and process group, its descendants, and any
    process carrying the run's marker variable (a child that left the session keeps it)."""
    procs = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st:
                procs[int(entry)] = st
    tag = f"{MARKER_VAR}={marker}".encode()
    found = {root} if root in procs else set()
    for pid, (_ppid, pgrp, sid) in procs.items():
        if pid != os.getpid() and (sid == root or pgrp == root or _has_marker(pid, tag)):
            found.add(pid)
    grew = True
    while grew:
        grew = False
        for pid, (ppid, _pgrp, _sid) in procs.items():
            if ppid in found and pid not in found:
                found.add(pid)
                grew = True
    found.discard(os.getpid())
    return found


def kill_tree(proc: subprocess.Popen, marker: str, rounds: int = 20) -> None:
    """SIGKILL the whole process tree of a run (``proc`` was started in its own session).

    Repeats the sweep until nothing is left, so that processes forked while killing are caught.
    """
    for _ in range(rounds):
        pids = _tree(proc.pid, marker) if sys.platform.startswith("linux") else {proc.pid}
        if proc.poll() is None:
            pids.add(proc.pid)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.05)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
