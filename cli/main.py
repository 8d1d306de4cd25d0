"""The ``lookalike`` command: the parser built from the command modules, and ``main``."""

from __future__ import annotations

import argparse
import sys

from cli import bench, case, check, dupes, evaluate, export, gui, index, info, remove, search, vectors
from cli.common import run_handler

# every command, in the order of ``lookalike --help``; each module's register(sub) adds its
# sub-parser with handler=run. A module that fails to import fails here, loudly.
COMMANDS = (index, search, info, remove, export, gui, evaluate, dupes, case, check, vectors, bench)


def build_parser() -> argparse.ArgumentParser:
    from engine import __version__

    parser = argparse.ArgumentParser(
        prog="lookalike",
        description="Visual product matching: a product photo in, its class and the matching catalog products out.")
    parser.add_argument("--version", action="version", version=f"lookalike {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["gui"]:          # the GUI parses its own options
        return gui.run(argparse.Namespace(gui_args=argv[1:]))
    args = build_parser().parse_args(argv)
    return run_handler(args.handler, args)


if __name__ == "__main__":
    sys.exit(main())
