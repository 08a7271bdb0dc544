"""The local Ray the job starts: idle task workers survive the gaps of a streaming run."""

from __future__ import annotations

import os
import time

import psutil
import pytest
import ray

from configuration.schema import ClusterConfig
from jobs.ray_session import ray_connection


@ray.remote(num_cpus=1.5)
class CpuHolder:
    """Reserves most of the CPUs, as the OCR actor pools do."""

    def ready(self) -> bool:
        return True


@ray.remote(num_cpus=0.1)
def worker_pid() -> int:
    return os.getpid()


def _task_after_idle_gap(idle_workers_kept: int | None) -> tuple[float, float]:
    """Run a small task, idle past Ray's 1 s idle-worker limit, run another; (gap start, its process start)."""
    cluster = ClusterConfig(address="local", num_cpus=2, idle_workers_kept=idle_workers_kept)
    with ray_connection(cluster):
        holder = CpuHolder.remote()
        ray.get(holder.ready.remote())
        ray.get(worker_pid.remote())
        gap_started = time.time()
        time.sleep(3)
        pid = ray.get(worker_pid.remote())
        return gap_started, psutil.Process(pid).create_time()


@pytest.mark.parametrize("kept", [8, None], ids=["kept", "ray-default"])
def test_idle_task_workers_are_kept_between_tasks(kept):
    gap_started, process_started = _task_after_idle_gap(kept)
    if kept:
        assert process_started < gap_started, "the task after the gap had to start a new worker process"
    else:  # Ray's default (the unreserved CPUs, here 0) kills idle workers: why the setting exists
        assert process_started > gap_started
