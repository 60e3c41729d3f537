"""python -m support.stack start|status|stop|leftovers (scripts/stack_local.sh runs this)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from support.stack import procs
from support.stack.native import DEFAULT_STATE, Stack, StackConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/stack_local.sh", description=__doc__)
    parser.add_argument("command", choices=["start", "status", "stop", "leftovers"])
    parser.add_argument("--state", default=str(DEFAULT_STATE), help="state file of the stack")
    parser.add_argument("--workers", type=int, default=2, help="Spark workers (default 2)")
    parser.add_argument(
        "--smtp",
        choices=["receiver", "mailpit"],
        default="receiver",
        help="receiver: the tests' SMTP receiver (mail in <folder>/receivers/mail.jsonl); "
        "mailpit: compose's Mailpit with its web UI (built with go install the first time)",
    )
    parser.add_argument("--no-replay", action="store_true", help="do not start the Silver_ML replay")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a docker-compose.yaml .env setting, e.g. --set REPLAY_SPEED=1",
    )
    parser.add_argument("--keep", action="store_true", help="keep the stack's folder after stop")
    args = parser.parse_args(argv)
    state = Path(args.state)
    if args.command == "leftovers":
        print(json.dumps(procs.stack_ids()))
        return 0
    if args.command == "start":
        if state.exists():
            print(
                f"a stack is recorded in {state}: stop it first (scripts/stack_local.sh stop)",
                file=sys.stderr,
            )
            return 1
        settings = dict(item.split("=", 1) for item in args.set)
        config = StackConfig(args.workers, settings, args.smtp, not args.no_replay, keep=args.keep)
        info = Stack(state).start(config)
        print(json.dumps(info, indent=2))
        af = info["endpoints"]["airflow"]
        print(f"\nAirflow UI {af['url']} (user {af['user']}, password {af['password']})", file=sys.stderr)
        print(
            f"Spark master {info['endpoints']['spark']['ui']}; stop with: scripts/stack_local.sh stop",
            file=sys.stderr,
        )
        return 0
    if not state.exists():
        print("no stack recorded: not running")
        return 0 if args.command == "stop" else 3
    stack = Stack.load(state)
    if args.command == "status":
        status = stack.status()
        print(json.dumps({"status": status, "endpoints": stack.info["endpoints"]}, indent=2))
        return 0 if all(v["alive"] for k, v in status.items() if not k.startswith("_")) else 1
    report = stack.stop()
    print(json.dumps(report, indent=2))
    return 0 if not report["leftovers_after"] else 1


if __name__ == "__main__":
    sys.exit(main())
