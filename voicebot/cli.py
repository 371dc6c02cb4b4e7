"""``voicebot`` command line.

Each part of voicebot contributes its sub-commands from a ``cli`` module with a
``register(subparsers)`` function that adds parsers whose ``func`` default takes the parsed
arguments and returns an exit code. The list below is the whole command surface.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Callable, Sequence

from voicebot import __version__
from voicebot import logging as vlog

# Modules that add sub-commands, in help order.
COMMAND_MODULES = (
    "voicebot.appcli",  # run, call, calls
    "voicebot.stt.cli",  # stt-server
    "voicebot.dialog.cli",  # dialplan check / graph
    "voicebot.campaign.cli",  # campaign create / start / pause / resume / cancel / status / export
)


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # the parent package is not there either
        return False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voicebot", description="Telephony voice robot.")
    parser.add_argument("--version", action="version", version=f"voicebot {__version__}")
    parser.add_argument("--log-level", default="info", help="debug, info, warning, error (default: info)")
    parser.add_argument(
        "--log-format", choices=("auto", "json", "console"), default="auto",
        help="log output; auto is JSON unless stderr is a terminal",
    )
    parser.add_argument("--redact-pii", action="store_true", help="replace pii.* log values with [redacted]")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        # A part that is not built yet contributes no commands.
        if not _module_exists(module_name):
            continue
        module = importlib.import_module(module_name)
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    json = {"auto": None, "json": True, "console": False}[args.log_format]
    vlog.configure(level=args.log_level, json=json, redact_pii=args.redact_pii)
    return func(args)


if __name__ == "__main__":
    sys.exit(main())
