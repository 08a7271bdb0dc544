"""Submit this same command to a remote cluster's job server (cluster.address = http(s)://...).

The working directory travels as the job's working_dir (``.gitignore`` is honoured), and
the submitted command is this one, arguments unchanged: running as a Ray job it joins the
cluster it runs on whatever its address says (``launch.launcher.placement``), so it is
submitted exactly once. Input and output paths are paths on the cluster, not on this machine.
"""

from __future__ import annotations

import asyncio
import shlex
import sys

from configuration.schema import AppConfig


def submit_self(address: str, config: AppConfig, argv: list[str], module: str = "jobs.ocr") -> int:
    """Run ``python -m module argv`` as a Ray job on ``address`` and follow its logs."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    entrypoint = f"python -m {module} " + shlex.join(argv)
    runtime_env = {"working_dir": ".", **config.cluster.runtime_env}
    client = JobSubmissionClient(address)
    job_id = client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env)
    print(f"submitted {job_id} to {address}: {entrypoint}", file=sys.stderr)

    async def follow() -> None:
        async for lines in client.tail_job_logs(job_id):
            print(lines, end="")

    asyncio.run(follow())
    status = client.get_job_status(job_id)
    print(f"job {job_id}: {status}", file=sys.stderr)
    return 0 if status == JobStatus.SUCCEEDED else 1
