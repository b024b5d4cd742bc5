"""One submission's kernel: started in its own run folder, driven over unix sockets, killed at the end.

:class:`KernelSession` starts ``ipykernel`` (under bubblewrap or not, see :mod:`.isolation`) in its
own session, connects a jupyter client over ``ipc`` sockets (no TCP port, so it works with no
network), and :meth:`KernelSession.execute` sends one execute request and collects its outputs as
nbformat outputs. Timeouts hold whatever the kernel does: at the deadline the session asks the kernel
to interrupt, waits ``grace_s``, and reports ``"timeout"``; the caller then :meth:`kill` s the whole
process tree with SIGKILL. A kernel that dies is reported as ``"dead"`` as soon as its process ends.
"""

from __future__ import annotations

import queue
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field

from .isolation import (
    RunDir,
    bwrap_command,
    kernel_env,
    kill_tree,
    limited_command,
)

__all__ = ["ExecResult", "KernelSession", "KernelStartError"]


class KernelStartError(RuntimeError):
    """The kernel did not start or did not answer in time."""


@dataclass
class ExecResult:
    """The outcome of one execute request.

    ``status``: ``"ok"`` or ``"error"`` (the kernel's reply), ``"interrupted"`` (it ran past its
    deadline and stopped when interrupted), ``"timeout"`` (it did not stop), ``"dead"`` (the kernel
    process ended).
    """

    status: str
    outputs: list = field(default_factory=list)
    reply: dict = field(default_factory=dict)
    execution_count: int | None = None
    output_bytes: int = 0
    truncated: bool = False


class KernelSession:
    """A kernel for one submission (see the module docstring). Use as a context manager."""

    def __init__(
        self,
        run: RunDir,
        env: dict[str, str],
        *,
        sandbox: bool,
        memory_mb: int | None,
        startup_timeout_s: float = 120.0,
    ) -> None:
        self.run, self.sandbox = run, sandbox
        self.marker = secrets.token_hex(16)
        self.env = kernel_env(run, env, self.marker, sandbox)
        self.memory_mb = memory_mb
        self.startup_timeout_s = startup_timeout_s
        self.proc: subprocess.Popen | None = None
        self.client = None
        self.log_path = run.root / "kernel.log"

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        from jupyter_client import BlockingKernelClient
        from jupyter_client.connect import write_connection_file

        conn_file, _ = write_connection_file(
            str(self.run.conn / "kernel.json"),
            transport="ipc",
            ip=str(self.run.conn / "k"),
            key=secrets.token_hex(32).encode(),
        )
        argv = [
            sys.executable,
            "-s",
            "-m",
            "ipykernel_launcher",
            "-f",
            conn_file,
            "--HistoryManager.enabled=False",
        ]
        argv = limited_command(argv, self.memory_mb)
        if self.sandbox:
            cmd, env = bwrap_command(self.run, argv, self.env), {"PATH": "/usr/bin:/bin"}
            cwd = str(self.run.root)
        else:
            cmd, env, cwd = argv, self.env, str(self.run.work)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group and session: see kill_tree
            )
        client = BlockingKernelClient()
        client.load_connection_file(conn_file)
        client.start_channels()
        self.client = client
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            if self.proc.poll() is not None:
                raise KernelStartError(f"the kernel exited at start: {self.log_tail()}")
            try:
                client.wait_for_ready(timeout=min(5.0, max(0.1, deadline - time.monotonic())))
                return
            except RuntimeError as err:
                if time.monotonic() > deadline:
                    raise KernelStartError(f"the kernel did not start: {err}") from err

    def log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return lines[-1][:200] if lines else f"exit status {self.proc.poll() if self.proc else '?'}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the kernel's whole process tree and close the client."""
        if self.client is not None:
            try:
                self.client.stop_channels()
            except Exception:  # noqa: BLE001 — closing sockets of a dead kernel
                pass
            self.client = None
        if self.proc is not None:
            kill_tree(self.proc, self.marker)

    def __enter__(self) -> KernelSession:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()

    # ------------------------------------------------------------------ execution

    def interrupt(self) -> None:
        """Ask the kernel to interrupt (it raises KeyboardInterrupt in the running code)."""
        client = self.client
        msg = client.session.msg("interrupt_request", {})
        client.control_channel.send(msg)

    def execute(
        self,
        code: str,
        *,
        timeout_s: float,
        grace_s: float = 3.0,
        silent: bool = False,
        store_history: bool = True,
        user_expressions: dict[str, str] | None = None,
        max_output_bytes: int = 4 * 2**20,
    ) -> ExecResult:
        """Run ``code``; collect its outputs (nbformat) and reply within ``timeout_s`` seconds.

        Outputs beyond ``max_output_bytes`` are dropped (a note says so), so that a cell printing
        without end cannot fill the grader's memory.
        """
        import nbformat

        client = self.client
        msg_id = client.execute(
            code,
            silent=silent,
            store_history=store_history,
            user_expressions=user_expressions or {},
            allow_stdin=False,
            stop_on_error=False,
        )
        result = ExecResult("ok")
        idle, replied, interrupted = False, False, False
        deadline = time.monotonic() + timeout_s
        while not (idle and replied):
            now = time.monotonic()
            if now > deadline:
                if interrupted:
                    result.status = "timeout"
                    return result
                interrupted = True
                try:
                    self.interrupt()
                except Exception:  # noqa: BLE001 — a wedged kernel: the caller kills it
                    result.status = "timeout"
                    return result
                deadline = now + grace_s
            if not self.alive():
                result.status = "dead"
                return result
            wait = max(0.01, min(0.2, deadline - now))
            if not idle:
                try:
                    msg = client.get_iopub_msg(timeout=wait)
                except queue.Empty:
                    msg = None
                if msg is not None and msg["parent_header"].get("msg_id") == msg_id:
                    idle = self._handle_iopub(msg, result, nbformat, max_output_bytes)
            if not replied:
                try:
                    reply = client.get_shell_msg(timeout=0.01 if not idle else wait)
                except queue.Empty:
                    reply = None
                if reply is not None and reply["parent_header"].get("msg_id") == msg_id:
                    replied = True
                    result.reply = reply["content"]
                    if result.execution_count is None:
                        result.execution_count = reply["content"].get("execution_count")
        if result.truncated:
            note = (
                f"[the grader dropped this cell's output after {max_output_bytes // 2**20} MiB]\n"
            )
            result.outputs.append(nbformat.v4.new_output("stream", name="stderr", text=note))
        status = result.reply.get("status", "error")
        result.status = "interrupted" if interrupted else status
        return result

    @staticmethod
    def _handle_iopub(msg: dict, result: ExecResult, nbformat, max_bytes: int) -> bool:  # noqa: ANN001
        """Add one iopub message to the outputs; True once the kernel is idle again."""
        kind, content = msg["msg_type"], msg["content"]
        if kind == "status":
            return content.get("execution_state") == "idle"
        if kind == "execute_input":
            result.execution_count = content.get("execution_count")
        elif kind == "clear_output":
            result.outputs.clear()
        elif kind in ("stream", "display_data", "execute_result", "error"):
            result.output_bytes += len(str(content))
            if result.output_bytes > max_bytes:
                result.truncated = True
                return False
            out = nbformat.v4.output_from_msg(msg)
            last = result.outputs[-1] if result.outputs else None
            if (
                kind == "stream"
                and last is not None
                and last.get("output_type") == "stream"
                and last.get("name") == out.get("name")
            ):
                last["text"] += out["text"]
            else:
                result.outputs.append(out)
        return False
