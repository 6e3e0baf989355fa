"""A keep-alive worker of the grid runner (continual/grid.py): it imports torch, Lightning and
continual once, then runs each cell it is sent in a child forked from itself.

A fresh `continual fit` process per cell pays those imports every time (seconds; a small sweep's
trial trains for about as long). A fork of a process that has imported them but run nothing starts
with the modules loaded and no state of an earlier cell: what a run sets (seeds, torch threads,
warnings filters, logging handlers, W&B, cwd, sys.path, environment variables) ends with its child,
and a cell that crashes (a segfault, `os._exit`) ends its child only, the worker runs the next.
The worker starts no thread, touches no GPU and runs no torch op before forking, so the fork is
safe: the only other threads are the idle pools OpenBLAS starts when numpy and scipy load, and
OpenBLAS's own fork handler stops them before every fork (a child starts with one thread; a pool
starts again on its first use). Each cell is a session of its own whose output goes to the log
the runner opened and locked for it (passed over the socket: the cell holds the lock too); the
runner signals it by pid.

A pool of workers imports once: the first worker, once it has imported, forks the others (on CPU,
where they share one environment), so two workers on two cores do not spend their start importing
the same modules three times (with the runner's own). A forked worker ("sibling") is a worker like
the first, on a socket of its own; its end is seen as that socket's end, since it is not the
runner's child.

Protocol on the socket whose fd is the worker's argument (SOCK_SEQPACKET): the runner sends a
cell's `continual` arguments (a JSON list) with its log's file descriptor; the worker answers
{"pid": ...} once the cell has started and {"rc": ...} once it has ended (negative: killed by that
signal). "fork" with a socket's descriptor (sent before any cell) forks a sibling serving that
socket, which says {"pid": ...} there first. When the runner goes (the socket closes), the running
cell gets SIGTERM, so it checkpoints, and the worker exits.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time

POLL_S = 0.05  # how often the worker looks whether its cell has ended
# What `continual fit` imports; the rest (a user's method, W&B) each cell imports itself. A cell ends
# as an interpreter does, running the exit handlers these imports registered: none of them deletes
# anything the worker's later cells need. W&B's would (its import makes temporary folders that its
# exit handler removes), so it is not among them.
PRELOAD = ("torch", "lightning", "matplotlib.pyplot", "sklearn.datasets", "continual.cli.main", "continual.experiment",
           "continual.build", "continual.methods", "continual.data.streams", "continual.metrics.suite", "continual.metrics.report",
           "continual.run_logger", "continual.callbacks", "continual.features", "continual.rundir.folder")


class Lost(Exception):
    """The worker ended outside a cell (it could not start, or was killed)."""


class Worker:
    """The runner's end of one keep-alive worker, started on its first cell with `env` (its share
    of the machine) and started again if it has ended; one cell at a time."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.proc: subprocess.Popen | None = None  # None for a sibling: not this process's child
        self.sock: socket.socket | None = None
        self.pid: int | None = None  # a sibling's, once it has said it
        self.cell: CellProcess | None = None  # the cell in flight, if any
        self.ready = False  # it has answered once, so it has imported and holds no pending fork

    @property
    def alive(self) -> bool:
        return self.sock is not None and (self.proc is None or self.proc.poll() is None)

    def start(self, argv: list[str], log_fd: int) -> "CellProcess":
        """Start the cell `continual <argv>` with its output to `log_fd`; Lost if the worker cannot."""
        if self.proc is None and self.sock is not None and self.pid is None:  # a sibling's first word
            try:
                self.pid = self.receive()["pid"]
            except Lost:  # its first worker ended before forking it
                self._end()
        if not self.alive:
            self.spawn()
        try:
            socket.send_fds(self.sock, [json.dumps(argv).encode()], [log_fd])
            self.cell = CellProcess(self, self.receive()["pid"])
            self.ready = True
            return self.cell
        except (OSError, Lost):
            rc = self._end()
            raise Lost(f"the grid worker ended before the cell started ({_exit(rc)}; its error is above)") from None

    def receive(self, timeout: float | None = None) -> dict:
        """The worker's next message; TimeoutError if none comes in `timeout` s, Lost if it has ended."""
        if not select.select([self.sock], [], [], timeout)[0]:
            raise TimeoutError
        data = self.sock.recv(4096)
        if not data:
            raise Lost
        return json.loads(data)

    def close(self) -> None:
        """End the worker: one that has not answered yet holds nothing and is killed at once (it may
        still be importing); else it exits once its socket closes, after SIGTERM to its cell."""
        if self.proc is not None and not self.ready and self.cell is None and self.proc.poll() is None:
            self.proc.kill()
        if self.sock is not None:
            self._end()

    def spawn(self) -> None:
        """Start the worker process (it imports for seconds before it takes a cell); `start` does it if need be."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            self.proc = subprocess.Popen([sys.executable, "-m", "continual.grid_worker", str(theirs.fileno())],
                                         env={**os.environ, **self.env}, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         pass_fds=(theirs.fileno(),), start_new_session=True)
        self.sock, self.pid, self.ready = ours, self.proc.pid, False

    def fork(self, first: "Worker") -> None:
        """Start this worker as a fork of `first` (same environment) once `first` has imported; sent
        before `first`'s first cell."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            socket.send_fds(first.sock, [json.dumps("fork").encode()], [theirs.fileno()])
        self.proc, self.sock, self.pid, self.ready = None, ours, None, False

    def _end(self) -> int | None:
        """Close the socket and wait for the worker's end; its exit code (None for a sibling)."""
        rc = None
        if self.proc is None:  # a sibling ends once it reads the socket's end; with a cell, it stops that first
            if self.cell is not None:
                with contextlib.suppress(OSError):  # it may have gone already
                    self.sock.shutdown(socket.SHUT_WR)
                deadline = time.monotonic() + 60
                while select.select([self.sock], [], [], max(0.0, deadline - time.monotonic()))[0] and self.sock.recv(4096):
                    pass
            self.sock.close()
        else:
            self.sock.close()
            try:
                rc = self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait()
        self.proc, self.sock, self.cell, self.ready = None, None, None, False
        return rc


def _exit(rc: int | None) -> str:
    return "exit unknown: a forked worker" if rc is None else f"exit {rc}"


class CellProcess:
    """A running cell, as `subprocess.Popen` looks to the grid runner (pid, poll, wait, signals)."""

    def __init__(self, worker: Worker, pid: int):
        self.worker, self.pid, self.returncode = worker, pid, None
        self.lost: str | None = None  # why the cell ended, when its worker ended under it

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """The cell's exit code; subprocess.TimeoutExpired if it runs on past `timeout` s. If the
        worker itself ends meanwhile, the cell is killed and its code is the worker's."""
        if self.returncode is None:
            try:
                self.returncode = self.worker.receive(timeout)["rc"]
                self.worker.cell = None
            except TimeoutError:
                raise subprocess.TimeoutExpired("continual fit", timeout) from None
            except Lost:
                self.send_signal(signal.SIGKILL)  # no orphan: its worker can no longer stop it
                self.returncode = -signal.SIGKILL
                self.lost = f"its grid worker ended while it ran ({_exit(self.worker._end())}); the next cell starts a new one"
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:  # ended, its exit code not read yet
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _run_cell(argv: list[str], log_fd: int, sock: socket.socket) -> None:
    """In the forked child: the cell as `python -m continual.cli.main <argv>` would run it; never returns."""
    import atexit
    import importlib.util
    import threading
    import traceback

    import __main__
    from continual.cli import main as cli

    os.setsid()
    sock.close()
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    sys.argv = [cli.__file__, *argv]
    __main__.__spec__ = importlib.util.find_spec("continual.cli.main")  # Lightning's DDP launcher reruns `python -m <it> <argv>`
    rc = 1
    try:
        rc = cli.main(argv)
    except SystemExit as err:  # as the interpreter ends on it: an int is the code, None 0, text goes to stderr
        rc = err.code if isinstance(err.code, int) else 0 if err.code is None else 1
        if not isinstance(err.code, (int, type(None))):
            print(err.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - the log gets what the interpreter would print
        traceback.print_exc()
    finally:
        try:  # what an interpreter does on exit (multiprocessing's forked children do the same)
            threading._shutdown()
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(rc)


def _stop(pid: int, grace_s: float = 30.0) -> None:
    """SIGTERM (the cell checkpoints and stops), SIGKILL if it has not ended after `grace_s`."""
    os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + grace_s
    while not os.waitpid(pid, os.WNOHANG)[0]:
        if time.monotonic() > end:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return
        time.sleep(POLL_S)


def _serve(sock: socket.socket) -> None:
    """Run cell after cell until the runner closes the socket; fork a sibling worker when asked."""
    siblings: list[int] = []
    try:
        while True:
            msg, fds, _, _ = socket.recv_fds(sock, 65536, 1)
            if not msg:
                return
            request = json.loads(msg)
            if request == "fork":
                pid = os.fork()
                if pid == 0:
                    _sibling(sock, socket.socket(fileno=fds[0]))
                os.close(fds[0])
                siblings.append(pid)
                continue
            pid = os.fork()
            if pid == 0:
                _run_cell(request, fds[0], sock)
            os.close(fds[0])
            sock.send(json.dumps({"pid": pid}).encode())
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                if select.select([sock], [], [], POLL_S)[0] and not sock.recv(1, socket.MSG_PEEK):  # the runner has gone
                    _stop(pid)
                    return
            sock.send(json.dumps({"rc": os.waitstatus_to_exitcode(status)}).encode())
    finally:
        _reap(siblings)


def _sibling(first: socket.socket, sock: socket.socket) -> None:
    """In a forked sibling: a worker of its own on `sock`; never returns."""
    try:
        os.setsid()
        first.close()
        sock.send(json.dumps({"pid": os.getpid()}).encode())
        _serve(sock)
    finally:  # never back into the first worker's loop, whatever happened
        os._exit(0)


def _reap(pids: list[int], grace_s: float = 5.0) -> None:
    """Wait for the siblings forked here (the runner ends them before this worker), so none is left a zombie."""
    end = time.monotonic() + grace_s
    while pids and time.monotonic() < end:
        pids[:] = [pid for pid in pids if not os.waitpid(pid, os.WNOHANG)[0]]
        time.sleep(POLL_S if pids else 0)


def main(fd: int) -> None:
    import importlib

    import matplotlib

    matplotlib.use("Agg")  # as every run's plots set it, before pyplot picks a backend
    for name in PRELOAD:
        importlib.import_module(name)
    gc.freeze()  # a cell's collections skip what the imports made, so its pages stay shared with the worker
    _serve(socket.socket(fileno=fd))
    os._exit(0)  # nothing to flush or clean up: an interpreter's teardown of these modules takes a second


if __name__ == "__main__":
    main(int(sys.argv[1]))
