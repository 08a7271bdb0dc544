"""The local Ray the job starts: idle task workers survive the gaps of a streaming run, workers run at the configured
niceness, and no prestarted worker is left unusable."""

from __future__ import annotations

import os
import time

import psutil
import pytest
import ray

from configuration.schema import ClusterConfig
from launch.ray_session import ray_connection


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


@ray.remote(num_cpus=0.1)
def niceness_and_pid() -> tuple[int, int]:
    return os.nice(0), os.getpid()


def _idle_workers() -> list[psutil.Process]:
    """Worker processes of this driver's local Ray that have run nothing (Ray titles them ``ray::IDLE``)."""
    idle = []
    for process in psutil.Process().children(recursive=True):
        try:
            if "ray::IDLE" in " ".join(process.cmdline()):
                idle.append(process)
        except psutil.NoSuchProcess:
            continue
    return idle


@pytest.mark.parametrize("runtime_env", [{}, {"env_vars": {"DOCVLM_TEST_MARK": "1"}}], ids=["no-runtime-env", "runtime-env"])
def test_workers_run_at_the_configured_niceness_and_no_prestarted_worker_is_wasted(runtime_env):
    """Ray prestarts a worker per CPU without runtime_env: used by a job without one, not started for a job with one."""
    cluster = ClusterConfig(address="local", num_cpus=2, worker_niceness=3, runtime_env=runtime_env)
    with ray_connection(cluster):
        # Ray prestarts its workers while it starts; they take a moment to boot and name
        # themselves. Wait for one per CPU (a loaded machine is slow), or 2 s where none may come.
        deadline = time.monotonic() + (2 if runtime_env else 30)
        while len(_idle_workers()) < cluster.num_cpus and time.monotonic() < deadline:
            time.sleep(0.2)
        prestarted = {process.pid for process in _idle_workers()}
        niceness, pid = ray.get(niceness_and_pid.remote())
    assert niceness == 3
    if runtime_env:
        assert not prestarted, "Ray started workers this job's runtime_env cannot use"
    else:
        assert prestarted, "Ray prestarted no worker (its default is one per CPU)"
        assert pid in prestarted, "the job's first task did not run in a worker Ray had prestarted"
