"""One report over experiments and stage runs: a table, plots, the environment and the commands.

Examples::

    python -m pipelines.report runs/tiny-20261122-160000
    python -m pipelines.report runs/resnet18-cifar10-exp --out docs/resnet18 --overwrite
    python -m pipelines.report runs/smallcnn-digits-ptq-20261122-150000 runs/smallcnn-digits-qat-...

Each RUN_DIR is an experiment directory (``python -m pipelines.experiment``)
or a single stage's run directory (train, ptq, qat, sensitivity, mixed,
bench); it is recognized by the ``kind`` in its ``run.json``. Writes
``report.md``, ``report.html`` (self-contained, plots embedded),
``report.json`` and the PNG plots into ``--out`` (default: ``report/`` inside
the first RUN_DIR). An existing report is replaced only with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import tfq  # noqa: F401
from tfq.cli import EXIT_OK, guarded, setup_logging

log = logging.getLogger("pipelines.report")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m pipelines.report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="experiment or stage run directories")
    p.add_argument("--out", help="output directory (default: RUN_DIR/report for the first RUN_DIR)")
    p.add_argument("--title", help="report title (default: from the models and datasets)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report in --out")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    return p.parse_args(argv)


@guarded
def main(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    from tfq.reporting.build import build_report

    out = Path(args.out) if args.out else Path(args.run_dirs[0]) / "report"
    written = build_report(args.run_dirs, out, overwrite=args.overwrite, title=args.title)
    print(f"wrote {written['markdown']}, {written['html'].name}, {written['json'].name} and "
          f"{len(written['plots'])} plot(s): {', '.join(p.name for p in written['plots'])}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(parse_args(sys.argv[1:])))


__all__ = ["main", "parse_args"]
