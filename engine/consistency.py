"""`lookalike check [--repair]`: verify a catalog (database, index, embeddings, files, thumbnails)
and repair what can be repaired.

What is checked (each check gives one line: ok, note or problem):

* the SQLite file: ``PRAGMA quick_check`` (``integrity_check`` with ``--full``) and the tables and
  indexes that cannot be read (engine.catalog_recovery.diagnose; a damaged database is reported
  and nothing else is checked, its rows cannot be trusted; one that cannot even be opened is
  reported by :func:`damaged_report`), foreign keys, the catalog version against the versions
  stamped on rows;
* embeddings: one size, one model, finite and unit length;
* tombstones (``removed``) that name images still present;
* the saved index: readable, its version against the database (behind is normal after a crash or
  while another process imports: it is brought up to date on next use; ahead is a problem), then,
  brought up to date in memory, exactly the database's image ids, with vectors equal to the
  stored embeddings;
* image files: present, same size and modification time as when indexed;
* the thumbnail cache: no orphan, empty or damaged thumbnails, no leftover temporary files
  (only files named as the cache names them are looked at: anything else is not Lookalike's);
* local features (ORB keypoints and descriptors, and those of the mirrored image): a note for the
  images lacking them (catalogs made before they existed); search computes missing ones on use,
  the duplicate finder verifies mirrored copies only where they are stored.

Repairs (``--repair``, under the catalog's write lock): rebuild the index from the stored
embeddings, re-embed images whose stored embedding is damaged or whose file changed (needs the
model), forget vanished files (only with ``--forget-missing``), drop orphan tombstones,
thumbnails and temporary files, compute the missing local features from the image files
(``feature_store.backfill``). A damaged database: ``REINDEX`` where only SQLite's indexes are
damaged and SQLite can rebuild them, else every readable row is copied into a new database that
replaces it (engine.catalog_recovery; the damaged file is kept as ``catalog.db.damaged-<time>``),
the index is rebuilt, and the lost images whose files are present are indexed again.

Only files Lookalike creates are ever deleted (engine.catalog_marker.is_own_name, the thumbnail
cache's own names). An emptied database (no tables, the marker or index files still there) is
reported by :func:`emptied_report` as every record lost; ``--repair`` opens it with
``Catalog.open(recreate_emptied=True)``, which starts it again empty under the catalog's id and
deletes the stale index.

Exit status: 0 healthy (or everything found was repaired), 1 problems remain, 2 the catalog
cannot be opened or is busy.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from .catalog import Catalog
from .catalog_marker import is_own_temp
from .catalog_recovery import Recovery, diagnose, recover_folder
from .errors import CatalogDamagedError, CatalogError, LookalikeError
from .index import VectorIndex
from .thumbnail_cache import digest_of

OK, NOTE, PROBLEM = "ok", "note", "problem"
EXAMPLES = 5
RECOVER = ("copy every readable row into a new database (the damaged file is kept next to it), "
           "rebuild the index")


@dataclass
class Finding:
    check: str                   # short id: "sqlite", "index", "files-missing", ...
    status: str                  # ok | note | problem
    message: str                 # one line
    count: int = 0
    examples: list[str] = field(default_factory=list)
    repair: str | None = None    # what --repair does about it (None: nothing automatic)
    repaired: bool = False


@dataclass
class CheckReport:
    catalog: str
    images: int | None = 0        # None: the database could not be read (emptied, damaged)
    version: int = 0
    findings: list[Finding] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)      # repairs done
    seconds: float = 0.0

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.status == PROBLEM and not f.repaired]

    @property
    def healthy(self) -> bool:
        return not self.problems

    def add(self, check: str, status: str, message: str, *, count: int = 0, examples=(),
            repair: str | None = None) -> Finding:
        f = Finding(check, status, message, count, [str(e) for e in list(examples)[:EXAMPLES]], repair)
        self.findings.append(f)
        return f

    def find(self, check: str) -> Finding | None:
        return next((f for f in self.findings if f.check == check and f.status != OK), None)

    def to_json(self) -> dict:
        return {"catalog": self.catalog, "images": self.images, "version": self.version,
                "healthy": self.healthy, "findings": [asdict(f) for f in self.findings],
                "actions": self.actions, "seconds": round(self.seconds, 3)}

    def text(self) -> str:
        lines = [f"catalog {self.catalog} (" + (f"{self.images} images, version {self.version})"
                                                if self.images is not None else "database unreadable)")]
        for f in self.findings:
            tag = {OK: "ok     ", NOTE: "note   ", PROBLEM: "FIXED  " if f.repaired else "PROBLEM"}[f.status]
            line = f"{tag} {f.message}"
            if f.examples and f.status != OK:
                line += " (e.g. " + ", ".join(f.examples[:3]) + ")"
            if f.status == PROBLEM and not f.repaired and f.repair:
                line += f"; --repair: {f.repair}"
            lines.append(line.replace("\n", "\\n"))
        for a in self.actions:
            lines.append(f"repaired {a}")
        if self.healthy:
            lines.append(f"healthy ({self.seconds:.1f} s)")
        else:
            fixable = sum(1 for f in self.problems if f.repair)
            lines.append(f"{len(self.problems)} problem(s) found ({fixable} repairable with "
                         f"`lookalike check --repair`) in {self.seconds:.1f} s")
        return "\n".join(lines)


# ---------------------------------------------------------------------- checking
def emptied_report(directory) -> CheckReport:
    """The report of a catalog whose database is empty or missing (EmptiedCatalogError): it
    cannot be opened, so nothing else is checked."""
    report = CheckReport(str(directory), images=None)
    report.add("database-emptied", PROBLEM, "catalog.db is empty or missing: every record (products, "
               "images, embeddings, decisions) is lost; restore it from a backup if you have one",
               repair="start the database again empty (same catalog id), delete the stale index; "
                      "then import the images again")
    return report


def check_catalog(catalog: Catalog, *, full: bool = False, files: bool = True) -> CheckReport:
    """Verify ``catalog`` without changing anything. A damaged database is reported (what SQLite
    finds, the tables affected) and nothing else is checked: its rows cannot be trusted."""
    t0 = time.perf_counter()
    report = CheckReport(str(catalog.directory), images=None)
    try:
        if _check_sqlite(catalog, report, full):
            report.images = catalog.count_images()
            report.version = catalog.version
            _check_versions(catalog, report)
            _check_embeddings(catalog, report)
            _check_index(catalog, report)
            if files:
                _check_files(catalog, report)
            _check_thumbnails(catalog, report, set(catalog.content_hashes().values()))
            _check_temp_files(catalog, report)
            _check_local_features(catalog, report)
    except CatalogDamagedError as exc:           # damage that quick_check did not see
        report.add("sqlite", PROBLEM, f"database damaged: {exc.reason}", repair=RECOVER)
    report.seconds = time.perf_counter() - t0
    return report


def damaged_report(exc: CatalogDamagedError) -> CheckReport:
    """The report on a catalog whose database cannot even be opened (``exc`` from Catalog.open)."""
    report = CheckReport(str(os.path.dirname(exc.path)), images=None)
    report.add("sqlite", PROBLEM, f"database unreadable: {exc.reason}", repair=RECOVER)
    return report


def _check_sqlite(catalog: Catalog, report: CheckReport, full: bool) -> bool:
    """The database's integrity and foreign keys; False when it is damaged."""
    pragma = "integrity_check" if full else "quick_check"
    damage = diagnose(catalog.db.conn, full)
    if damage is not None:
        repair = ("REINDEX (rebuilds SQLite's indexes from the tables); where SQLite cannot, "
                  + RECOVER) if damage.indexes_only else RECOVER
        report.add("sqlite", PROBLEM, f"database damaged ({damage.describe()}): "
                   f"{len(damage.errors)} errors from {pragma}", count=len(damage.errors),
                   examples=damage.errors, repair=repair)
        return False
    report.add("sqlite", OK, f"database integrity ({pragma})")
    fk = catalog.health.foreign_key_problems()
    if fk:
        report.add("foreign-keys", PROBLEM, f"{len(fk)} images link to products that do not exist",
                   count=len(fk), examples=[f"image {r[1]}" for r in fk],
                   repair="unlink them from the missing products")
    return True


def _check_versions(catalog: Catalog, report: CheckReport) -> None:
    top = catalog.health.highest_row_version()
    if top > report.version:
        report.add("version", PROBLEM, f"rows are stamped with version {top}, above the catalog's "
                   f"{report.version}", repair="raise the catalog version")
    ghosts = catalog.health.stale_tombstones()
    if ghosts:
        report.add("tombstones", PROBLEM, f"{len(ghosts)} images are marked removed but still present",
                   count=len(ghosts), examples=ghosts, repair="drop the stale removal marks, rebuild the index")


def _check_embeddings(catalog: Catalog, report: CheckReport) -> None:
    if report.images == 0:
        report.add("embeddings", OK, "no images yet")
        return
    sizes = catalog.health.embedding_sizes()
    dim = sizes[0][0] // 4
    models = catalog.model_ids()
    if len(models) > 1:
        report.add("models", PROBLEM, f"embeddings of {len(models)} models are mixed: "
                   + ", ".join(f"{m} ({n})" for m, n in models.items()),
                   count=len(models), repair=None)
    bad = _damaged_embeddings(catalog, sizes)
    if bad:
        paths = [p for _, p in sorted(catalog.paths_of(bad[:EXAMPLES]).items())]
        report.add("embeddings", PROBLEM, f"{len(bad)} stored embeddings are damaged (wrong size, "
                   "not finite or not unit length)", count=len(bad), examples=paths,
                   repair="re-embed those images from their files")
    else:
        model = next(iter(models)) if models else "?"
        report.add("embeddings", OK, f"{report.images} embeddings of {dim} dims, model {model}")


def _damaged_embeddings(catalog: Catalog, sizes: list[tuple[int, int]]) -> list[int]:
    """Ids of the images whose stored embedding is not of the most common size (``sizes``:
    catalog.health.embedding_sizes()), not finite or not unit length."""
    dim = sizes[0][0] // 4
    bad = catalog.health.embeddings_not_of_size(dim * 4) if len(sizes) > 1 else []
    for ids, vecs in catalog.iter_embeddings(dim=dim):
        with np.errstate(over="ignore", invalid="ignore"):     # damaged bytes: huge or NaN
            norms = np.linalg.norm(vecs, axis=1)
        bad += ids[~np.isfinite(norms) | (np.abs(norms - 1.0) > 1e-3)].tolist()
    return bad


def _check_milvus(catalog: Catalog, report: CheckReport) -> None:
    """A Milvus catalog's collection against the database: count, missing and extra ids."""
    store = catalog.vectors
    repair = "rebuild the collection from the stored embeddings"
    try:
        foreign = store.owner_problem()
    except CatalogError:                     # unreachable: reported below as before
        foreign = None
    if foreign:                              # another catalog's rows: nothing here may touch them
        report.add("index-owner", PROBLEM, f"{store.uri}: {foreign}")
        return
    try:
        since = store.reflected_version()
        coll = store.ids()
        schema = store.schema_problem()
    except CatalogError as exc:
        report.add("index-file", PROBLEM, str(exc), repair=repair)
        return
    if schema:
        report.add("index-file", PROBLEM, schema, repair=repair)
        return
    db_ids = set(catalog.image_ids())
    if since < catalog.version:              # not the writer: compare what the collection reflects
        report.add("index-version", NOTE, f"collection is at version {since}, the database at "
                   f"{catalog.version} (the writer brings it up to date)", repair="bring it up to date")
        changed = set(catalog.image_ids(since)) | set(catalog.removed_since(since))
        db_ids, coll = db_ids - changed, coll - changed
    missing, extra = sorted(db_ids - coll), sorted(coll - db_ids)
    if missing or extra:
        report.add("index-ids", PROBLEM, f"{store.uri}: collection and database disagree: {len(missing)} "
                   f"images not in the collection, {len(extra)} rows with no image",
                   count=len(missing) + len(extra), examples=[*missing, *extra], repair=repair)
        return
    report.add("index", OK, f"{store.uri}: collection {store.collection}: {len(coll)} vectors = "
               f"{len(db_ids)} images, same ids")


def _check_index(catalog: Catalog, report: CheckReport) -> None:
    if getattr(catalog.vectors, "backend", None):          # its vectors in Milvus
        _check_milvus(catalog, report)
        return
    path = catalog.vectors.path
    dim = catalog.embedding_dim
    if dim is None:
        if path.exists():
            report.add("index", NOTE, "index file present but the catalog holds no images")
        else:
            report.add("index", OK, "no images, no index")
        return
    projection = catalog.vectors.projection()
    if not path.exists() or not VectorIndex.meta_path(path).exists():
        report.add("index-file", NOTE, "no saved index (it is built from the stored embeddings on "
                   "next use)", repair="build and save it")
        index = VectorIndex.create(dim, capacity=report.images, projection=projection)
        index.version = -1                       # (reported above, not as "behind")
    else:
        try:
            index = VectorIndex.load(path, dim, projection)
        except CatalogError as exc:
            report.add("index-file", PROBLEM, f"saved index unusable: {exc}",
                       repair="rebuild it from the stored embeddings")
            index = VectorIndex.create(dim, capacity=report.images, projection=projection)
            index.version = -1
    mine = catalog.meta("catalog_id")
    if index.catalog_id and mine and index.catalog_id != mine:
        report.add("index-identity", PROBLEM, f"saved index belongs to another catalog ({index.catalog_id}; "
                   f"this one is {mine})", repair="rebuild it from the stored embeddings")
        return
    with catalog.vectors.snapshot():
        version = catalog.version
        if index.version > version:
            report.add("index-version", PROBLEM, f"saved index is at version {index.version}, ahead of "
                       f"the database ({version}): the database is older than its index (changes lost with a "
                       "damaged or missing catalog.db-wal, or a database restored from a backup); "
                       "images added since are no longer in the catalog: index their folders again",
                       repair="rebuild it from the stored embeddings")
            return
        if 0 <= index.version < version:
            report.add("index-version", NOTE, f"saved index is at version {index.version}, the database at "
                       f"{version} (an interrupted or running import; it is brought up to date on next "
                       "use)", repair="bring it up to date and save it")
        catalog.vectors.sync(index, save=False)
        db_ids = set(catalog.image_ids())
        idx_ids = index.ids()
        missing, extra = sorted(db_ids - idx_ids), sorted(idx_ids - db_ids)
        if missing or extra:
            report.add("index-ids", PROBLEM, f"index and database disagree: {len(missing)} images not in "
                       f"the index, {len(extra)} index entries with no image",
                       count=len(missing) + len(extra), examples=[*missing, *extra],
                       repair="rebuild the index from the stored embeddings")
            return
        differ = 0
        for ids, vecs in catalog.iter_embeddings(dim=dim):
            ids = [i for i in ids.tolist() if i in idx_ids]
            if ids:
                got = index.vectors(ids)
                want = index.graph_vectors(catalog.embeddings(ids))
                with np.errstate(over="ignore", invalid="ignore"):   # damaged: inf, NaN differ
                    differ += int((~(np.abs(got - want).max(axis=1) <= 1e-4)).sum())
        if differ:
            report.add("index-vectors", PROBLEM, f"{differ} index vectors differ from the stored embeddings"
                       + (" (the index of another catalog?)" if differ == len(db_ids) else ""),
                       count=differ, repair="rebuild the index from the stored embeddings")
            return
    report.add("index", OK, f"index: {len(index)} vectors = {len(db_ids)} images, same ids and vectors")


def _check_files(catalog: Catalog, report: CheckReport) -> None:
    missing, changed = [], []
    for image_id, path, size, mtime in catalog.iter_file_stamps():
        try:
            st = os.stat(path)
        except OSError:
            missing.append((image_id, path))
            continue
        if size is not None and (st.st_size != size or mtime is None or abs(st.st_mtime - mtime) > 1e-6):
            changed.append((image_id, path))
    if missing:
        report.add("files-missing", PROBLEM, f"{len(missing)} image files are gone from disk",
                   count=len(missing), examples=[p for _, p in missing],
                   repair="with --forget-missing: forget them")
    if changed:
        report.add("files-changed", PROBLEM, f"{len(changed)} image files changed since they were indexed",
                   count=len(changed), examples=[p for _, p in changed], repair="re-index them")
    if not missing and not changed:
        report.add("files", OK, f"{report.images} image files present and unchanged")


def _check_thumbnails(catalog: Catalog, report: CheckReport, hashes: set[str]) -> None:
    orphan, damaged, total = [], [], 0
    for p in catalog.thumbnails.files():
        kind = catalog.thumbnails.own_kind(p)
        if kind is None:                     # not a name the cache writes: not Lookalike's file
            continue
        total += 1
        digest = digest_of(p)
        if kind == "temp" or digest not in hashes:
            orphan.append(p)
            continue
        try:
            with open(p, "rb") as fh:
                head = fh.read(3)
        except OSError:
            head = b""
        if head != b"\xff\xd8\xff":
            damaged.append(p)
    if orphan or damaged:
        report.add("thumbnails", PROBLEM, f"thumbnail cache: {len(orphan)} orphan or leftover and "
                   f"{len(damaged)} damaged files of {total}", count=len(orphan) + len(damaged),
                   examples=[p.name for p in (orphan + damaged)], repair="delete them (they are re-made on use)")
    else:
        report.add("thumbnails", OK, f"thumbnail cache: {total} files, all in use")


def _check_temp_files(catalog: Catalog, report: CheckReport) -> None:
    tmp = sorted(p.name for p in catalog.directory.iterdir() if p.is_file() and is_own_temp(p.name))
    if tmp:
        report.add("temp-files", NOTE, f"{len(tmp)} temporary files left by an interrupted save or recovery",
                   count=len(tmp), examples=tmp, repair="delete them")


def _check_local_features(catalog: Catalog, report: CheckReport) -> None:
    from .features import FEATURES_VERSION

    damaged = catalog.health.damaged_local_features()
    if damaged:
        report.add("local-features-damaged", PROBLEM,
                   f"{len(damaged)} images have damaged stored local features (verification "
                   "computes them again from the file on each use)", count=len(damaged),
                   examples=[p for _, p in damaged], repair="compute them again from the image files")
    lacking = catalog.images_without_local_features(FEATURES_VERSION, complete=True)
    if not lacking:
        report.add("local-features", OK, "local features stored for every image")
    else:
        report.add("local-features", NOTE,
                   f"{len(lacking)} images lack stored local features, their mirrored descriptors "
                   "or their dense keypoints (search and `lookalike dupes` compute what is missing "
                   "from the files, more slowly; without mirrored descriptors `lookalike dupes` "
                   "misses mirrored copies); "
                   "`lookalike index` or `lookalike check --repair` computes them", count=len(lacking),
                   examples=[p for _, p in lacking], repair="compute them from the image files")


# ---------------------------------------------------------------------- repairing
def repair_catalog(catalog: Catalog, *, forget_missing: bool = False, full: bool = False,
                   model=None, progress=None, recovery: Recovery | None = None) -> CheckReport:
    """Check, repair what can be repaired, check again. Holds the write lock throughout (raises
    CatalogBusyError when another process writes). Returns the second report, with the repairs
    done in ``actions`` and the findings of the first check that were fixed marked ``repaired``."""
    t0 = time.perf_counter()
    with catalog.writer():
        first = before = check_catalog(catalog, full=full)
        actions: list[str] = [recovery.summary()] if recovery is not None else []
        recovered = recovery
        if before.find("sqlite"):
            recovered = _repair_database(catalog, full, actions) or recovered
            before = check_catalog(catalog, full=full)
        if before.find("sqlite"):                # beyond repair: nothing else can be trusted
            after = before
        else:
            after = _repair_rest(catalog, before, actions, recovered, forget_missing=forget_missing,
                                 full=full, model=model, progress=progress)
    if catalog.recreated:                    # Catalog.open(recreate_emptied=True) did it
        first.findings.insert(0, emptied_report(catalog.directory).findings[0])
        actions.insert(0, "started the emptied database again empty (same catalog id) and deleted its "
                          "stale index: import the images again (`lookalike index ...`)")
    remaining = {f.check for f in after.findings if f.status == PROBLEM}
    fixed: list[Finding] = []
    if recovery is not None:
        fixed.append(Finding("sqlite", PROBLEM, "database unreadable", repair=RECOVER))
    for report in ((first,) if before is first else (first, before)):
        fixed += [f for f in report.findings if f.status == PROBLEM and f.check not in remaining
                  and f.check not in {g.check for g in fixed}]
    for f in fixed:
        f.repaired = True
    after.findings = fixed + after.findings
    after.actions = actions
    after.seconds = time.perf_counter() - t0
    return after


def _repair_database(catalog: Catalog, full: bool, actions: list[str]) -> Recovery | None:
    """A damaged database: REINDEX when only SQLite's indexes are damaged, else recover every
    readable row into a new database (engine.catalog_recovery) and use that one."""
    damage = diagnose(catalog.db.conn, full)
    if damage is None:
        return None
    if damage.indexes_only:
        try:
            catalog.health.reindex()
            if diagnose(catalog.db.conn, full) is None:
                actions.append("REINDEX of the database")
                return None
        except CatalogDamagedError:
            pass
    catalog.reconnect()
    recovery = recover_folder(catalog.directory, lock_held=True)
    actions.append(recovery.summary())
    return recovery


def _repair_rest(catalog: Catalog, before: CheckReport, actions: list[str],
                 recovery: Recovery | None, *, forget_missing: bool, full: bool, model,
                 progress) -> CheckReport:
    """The repairs of a catalog whose database is sound (``recovery``: it was just recovered);
    returns the check after them."""
    rebuild = recovery is not None
    reembed: list[tuple[str, str | None]] = []     # (path, product id to keep)
    if recovery is not None:                       # lost images whose files are here: re-index
        reembed += [(p, pid) for p, pid in recovery.lost_images if os.path.isfile(p)]
        left = (recovery.lost("images") or 0) - len(reembed)
        if left > 0:
            actions.append(f"{left} lost images cannot be re-indexed from here (files gone or "
                           "unknown): re-run `lookalike index` on their folders")
    if before.find("foreign-keys"):
        catalog.health.unlink_missing_products()
        actions.append("unlinked images from missing products")
    if before.find("version"):
        catalog.health.raise_version()
        actions.append("raised the catalog version")
        rebuild = True
    if before.find("tombstones"):
        n = catalog.health.drop_stale_tombstones()
        actions.append(f"dropped {n} stale removal marks")
        rebuild = True
    missing = before.find("files-missing")
    if missing and forget_missing:
        n = catalog.remove_missing()
        actions.append(f"forgot {n} images whose files are gone")
    if before.find("embeddings"):
        reembed += _drop_damaged_embeddings(catalog, actions)
        rebuild = True
    if before.find("files-changed"):
        reembed += [(p, None) for _, p, _s, _m in _changed_files(catalog)]
    if rebuild or any(before.find(c) for c in ("index-file", "index-identity", "index-version",
                                                "index-ids", "index-vectors", "index")):
        if catalog.count_images():
            catalog.vectors.rebuild()
            actions.append(f"rebuilt the index from {catalog.count_images()} stored embeddings")
        elif catalog.vectors.path.exists():
            catalog.vectors.delete_files()
            actions.append("deleted the index of an empty catalog")
    if reembed:
        _reembed(catalog, reembed, model, actions, progress)
    catalog.vectors.save()                   # leave a saved index that is up to date
    if before.find("thumbnails"):
        actions.append(_clean_thumbnails(catalog, set(catalog.content_hashes().values())))
    damaged = before.find("local-features-damaged")
    if damaged:
        catalog.health.drop_local_features([i for i, _ in catalog.health.damaged_local_features()])
    if before.find("local-features") or damaged:
        from .feature_store import backfill
        from .features import FEATURES_VERSION

        n = backfill(catalog, progress=progress)
        left = len(catalog.images_without_local_features(FEATURES_VERSION, complete=True))
        actions.append(f"computed the local features of {n} images"
                       + (f" ({left} unreadable)" if left else ""))
    if before.find("temp-files"):
        n = 0
        for p in catalog.directory.iterdir():
            if p.is_file() and is_own_temp(p.name):
                p.unlink(missing_ok=True)
                n += 1
        actions.append(f"deleted {n} leftover temporary files")
    return check_catalog(catalog, full=full)


def _changed_files(catalog: Catalog):
    out = []
    for image_id, path, size, mtime in catalog.iter_file_stamps():
        try:
            st = os.stat(path)
        except OSError:
            continue
        if size is not None and (st.st_size != size or mtime is None or abs(st.st_mtime - mtime) > 1e-6):
            out.append((image_id, path, size, mtime))
    return out


def _drop_damaged_embeddings(catalog: Catalog, actions: list[str]) -> list[tuple[str, str | None]]:
    """Forget images whose stored embedding is damaged; returns (path, product id) to re-embed."""
    bad = _damaged_embeddings(catalog, catalog.health.embedding_sizes())
    records = catalog.image_records(bad)
    catalog.remove_images(bad)
    actions.append(f"dropped {len(bad)} damaged embeddings")
    return [(r["path"], r["product_id"]) for r in records]


def _reembed(catalog: Catalog, items: list[tuple[str, str | None]], model, actions: list[str],
             progress) -> None:
    from .ingest import ingest
    from .session import load_model_for

    present = [p for p, _ in items if os.path.isfile(p)]
    links = [(p, pid) for p, pid in items if pid and os.path.isfile(p)]
    if not present:
        return
    try:
        model = model or load_model_for(catalog)
    except LookalikeError as exc:
        actions.append(f"could not re-embed {len(present)} images: {exc}")
        return
    result = ingest(catalog, model, present, progress=progress)
    catalog.link_images(links)
    text = (f"re-indexed {len(present)} files: {result.added + result.updated} re-embedded, "
            f"{result.unchanged} with unchanged content")
    if result.failed:
        text += f", {len(result.failed)} failed ({result.failed[0][0]}: {result.failed[0][1]})"
    actions.append(text)


def _clean_thumbnails(catalog: Catalog, hashes: set[str]) -> str:
    n = 0
    for p in list(catalog.thumbnails.files()):
        kind = catalog.thumbnails.own_kind(p)
        if kind is None:                     # not Lookalike's: never deleted
            continue
        digest = digest_of(p)
        keep = kind == "thumbnail" and digest in hashes
        if keep:
            try:
                with open(p, "rb") as fh:
                    keep = fh.read(3) == b"\xff\xd8\xff"
            except OSError:
                keep = False
        if not keep:
            p.unlink(missing_ok=True)
            n += 1
    return f"deleted {n} orphan, leftover or damaged thumbnails"

