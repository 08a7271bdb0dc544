"""engines.rapidocr.content_bands: content found on synthetic pages (noise, grey paper, light and
coloured ink, dark pages), blank paper skipped, canvases aligned, boxes mapped back."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from engines.rapidocr.content_bands import Band, background_color, boxes_to_image, content_bands, stack_bands

HEIGHT, WIDTH = 1216, 832


def _page(paper: tuple[int, int, int] = (255, 255, 255), noise: float = 0.0, seed: int = 0) -> np.ndarray:
    page = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    page[:] = paper
    if noise:
        jitter = np.random.default_rng(seed).normal(0.0, noise, page.shape)
        page = np.clip(page + jitter, 0, 255).astype(np.uint8)
    return page


def _write(page: np.ndarray, text: str, x: int, baseline: int, color: tuple[int, int, int], scale: float = 0.6,
           thickness: int = 1) -> tuple[int, int, int, int]:
    """Draw a line of text; its ink box (left, top, right, bottom), ends exclusive."""
    (width, height), descent = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    cv2.putText(page, text, (x, baseline), cv2.FONT_HERSHEY_SIMPLEX, scale, color, thickness, cv2.LINE_AA)
    return x, baseline - height, x + width, baseline + descent


def _covered(box: tuple[int, int, int, int], bands: list[Band]) -> bool:
    left, top, right, bottom = box
    return any(b.left <= left and right <= b.right and b.top <= top and bottom <= b.bottom for b in bands)


@pytest.mark.parametrize("paper, noise", [((255, 255, 255), 0.0), ((232, 228, 220), 8.0), ((20, 20, 20), 8.0)])
def test_blank_paper_has_no_bands(paper: tuple[int, int, int], noise: float) -> None:
    """White, noisy grey and noisy dark paper: no content, so nothing to detect."""
    assert content_bands(_page(paper, noise)) == []


def test_bands_cover_every_line_and_leave_out_blank_paper() -> None:
    page = _page((236, 234, 228), noise=8.0)
    ink = (40, 40, 40)
    boxes = [_write(page, "A heading that is large", 96, 140, ink, scale=1.4, thickness=3)]
    boxes += [_write(page, f"paragraph one, line {i}: words words words", 96, 220 + 26 * i, ink) for i in range(6)]
    boxes += [_write(page, f"paragraph two, line {i}", 300, 760 + 26 * i, ink) for i in range(4)]
    boxes += [_write(page, "17", 400, 1150, ink)]  # a page number, alone at the foot
    bands = content_bands(page)
    assert all(_covered(box, bands) for box in boxes)
    assert sum(band.area for band in bands) < 0.5 * HEIGHT * WIDTH
    assert len(bands) >= 3  # the gaps between the groups are left out
    for band in bands:  # aligned to the detector's stride
        assert band.top % 32 == 0 and band.left % 32 == 0
        assert band.bottom % 32 == 0 and band.right % 32 == 0
    tops = [band.top for band in bands]
    assert tops == sorted(tops) and all(a.bottom < b.top for a, b in zip(bands, bands[1:]))


@pytest.mark.parametrize(
    "paper, ink",
    [
        ((255, 255, 255), (0, 230, 255)),  # yellow (BGR) on white: near-white in grey levels
        ((255, 255, 255), (190, 190, 190)),  # light grey text
        ((30, 30, 30), (235, 235, 235)),  # light text on a dark page
    ],
)
def test_light_coloured_and_inverted_text_is_content(paper: tuple[int, int, int], ink: tuple[int, int, int]) -> None:
    page = _page(paper, noise=4.0)
    box = _write(page, "faint words on the page", 200, 600, ink)
    bands = content_bands(page)
    assert len(bands) == 1 and _covered(box, bands)


def test_a_one_pixel_stroke_is_content() -> None:
    page = _page()
    page[400:440, 500] = 60  # a thin vertical rule, one pixel wide
    (band,) = content_bands(page)
    assert band.top <= 400 and 440 <= band.bottom and band.left <= 500 < band.right


def test_background_is_the_paper_colour() -> None:
    page = _page((200, 210, 220))
    _write(page, "ink", 100, 100, (0, 0, 0))
    assert background_color(page).tolist() == [200, 210, 220]


def test_stack_keeps_pixels_aligned_and_maps_boxes_back() -> None:
    page = _page()
    boxes = [_write(page, "first group", 64, 200, (0, 0, 0)), _write(page, "second group", 480, 900, (0, 0, 0))]
    bands = content_bands(page)
    background = background_color(page)
    canvas, placements = stack_bands(page, bands, background)
    assert canvas.shape[0] % 32 == 0 and canvas.shape[1] % 32 == 0
    assert canvas.shape[0] * canvas.shape[1] < 0.5 * HEIGHT * WIDTH
    for placement in placements:
        band = placement.band
        assert placement.row % 32 == 0
        height, width = band.bottom - band.top, band.right - band.left
        assert np.array_equal(canvas[placement.row : placement.row + height, :width],
                              page[band.top : band.bottom, band.left : band.right])
    # boxes as a detector would give them on the canvas, then back in page pixels
    on_canvas = []
    for left, top, right, bottom in boxes:
        placement = next(p for p in placements if p.band.top <= top < p.band.bottom)
        dx, dy = -placement.band.left, placement.row - placement.band.top
        on_canvas.append([[left + dx, top + dy], [right + dx, top + dy], [right + dx, bottom + dy], [left + dx, bottom + dy]])
    back = boxes_to_image(np.array(on_canvas, dtype=np.float32), placements)
    expected = [[[x0, y0], [x1, y0], [x1, y1], [x0, y1]] for x0, y0, x1, y1 in boxes]
    assert np.allclose(back, expected)
    assert boxes_to_image(np.zeros((0, 4, 2)), placements).shape == (0, 4, 2)
