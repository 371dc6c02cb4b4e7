"""``voicebot dialplan check FILE...`` and ``voicebot dialplan graph FILE [--format dot|mermaid]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from voicebot.dialog.errors import DialplanError
from voicebot.dialog.graph import to_dot, to_mermaid
from voicebot.dialog.loader import load_dialplan


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("dialplan", help="check dialplans and draw their state diagrams")
    sub = parser.add_subparsers(dest="dialplan_command", metavar="ACTION", required=True)

    check = sub.add_parser("check", help="validate dialplan files; print every problem as file:line")
    check.add_argument("files", nargs="+", metavar="FILE")
    check.set_defaults(func=cmd_check)

    graph = sub.add_parser("graph", help="write the state diagram as Graphviz DOT or Mermaid")
    graph.add_argument("file", metavar="FILE")
    graph.add_argument("--format", choices=("dot", "mermaid"), default="dot", help="default: dot")
    graph.add_argument("-o", "--output", metavar="OUT", help="write here instead of standard output")
    graph.set_defaults(func=cmd_graph)


def cmd_check(args: argparse.Namespace) -> int:
    failed = 0
    for file in args.files:
        try:
            plan = load_dialplan(file)
        except DialplanError as exc:
            failed += 1
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            continue
        print(f"{file}: ok ({len(plan.states)} states, start '{plan.start}')")
    return 1 if failed else 0


def cmd_graph(args: argparse.Namespace) -> int:
    try:
        plan = load_dialplan(args.file)
    except DialplanError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    text = to_dot(plan) if args.format == "dot" else to_mermaid(plan)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0
