"""Small helpers shared by the command-line drivers in ``pipelines/``.

Every CLI is ``parse_args(argv) -> Namespace`` plus ``main(args) -> int``.
User errors (a bad name, a missing file, an invalid config) print one clear
``error:`` line on stderr and return :data:`EXIT_USAGE`; they never end in a
traceback. Runtime failures return :data:`EXIT_FAILURE`.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from typing import Callable

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def setup_logging(verbosity: int = 0) -> None:
    """INFO by default, DEBUG with ``-v``; TensorFlow's Python logger quieter."""
    level = logging.DEBUG if verbosity > 0 else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """``--config``, ``--set``, ``--out``, ``--root``, ``--overwrite``, ``-v``."""
    g = parser.add_argument_group("configuration and output")
    g.add_argument("--config", help="YAML or JSON config file (applied after the defaults)")
    g.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override one config field after --config and the flags, e.g. --set optimizer.lr=0.05",
    )
    g.add_argument("--out", help="run directory (default: runs/<model>-<dataset>[-stage]-<time>)")
    g.add_argument("--root", default="runs", help="parent directory of derived run directories (default: runs)")
    g.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    g.add_argument("-v", "--verbose", action="count", default=0, help="more logging")


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean bad input rather than a bug."""
    from tfq.configs import ConfigError
    from tfq.rundir import RunDirError

    errors: list[type[BaseException]] = [ConfigError, RunDirError, FileNotFoundError, ValueError]
    try:
        from tfq.data import DatasetUnavailableError

        errors.append(DatasetUnavailableError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def guarded(main: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Decorates a CLI ``main`` so user errors become a message and an exit code."""

    @functools.wraps(main)
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return main(args)
        except KeyboardInterrupt:
            print("interrupted; run the same command again to resume", file=sys.stderr)
            return EXIT_INTERRUPTED
        except user_errors() as e:
            if getattr(args, "verbose", 0):
                logging.getLogger(main.__module__).exception("failed")
            print(f"error: {e}", file=sys.stderr)
            return EXIT_USAGE

    return wrapper
