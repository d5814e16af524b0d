"""Keep library noise off a person's terminal, and every line of it in a run's log file.

Libraries that a command runs print things nobody asked for: mdtraj's DCD reader writes
``dcdplugin) ...`` lines from C code at every read (straight to file descriptor 1, past
``sys.stdout``), Lightning logs GPU/TPU availability and tips at INFO, OpenMM's plugin loader writes
to descriptor 2. :func:`quiet_output` is the context manager the command line wraps each command in:

- file descriptors 1 and 2 are pointed at pipes for its duration; what C code writes there goes to
  the log, and to the terminal only with ``verbose``;
- ``sys.stdout`` and ``sys.stderr`` (what the command prints, warnings, progress bars) still reach
  the terminal, and are copied to the log (a progress bar as its last state);
- Python log records from INFO up go to the log; the terminal shows gmvae-cv's from WARNING up and
  the libraries' from ERROR up (everything from INFO up with ``verbose``). Warnings raised by a
  library's own code (deprecations, TorchScript's type-system notes) go to the log only, unless
  ``verbose``; gmvae-cv's warnings (``BiasEdgeWarning``, ``PlumedFileWarning``, ...) always show.

At the end the log is appended to ``log_file`` when its folder exists (a command that writes a run
folder names a file in it). Library code does not call this: configuring logging and output is the
application's business (the command line's), not the library's.
"""

from __future__ import annotations

import ctypes
import io
import logging
import os
import sys
import tempfile
import re
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator, Optional
from .files import atomic_write_bytes

__all__ = ["LOG_NAME", "quiet_output", "route_library_loggers"]

#: File name of the log that a command writes into its run folder.
LOG_NAME = "gmvae-cv.log"

# Loggers that install their own terminal handler at import (Lightning does when the root logger
# has none); inside quiet_output they hand their records to the root handlers instead.
_SELF_HANDLED = ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric")


def route_library_loggers() -> None:
    """Hand the records of Lightning's loggers to the root handlers that :func:`quiet_output`
    installed, removing the terminal handlers they added at import.

    ``import lightning`` adds a terminal handler whatever the root logger has, so a command that
    imports Lightning inside :func:`quiet_output` calls this once it is imported (before training).
    Only handlers bound to the streams of the running :func:`quiet_output` are removed.
    """
    for name in _SELF_HANDLED:
        lg = logging.getLogger(name)
        mine = [h for h in lg.handlers if isinstance(h, logging.StreamHandler) and isinstance(h.stream, _Tee)]
        if mine:
            lg.handlers = [h for h in lg.handlers if h not in mine]
            lg.propagate = True


class _Log:
    """The captured log: a temporary binary file written from several threads."""

    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile()
        self.lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self.lock:
            self.file.write(data)

    def text(self, s: str) -> None:
        self.write(s.encode("utf-8", "replace"))

    def contents(self) -> bytes:
        with self.lock:
            self.file.flush()
            self.file.seek(0)
            return self.file.read()


_ESCAPES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_PACKAGE_DIR = str(Path(__file__).resolve().parents[1])  # gmvae_cv/


def _is_library_noise(category: type, filename: str) -> bool:
    """A warning raised by a library's own code (not gmvae-cv's, and not of a gmvae-cv category):
    deprecations, TorchScript's type-system notes, numpy's overflow in a library routine."""
    ours = category.__module__.split(".")[0] == "gmvae_cv" or str(Path(filename).resolve()).startswith(_PACKAGE_DIR)
    return not ours


def _log_line(line: str) -> str:
    """A terminal line as the log keeps it: its last carriage-return state, without escapes."""
    return _ESCAPES.sub("", line.rsplit("\r", 1)[-1])


class _Tee(io.TextIOBase):
    """A text stream that writes to ``stream`` and copies whole lines to the log; a line rewritten
    with carriage returns (a progress bar) is logged as its last state."""

    def __init__(self, stream: IO[str], log: _Log) -> None:
        self._stream = stream
        self._log = log
        self._line = ""

    def write(self, s: str) -> int:
        n = self._stream.write(s)
        self._line += s
        if "\n" in self._line:
            *lines, self._line = self._line.split("\n")
            # a line that only moved the cursor (a progress bar's) is not kept; an empty print is
            kept = [(_log_line(line), line) for line in lines]
            self._log.text("".join(k + "\n" for k, line in kept if k.strip() or not line))
        return len(s) if n is None else n

    def flush(self) -> None:
        self._stream.flush()

    def close_line(self) -> None:
        if _log_line(self._line).strip():
            self._log.text(_log_line(self._line) + "\n")
        self._line = ""

    def isatty(self) -> bool:
        try:
            return self._stream.isatty()
        except ValueError:  # the stream was closed (asked at interpreter exit, e.g. by colorama's atexit hook)
            return False

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self):  # type: ignore[override]
        return getattr(self._stream, "encoding", "utf-8")

    def __getattr__(self, name):
        return getattr(self._stream, name)


class _FdCapture:
    """Points file descriptor ``fd`` at a pipe; a thread copies what arrives to the log and, when
    ``show``, to where ``fd`` pointed before."""

    def __init__(self, fd: int, log: _Log, show: bool) -> None:
        self.fd = fd
        self.saved = os.dup(fd)
        self._log = log
        self._show = show
        read, write = os.pipe()
        os.dup2(write, fd)
        os.close(write)
        self._read = read
        self._thread = threading.Thread(target=self._pump, name=f"gmvae-cv fd {fd}", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        while True:
            try:
                data = os.read(self._read, 65536)
            except OSError:
                break
            if not data:
                break
            self._log.write(data)
            if self._show:
                try:
                    os.write(self.saved, data)
                except OSError:
                    pass
        os.close(self._read)

    def restore(self) -> None:
        os.dup2(self.saved, self.fd)  # closes the pipe's last write end: the thread sees EOF
        self._thread.join(timeout=10)
        os.close(self.saved)


def _flush_c_stdio() -> None:
    """Flush C's stdio buffers (printf output not yet written to its descriptor)."""
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError, TypeError):  # no libc symbol table (e.g. Windows)
        pass


def _fd_of(stream) -> Optional[int]:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


class _ToStream(logging.Handler):
    """A handler that writes to a stream looked up when the record comes (not at creation);
    records of loggers outside gmvae_cv need ``library_level``."""

    def __init__(self, get_stream, level: int, library_level: Optional[int] = None) -> None:
        super().__init__(level)
        self._get_stream = get_stream
        self._library_level = level if library_level is None else library_level
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def filter(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        if record.name.split(".")[0] != "gmvae_cv" and record.levelno < self._library_level:
            return False
        return bool(super().filter(record))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._get_stream().write(self.format(record) + "\n")
        except Exception:  # pragma: no cover - as logging.StreamHandler
            self.handleError(record)


@contextmanager
def quiet_output(verbose: bool = False, log_file: Optional[str | os.PathLike] = None,
                 title: str = "") -> Iterator[None]:
    """Run a block with library noise kept off the terminal (unless ``verbose``) and in a log.

    Parameters
    ----------
    verbose : bool
        Show everything on the terminal as well: C-level output on descriptors 1 and 2, Python
        log records from INFO up and the libraries' warnings.
    log_file : path, optional
        The log to append to at the end (everything: printed lines, C-level output, log records
        from INFO up, warnings). Written only when its folder exists then, so a command that fails
        before it creates its run folder leaves none.
    title : str
        First line of this block's part of the log (e.g. the command line).

    Examples
    --------
    >>> with quiet_output():
    ...     print("shown")
    shown
    """
    log = _Log()
    log.text(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {title}\n")
    _flush_c_stdio()
    sys.stdout.flush()
    sys.stderr.flush()
    old_out, old_err = sys.stdout, sys.stderr
    captures: list[_FdCapture] = []
    reopened: list[IO[str]] = []
    streams = {}
    for fd, old in ((1, old_out), (2, old_err)):
        try:
            cap = _FdCapture(fd, log, show=verbose)
        except OSError:  # no such descriptor (a detached process)
            streams[fd] = old
            continue
        captures.append(cap)
        if _fd_of(old) == fd:  # Python's stream writes to the descriptor now captured: reopen it on the saved one
            new = open(cap.saved, "w", buffering=1, encoding=getattr(old, "encoding", None) or "utf-8",
                       errors=getattr(old, "errors", None) or "strict", closefd=False)
            reopened.append(new)
            streams[fd] = new
        else:  # e.g. a test harness's buffer: it does not go through the descriptor
            streams[fd] = old
    tee_out, tee_err = _Tee(streams[1], log), _Tee(streams[2], log)
    sys.stdout, sys.stderr = tee_out, tee_err

    root = logging.getLogger()
    saved_root = (root.level, list(root.handlers))
    to_terminal = _ToStream(lambda: streams[2], logging.INFO if verbose else logging.WARNING,
                            library_level=logging.INFO if verbose else logging.ERROR)
    to_log = _ToStream(lambda: _LogText(log), logging.INFO)
    root.handlers = [to_terminal, to_log]
    root.setLevel(logging.INFO)
    show_warning = warnings.showwarning

    def route_warning(message, category, filename, lineno, file=None, line=None):
        if file is None and not verbose and _is_library_noise(category, str(filename)):
            log.text(warnings.formatwarning(message, category, filename, lineno, line))
        else:
            show_warning(message, category, filename, lineno, file, line)

    warnings.showwarning = route_warning
    saved_loggers = []
    for name in _SELF_HANDLED:
        lg = logging.getLogger(name)
        saved_loggers.append((lg, list(lg.handlers), lg.propagate))
        lg.handlers = [h for h in lg.handlers if not isinstance(h, logging.StreamHandler)]
        lg.propagate = True
    try:
        yield
    finally:
        route_library_loggers()  # handlers created inside: they would write to streams closed below
        for tee in (tee_out, tee_err):
            tee.flush()
            tee.close_line()
        _flush_c_stdio()
        sys.stdout, sys.stderr = old_out, old_err
        for s in reopened:  # before the descriptors they write to are closed
            s.flush()
            s.close()
        for cap in reversed(captures):
            cap.restore()
        warnings.showwarning = show_warning
        root.handlers = saved_root[1]
        root.setLevel(saved_root[0])
        for lg, handlers, propagate in saved_loggers:
            lg.handlers = handlers
            lg.propagate = propagate
        if log_file is not None:
            _append(Path(log_file), log.contents())
        log.file.close()


class _LogText:
    """A write-only text view of the log, for the logging handler."""

    def __init__(self, log: _Log) -> None:
        self._log = log

    def write(self, s: str) -> None:
        self._log.text(s)


def _append(path: Path, data: bytes) -> None:
    """Append ``data`` to the log at ``path`` (atomically: the old log plus the new part)."""
    if not path.parent.is_dir():
        return
    old = path.read_bytes() if path.is_file() else b""
    atomic_write_bytes(path, old + data)
