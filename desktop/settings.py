"""Persistent settings (QSettings, INI format so tests can redirect it with QSettings.setPath)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

ORGANIZATION = "Lookalike"
APPLICATION = "Lookalike"
MAX_RECENT = 8


class Settings:
    """Typed access to the few values the app remembers between runs."""

    def __init__(self, qsettings: QSettings | None = None):
        self.q = qsettings or QSettings(
            QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORGANIZATION, APPLICATION
        )

    # -- generic helpers -------------------------------------------------------------------
    def _get(self, key: str, default, kind):
        value = self.q.value(key, default)
        if value is None:
            return default
        try:
            if kind is bool:
                return (
                    value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
                )
            return kind(value)
        except (TypeError, ValueError):
            return default

    def sync(self) -> None:
        self.q.sync()

    # -- catalogs ----------------------------------------------------------------------------
    def recent_catalogs(self) -> list[str]:
        value = self.q.value("catalogs/recent", [])
        if isinstance(value, str):
            value = [value] if value else []
        return [str(v) for v in (value or []) if v]

    def add_recent_catalog(self, directory: str | Path) -> list[str]:
        directory = str(Path(directory))
        recent = [d for d in self.recent_catalogs() if d != directory]
        recent.insert(0, directory)
        del recent[MAX_RECENT:]
        self.q.setValue("catalogs/recent", recent)
        self.q.setValue("catalogs/last", directory)
        return recent

    def remove_recent_catalog(self, directory: str | Path) -> None:
        recent = [d for d in self.recent_catalogs() if d != str(Path(directory))]
        self.q.setValue("catalogs/recent", recent)

    def clear_recent_catalogs(self) -> None:
        self.q.setValue("catalogs/recent", [])

    def last_catalog(self) -> str | None:
        value = self.q.value("catalogs/last", None)
        return str(value) if value else None

    # -- search knobs ------------------------------------------------------------------------
    def result_count(self) -> int:
        return self._get("search/count", 60, int)

    def set_result_count(self, n: int) -> None:
        self.q.setValue("search/count", int(n))

    def min_score(self) -> float:
        return self._get("search/min_score", 0.0, float)

    def set_min_score(self, value: float) -> None:
        self.q.setValue("search/min_score", float(value))

    def result_group(self) -> str:
        """"product" (one result per product, the default) or "image" (every matching image)."""
        value = self._get("search/group", "product", str)
        return value if value in ("product", "image") else "product"

    def set_result_group(self, group: str) -> None:
        self.q.setValue("search/group", str(group))

    # -- folders remembered by file dialogs --------------------------------------------------
    def read_text_on_import(self) -> bool:
        return self._get("import/read_text", False, bool)

    def set_read_text_on_import(self, on: bool) -> None:
        self.q.setValue("import/read_text", bool(on))

    def last_dir(self, purpose: str) -> str:
        return self._get(f"dirs/{purpose}", str(Path.home()), str)

    def set_last_dir(self, purpose: str, directory: str | Path) -> None:
        self.q.setValue(f"dirs/{purpose}", str(directory))

    # -- window state ------------------------------------------------------------------------
    def window_blob(self, name: str) -> QByteArray | None:
        value = self.q.value(f"window/{name}")
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    def set_window_blob(self, name: str, blob: QByteArray) -> None:
        self.q.setValue(f"window/{name}", blob)
