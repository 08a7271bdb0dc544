"""Shared fixtures: generated sample documents, a directory of bad inputs, tiny checkpoints, a local CPU Ray."""

from __future__ import annotations

import io
import shutil
import struct
import zlib
from pathlib import Path

import pymupdf
import pytest
from PIL import Image

from samples.generate import generate


@pytest.fixture(scope="module")
def ray_cpu():
    """A 2-CPU local Ray on loopback for one test module, shut down after it."""
    import ray

    ray.init(address="local", _node_ip_address="127.0.0.1", num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def samples_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("samples")
    generate(out)
    return out


@pytest.fixture(scope="module")
def three_reports_and_a_page(tmp_path_factory: pytest.TempPathFactory, samples_dir: Path) -> Path:
    """Three copies of the born-digital report (text layer) and a page image (read by RapidOCR):
    enough documents for actors to share, small enough for fault and multi-node tests."""
    folder = tmp_path_factory.mktemp("three_reports")
    for copy in range(3):
        shutil.copy(samples_dir / "report.pdf", folder / f"report_{copy}.pdf")
    shutil.copy(samples_dir / "report_page1.png", folder / "report_page1.png")
    return folder


def _png_header_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge size (decompression bomb shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def make_blank_pdf(path: Path) -> None:
    """A page with no text and no image: must give an empty result, not an error."""
    doc = pymupdf.open()
    doc.new_page()
    doc.save(path)


def make_bad_inputs(folder: Path) -> dict[str, str]:
    """Write one file per kind of bad input; returns file name -> expected error kind."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corrupt.pdf").write_bytes(b"%PDF-1.7\n" + b"\x00garbage" * 200)
    (folder / "empty.pdf").write_bytes(b"")
    encrypted = pymupdf.open()
    encrypted.new_page().insert_text((72, 72), "secret words")
    encrypted.save(folder / "encrypted.pdf", encryption=pymupdf.PDF_ENCRYPT_AES_256, owner_pw="o", user_pw="u")
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), "white").save(buffer, format="PNG")
    (folder / "misnamed.pdf").write_bytes(buffer.getvalue())  # a PNG called .pdf
    (folder / "notes.png").write_bytes(b"this is plain text, not an image\n")
    (folder / "bomb.png").write_bytes(_png_header_claiming(60000, 60000))
    (folder / "truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 20)
    return {
        "corrupt.pdf": "corrupt_pdf",
        "empty.pdf": "empty_file",
        "encrypted.pdf": "encrypted_pdf",
        "misnamed.pdf": "misnamed_file",
        "notes.png": "unknown_format",
        "bomb.png": "image_too_large",
        "truncated.jpg": "corrupt_image",
    }


@pytest.fixture(scope="session")
def tiny_qwen_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight Qwen2.5-VL-architecture checkpoint (DOTS's family), saved like a real one."""
    from vlm.tiny import save_tiny_qwen2_5_vl

    return save_tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny") / "qwen2_5_vl")


@pytest.fixture(scope="session")
def tiny_gemma_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight Gemma-3-architecture checkpoint, saved like a real one."""
    from vlm.tiny import save_tiny_gemma3

    return save_tiny_gemma3(tmp_path_factory.mktemp("tiny") / "gemma3")


@pytest.fixture(scope="session")
def tiny_dots_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The published dots.ocr checkpoint's folder (its own remote code, config.json, tokenizer ids), tiny, bf16 weights."""
    from vlm.tiny_dots import save_tiny_dots_ocr

    return save_tiny_dots_ocr(tmp_path_factory.mktemp("published") / "DotsOCR")


@pytest.fixture(scope="session")
def tiny_gemma3n_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Gemma 3n checkpoint (transformers' own classes, timm MobileNet-V5 tower, published ids), tiny."""
    from vlm.tiny_gemma3n import save_tiny_gemma3n

    return save_tiny_gemma3n(tmp_path_factory.mktemp("published") / "gemma-3n")
