"""A render worker process: `python -m crm_activation.email.compose_worker`, fed batches of jobs over a pipe.

Why not `multiprocessing`: forking a process that runs threads is unsafe, and spawning re-imports the program's
main module in every worker, which re-runs an unguarded script (a scheduled job that runs a campaign at top
level would run it again per worker). A plain subprocess of this module imports nothing but the package.

Protocol: length-prefixed pickles, parent to child on stdin, child to parent on the original stdout (the
child's fd 1 is pointed at stderr, so a library printing something cannot corrupt the stream). The first frame
is (the compose function, templates folder, `prepare` hook, `Letterhead`: see `composing.py`, which this
module does not import); then each frame is a list of `Job`s, answered by the list of `Composed` (or by the
exception that stopped the batch). Both sides are this package, so the pickles are
trusted: nothing else writes to the pipes.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import struct
import subprocess
import sys
import threading
from collections import deque
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from typing import IO, Any

_HEADER = struct.Struct("!Q")


def write_frame(stream: IO[bytes], value: Any) -> None:
    """Pickle `value` onto the stream, length first."""
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)))
    stream.write(data)
    stream.flush()


def read_frame(stream: IO[bytes]) -> Any:
    """The next value on the stream; EOFError when it ended."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError("render worker stream ended")
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("render worker stream ended mid-frame")
    return pickle.loads(data)


class WorkerProcess:
    """The parent's handle on one worker: `submit` a batch, get a future of its results (in submission order)."""

    def __init__(self, init: tuple[Any, ...]) -> None:
        """Start the process and send it `init` (compose function, folder, prepare hook, letterhead)."""
        self.process = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE)
        assert self.process.stdin is not None and self.process.stdout is not None
        self._stdin: IO[bytes] = self.process.stdin
        self._stdout: IO[bytes] = self.process.stdout
        self._pending: deque[Future[Any]] = deque()
        self._lock = threading.Lock()
        self._broken: BaseException | None = None
        write_frame(self._stdin, init)
        self._reader = threading.Thread(target=self._read, name="email-render-reader", daemon=True)
        self._reader.start()

    @property
    def pending(self) -> int:
        """Batches submitted and not answered yet."""
        return len(self._pending)

    def submit(self, jobs: Any) -> Future[Any]:
        """Send a batch; the future fails with `BrokenProcessPool` when the worker dies."""
        future: Future[Any] = Future()
        future.set_running_or_notify_cancel()  # running from now on: only the answer settles it
        with self._lock:
            if self._broken is not None:
                future.set_exception(BrokenProcessPool(f"render worker gone: {self._broken}"))
                return future
            self._pending.append(future)
            try:
                write_frame(self._stdin, jobs)
            except OSError as error:  # the reader fails the pending futures as the stream ends
                self._broken = error
        return future

    def _read(self) -> None:
        try:
            while True:
                answer = read_frame(self._stdout)
                future = self._pending.popleft()
                if isinstance(answer, BaseException):
                    future.set_exception(answer)
                else:
                    future.set_result(answer)
        except Exception as error:  # EOF, a bad frame: the worker is gone
            with self._lock:
                self._broken = error
                pending, self._pending = list(self._pending), deque()
            for future in pending:
                if not future.done():
                    future.set_exception(BrokenProcessPool(f"render worker gone: {error}"))

    def close(self) -> None:
        """End the worker (closing its input ends its loop) and wait for it."""
        with contextlib.suppress(OSError):
            self._stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=30)


def main() -> None:
    """The worker's loop: compose each batch read from stdin, answer on the original stdout."""
    from .rendering import TemplateRenderer

    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints go to stderr, never into the answer stream
    source = sys.stdin.buffer
    compose, folder, prepare, letterhead = read_frame(source)
    renderer = TemplateRenderer(folder, prepare)
    while True:
        try:
            jobs = read_frame(source)
        except EOFError:
            return
        try:
            answer: Any = [compose(renderer, letterhead, job) for job in jobs]
        except Exception as error:  # a bug, not a template error (those are in `Composed`): the parent raises it
            answer = error
        write_frame(out, answer)


if __name__ == "__main__":
    main()
