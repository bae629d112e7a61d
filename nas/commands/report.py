"""`nas report RUN_DIR`: write report.html (self-contained) and report.md with PNG plots for a run."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help="write the run's report (HTML, Markdown, PNG plots)")
    p.add_argument("run_dir", help="run directory (runs/<name>)")
    p.set_defaults(func=run)


def run(args) -> int:
    from nas.report import write_report

    print(f"report: {write_report(args.run_dir).resolve()}")
    return 0
