"""The `fastai-aum` console command."""
from __future__ import annotations

import argparse
import sys

from . import __version__

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastai-aum", description="Exact AUROC and the AUM loss for fastai.")
    parser.add_argument("--version", action="version", version=f"fastai-aum {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `fastai-aum` and `python -m fastai_aum`."""
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
