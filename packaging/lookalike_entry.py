"""Frozen entry point of the bundle: ``lookalike`` runs the CLI, ``lookalike-gui`` (a symlink to
the same executable) the desktop app. One executable, so the Python code is stored once; the app
goes straight to ``desktop.app`` without importing every CLI command first (start-up time).

``lookalike -c CODE [ARG...]`` and ``lookalike -m MODULE [ARG...]`` behave as Python's own: the
engine starts ``sys.executable -c ...`` / ``-m desktop.app`` for its measurements (``lookalike
bench``), and in the bundle ``sys.executable`` is this program.
"""

import os
import runpy
import sys


def main() -> int:
    if os.path.basename(sys.argv[0]).startswith("lookalike-gui"):
        from desktop.app import main as app_main

        return app_main()
    if sys.argv[1:2] == ["-c"] and len(sys.argv) > 2:
        code, sys.argv = sys.argv[2], ["-c", *sys.argv[3:]]
        exec(compile(code, "<string>", "exec"), {"__name__": "__main__"})
        return 0
    if sys.argv[1:2] == ["-m"] and len(sys.argv) > 2:
        module, sys.argv = sys.argv[2], [sys.argv[2], *sys.argv[3:]]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        return 0
    from cli.main import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
