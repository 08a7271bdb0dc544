"""Connect to Ray the way the config says: join a cluster, or start a local one on 127.0.0.1.

Token authentication stays on: a local Ray started here generates and uses a token
(Ray >= 2.59 default); joining a cluster uses RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH /
~/.ray/auth_token as Ray itself resolves them.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator

import ray

from configuration.schema import ClusterConfig
from launch.launcher import placement


def resolve_address(cluster: ClusterConfig) -> str | None:
    """The Ray address to join, or None to start a local Ray (``launch.launcher.placement`` decides)."""
    where = placement(cluster)
    if where.kind == "submit":
        raise ValueError(f"{where.address} is a job server address: submit the command there (launch.launcher), do not join it")
    return where.address if where.kind == "join" else None


def _stay_on_loopback(node_ip_address: str) -> None:
    """Keep a local Ray asked for 127.0.0.1 on 127.0.0.1.

    Ray replaces a loopback node address by the machine's outward IP (so that other nodes
    could join), which leaves GCS and raylet listening on every interface. Its only switch
    is the one it uses on macOS and Windows (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``): set it
    for the processes Ray spawns and for this one, where Ray read it at import.
    """
    if node_ip_address not in ("127.0.0.1", "localhost", "::1"):
        return
    from ray._private import ray_constants

    os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


def local_system_config(cluster: ClusterConfig) -> dict:
    """Ray settings of a local Ray started by the job: worker niceness, idle workers kept, prestarted workers.

    Niceness is a Ray setting, not ``RAY_worker_niceness`` in the job's runtime_env:
    Ray starts one idle worker per CPU with no runtime_env when it starts, and a job
    whose runtime_env differs (env vars included) can use none of them. For a job that
    does carry a runtime_env those workers are not started at all; each would hold
    ~80 MB and a share of the start-up CPU for nothing.
    """
    config: dict = {}
    if cluster.worker_niceness is not None:  # Ray's default is 15, below the driver and Ray's own processes
        config["worker_niceness"] = cluster.worker_niceness
    if cluster.idle_workers_kept is not None:
        # Ray kills idle workers beyond this after 1 s; its default is the unreserved CPUs.
        config["num_workers_soft_limit"] = cluster.idle_workers_kept
    if cluster.runtime_env:
        config["prestart_worker_first_driver"] = False
    return config


@contextlib.contextmanager
def ray_connection(cluster: ClusterConfig) -> Iterator[str]:
    """Yield a description of the Ray we are on; shut down only what we started or joined."""
    if ray.is_initialized():
        yield "existing ray session"
        return
    address = resolve_address(cluster)
    kwargs: dict = {"namespace": cluster.namespace, "logging_level": logging.WARNING}
    if cluster.runtime_env:
        kwargs["runtime_env"] = cluster.runtime_env
    if address is None:
        _stay_on_loopback(cluster.node_ip_address)
        kwargs["_system_config"] = local_system_config(cluster)
        kwargs.update(
            address="local",
            _node_ip_address=cluster.node_ip_address,
            include_dashboard=cluster.include_dashboard,
            dashboard_host=cluster.dashboard_host,
            num_cpus=cluster.num_cpus,
            num_gpus=cluster.num_gpus,
            object_store_memory=cluster.object_store_memory,
        )
        description = f"local Ray on {cluster.node_ip_address}"
    else:
        kwargs["address"] = address
        description = f"Ray cluster at {address}"
    ray.init(**kwargs)
    try:
        yield description
    finally:
        ray.shutdown()
