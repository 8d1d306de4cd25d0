"""``lookalike gui``: start the desktop application, which parses its own options."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("gui", help="start the desktop application", add_help=False)
    p.add_argument("gui_args", nargs=argparse.REMAINDER)
    p.set_defaults(handler=run)


def run(args) -> int:
    from desktop.app import main as gui_main

    return gui_main(list(args.gui_args))
