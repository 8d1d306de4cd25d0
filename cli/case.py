"""``lookalike case``: brand-protection cases. Check a batch of suspect offers (folders, images or
an offers CSV) against the catalog, decide on each, and write an evidence report."""

from __future__ import annotations

import json
import os
import sys
import threading

from cli.common import (
    INTERRUPTED,
    OK,
    PROBLEMS,
    Progress,
    add_catalog_option,
    add_model_option,
    cancel_on_interrupt,
    clip,
    one_line,
    open_catalog,
    print_table,
    warn,
)


def register(sub) -> None:
    p = sub.add_parser("case", help="check batches of suspect offers, decide on them, write evidence reports",
                       description="Brand-protection cases: offers (images of marketplace listings) checked "
                                   "against the catalog, with a decision per offer and an evidence report.")
    p.set_defaults(handler=run)
    cases = p.add_subparsers(dest="case_command", metavar="ACTION", required=True)

    c = cases.add_parser("check", help="check offers into a case (only new or changed ones when run again)",
                         description="Search each offer's image in the catalog (with verification), measure "
                                     "the edits against its best match, and keep the results in the case. "
                                     "Offers already checked with the same file are skipped.")
    add_catalog_option(c)
    add_model_option(c)
    c.add_argument("name", metavar="NAME", help="the case (made on its first check)")
    c.add_argument("paths", nargs="+", metavar="PATH",
                   help="folders (every image under them), images, or offers CSVs (an image column, "
                        "e.g. image_path, and any other columns: offer_url, seller, price...)")
    c.add_argument("--json", action="store_true", help="one JSON object per offer checked, as it is checked")
    c.add_argument("--recheck", action="store_true", help="check every offer again, even unchanged ones")
    c.add_argument("--watch", action="store_true",
                   help="then keep watching the folders among PATH: new images are checked as they "
                        "arrive, until Ctrl+C")
    c.add_argument("--limit", type=int, default=30, metavar="N",
                   help="show at most N offers in the text output (default 30; 0 = all)")
    c.add_argument("--quiet", "-q", action="store_true", help="no progress bar")

    d = cases.add_parser("decide", help="record a decision on an offer")
    add_catalog_option(d)
    d.add_argument("name", metavar="NAME")
    d.add_argument("offer", metavar="OFFER", help="the offer's number (as `case show` lists it), key or image")
    d.add_argument("decision", metavar="DECISION", help="infringing, not, unsure, or none to clear it")
    d.add_argument("--note", help="a note kept with the decision (replaces the previous note)")

    s = cases.add_parser("show", help="list a case's offers, strongest match first")
    add_catalog_option(s)
    s.add_argument("name", metavar="NAME")
    s.add_argument("--json", action="store_true", help="one JSON object per offer")
    s.add_argument("--csv", metavar="FILE", help="write the offers as CSV (- for stdout): our columns, then "
                                                  "the offers CSV's own")
    s.add_argument("--limit", type=int, default=0, metavar="N", help="at most N offers (0 = all)")

    ls = cases.add_parser("list", help="the catalog's cases")
    add_catalog_option(ls)
    ls.add_argument("--json", action="store_true")

    r = cases.add_parser("report", help="write the evidence report (HTML or PDF)",
                         description="A self-contained evidence report of the offers decided infringing "
                                     "(or, with --min-score, of every offer scoring at least that): per "
                                     "offer its image and data, the catalog image it copies, the aligned "
                                     "pair and their difference, the edits, the score, and SHA-256 of "
                                     "both files.")
    add_catalog_option(r)
    r.add_argument("name", metavar="NAME")
    r.add_argument("-o", "--output", required=True, metavar="FILE", help="FILE.html or FILE.pdf")
    r.add_argument("--min-score", metavar="NAME|VALUE",
                   help="every offer at or above this score (copy, same-product, similar or a number) "
                        "instead of the offers decided infringing")
    r.add_argument("--quiet", "-q", action="store_true", help="no progress bar")

    rm = cases.add_parser("delete", help="delete a case and its decisions")
    add_catalog_option(rm)
    rm.add_argument("name", metavar="NAME")


def run(args) -> int:
    handlers = {"check": run_check, "decide": run_decide, "show": run_show, "list": run_list,
                "report": run_report, "delete": run_delete}
    return handlers[args.case_command](args)


# ---------------------------------------------------------------------- check
def run_check(args) -> int:
    from engine.case_check import check_offers, read_offers
    from engine.case_store import check_name
    from engine.session import load_model_for

    name = check_name(args.name)
    offers, problems = read_offers(args.paths)
    for source, reason in problems:
        print(one_line(f"error: {source}: {reason}"), file=sys.stderr)
    sources = [os.path.abspath(p) for p in args.paths]
    with open_catalog(args, create=False) as catalog:
        model = load_model_for(catalog, args.model)
        cancel = threading.Event()

        def printed(record) -> None:
            if args.json:
                print(json.dumps(record.to_json(), ensure_ascii=False), flush=True)

        with Progress(disable=args.quiet, show="file") as progress, cancel_on_interrupt(cancel, "the current offer"):
            report = check_offers(catalog, model, name, offers, recheck=args.recheck, progress=progress,
                                  cancel=cancel, on_checked=printed, sources=sources)
        for r in report.failed:
            print(one_line(f"error: {r.image_path}: {r.error}"), file=sys.stderr)
        if not args.json:
            _print_offers(report.checked, args.limit)
        copies = sum(r.strength.endswith("copy") for r in report.checked)
        print(f"case {name!r}: {len(report.checked)} offers checked ({copies} copies, {len(report.failed)} "
              f"failed), {report.skipped} already checked, in {report.seconds:.1f} s "
              f"({report.images_per_second:.1f} offers/s)", file=sys.stderr)
        if report.cancelled:
            print("lookalike: interrupted: the offers checked so far are kept; run the same command to "
                  "resume", file=sys.stderr)
            return INTERRUPTED
        if args.watch:
            code = _watch(catalog, model, name, args, cancel)
            if code is not None:
                return code
        return PROBLEMS if (report.failed or problems) else OK


def _watch(catalog, model, name: str, args, cancel: threading.Event) -> int | None:
    from engine.case_watch import watch_case

    folders = [p for p in args.paths if os.path.isdir(p)]
    if not folders:
        warn("--watch: none of the paths is a folder; nothing to watch")
        return None

    def checked(record) -> None:
        if args.json:
            print(json.dumps(record.to_json(), ensure_ascii=False), flush=True)
        else:
            best = record.best or {}
            print(one_line(f"#{record.number} {record.image_path}: "
                           + (f"error: {record.error}" if record.error else
                              f"{record.score or 0:.3f} {record.strength or 'no match'} {best.get('path', '')}")),
                  flush=True)

    print(f"watching {', '.join(folders)} for new offers (Ctrl+C to stop)", file=sys.stderr)
    with cancel_on_interrupt(cancel, "watching"):
        watch_case(catalog, model, name, folders, cancel=cancel, on_checked=checked)
    return INTERRUPTED


def _print_offers(records, limit: int) -> None:
    records = sorted(records, key=lambda r: (r.score is None, -(r.score or 0), r.number))
    shown = records if limit <= 0 else records[:limit]
    rows = []
    for r in shown:
        best = r.best or {}
        rows.append([r.number, "" if r.score is None else f"{r.score:.3f}", r.strength or ("error" if r.error else ""),
                     ", ".join((r.edits or {}).get("edits", [])), clip(os.path.basename(r.image_path), 30),
                     clip(os.path.basename(best.get("path") or ""), 30), best.get("product_id") or "",
                     _decision_text(r)])
    if rows:
        print_table(rows, ["#", "score", "match", "edits", "offer image", "catalog image", "product", "decision"])
    if len(shown) < len(records):
        print(f"… {len(records) - len(shown)} more offers (`lookalike case show NAME`, or --limit 0)")


def _decision_text(record) -> str:
    from engine.case_store import DECISION_LABELS

    if not record.decision:
        return ""
    text = DECISION_LABELS[record.decision]
    return text + (" (on an earlier file)" if record.decided_on_other_file else "")


# ---------------------------------------------------------------------- decide, show, list, delete
def run_decide(args) -> int:
    from engine.case_store import parse_decision
    from engine.errors import LookalikeError

    word = args.decision.strip().lower()
    try:
        decision = None if word in ("none", "clear", "-") else parse_decision(word)
    except ValueError as exc:
        raise LookalikeError(f"{exc} (or none to clear it)") from None
    with open_catalog(args, create=False) as catalog:
        record = catalog.case_store.decide(args.name, args.offer, decision, note=args.note)
    what = _decision_text(record) or "no decision"
    print(f"offer #{record.number} ({record.offer}): {what}" + (f" · note: {record.note}" if record.note else ""))
    return OK


def run_show(args) -> int:
    if args.csv:
        from engine.export import export_case, open_output

        with open_catalog(args, create=False, readonly=True) as catalog, \
                open_output(args.csv, protect=catalog.directory) as out:
            n = export_case(catalog, args.name, out)
        if args.csv != "-":
            print(f"wrote {n} offers to {args.csv}", file=sys.stderr)
        return OK
    with open_catalog(args, create=False, readonly=True) as catalog:
        records = catalog.case_store.offers(args.name)
        summary = catalog.case_store.summary(args.name)
    if args.json:
        for r in records[: args.limit or None]:
            print(json.dumps(r.to_json(), ensure_ascii=False))
        return OK
    _print_offers(records, args.limit)
    print(_summary_line(summary))
    return OK


def _summary_line(s) -> str:
    from engine.case_store import DECISION_LABELS, DECISIONS

    decided = ", ".join(f"{s.decided[d]} {DECISION_LABELS[d]}" for d in DECISIONS if s.decided.get(d))
    return (f"case {s.name!r}: {s.offers} offers, {s.checked} checked, {s.failed} failed; "
            f"decided: {decided or 'none'}")


def run_list(args) -> int:
    with open_catalog(args, create=False, readonly=True) as catalog:
        store = catalog.case_store
        summaries = [store.summary(n) for n in store.names()]
    if args.json:
        print(json.dumps([vars(s) for s in summaries], ensure_ascii=False))
    elif not summaries:
        print("no cases yet: `lookalike case check NAME FOLDER` makes one")
    else:
        for s in summaries:
            print(_summary_line(s))
    return OK


def run_delete(args) -> int:
    with open_catalog(args, create=False) as catalog:
        n = catalog.case_store.delete(args.name)
    print(f"deleted case {args.name!r} and its {n} offers")
    return OK


# ---------------------------------------------------------------------- report
def run_report(args) -> int:
    from engine.case_report import select_offers, write_report
    from engine.errors import LookalikeError
    from engine.export import check_output
    from engine.scoring import resolve_threshold

    try:
        min_score = None if args.min_score is None else resolve_threshold(args.min_score)
    except ValueError as exc:
        raise LookalikeError(str(exc)) from None
    with open_catalog(args, create=False, readonly=True) as catalog:
        check_output(args.output, protect=catalog.directory)
        offers = select_offers(catalog, args.name, min_score=min_score)
        if not offers:
            raise LookalikeError(f"case {args.name!r}: no offer " + (
                "decided infringing (decide with `lookalike case decide`, or use --min-score)"
                if min_score is None else f"scores {min_score:.3f} or more"))
        cancel = threading.Event()
        with Progress(disable=args.quiet, unit="offer") as progress, cancel_on_interrupt(cancel, "the current offer"):
            written = write_report(catalog, args.name, offers, args.output, progress=progress, cancel=cancel)
    if written is None:
        print("lookalike: interrupted: no report written", file=sys.stderr)
        return INTERRUPTED
    print(f"wrote the evidence report of {len(offers)} offers to {written.path}"
          + "".join(f"\nwarning: {w}" for w in written.warnings))
    return OK
