"""Page splitting and input checks on real files (no Ray)."""

import pytest

from documents.pages import SplitLimits, split_pages
from documents.sniff import InputRejected, check_type
from tests.conftest import make_bad_inputs


def _open(path):
    data = path.read_bytes()
    kind = check_type(path.name, data[:1024], len(data))
    count, _, pages = split_pages(data, kind, SplitLimits(max_image_pixels=100_000_000))
    return count, pages


def test_born_digital_pdf_pages_have_text_layer(samples_dir):
    count, pages = _open(samples_dir / "report.pdf")
    pages = list(pages)
    assert count == 2 and [p.page_number for p in pages] == [1, 2]
    assert all(p.has_text_layer and p.error is None for p in pages)
    page = pages[0]
    assert page.image().shape == (page.height, page.width, 3)
    assert page.width == round(595 * 150 / 72)  # A4 at 150 dpi
    assert page.pdf_bytes.startswith(b"%PDF")


def test_scanned_twin_has_no_text_layer(samples_dir):
    _, pages = _open(samples_dir / "report_scanned.pdf")
    assert [p.has_text_layer for p in pages] == [False, False]


def test_png_becomes_one_page_with_pdf(samples_dir):
    count, pages = _open(samples_dir / "report_page1.png")
    (page,) = list(pages)
    assert count == 1 and page.scale == 1.0 and page.pdf_bytes.startswith(b"%PDF")


def test_max_pixels_scales_down(samples_dir):
    data = (samples_dir / "report.pdf").read_bytes()
    _, _, pages = split_pages(data, "pdf", SplitLimits(dpi=300, max_pixels=500_000))
    page = next(iter(pages))
    assert page.width * page.height <= 500_000 * 1.01


def test_multi_frame_tiff(tmp_path):
    from PIL import Image

    frames = [Image.new("RGB", (64, 48), color) for color in ("white", "gray", "black")]
    path = tmp_path / "scan.tif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    count, pages = _open(path)
    assert count == 3 and [p.page_number for p in pages] == [1, 2, 3]


def test_every_bad_input_is_rejected_with_its_reason(tmp_path):
    expected = make_bad_inputs(tmp_path)
    for name, kind in expected.items():
        path = tmp_path / name
        with pytest.raises(InputRejected) as info:
            count, pages = _open(path)
            list(pages)
        assert info.value.kind == kind, (name, info.value)
        assert str(info.value)


def test_selection_is_returned_and_followed(samples_dir):
    data = (samples_dir / "report.pdf").read_bytes()
    count, selected, pages = split_pages(data, "pdf", SplitLimits(pages="2-", max_pages=1))
    assert count == 2 and selected == [2]
    assert [p.page_number for p in pages] == [2]


def _rotated_pages_pdf() -> bytes:
    import pymupdf

    doc = pymupdf.open()
    for width, height, rotation in ((612, 792, 0), (595.3, 841.9, 90), (500.5, 333.3, 270), (101, 77, 180)):
        page = doc.new_page(width=width, height=height)
        page.set_rotation(rotation)
    return doc.tobytes()


@pytest.mark.parametrize("dpi, max_pixels", [(150, 12_000_000), (37.3, 12_000_000), (300, 500_000)])
def test_pages_split_without_pixels_have_the_rasterized_size(samples_dir, dpi, max_pixels):
    """Not rasterizing a page must not move a box: size and scale are what the rasterizer gives."""
    inputs = [(samples_dir / name).read_bytes() for name in ("report.pdf", "report_scanned.pdf")] + [_rotated_pages_pdf()]
    for data in inputs:
        with_pixels = list(split_pages(data, "pdf", SplitLimits(dpi=dpi, max_pixels=max_pixels))[2])
        without = list(split_pages(data, "pdf", SplitLimits(dpi=dpi, max_pixels=max_pixels, pixels=False))[2])
        assert [(p.width, p.height, p.scale) for p in without] == [(p.width, p.height, p.scale) for p in with_pixels]
        assert all(p.pixels == b"" and p.pdf_bytes.startswith(b"%PDF") and p.error is None for p in without)


def test_image_page_without_pixels_keeps_its_pdf(samples_dir):
    data = (samples_dir / "report_page1.png").read_bytes()
    (page,) = split_pages(data, "png", SplitLimits(pixels=False))[2]
    assert page.pixels == b"" and page.pdf_bytes.startswith(b"%PDF") and page.width > 0
    with pytest.raises(ValueError, match="page 1 was split without its pixels"):
        page.image()
