"""Write the bundle's ``licenses/`` folder: the licence files of every bundled third-party
component, with ``INDEX.txt`` naming each one, its version and its licence.

Run by build.sh with the build environment's Python:
``python packaging/collect_licenses.py BUNDLE_DIR``. It covers the Python packages that
``lookalike`` needs at run time (its requirements, followed transitively, as installed), the
Python interpreter, Qt (LGPL-3.0, through PySide6), the libraries PyInstaller copied from the
build machine (their Debian copyright files), the DejaVu fonts and the model packs.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
# required by a dependency's metadata, left out of the bundle by lookalike.spec's EXCLUDES
NOT_BUNDLED = {"pip", "setuptools"}
LICENCE_NAME = re.compile(r"(LICEN[CS]E|COPYING|NOTICE|AUTHORS|THIRD.?PARTY)", re.I)


def runtime_distributions(name: str = "lookalike") -> list:
    """The installed distributions ``name`` needs at run time (no extras), transitively."""
    seen: dict[str, object] = {}
    todo = [name]
    while todo:
        try:
            dist = distribution(todo.pop())
        except PackageNotFoundError:
            continue
        key = dist.metadata["Name"].lower().replace("_", "-")
        if key in seen:
            continue
        seen[key] = dist
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    seen.pop(name, None)
    for key in NOT_BUNDLED:
        seen.pop(key, None)
    return sorted(seen.values(), key=lambda d: d.metadata["Name"].lower())


def licence_of(dist) -> str:
    meta = dist.metadata
    text = meta.get("License-Expression") or ""
    if not text and meta.get("License") and len(meta["License"]) < 100:
        text = meta["License"]
    if not text:
        text = ", ".join(c.split(" :: ")[-1] for c in meta.get_all("Classifier") or []
                         if c.startswith("License ::"))
    return " ".join(text.split()) or "see the files"


def copy_package_licences(dist, dest: Path) -> int:
    count = 0
    for f in dist.files or []:
        if LICENCE_NAME.search(f.name) and not f.name.endswith((".py", ".pyc")):
            src = Path(dist.locate_file(f))
            if src.is_file():
                target = dest / str(f).replace("/", "__")
                shutil.copyfile(src, target)
                count += 1
    return count


def system_libraries(bundle: Path) -> dict[str, str]:
    """Debian package of each library PyInstaller copied from this machine: {package: library}."""
    out: dict[str, list[str]] = {}
    for lib in sorted((bundle / "_internal").glob("*.so*")):
        if lib.is_symlink() or not lib.is_file():
            continue
        for folder in ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib", "/lib"):
            path = Path(folder) / lib.name
            # the same file as the system's (libpython, for one, is the build's Python's own)
            if path.exists() and path.read_bytes() == lib.read_bytes():
                found = subprocess.run(["dpkg", "-S", str(path.resolve())], capture_output=True,
                                       text=True)
                if found.returncode == 0:
                    out.setdefault(found.stdout.split(":")[0], []).append(lib.name)
                    break
    return {pkg: ", ".join(libs) for pkg, libs in out.items()}


def main(bundle: Path) -> int:
    lic = bundle / "licenses"
    shutil.rmtree(lic, ignore_errors=True)
    lic.mkdir(parents=True)
    index = ["Third-party components in this bundle and their licences. Lookalike itself is",
             "Apache-2.0. Each component's licence files are in the folder named beside it.", ""]

    def entry(folder: str, name: str, version: str, licence: str, what: str = "") -> None:
        where = f"  [{folder}/]" if folder else ""
        index.append(f"{name} {version}".strip().ljust(40) + f" {licence}{where}")
        if what:
            index.append(" " * 41 + what)

    # the Python interpreter and its standard library (and the libraries it bundles)
    py = lic / "python"
    py.mkdir()
    stdlib = f"python{sys.version_info.major}.{sys.version_info.minor}"
    stdlib_licence = Path(sys.base_prefix) / "lib" / stdlib / "LICENSE.txt"
    if stdlib_licence.is_file():
        shutil.copyfile(stdlib_licence, py / "LICENSE.txt")
    entry("python", "Python", sys.version.split()[0], "PSF-2.0")

    for dist in runtime_distributions():
        name, version = dist.metadata["Name"], dist.version
        folder = re.sub(r"[^A-Za-z0-9.]+", "-", name).lower()
        (lic / folder).mkdir()
        n = copy_package_licences(dist, lic / folder)
        if name.lower() in ("pyside6-essentials", "pyside6_essentials", "shiboken6"):
            # the wheels carry no licence file: Qt and PySide6 are used under the LGPL-3.0
            for text in ("LGPL-3", "GPL-3"):
                common = Path("/usr/share/common-licenses") / text
                if common.is_file():
                    shutil.copyfile(common, lic / folder / text)
                    n += 1
            (lic / folder / "NOTE.txt").write_text(
                "Qt 6 and PySide6 (The Qt Company) are used under the GNU LGPL v3 (LGPL-3, which\n"
                "builds on GPL-3). They are dynamically linked shared libraries in _internal/PySide6:\n"
                "you may replace them with your own build of the same version. Source code:\n"
                "https://code.qt.io (Qt) and https://code.qt.io/pyside-setup (PySide6).\n")
        if not n:
            (lic / folder / "NOTE.txt").write_text(f"{name} {version}: {licence_of(dist)} "
                                                   "(the package ships no licence file).\n")
        entry(folder, name, version, licence_of(dist))

    # libraries copied from the build machine (Debian packages) with their copyright files
    sysdir = lic / "system-libraries"
    sysdir.mkdir()
    for pkg, libs in system_libraries(bundle).items():
        src = Path("/usr/share/doc") / pkg.split(":")[0] / "copyright"
        if src.is_file():
            shutil.copyfile(src, sysdir / f"{pkg.split(':')[0]}.copyright")
        entry("system-libraries", f"Debian {pkg.split(':')[0]}", "", "see its copyright file", libs)

    # the fonts of the PDF report and the model packs
    (lic / "fonts").mkdir()
    shutil.copyfile(ROOT / "assets" / "fonts" / "LICENSE-DejaVu.txt", lic / "fonts" / "LICENSE-DejaVu.txt")
    entry("fonts", "DejaVu fonts", "", "Bitstream Vera / DejaVu licence (free)")
    (lic / "models").mkdir()
    for manifest in sorted((bundle / "_internal" / "models").glob("*/model.json")):   # the bundled packs
        pack = json.loads(manifest.read_text())
        source = pack.get("source", "?")
        source = source if isinstance(source, str) else json.dumps(source, indent=2)
        text = f"{pack['name']} {pack.get('version', '')}\nlicence: {pack.get('licence', '?')}\nsource: {source}\n"
        (lic / "models" / f"{pack['name']}.txt").write_text(text)
        entry("models", f"model pack {pack['name']}", pack.get("version", ""), pack.get("licence", "?"))

    (lic / "INDEX.txt").write_text("\n".join(index) + "\n")
    print(f"licenses: {sum(1 for _ in lic.rglob('*') if _.is_file())} files in {lic}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
