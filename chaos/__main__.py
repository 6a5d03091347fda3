"""`python -m chaos [--long] [--seed N] [--rounds N] [--accounts N] [--blob-store s3|file]`: one
chaos run; exit 1 on a violated check."""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys

from rich.console import Console

from chaos.runner import BOUNDED, LONG, run
from chaos.servers import redis_server_binary


def main(argv: list[str] | None = None) -> int:
    """Run the scenario the arguments name; print its tables; 0 when every check held."""
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--long", action="store_true", help="the longer run (minutes)")
    parser.add_argument("--seed", type=int, help="seed of the schedule (default: random)")
    parser.add_argument("--rounds", type=int, help="faults to inject (default: the scenario's)")
    parser.add_argument("--accounts", type=int, help="accounts (default: the scenario's)")
    parser.add_argument(
        "--blob-store",
        choices=["s3", "file"],
        help="where the workers store blobs (default: s3 for the bounded run, file for --long)",
    )
    args = parser.parse_args(argv)
    console = Console(highlight=False)
    if redis_server_binary() is None:
        console.print("chaos: redis-server is not installed (apt-get install redis-server)")
        return 2
    scenario = LONG if args.long else BOUNDED
    changes = {"rounds": args.rounds, "accounts": args.accounts, "blob_store": args.blob_store}
    scenario = dataclasses.replace(scenario, **{k: v for k, v in changes.items() if v is not None})
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    result = run(scenario, seed, console)
    print(result.tables, flush=True)  # already laid out as Markdown: no re-wrapping
    verdict = "passed" if result.ok else f"FAILED ({len(result.violations)} violations)"
    console.print(
        f"chaos {scenario.name}: seed {seed}, {result.seconds:.0f}s, {verdict}; "
        f"logs in {result.workdir}",
        markup=False,
    )
    for violation in result.violations:
        console.print(f"  - {violation}", markup=False)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
