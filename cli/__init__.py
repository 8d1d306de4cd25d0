"""The ``lookalike`` command line: one module per command above the engine (and the desktop
app, which ``lookalike gui`` starts). Nothing in engine/ or desktop/ imports this package."""
