"""`lrm` console script: dispatches to one module per sub-command.

Every user-caused failure is an `LRMError`: printed as one line `lrm: error: ...` on stderr,
exit code 2, no traceback. Set `LRM_DEBUG=1` to see tracebacks of unexpected errors.
"""

from __future__ import annotations

import argparse
import os
import sys
from types import ModuleType

from lrm.errors import LRMError


def _commands() -> list[ModuleType]:
    # Imported here so `lrm --help` stays fast; listed explicitly (no registry).
    from lrm.cli import convert, data, demo, evaluate, fit, reconstruct, train

    return [reconstruct, evaluate, convert, demo, train, data, fit]


class UsageError(LRMError):
    """A command line argparse refuses (unknown option, a value of the wrong type, a missing
    argument): one line like every other input error, not argparse's usage dump."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # noqa: D102 (argparse's hook; sub-parsers inherit the class)
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="lrm",
        description="Large Reconstruction Model: one image to a textured 3D mesh.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in _commands():
        module.add_parser(sub)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"lrm {version('lrm')}"
    except PackageNotFoundError:
        return "lrm (not installed)"


def _one_line_warning(message, category, filename, lineno, line=None) -> str:  # noqa: ANN001
    """Warnings on the command line read like errors: `lrm: warning: ...`, one line."""
    return f"lrm: warning: {str(message).strip().splitlines()[0]}\n"


def main(argv: list[str] | None = None) -> int:
    import warnings

    if not os.environ.get("LRM_DEBUG"):
        warnings.formatwarning = _one_line_warning
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return int(args.run(args) or 0)
    except LRMError as exc:
        print(f"lrm: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lrm: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: one line unless debugging
        if os.environ.get("LRM_DEBUG"):
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(
            f"lrm: internal error: {type(exc).__name__}: {msg} (set LRM_DEBUG=1 for a traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
