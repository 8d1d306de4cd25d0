"""cli/: every command module imports and registers its command (a broken one fails the command
line loudly instead of making its command vanish), `python -m cli` runs, and the shared helpers
turn errors into one line and an exit code."""

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cli import common
from cli.main import COMMANDS, build_parser, main
from engine import __version__
from engine.errors import LookalikeError

ROOT = Path(__file__).resolve().parent.parent
NAMES = ["index", "search", "info", "remove", "export", "gui", "eval", "dupes", "case", "check", "vectors", "bench"]
SHARED = {"__init__", "__main__", "main", "common"}


def _choices(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_the_parser_has_every_command():
    assert list(_choices(build_parser())) == NAMES


@pytest.mark.parametrize("module", COMMANDS, ids=lambda m: m.__name__)
def test_each_command_module_registers_one_command_with_its_handler(module):
    parser = argparse.ArgumentParser()
    module.register(parser.add_subparsers(dest="command"))
    (name, sub), = _choices(parser).items()
    assert name in NAMES
    assert sub.get_default("handler") is module.run


def test_every_command_module_is_listed():
    """A module added to cli/ but not to cli.main.COMMANDS would never be registered."""
    files = {p.stem for p in (ROOT / "cli").glob("*.py")} - SHARED
    assert files == {m.__name__.removeprefix("cli.") for m in COMMANDS}


def test_a_broken_engine_module_fails_the_command_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "engine.duplicates", None)   # its import now raises
    with pytest.raises(ImportError):
        build_parser()
    with pytest.raises(ImportError):
        main(["info"])


def test_python_m_cli_version():
    proc = subprocess.run([sys.executable, "-m", "cli", "--version"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"lookalike {__version__}"


def test_a_missing_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == common.ERROR
    assert "COMMAND" in capsys.readouterr().err


def _raise(exc):
    def handler(args):
        raise exc
    return handler


@pytest.mark.parametrize("exc, code, text", [
    (LookalikeError("no catalog\nhere"), common.ERROR, "lookalike: error: no catalog\\nhere"),
    (KeyboardInterrupt(), common.INTERRUPTED, "lookalike: interrupted"),
    (ZeroDivisionError("boom"), common.INTERNAL,
     f"lookalike: internal error: ZeroDivisionError: boom (set {common.DEBUG_ENV}=1 for details)"),
])
def test_errors_are_one_line_and_an_exit_code(exc, code, text, capsys, monkeypatch):
    monkeypatch.delenv(common.DEBUG_ENV, raising=False)
    assert common.run_handler(_raise(exc), None) == code
    assert capsys.readouterr().err == text + "\n"


def test_debug_shows_the_traceback(monkeypatch):
    monkeypatch.setenv(common.DEBUG_ENV, "1")
    with pytest.raises(ZeroDivisionError):
        common.run_handler(_raise(ZeroDivisionError("boom")), None)


def test_progress_bar_shows_files_and_stages(capsys):
    with common.Progress(show="file") as progress:
        progress(1, 3, "/photos/shoe.jpg")
    err = capsys.readouterr().err
    assert "1/3" in err and "shoe.jpg" in err and "/photos" not in err
    with common.Progress(show="stage", unit="") as progress:
        progress(2, 5, "candidates")
        progress(1, 4, "verifying")
    err = capsys.readouterr().err
    assert "candidates" in err and "verifying: " in err and "1/4" in err
    with common.Progress(disable=True) as progress:
        progress.stage("indexing")
        progress(1, 3, "x.jpg")
    assert capsys.readouterr().err == ""
    # an import's two passes: the files, then their local features, each its own count
    with common.Progress(show="file") as progress:
        progress.stage("indexing")
        progress(3, 3, "/photos/shoe.jpg")
        progress.stage("local features")
        progress(1, 2, "/photos/hat.jpg")
    err = capsys.readouterr().err
    assert "indexing: " in err and "0/3" in err and "local features: " in err and "1/2" in err
    assert not re.search(r"indexing:[^\r]*/2 ", err)        # each stage its own name and total
    with common.Progress(show="file") as progress:
        progress.stage("indexing")
        progress(3, 3, "/photos/shoe.jpg")
        progress.stage("local features")          # nothing to compute: no progress call
    err = capsys.readouterr().err
    assert "indexing: " in err and "local features" not in err
