"""The command line every job shares, and where a job runs.

Every entrypoint (``jobs.ocr``, the training jobs, the sweep) builds its config the same
way, lowest to highest precedence:

1. the schema's defaults;
2. config files: each ``--config`` in order (later ones win), else ``./ray_config.yaml``
   when it exists;
3. shortcut flags (``--dpi``, ``--address``, ``--workers``, ``--name``...), each one config key;
4. ``--set KEY=VALUE`` overrides, in the order given.

So ``--set`` always has the last word: ``--address local --set cluster.address=http://h:8265``
submits to ``h``. The job prints this order above its effective config.

Where the job then runs (``placement``):

* inside a Ray job (``ray job submit``, or a command this launcher submitted): on that
  job's cluster, whatever ``cluster.address`` says. A submitted command carries the user's
  own arguments, ``--address http://...`` included; this rule is what keeps it from
  submitting itself again;
* ``cluster.address`` (or, with ``auto``, ``RAY_ADDRESS``) is a job server's
  ``http(s)://`` address: this same command line is submitted there once and its logs
  followed;
* otherwise it joins the given Ray address or starts a local Ray (``launch.ray_session``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Mapping

from configuration import ConfigError, load_config
from configuration.loader import to_yaml
from configuration.schema import AppConfig, ClusterConfig

DEFAULT_CONFIG = Path("ray_config.yaml")

#: Set by Ray's job supervisor for a job's entrypoint process (its runtime_env and metadata).
RAY_JOB_ENV_VAR = "RAY_JOB_CONFIG_JSON_ENV_VAR"

PRECEDENCE = "later wins: schema defaults < config files < shortcut flags < --set"

ADDRESS_HELP = "auto | local | ray://host:10001 | host:6379 | http://host:8265 (submits this command once as a Ray job)"


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """``--config``, ``--set`` and ``--address``: the options every job takes."""
    parser.add_argument("--config", action="append", type=Path, default=None,
                        help=f"config file(s), later ones win (default: ./{DEFAULT_CONFIG} if present)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config field, e.g. --set ocr.render.dpi=200 (value parsed as YAML); "
                        "applied last, so it wins over config files and shortcut flags")
    parser.add_argument("--address", help=ADDRESS_HELP)


def config_paths(args: argparse.Namespace) -> list[Path]:
    if args.config is not None:
        return list(args.config)
    return [DEFAULT_CONFIG] if DEFAULT_CONFIG.exists() else []


def shortcut_overrides(args: argparse.Namespace, shortcuts: Mapping[str, str]) -> list[str]:
    """``key=value`` for every shortcut flag that was given (``shortcuts``: argparse dest -> config key).

    Values are JSON-quoted so YAML keeps them as given (``--pages 1-3`` stays text).
    """
    overrides = []
    for dest, key in {"address": "cluster.address", **shortcuts}.items():
        value = getattr(args, dest, None)
        if value is not None:
            overrides.append(f"{key}={json.dumps(value)}")
    return overrides


def load_job_config(args: argparse.Namespace, shortcuts: Mapping[str, str] = {}) -> AppConfig:
    """The job's config, built in the documented order (module docstring)."""
    return load_config(config_paths(args), [*shortcut_overrides(args, shortcuts), *args.overrides])


def describe_sources(args: argparse.Namespace, shortcuts: Mapping[str, str] = {}) -> str:
    """The comment printed above the effective config: the order, and what was applied at each step."""
    files = ", ".join(str(path) for path in config_paths(args)) or "none"
    flags = ", ".join(shortcut_overrides(args, shortcuts)) or "none"
    sets = ", ".join(args.overrides) or "none"
    return f"# effective config ({PRECEDENCE})\n# config files: {files}\n# shortcut flags: {flags}\n# --set: {sets}\n"


def running_job_id() -> str | None:
    """The submission id when this process is a Ray job's entrypoint, else None."""
    payload = os.environ.get(RAY_JOB_ENV_VAR)
    if payload is None:
        return None
    try:
        metadata = json.loads(payload).get("metadata") or {}
    except (ValueError, AttributeError):
        metadata = {}
    return str(metadata.get("job_submission_id") or "unknown")


def is_job_server_address(address: str) -> bool:
    return address.startswith(("http://", "https://"))


@dataclass(frozen=True)
class Placement:
    """``submit``: hand this command to a job server; ``join``: connect to a running Ray; ``local``: start one."""

    kind: Literal["submit", "join", "local"]
    address: str | None = None


def placement(cluster: ClusterConfig) -> Placement:
    """Where a job with this cluster config runs, from this process (see the module docstring)."""
    if running_job_id() is not None:
        return Placement("join", os.environ.get("RAY_ADDRESS") or "auto")
    if cluster.address == "local":
        return Placement("local")
    address = os.environ.get("RAY_ADDRESS") if cluster.address == "auto" else cluster.address
    if not address:
        return Placement("local")
    return Placement("submit" if is_job_server_address(address) else "join", address)


def launch(
    module: str,
    argv: list[str] | None,
    parser: argparse.ArgumentParser,
    run: Callable[[argparse.Namespace, AppConfig], int],
    shortcuts: Mapping[str, str] = {},
    print_only: Callable[[argparse.Namespace], bool] = lambda args: False,
) -> int:
    """Parse, build the config, print it, then submit the command to a job server or ``run`` it here.

    Exit code 2 for a config that does not validate (the message names the key).
    """
    args = parser.parse_args(argv)
    try:
        config = load_job_config(args, shortcuts)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(describe_sources(args, shortcuts) + to_yaml(config), file=sys.stderr)
    if print_only(args):
        return 0
    where = placement(config.cluster)
    job_id = running_job_id()
    if job_id is not None and config.cluster.address not in ("auto", where.address):
        print(f"running as Ray job {job_id}: joining its cluster (cluster.address {config.cluster.address} not used)",
              file=sys.stderr)
    if where.kind == "submit":
        from launch.submit import submit_self

        return submit_self(where.address or "", config, argv if argv is not None else sys.argv[1:], module=module)
    return run(args, config)

