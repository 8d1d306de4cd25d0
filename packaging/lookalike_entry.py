"""Frozen entry point of the bundle: ``lookalike`` runs the CLI, ``lookalike-gui`` (a symlink to
the same executable) the desktop app. One executable, so the Python code is stored once; the app
goes straight to ``desktop.app`` without importing every CLI command first (start-up time)."""

import os
import sys

if __name__ == "__main__":
    if os.path.basename(sys.argv[0]).startswith("lookalike-gui"):
        from desktop.app import main
    else:
        from cli.main import main
    sys.exit(main())
