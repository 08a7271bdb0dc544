from pathlib import Path

import pytest

from configuration import ConfigError, load_config
from configuration.loader import fingerprint

ROOT = Path(__file__).resolve().parents[1]


def test_repo_config_loads_and_matches_defaults_where_unchanged():
    config = load_config([ROOT / "ray_config.yaml"])
    assert config.cluster.node_ip_address == "127.0.0.1"
    assert config.ocr.layout.engine == "pymupdf"
    assert config.ocr.layout.pool.concurrency == (1, None)  # as many actors as the cluster fits
    # Engine options are validated by the engine and filled with its defaults.
    assert config.ocr.layout.options["ocr"] == "auto"
    assert "rapidocr" in config.ocr.layout.options


def test_unknown_key_is_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("ocr:\n  render:\n    dpii: 300\n")
    with pytest.raises(ConfigError, match=r"ocr\.render\.dpii: unknown key"):
        load_config([path])


def test_bad_value_is_named():
    with pytest.raises(ConfigError, match=r"ocr\.render\.dpi"):
        load_config(overrides=["ocr.render.dpi=5"])
    with pytest.raises(ConfigError, match=r"concurrency"):
        load_config(overrides=["ocr.layout.pool.concurrency=[3, 1]"])
    with pytest.raises(ConfigError, match=r"ocr\.inputs\.pages"):
        load_config(overrides=["ocr.inputs.pages='3-1'"])


def test_unknown_engine_and_engine_option_are_named():
    with pytest.raises(ConfigError, match=r"unknown layout engine 'nope'"):
        load_config(overrides=["ocr.layout.engine=nope"])
    with pytest.raises(ConfigError, match=r"ocr\.layout.*(bogus|extra)"):
        load_config(overrides=["ocr.layout.options.bogus=1"])


def test_every_field_overridable_and_typed():
    config = load_config(overrides=["ocr.layout.pool.concurrency=[2, 4]", "cluster.num_cpus=3", "ocr.inputs.pages=1-3,7"])
    assert config.ocr.layout.pool.concurrency == (2, 4)
    assert config.cluster.num_cpus == 3
    assert config.ocr.inputs.pages == "1-3,7"


def test_setting_one_key_keeps_the_sections_own_defaults(tmp_path):
    """Sections whose defaults differ from their type's (the picture pool, the reference
    model's optimiser) keep them when a file or an override sets one of their keys."""
    config = load_config(overrides=["ocr.picture.pool.num_cpus=0.2", "train.reference.optim.max_steps=10"])
    assert config.ocr.picture.pool.concurrency == (1, 1) and config.ocr.picture.pool.num_cpus == 0.2
    assert config.train.reference.optim.learning_rate == 3e-4 and config.train.reference.optim.max_steps == 10
    partial = tmp_path / "partial.yaml"
    partial.write_text("train:\n  reference:\n    synthetic:\n      pitch: 30\n")
    data = load_config([partial]).train.reference.synthetic
    assert data.pitch == 30 and data.width == 672 and data.fonts == ["DejaVuSansMono.ttf"]
    # free-form mappings are not merged: another engine does not inherit the default engine's options
    layout = load_config(overrides=["ocr.layout.engine=dots"]).ocr.layout
    assert layout.engine == "dots" and "html_tables" not in layout.options


def test_fingerprint_tracks_results_not_resources():
    base = fingerprint(load_config())
    assert fingerprint(load_config(overrides=["ocr.layout.pool.batch_size=16"])) == base
    assert fingerprint(load_config(overrides=["ocr.render.dpi=200"])) != base
    assert fingerprint(load_config(overrides=["ocr.picture.crop.upscale=3"])) != base


def test_cluster_address_validation():
    for good in ("auto", "local", "ray://head:10001", "http://127.0.0.1:8265", "10.0.0.1:6379"):
        assert load_config(overrides=[f"cluster.address={good}"]).cluster.address == good
    with pytest.raises(ConfigError, match=r"cluster\.address"):
        load_config(overrides=["cluster.address=ftp://x"])


def test_configuration_reference_is_current():
    from configuration.reference import DOC, END, START, reference_markdown

    assert f"{START}{reference_markdown()}{END}" in DOC.read_text(), "run: python -m configuration.reference --update"


def test_capacity_check_names_the_pools():
    from pipeline.dataflow import CapacityError, check_capacity

    ocr = load_config(overrides=["ocr.layout.pool.concurrency=[2,2]", "ocr.layout.pool.num_cpus=1"]).ocr
    check_capacity(ocr, cluster_cpus=4, cluster_gpus=0)
    with pytest.raises(CapacityError, match=r"ocr\.layout\.pool: 2 x 1\.0 CPU"):
        check_capacity(ocr, cluster_cpus=2, cluster_gpus=0)
    gpu = load_config(overrides=["ocr.layout.pool.num_gpus=0.5"]).ocr
    with pytest.raises(CapacityError, match="GPU"):
        check_capacity(gpu, cluster_cpus=8, cluster_gpus=0)


def _documents(folder, sizes: list[int]) -> list:
    """Input documents of these sizes in bytes (sparse files: nothing is written)."""
    from documents.inputs import InputDocument

    folder.mkdir(exist_ok=True)
    documents = []
    for number, size in enumerate(sizes):
        path = folder / f"doc-{number}.pdf"
        with open(path, "wb") as handle:
            handle.truncate(size)
        documents.append(InputDocument(doc_id=f"{number:016x}", path=str(path), name=path.name))
    return documents


def test_default_pools_start_one_layout_actor_per_core_that_fits(tmp_path):
    """The layout pool starts at the size the cluster fits (a CPU actor per core on a small node, beside the picture
    actor and a CPU-stage task), within its bounds and the blocks of pages there will be, instead of growing one at
    a time."""
    from pipeline.dataflow import PDF_PAGE_BLOCK_BYTES, check_capacity, initial_layout_actors

    ocr = load_config().ocr
    small = _documents(tmp_path, [200_000] * 100)
    check_capacity(ocr, cluster_cpus=2, cluster_gpus=0)  # two 0.75-CPU layout actors + 0.25 picture + 0.25 split
    assert initial_layout_actors(ocr, cluster_cpus=2, cluster_gpus=0, documents=small[:8]) == 2
    assert initial_layout_actors(ocr, cluster_cpus=16, cluster_gpus=0, documents=small) == 20
    assert initial_layout_actors(ocr, cluster_cpus=16, cluster_gpus=0, documents=small[:3]) == 3  # no actor without work
    long_scan = _documents(tmp_path / "long", [int(5.5 * PDF_PAGE_BLOCK_BYTES)])
    assert initial_layout_actors(ocr, cluster_cpus=16, cluster_gpus=0, documents=long_scan) == 6  # its blocks of pages
    bounded = load_config(overrides=["ocr.layout.pool.concurrency=[1,2]"]).ocr
    assert initial_layout_actors(bounded, cluster_cpus=16, cluster_gpus=0, documents=small) == 2
    gpu = load_config(overrides=["ocr.layout.pool.num_gpus=1", "ocr.layout.pool.num_cpus=2"]).ocr
    assert initial_layout_actors(gpu, cluster_cpus=32, cluster_gpus=4, documents=small) == 4
    assert initial_layout_actors(ocr, cluster_cpus=0.5, cluster_gpus=0, documents=small[:8]) == 1  # the minimum, always


def test_pages_travel_in_small_blocks_where_the_engine_reads_one_page_pdfs():
    """A block of pages goes to one layout actor: small blocks spread a long document; rasterized rows keep Ray's size."""
    from ray.data import DataContext

    from pipeline.dataflow import PDF_PAGE_BLOCK_BYTES, page_block_bytes

    assert page_block_bytes(load_config().ocr) == PDF_PAGE_BLOCK_BYTES  # pymupdf reads the one-page PDF
    assert page_block_bytes(load_config(overrides=["ocr.layout.engine=dots"]).ocr) == DataContext().target_max_block_size
    assert page_block_bytes(load_config(overrides=["ocr.page_block_bytes=4194304"]).ocr) == 4194304
