"""The frame of the jobs that run in one process without Ray (evaluate, compress, flops).

They work on a laptop and as a Ray job's entrypoint alike, and take ``--address`` like
every job (``launch.launcher``): a job server's ``http(s)://`` address (or ``RAY_ADDRESS``
naming one) submits the same command line there once; any other address runs it here,
since these jobs need no Ray. A bad argument (a missing path, a model that does not load,
settings out of range) is a ``UsageError``: printed as one line naming the input, exit
code 2, nothing written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable


class UsageError(Exception):
    """A bad argument: printed, exit code 2."""


def run_command(
    module: str,
    parser: argparse.ArgumentParser,
    argv: list[str] | None,
    run: Callable[[argparse.Namespace], dict[str, Any]],
    show: Callable[[dict[str, Any]], str],
    json_out: Callable[[argparse.Namespace], Path | None] = lambda args: None,
) -> dict[str, Any]:
    """Parse ``argv``, ``run``, write the result as JSON where ``json_out`` says, print ``show(result)``; return it.

    Submitted to a job server instead when ``--address`` says so: the exit code is then the job's.
    """
    from configuration.schema import AppConfig, ClusterConfig
    from documents.writer import atomic_write_json
    from launch.launcher import ADDRESS_HELP, placement, running_job_id

    parser.add_argument("--address", default="auto", help=ADDRESS_HELP + "; this job needs no Ray, so only a job server matters")
    args = parser.parse_args(argv)
    cluster = ClusterConfig(address=args.address)
    where = placement(cluster)
    if running_job_id() is None and where.kind == "submit":
        from launch.submit import submit_self

        raise SystemExit(submit_self(where.address or "", AppConfig(cluster=cluster), _argv(argv), module=module))
    try:
        result = run(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    out = json_out(args)
    if out is not None:
        atomic_write_json(out, result)
    print(show(result))
    return result


def _argv(argv: list[str] | None) -> list[str]:
    return list(argv) if argv is not None else sys.argv[1:]
