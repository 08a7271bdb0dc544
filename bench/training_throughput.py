"""Training samples/s with 1 worker against 2 workers (Ray Train + DeepSpeed), and peak memory per worker.

    python -m bench.training_throughput [--steps 40] [--micro-batch 16] [--gpu]

Both runs train the reference model (``train.reference`` shape) on the same synthetic
lines for the same number of steps with the same global batch: 1 worker with all the CPUs
and micro-batch 2B, against 2 workers with half the CPUs each and micro-batch B. The
throughput is that of the last checkpoint window (start-up, DeepSpeed initialisation and
the first window are left out). Peak memory is each worker's peak RSS (and peak CUDA
memory with ``--gpu``). The two runs happen one after the other in one process, so the
ratio compares like with like on a noisy machine.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table


def run(workers: int, cpus: int, steps: int, micro_batch: int, data: Path, storage: Path, gpu: bool) -> dict:
    from actors.train_worker import WorkerJob
    from configuration.schema import AppConfig
    from launch.training import fit

    config = AppConfig()
    train = config.train
    train.scaling = train.scaling.model_copy(update={"num_workers": workers, "cpus_per_worker": cpus / workers, "use_gpu": gpu})
    train.optim = train.optim.model_copy(
        update={"micro_batch_size": micro_batch * 2 // workers, "max_steps": steps, "warmup_steps": 5, "learning_rate": 1e-3}
    )
    train.checkpoint = train.checkpoint.model_copy(update={"every_steps": steps // 2, "storage_path": str(storage), "max_failures": 0})
    train.data = train.data.model_copy(update={"eval_samples": 0})
    if gpu:
        train.deepspeed = train.deepspeed.model_copy(update={"precision": "bf16"})
    job = WorkerJob(kind="reference", settings=train, data_dir=str(data))
    state = fit(job, config, f"bench-{workers}w", storage / f"out-{workers}")
    return state["metrics"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--micro-batch", type=int, default=16, help="per-worker micro-batch of the 2-worker run")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs shared by the workers")
    parser.add_argument("--gpu", action="store_true", help="one GPU per worker")
    args = parser.parse_args(argv)

    import ray

    from training.data.synthetic import SyntheticConfig, write_splits

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_splits(SyntheticConfig(), root / "data", {"train": 4 * args.micro_batch * args.steps, "val": 16})
        ray.init(address="local", _node_ip_address="127.0.0.1", num_cpus=args.cpus, include_dashboard=False)
        try:
            one = run(1, args.cpus, args.steps, args.micro_batch, root / "data", root / "runs", args.gpu)
            two = run(2, args.cpus, args.steps, args.micro_batch, root / "data", root / "runs", args.gpu)
        finally:
            ray.shutdown()
    table = Table(title=f"training throughput, global batch {2 * args.micro_batch}, {args.steps} steps")
    for column in ("workers", "samples/s", "peak RSS per worker (MB)"):
        table.add_column(column)
    for workers, metrics in ((1, one), (2, two)):
        gpu = f" (GPU {metrics['peak_gpu_mb']:.0f})" if "peak_gpu_mb" in metrics else ""
        table.add_row(str(workers), f"{metrics['samples_per_s']:.1f}", f"{metrics['peak_rss_mb']:.0f}{gpu}")
    Console().print(table)
    ratio = two["samples_per_s"] / one["samples_per_s"]
    print(json.dumps({"samples_per_s_1_worker": one["samples_per_s"], "samples_per_s_2_workers": two["samples_per_s"],
                      "ratio_2_over_1": ratio, "peak_rss_mb_1_worker": one["peak_rss_mb"], "peak_rss_mb_2_workers": two["peak_rss_mb"]}))


if __name__ == "__main__":
    main()
