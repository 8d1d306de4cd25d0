"""What every command shares: the --catalog/--model options, opening the catalog, the progress
bar, table output, one-line messages and the exit codes."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sqlite3
import sys
import threading
from pathlib import Path

DEBUG_ENV = "LOOKALIKE_DEBUG"

# exit codes
OK = 0
PROBLEMS = 1           # the command ran; some inputs failed or problems remain
ERROR = 2              # a user-facing error (LookalikeError) or a usage error (argparse)
INTERNAL = 3           # an unexpected exception (no traceback unless $LOOKALIKE_DEBUG)
INTERRUPTED = 130      # Ctrl+C (128 + SIGINT)
CLOSED_PIPE = 141      # stdout closed early (`lookalike export | head -1`): 128 + SIGPIPE, as a shell
                       # reports for any program a closed pipe ends

CATALOG_HELP = "catalog folder (default: $LOOKALIKE_CATALOG or the user data folder)"
MODEL_HELP = ("model pack name or folder (default: the catalog's own, else $LOOKALIKE_MODEL "
              "or the bundled default)")


def add_catalog_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--catalog", metavar="DIR", default=None, help=CATALOG_HELP)


def add_model_option(p: argparse.ArgumentParser, help: str = MODEL_HELP) -> None:
    p.add_argument("--model", metavar="PACK", default=None, help=help)


def add_catalog_options(p: argparse.ArgumentParser) -> None:
    """--catalog and --model, as the catalog commands take them."""
    add_catalog_option(p)
    add_model_option(p)


def open_catalog(args, *, create: bool = True, readonly: bool = False, recreate_emptied: bool = False):
    """The catalog named by ``args.catalog`` (default folder when None)."""
    from engine.catalog import Catalog

    return Catalog.open(args.catalog, create=create, readonly=readonly, recreate_emptied=recreate_emptied)


# ---------------------------------------------------------------------- output
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}
_CONTROL.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})


def one_line(text: str) -> str:
    """``text`` as one printable line: control characters (a newline in a file name) escaped."""
    return str(text).translate(_CONTROL)


def clip(text, n: int) -> str:
    """``text`` cut to ``n`` characters, an ellipsis marking the cut."""
    text = "" if text is None else str(text)
    return text if len(text) <= n else text[: n - 1] + "…"


def print_table(rows, headers) -> None:
    from tabulate import tabulate

    print(tabulate(rows, headers=headers, tablefmt="simple"))


def warn(message: str) -> None:
    print(one_line(f"warning: {message}"), file=sys.stderr)


class Progress:
    """A tqdm bar on stderr fed by the engine's ``progress(done, total, message)`` callbacks.

    ``show`` says what the message is: ``"file"`` (a path: its name is shown after the bar),
    ``"stage"`` (a stage name: a new stage restarts the bar under that name) or None (ignored).
    A disabled bar draws nothing. Use it as a context manager, or call ``close()``."""

    def __init__(self, *, disable: bool = False, unit: str = "img", show: str | None = None,
                 leave: bool = True):
        self.show = show
        self.bar = None
        self._stage: str | None = None
        if not disable:
            from tqdm import tqdm

            self.bar = tqdm(total=0, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=leave)

    def __call__(self, done: int, total: int, message: str) -> None:
        bar = self.bar
        if bar is None:
            return
        if self._stage is not None:
            bar.set_description_str(self._stage, refresh=False)
            bar.reset(total=total)
            self._stage = None
        elif self.show == "stage":
            if bar.total != total or bar.desc != message:
                bar.reset(total=total)
                bar.set_description_str(message, refresh=False)
        elif bar.total != total:
            bar.total = total
            bar.refresh()
        bar.n = done
        if self.show == "file":
            bar.set_postfix_str(Path(message).name[-30:] if message else "", refresh=False)
        bar.update(0)

    def stage(self, name: str) -> None:
        """Start a new stage of a ``"file"`` bar: at its first progress call, the bar starts over
        with ``name`` before it (a stage with nothing to do leaves the last one's bar as it was)."""
        self._stage = name

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------------- Ctrl+C
@contextlib.contextmanager
def cancel_on_interrupt(cancel: threading.Event, what: str = "the current batch"):
    """Ctrl+C while the block runs: the first sets ``cancel`` (the engine stops at its next
    checkpoint, keeping what it committed, and the command reports "interrupted"); the second
    exits at once with status 130, without unwinding, so no worker thread is waited for and no
    traceback is printed (what a kill leaves is safe: every write is a committed transaction or an
    atomic rename). The previous handler is back after the block. In a thread other than the main
    one (where signals cannot be caught), or in a process started with Ctrl+C ignored (a shell's
    background job, ``nohup``), it does nothing."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is signal.SIG_IGN):
        yield
        return

    def on_interrupt(signum, frame):
        if not cancel.is_set():
            cancel.set()
            _say(f"\nlookalike: stopping after {what} (Ctrl+C again to quit at once)")
            return
        _say("\nlookalike: interrupted")
        os._exit(INTERRUPTED)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _say(line: str) -> None:
    """A line on stderr from a signal handler: written to the descriptor itself (the handler may
    have interrupted a write to ``sys.stderr``, which must not be re-entered); never raises."""
    try:
        os.write(2, (line + "\n").encode("utf-8", "replace"))
    except OSError:
        pass


# ---------------------------------------------------------------------- errors
def _quiet_closed_stdout() -> int:
    """stdout's reader went away (``| head -1``): point stdout at the null device so the flush at
    exit cannot fail again, and end quietly. The recipe of the Python docs (signal module, "Note
    on SIGPIPE"); SIGPIPE itself stays ignored, as Python sets it."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):   # no real stdout (an embedding host)
        pass
    return CLOSED_PIPE


def run_handler(handler, args) -> int:
    """Run a command's handler; an error becomes one line on stderr and an exit code."""
    from engine.errors import LookalikeError

    try:
        code = handler(args)
        sys.stdout.flush()          # a closed pipe may show only here, on the last buffered lines
        return code
    except BrokenPipeError:
        return _quiet_closed_stdout()
    except LookalikeError as exc:
        print(one_line(f"lookalike: error: {exc}"), file=sys.stderr)
        return ERROR
    except sqlite3.DatabaseError as exc:    # one the catalog layer did not name: still one line
        from engine.sqlite_damage import is_damage

        text = (f"the catalog database is damaged ({exc}); run `lookalike check --repair` to "
                "recover what can be read") if is_damage(exc) else f"catalog database: {exc}"
        print(one_line(f"lookalike: error: {text}"), file=sys.stderr)
        return ERROR
    except KeyboardInterrupt:
        print("lookalike: interrupted", file=sys.stderr)
        return INTERRUPTED
    except Exception as exc:  # the last line of defence: no traceback reaches a user
        if os.environ.get(DEBUG_ENV):
            raise
        print(one_line(f"lookalike: internal error: {type(exc).__name__}: {exc} "
                       f"(set {DEBUG_ENV}=1 for details)"), file=sys.stderr)
        return INTERNAL
