"""The main window's actions, menu bar and toolbar, the recent-catalogs menu and the keyboard
shortcuts dialog. The actions become ``act_*`` attributes of the window and call its slots."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QMenu, QTextBrowser, QToolBar, QVBoxLayout

from . import resources


def make_action(
    window: Any, text: str, slot, shortcut=None, icon: str | None = None, tip: str | None = None
) -> QAction:
    action = QAction(text, window)
    if icon:
        action.setIcon(resources.icon(icon))
    if shortcut is not None:
        if isinstance(shortcut, (list, tuple)):
            action.setShortcuts([QKeySequence(s) for s in shortcut])
        else:
            action.setShortcut(QKeySequence(shortcut))
    if tip:
        action.setStatusTip(tip)
        action.setToolTip(
            f"{tip} ({action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)})"
            if shortcut
            else tip
        )
    action.triggered.connect(lambda _checked=False: slot())
    window.addAction(action)  # shortcuts work even when the menu bar is hidden
    return action


def build_actions(w: Any) -> None:
    """The window's actions, as ``w.act_*``."""

    def A(*args: Any) -> QAction:
        return make_action(w, *args)

    w.act_open = A("&Open image…", w.open_images, QKeySequence.StandardKey.Open, "open", "Open query images")
    w.act_paste = A(
        "&Paste image", w.paste, QKeySequence.StandardKey.Paste, "paste",
        "Search with the image on the clipboard",
    )  # fmt: skip
    w.act_export = A(
        "&Export results…", w.export_results, "Ctrl+E", "export", "Export the results to CSV"
    )
    w.act_quit = A("&Quit", w.close, QKeySequence.StandardKey.Quit)
    w.act_new_catalog = A(
        "&New catalog…", w.new_catalog, None, "catalog", "Create an empty catalog in a folder"
    )
    w.act_open_catalog = A(
        "&Open catalog…", w.choose_catalog, "Ctrl+Shift+O", "catalog", "Open a catalog folder"
    )
    w.act_open_milvus = A(
        "Open &Milvus catalog…", w.choose_milvus_catalog, None, "catalog",
        "Open a catalog whose vectors are on a Milvus server (milvus://HOST:PORT/NAME)"
    )
    w.act_import_folder = A(
        "Import &folder…", w.import_folder, "Ctrl+I", "import", "Import a folder of product images"
    )
    w.act_import_feed = A(
        "Import product &feed…", w.import_feed, "Ctrl+Shift+I", "import",
        "Import a product feed (CSV)",
    )  # fmt: skip
    w.act_read_text = A(
        "Read &text on imported images", lambda: None, None, None,
        "Imports also read the words printed on each image (about 0.4 s an image): a pack's "
        "catalog photo then matches the words read on a phone photo of it",
    )  # fmt: skip
    w.act_read_text.setCheckable(True)
    w.act_duplicates = A(
        "Find &duplicates…", w.open_duplicates, "Ctrl+D", "compare",
        "Scan the catalog for groups of copies (duplicate listings)",
    )  # fmt: skip
    w.act_cases = A(
        "&Cases (brand protection)…", w.open_cases, "Ctrl+Shift+B", "compare",
        "Check batches of marketplace offers against the catalog and decide on each",
    )  # fmt: skip
    w.act_stats = A(
        "Catalog &statistics", w.show_stats, None, "stats", "Catalog size, facets and import errors"
    )
    w.act_remove = A(
        "&Remove selected from catalog…", w.remove_selected, None, "remove",
        "Remove the selected results from the catalog",
    )  # fmt: skip
    # Delete only where the results have the focus (not in the filters' text fields)
    w.act_remove.setShortcut(QKeySequence(QKeySequence.StandardKey.Delete))
    w.act_remove.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
    w.results_view.addAction(w.act_remove)
    w.removeAction(w.act_remove)
    w.act_next = A("&Next result", lambda: w.step_result(1), ["N", "Ctrl+Right"])
    w.act_prev = A("&Previous result", lambda: w.step_result(-1), ["P", "Ctrl+Left"])
    w.act_compare = A(
        "&Compare with query", w.toggle_compare, "C", "compare",
        "Compare the selected result with the query",
    )  # fmt: skip
    w.act_add_to_product = A(
        "&Add query photo to product", w.add_query_to_product, "Ctrl+Shift+A", "import",
        "Confirm the selected result: the query photo becomes one more photo of its product, and "
        "later photos like it find that product",
    )  # fmt: skip
    w.act_next_query = A("Ne&xt query", lambda: w.session.step_query(-1), "Alt+Down")
    w.act_prev_query = A("Pre&vious query", lambda: w.session.step_query(1), "Alt+Up")
    w.act_clear_roi = A(
        "Search &whole image", w.query_panel.view.clear_roi, "Ctrl+Backspace", "clear-region",
        "Clear the region of interest",
    )  # fmt: skip
    w.act_research = A("Search &again", lambda: w.session.search_current(force=True), "F5")
    w.act_focus_filters = A("&Filters", lambda: w.filters.category.setFocus(), "Ctrl+F")
    w.act_reveal = A("Show in &folder", w.details.reveal_in_folder, "Ctrl+Shift+R", "folder")
    w.act_open_url = A("Open product &page", w.details.open_product_url, "Ctrl+Shift+U", "link")
    w.act_shortcuts = A("&Keyboard shortcuts", w.show_shortcuts, "F1")


def build_menus(w: Any) -> None:
    """The menu bar over :func:`build_actions`' actions; the recent catalogs as ``w.recent_menu``."""
    bar = w.menuBar()
    file_menu = bar.addMenu("&File")
    for a in (w.act_open, w.act_paste, None, w.act_export, None, w.act_quit):
        file_menu.addSeparator() if a is None else file_menu.addAction(a)
    catalog_menu = bar.addMenu("&Catalog")
    catalog_menu.addAction(w.act_new_catalog)
    catalog_menu.addAction(w.act_open_catalog)
    catalog_menu.addAction(w.act_open_milvus)
    w.recent_menu = RecentCatalogsMenu("&Recent catalogs", catalog_menu)
    catalog_menu.addMenu(w.recent_menu)
    catalog_menu.addSeparator()
    catalog_menu.addAction(w.act_import_folder)
    catalog_menu.addAction(w.act_import_feed)
    catalog_menu.addAction(w.act_read_text)
    catalog_menu.addSeparator()
    catalog_menu.addAction(w.act_duplicates)
    catalog_menu.addAction(w.act_cases)
    catalog_menu.addAction(w.act_stats)
    catalog_menu.addAction(w.act_remove)
    search_menu = bar.addMenu("&Search")
    for a in (
        w.act_next, w.act_prev, w.act_compare, None, w.act_next_query, w.act_prev_query,
        None, w.act_clear_roi, w.act_research, w.act_focus_filters, None, w.act_reveal, w.act_open_url,
        w.act_add_to_product,
    ):  # fmt: skip
        search_menu.addSeparator() if a is None else search_menu.addAction(a)
    help_menu = bar.addMenu("&Help")
    help_menu.addAction(w.act_shortcuts)
    about = QAction("&About Lookalike", w)
    about.triggered.connect(w.show_about)
    help_menu.addAction(about)


def build_toolbar(w: Any) -> None:
    tools = QToolBar("Main")
    tools.setObjectName("main-toolbar")
    tools.setIconSize(QSize(20, 20))
    tools.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    for a in (
        w.act_open, w.act_paste, None, w.act_open_catalog, w.act_import_folder, w.act_stats, None,
        w.act_compare, w.act_export, w.act_cases,
    ):  # fmt: skip
        tools.addSeparator() if a is None else tools.addAction(a)
    w.addToolBar(tools)
    w.toolbar = tools


class RecentCatalogsMenu(QMenu):
    """The catalog folders opened lately, newest first, and "Clear the list"."""

    catalogChosen = Signal(str)
    clearRequested = Signal()

    def fill(self, directories: list[str]) -> None:
        self.clear()
        for directory in directories:
            action = self.addAction(directory)
            action.triggered.connect(lambda _c=False, d=directory: self.catalogChosen.emit(d))
        if directories:
            self.addSeparator()
            self.addAction("Clear the list").triggered.connect(self.clearRequested)
        self.setEnabled(bool(directories))


def shortcuts_dialog(parent: Any) -> QDialog:
    """A table of the parent's action shortcuts, and the keys that have no action."""
    dialog = QDialog(parent)
    dialog.setWindowTitle("Keyboard shortcuts")
    layout = QVBoxLayout(dialog)
    text = QTextBrowser()
    rows = []
    for action in parent.actions():
        keys = ", ".join(
            s.toString(QKeySequence.SequenceFormat.NativeText) for s in action.shortcuts()
        )
        if keys:
            rows.append(f"<tr><td><b>{keys}</b></td><td>{action.text().replace('&', '')}</td></tr>")
    for keys, what in (
        ("Del", "Remove the selected results from the catalog"),
        ("Esc", "Clear the region / leave the compare view"),
        ("+ − 0 1", "Compare view: zoom in, out, fit, actual pixels"),
    ):
        rows.append(f"<tr><td><b>{keys}</b></td><td>{what}</td></tr>")
    text.setHtml("<table cellpadding='3'>" + "".join(rows) + "</table>")
    layout.addWidget(text)
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
    buttons.rejected.connect(dialog.hide)
    layout.addWidget(buttons)
    dialog.resize(460, 520)
    return dialog
