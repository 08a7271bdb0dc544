"""The OCR job on a multi-node Ray cluster built on this one machine, and a node lost mid-run.

Why: a real cluster spreads the actor pools over several machines, and cloud nodes go
away (spot preemption, a crashed host). Both tests build a head and a worker node with
``ray.cluster_utils.Cluster`` (each node its own raylet and object store, all on
127.0.0.1, token authentication on), and run ``python -m jobs.ocr`` as a separate driver
that joins the cluster through ``RAY_ADDRESS``, as it does under ``ray job submit``.

* ``test_actors_on_both_nodes_and_same_reports_as_one_node``: each layout actor reserves
  1.5 of a node's 2 CPUs, so two of them can only run one per node; the GCS actor table
  (sampled while the job runs) must show layout actors alive on both nodes, and the
  reports must equal those of a single-node run of the same inputs (pages, elements,
  texts; timings and dates left out).
* ``test_worker_node_removed_mid_run_loses_no_page``: the worker node is killed (raylet,
  object store and workers, no graceful shutdown) once the first report is written, while
  its layout actor still has pages; the run must finish with every page exactly once,
  with its text and no error. What makes it survive: Ray Data's actors restart without
  limit and their tasks are retried (``max_restarts=-1``, ``max_task_retries=-1``, its
  defaults, which the pipeline keeps), and lost blocks are rebuilt from lineage. The head
  has room (4 CPUs) for the restarted actor; where no node has room, its batch waits for
  one (see docs/operations.md, "Node loss").

Only what these tests start is stopped: ``cluster.shutdown()`` kills the processes of the
nodes it added, the single-node run stops its own local Ray, and ``RAY_TMPDIR`` keeps
their session folders and address file apart from any other Ray on the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from samples.generate import TITLE

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[1]

#: Each layout actor reserves 1.5 CPUs; with 2 CPUs a node, two actors cannot share one.
SPREAD_POOL = ["--set", "ocr.layout.pool={concurrency: [2, 2], batch_size: 1, num_cpus: 1.5}"]
COMMON = ["--set", "ocr.picture.enabled=false", "--no-markdown", "--set", "ocr.progress=false", "--dpi", "100"]
LAYOUT_ACTOR = "LayoutActor"  # Ray Data names the pool's actor class MapWorker(MapBatches(LayoutActor))
DRIVER_LIMIT_S = 600  # a hang guard only: a stuck run fails here instead of blocking the suite


@pytest.fixture(scope="module")
def ray_env(tmp_path_factory) -> dict[str, str]:
    """Token auth on and a private Ray temp folder, for this process (the nodes) and the drivers.

    The token is made as a user would (``ray get-auth-token --generate``) in a scratch
    HOME and handed over with RAY_AUTH_TOKEN_PATH; RAY_AUTH_MODE=token makes the nodes
    require it and the clients send it.
    """
    from ray._raylet import AuthenticationTokenLoader, Config

    home = tmp_path_factory.mktemp("home")
    ray_bin = Path(sys.executable).with_name("ray")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["HOME"] = str(home)
    subprocess.run([str(ray_bin), "get-auth-token", "--generate"], env=env, check=True, capture_output=True, timeout=120)
    token_path = home / ".ray" / "auth_token"
    assert token_path.read_text().strip()
    temp = tempfile.mkdtemp(prefix="rmn", dir="/tmp")  # short: Ray's socket paths must stay under 107 bytes
    settings = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_path), "RAY_TMPDIR": temp}
    # ray.init(address="127.0.0.1:PORT") swaps 127.0.0.1 for the machine's outward IP (Ray's
    # "reachable from other hosts" rule) unless this is 0; our nodes listen on 127.0.0.1 only.
    settings["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    saved = {k: os.environ.get(k) for k in [*settings, "RAY_AUTH_TOKEN", "RAY_ADDRESS"]}
    for key in ("RAY_AUTH_TOKEN", "RAY_ADDRESS"):
        os.environ.pop(key, None)
    os.environ.update(settings)
    Config.initialize("")  # this process reads RAY_AUTH_MODE again
    AuthenticationTokenLoader.instance().reset_cache()
    try:
        yield {**{k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_TOKEN", "RAY_ADDRESS")}, **settings}
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def cluster(ray_env):
    """An empty cluster on 127.0.0.1: the first ``_add_node`` makes the head, the next ones workers."""
    from ray.cluster_utils import Cluster

    built = Cluster(shutdown_at_exit=True)
    try:
        yield built
    finally:
        built.shutdown()  # the processes of the nodes this test added, nothing else


@pytest.fixture
def start_driver(cluster):
    """Start ``python -m jobs.ocr ARGS`` as its own process (log in OUT.log); any still running at teardown is killed.

    It depends on ``cluster`` so that it is torn down first: no driver outlives the nodes.
    """
    started: list[subprocess.Popen] = []

    def start(args: list[str], env: dict[str, str]) -> subprocess.Popen:
        with open(args[args.index("--out") + 1] + ".log", "w") as log:
            started.append(subprocess.Popen([sys.executable, "-m", "jobs.ocr", *args], cwd=ROOT, env=env,
                                            stdout=log, stderr=subprocess.STDOUT))
        return started[-1]

    yield start
    for driver in started:
        if driver.poll() is None:
            driver.kill()
            driver.wait()


#: Two-page scanned documents in the node-loss run: enough that, after the first report, the
#: surviving actor still has seconds of pages left when Ray restarts the lost one.
SCANNED_COPIES = 8
#: GCS health checks every 200 ms, a node dead after 3 missed ones.
FAST_NODE_DEATH = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 200, "health_check_failure_threshold": 3}


def _add_node(cluster, num_cpus: int, **kwargs: Any):
    return cluster.add_node(num_cpus=num_cpus, node_ip_address="127.0.0.1", include_dashboard=False,
                            object_store_memory=200 * 1024 * 1024, **kwargs)


@pytest.fixture(scope="module")
def inputs(three_reports_and_a_page) -> Path:
    return three_reports_and_a_page


@pytest.fixture(scope="module")
def scanned_inputs(tmp_path_factory, samples_dir) -> Path:
    """Image-only PDFs: every page goes through OCR, so pages are still in flight when a node is lost."""
    folder = tmp_path_factory.mktemp("multinode_scanned")
    for copy in range(SCANNED_COPIES):
        shutil.copy(samples_dir / "report_scanned.pdf", folder / f"scanned_{copy}.pdf")
    return folder


def _finish(driver: subprocess.Popen, out: Path) -> None:
    try:
        code = driver.wait(timeout=DRIVER_LIMIT_S)
    except subprocess.TimeoutExpired:
        driver.kill()
        driver.wait()
        raise AssertionError(f"the OCR job did not finish:\n{Path(str(out) + '.log').read_text()[-4000:]}") from None
    assert code == 0, Path(str(out) + ".log").read_text()[-4000:]


def _reports(out: Path) -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(out.glob("*.json")) if p.name != "summary.json"}


def _without_timings(report: dict[str, Any]) -> dict[str, Any]:
    """What a run must reproduce: everything but when it ran and how long each stage took."""
    report = {k: v for k, v in report.items() if k != "created_at"}
    report["pages"] = [{k: v for k, v in page.items() if k != "timings"} for page in report["pages"]]
    return report


def _layout_actors(cluster, state: str | None = None) -> list[dict[str, Any]]:
    table = cluster.global_state.actor_table(None, actor_state_name=state)
    return [a for a in table.values() if LAYOUT_ACTOR in a["ActorClassName"]]


def test_actors_on_both_nodes_and_same_reports_as_one_node(ray_env, cluster, start_driver, inputs, tmp_path):
    single = tmp_path / "single"
    driver = start_driver([str(inputs), "--out", str(single), *COMMON, "--address", "local", "--set", "cluster.num_cpus=2",
                           "--set", "ocr.layout.pool={concurrency: [1, 1], batch_size: 1}"], ray_env)
    _finish(driver, single)
    summary = json.loads((single / "summary.json").read_text())
    assert summary["ray"].startswith("local Ray")

    head = _add_node(cluster, num_cpus=2)
    worker = _add_node(cluster, num_cpus=2)
    cluster.wait_for_nodes()
    multi = tmp_path / "multi"
    driver = start_driver([str(inputs), "--out", str(multi), *COMMON, *SPREAD_POOL],
                          {**ray_env, "RAY_ADDRESS": cluster.address})
    nodes_seen: set[str] = set()
    while driver.poll() is None:  # where the layout actors run, sampled while they are alive
        nodes_seen |= {a["Address"]["NodeID"] for a in _layout_actors(cluster, "ALIVE")}
        time.sleep(0.5)
    _finish(driver, multi)

    summary = json.loads((multi / "summary.json").read_text())
    assert summary["ray"] == f"Ray cluster at {cluster.address}"  # joined the cluster, did not start a Ray
    assert nodes_seen == {head.node_id, worker.node_id}

    # Token authentication is on: the same job with a wrong token is refused by the cluster.
    stranger = {k: v for k, v in ray_env.items() if k != "RAY_AUTH_TOKEN_PATH"}
    refused = subprocess.run([sys.executable, "-m", "jobs.ocr", str(inputs), "--out", str(tmp_path / "refused"), *COMMON],
                             cwd=ROOT, env={**stranger, "RAY_ADDRESS": cluster.address, "RAY_AUTH_TOKEN": "not-the-token"},
                             capture_output=True, text=True, timeout=DRIVER_LIMIT_S)
    assert refused.returncode != 0 and "AuthenticationError" in refused.stderr, refused.stderr[-2000:]
    assert not list((tmp_path / "refused").glob("*.pdf.json"))

    expected, got = _reports(single), _reports(multi)
    assert sorted(got) == ["report_0.pdf.json", "report_1.pdf.json", "report_2.pdf.json", "report_page1.png.json"]
    assert got.keys() == expected.keys()
    for name in expected:
        assert _without_timings(got[name]) == _without_timings(expected[name]), name
        assert got[name]["pages_failed"] == 0 and TITLE in json.dumps(got[name]["pages"][0])
    assert all(p["info"].get("ocr") for p in got["report_page1.png.json"]["pages"])  # OCR really ran on the image


def test_worker_node_removed_mid_run_loses_no_page(ray_env, cluster, start_driver, scanned_inputs, tmp_path):
    # Room for the lost actor's replacement. The head's GCS finds a dead node within a second
    # (Ray's default health checks take up to 15 s, longer than the rest of this run can be),
    # so it restarts the lost actor before the run ends.
    head = _add_node(cluster, num_cpus=4, _system_config=FAST_NODE_DEATH)
    worker = _add_node(cluster, num_cpus=2)
    cluster.wait_for_nodes()
    out = tmp_path / "out"
    driver = start_driver([str(scanned_inputs), "--out", str(out), *COMMON, *SPREAD_POOL],
                          {**ray_env, "RAY_ADDRESS": cluster.address})
    while driver.poll() is None and not _reports(out):
        time.sleep(0.2)
    assert driver.poll() is None, "the job ended before the node could be removed"
    alive = {a["ActorID"]: a["Address"]["NodeID"] for a in _layout_actors(cluster, "ALIVE")}
    victims = [actor for actor, node in alive.items() if node == worker.node_id]
    assert victims, f"no layout actor on the worker node to lose: {alive}"
    assert len(_reports(out)) < len(list(scanned_inputs.iterdir())), "documents must remain when the node goes"
    cluster.remove_node(worker, allow_graceful=False)  # like a crashed host: everything on it killed
    _finish(driver, out)

    reports = _reports(out)
    assert sorted(reports) == [f"scanned_{i}.pdf.json" for i in range(SCANNED_COPIES)]
    for name, report in reports.items():
        assert report["error"] is None and report["pages_failed"] == 0, name
        assert [p["page_number"] for p in report["pages"]] == [1, 2], name  # every page exactly once
        assert all(p["error"] is None and p["ocr_pass_result"] and p["info"].get("ocr") for p in report["pages"]), name
        assert TITLE in json.dumps(report["pages"][0]), name
    # Same input, same result: the pages that met the lost node read like the others.
    contents = {json.dumps([{k: v for k, v in p.items() if k != "timings"} for p in r["pages"]]) for r in reports.values()}
    assert len(contents) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pages_total"] == 2 * SCANNED_COPIES and summary["pages_failed"] == 0
    # Ray restarted the lost actor. Where the replacement was placed before the run ended (a
    # faster engine can finish the last pages on the surviving actor first), it ran on the head;
    # an unplaced one keeps the lost node in the table.
    restarted = [a for a in _layout_actors(cluster) if a["ActorID"] in victims]
    states = [(a["State"], a["NumRestarts"], a["Address"]["NodeID"]) for a in restarted]
    assert restarted and all(restarts >= 1 for _, restarts, _ in states), states
    assert all(node == head.node_id for _, _, node in states if node != worker.node_id), (states, head.node_id)
