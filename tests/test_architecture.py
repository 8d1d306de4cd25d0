"""The package layers: cli/ may import desktop/ and engine/, desktop/ may import engine/, never
the other way; engine/ stays Qt-free. Checked by the import-linter contracts in pyproject.toml
(on the real tree, and on a small tree with an upward import, which they must refuse) and,
independently, by importing every engine module in a fresh interpreter."""

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = "from importlinter.cli import lint_imports_command; lint_imports_command()"
LAYERS = ["cli", "desktop", "engine"]


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def _lint(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", LINT, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_the_layers_contract_covers_every_package():
    config = _config()
    assert set(config["root_packages"]) == set(LAYERS)
    layers = [c for c in config["contracts"] if c["type"] == "layers"]
    assert [c["layers"] for c in layers] == [LAYERS]
    assert any(c["type"] == "forbidden" and c["source_modules"] == ["engine"] and "PySide6" in c["forbidden_modules"]
               for c in config["contracts"])


def test_import_linter_contracts_hold():
    pytest.importorskip("importlinter")
    proc = _lint(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for contract in _config()["contracts"]:
        assert f"{contract['name']} KEPT" in proc.stdout, proc.stdout


def _small_tree(root: Path, imports: dict[str, str]) -> None:
    """Three empty packages under the real pyproject.toml; ``imports``: package -> what it imports."""
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    for name in LAYERS:
        (root / name).mkdir()
        (root / name / "__init__.py").write_text("")
    for importer, imported in imports.items():
        (root / importer / ("upward" if LAYERS.index(imported) < LAYERS.index(importer) else "downward")
         ).with_suffix(".py").write_text(f"import {imported}\n")


def test_downward_imports_keep_the_layers_contract(tmp_path):
    pytest.importorskip("importlinter")
    _small_tree(tmp_path, {"cli": "desktop", "desktop": "engine"})
    proc = _lint(tmp_path, "--no-cache")
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("importer, imported", [("engine", "desktop"), ("engine", "cli"), ("desktop", "cli")])
def test_an_upward_import_breaks_the_layers_contract(tmp_path, importer, imported):
    """The same contracts on a small tree where one package imports a layer above it."""
    pytest.importorskip("importlinter")
    _small_tree(tmp_path, {importer: imported})
    proc = _lint(tmp_path, "--no-cache")
    layers = next(c["name"] for c in _config()["contracts"] if c["type"] == "layers")
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert f"{layers} BROKEN" in proc.stdout, proc.stdout + proc.stderr
    assert f"{importer}.upward -> {imported}" in proc.stdout


def test_engine_modules_do_not_load_qt():
    modules = sorted(p.stem for p in (ROOT / "engine").glob("*.py") if p.stem != "__init__")
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module('engine.' + m)\n"
        "qt = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'shiboken6', 'PyQt5', 'PyQt6', 'qtpy'))\n"
        "print(','.join(qt))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"engine imported Qt modules: {proc.stdout}"
