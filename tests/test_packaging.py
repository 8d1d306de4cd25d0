"""The desktop bundle (packaging/): its data list covers every data file the code loads, the
entry script's dispatch, the desktop-menu installer, and (when a built bundle is there) the
bundle's smoke test. Building the bundle takes minutes, so CI does not: see docs/packaging.md."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_bundle_{name}", PACKAGING / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _bundled() -> set[Path]:
    """Where each data file lands inside the bundle's _internal/, relative to it."""
    return {Path(dest) / Path(src).name for src, dest in _load("bundle_data").data_files(ROOT)}


def _extra_packs() -> set[Path]:
    """The same for the extra-packs tarball (the model packs left out of the bundle)."""
    return {Path(dest) / Path(src).name for src, dest in _load("bundle_data").extra_pack_files(ROOT)}


def test_bundle_carries_every_package_data_file():
    # pyproject's package-data is what a wheel installs beside the code; the bundle needs the
    # same files (the export scripts in models/ aside: they are not run by the app)
    tomllib = pytest.importorskip("tomllib")          # Python 3.11+
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    expected = set()
    for package, patterns in config.items():
        folder = ROOT / package.replace(".", "/")
        for pattern in patterns:
            expected |= {p.relative_to(ROOT) for p in folder.glob(pattern) if p.suffix != ".py"}
    assert expected, "no package data found"
    # every file is in the bundle or, for the non-default model packs, in the extra-packs tarball
    assert expected - _bundled() - _extra_packs() == set()
    assert not _bundled() & _extra_packs()


def test_bundle_carries_the_default_model_pack_and_extras_the_others():
    from engine import model

    bundle_data = _load("bundle_data")
    assert bundle_data.BUNDLED_PACKS == (model.DEFAULT_PACK,)
    bundled_packs = {p.parent.name for p in _bundled() if p.parts[0] == "models"}
    extra_packs = {p.parent.name for p in _extra_packs()}
    assert bundled_packs == {model.DEFAULT_PACK}
    assert extra_packs == set(model.available_packs()) - {model.DEFAULT_PACK}
    for pack in bundled_packs | extra_packs:            # each with its weights, manifest and labels
        files = {p.name for p in _bundled() | _extra_packs() if p.parent.name == pack}
        assert {"model.onnx", "model.json", "labels.txt"} <= files, pack


def test_bundle_carries_the_folders_the_code_loads_from():
    from desktop.resources import assets_dir
    from engine import case_report, model, paths

    bundled_dirs = {path.parent for path in _bundled()}
    for folder in (paths.models_dir() / model.DEFAULT_PACK, assets_dir(), assets_dir() / "icons", case_report.FONTS,
                   Path(case_report.__file__).parent / "templates"):
        assert folder.resolve().relative_to(ROOT) in bundled_dirs, folder


def test_packaging_folder_does_not_shadow_the_packaging_library():
    # packaging/ at the repository root must stay a plain folder (no __init__.py): pytest puts
    # the root on sys.path, and `import packaging` must still find the PyPI library
    assert not (PACKAGING / "__init__.py").exists()
    import packaging

    assert Path(packaging.__file__).resolve().parent != PACKAGING


@pytest.mark.parametrize("argv0, expected", [("/opt/Lookalike/lookalike-gui", "usage: lookalike gui"),
                                             ("/opt/Lookalike/lookalike", "usage: lookalike [")])
def test_entry_dispatches_on_its_name(argv0, expected, monkeypatch, capsys):
    entry = _load("lookalike_entry")
    monkeypatch.setattr(sys, "argv", [argv0, "--help"])
    with pytest.raises(SystemExit) as done:
        entry.main()
    assert done.value.code == 0
    assert expected in capsys.readouterr().out


def test_entry_runs_python_style_c_and_m(monkeypatch, capsys):
    entry = _load("lookalike_entry")
    monkeypatch.setattr(sys, "argv", ["lookalike", "-c", "import sys; print('args', sys.argv[1:])", "x"])
    assert entry.main() == 0
    assert "args ['x']" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", ["lookalike", "-m", "cli", "--version"])
    with pytest.raises(SystemExit):
        entry.main()
    assert "lookalike " in capsys.readouterr().out


def test_install_desktop_entry(tmp_path):
    bundle = tmp_path / "Lookalike 1.0"       # a space: the Exec line must quote the path
    (bundle / "icons").mkdir(parents=True)
    for name in ("install-desktop-entry.sh", "lookalike.desktop"):
        (bundle / name).write_bytes((PACKAGING / name).read_bytes())
    for size in (48, 128, 256):
        (bundle / "icons" / f"lookalike-{size}.png").write_bytes(b"png")
    (bundle / "icons" / "lookalike.svg").write_bytes(b"svg")
    env = {"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data"), "PATH": "/usr/bin:/bin"}
    subprocess.run(["sh", str(bundle / "install-desktop-entry.sh")], env=env, check=True, capture_output=True)
    entry = (tmp_path / "data" / "applications" / "lookalike.desktop").read_text()
    assert f'Exec="{bundle}/lookalike-gui" %F' in entry
    assert f"TryExec={bundle}/lookalike-gui" in entry
    assert "Icon=lookalike" in entry
    if shutil.which("desktop-file-validate"):       # desktop-file-utils, where installed
        subprocess.run(["desktop-file-validate", str(tmp_path / "data" / "applications" / "lookalike.desktop")],
                       check=True, capture_output=True)
    assert (tmp_path / "data" / "icons" / "hicolor" / "256x256" / "apps" / "lookalike.png").is_file()
    subprocess.run(["sh", str(bundle / "install-desktop-entry.sh"), "--remove"], env=env, check=True,
                   capture_output=True)
    assert not (tmp_path / "data" / "applications" / "lookalike.desktop").exists()


def _built_bundle() -> Path | None:
    named = os.environ.get("LOOKALIKE_BUNDLE")
    if named:
        return Path(named)
    from engine import __version__

    tarball = ROOT / "dist" / f"Lookalike-{__version__}-linux-x86_64.tar.gz"
    return tarball if tarball.is_file() else None


@pytest.mark.slow
def test_built_bundle_smoke(luma_dir):
    artefact = _built_bundle()
    if artefact is None:
        pytest.skip("no built bundle: bash packaging/build.sh (or LOOKALIKE_BUNDLE=TARBALL_OR_DIR)")
    done = subprocess.run(["bash", str(PACKAGING / "smoke_test.sh"), str(artefact)], capture_output=True,
                          text=True, timeout=900, env={**os.environ, "SMOKE_IMAGES": str(luma_dir / "images")})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "smoke: PASS" in done.stdout
