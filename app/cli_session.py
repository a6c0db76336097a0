"""``implicit-studio session check|repair|backup``: look after a session folder.

``check`` reads the session (read-only) and lists what is wrong: damaged database pages, runs whose
record is partly unreadable, results whose file is missing or does not match its hash (exit 1 when
anything is). ``repair`` copies every readable run and file into a new session and leaves the old
one untouched. ``backup`` writes an importable archive of the session (or, for a damaged one, a
plain copy of its files).
"""

from __future__ import annotations

from pathlib import Path

from app.cli import EXIT_FAILED, EXIT_OK, PROG, UsageError, _session_path, new_parser


def cmd_session(argv: list[str]) -> int:
    parser = new_parser(prog=f"{PROG} session", description="Check, repair or back up a session.")
    parser.add_argument("action", choices=("check", "repair", "backup"),
                        help="check: report problems (exit 1 if any); repair: copy everything "
                             "readable into a new session; backup: write an archive")
    parser.add_argument("--session", metavar="PATH", help="the session folder (default: the default session)")
    parser.add_argument("--out", metavar="PATH",
                        help="repair: the new session folder (default: beside the old one); "
                             "backup: the archive file (default: beside the session)")
    parser.add_argument("--no-hashes", action="store_true",
                        help="check: do not read every file to compare it with its hash")
    args = parser.parse_args(argv)
    folder = _session_path(args.session)
    if not (folder / "session.db").is_file():
        raise UsageError(f"no session at {folder}")
    from storage import StorageError
    from storage import maintenance

    try:
        if args.action == "check":
            report = maintenance.check_session(folder, verify_hashes=not args.no_hashes)
            print(report)
            return EXIT_OK if report.ok else EXIT_FAILED
        if args.action == "repair":
            print(maintenance.repair_session(folder, Path(args.out).expanduser() if args.out else None))
            return EXIT_OK
        written = maintenance.backup_session(folder, Path(args.out).expanduser() if args.out else None)
    except StorageError as exc:
        raise UsageError(str(exc)) from None
    kind = "an archive" if written.is_file() else "a copy of its files (the session is damaged)"
    print(f"Backed up {folder} as {kind}: {written}")
    return EXIT_OK
