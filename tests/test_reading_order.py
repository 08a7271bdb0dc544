"""Reading order from boxes alone (``engines.reading_order``): the page shapes that broke it on real papers.

Boxes are in PDF points on an A4 page (595 wide): columns at 57-292 and 302-538, a 10 pt
gutter as LaTeX sets it. Each test names the elements and checks the order they come out in.
"""

from __future__ import annotations

from engines.reading_order import reading_order

WIDTH = 595.0
LEFT, RIGHT, FULL = (57.0, 292.0), (302.0, 538.0), (57.0, 538.0)


def _order(named: dict[str, tuple[tuple[float, float], float, float]], categories: dict[str, str] | None = None) -> list[str]:
    """``named``: name -> ((x0, x1), y0, y1); the names in reading order."""
    names = list(named)
    boxes = [(x[0], y0, x[1], y1) for x, y0, y1 in named.values()]
    kinds = [(categories or {}).get(name, "Text") for name in names]
    return [names[i] for i in reading_order(boxes, kinds, WIDTH)]


def test_a_float_in_the_left_column_does_not_split_it() -> None:
    page = {
        "right-top": (RIGHT, 60, 400), "left-top": (LEFT, 60, 250), "figure": ((90, 260), 260, 380),
        "caption": (LEFT, 385, 410), "left-bottom": (LEFT, 420, 760), "right-bottom": (RIGHT, 410, 760),
    }
    assert _order(page) == ["left-top", "figure", "caption", "left-bottom", "right-top", "right-bottom"]


def test_full_width_title_abstract_and_wide_table_stay_where_they_stand() -> None:
    page = {
        "title": ((150, 445), 60, 80), "abstract": (FULL, 100, 180),
        "left-1": (LEFT, 200, 400), "right-1": (RIGHT, 200, 400),
        "wide-table": ((100, 495), 420, 500),
        "left-2": (LEFT, 520, 760), "right-2": (RIGHT, 520, 700),
        "header": ((57, 200), 20, 30), "footer": ((250, 345), 800, 810),
    }
    order = _order(page, {"header": "Page-header", "footer": "Page-footer"})
    assert order == ["header", "title", "abstract", "left-1", "right-1", "wide-table", "left-2", "right-2", "footer"]


def test_paragraph_breaks_at_the_same_height_do_not_read_across() -> None:
    page = {"l1": (LEFT, 60, 200), "r1": (RIGHT, 60, 200), "l2": (LEFT, 210, 400), "r2": (RIGHT, 210, 400)}
    assert _order(page) == ["l1", "l2", "r1", "r2"]


def test_a_column_that_starts_below_an_unlabelled_picture_is_still_the_left_column() -> None:
    """A scan has no element for a raster picture: the left column's text starts lower than the right's."""
    page = {
        "wide-figure-caption": ((92, 503), 180, 192), "right-top": (RIGHT, 338, 420),
        "right-heading": ((303, 410), 440, 452), "left-caption": (LEFT, 463, 488),
        "left-text": (LEFT, 511, 790), "right-text": (RIGHT, 464, 753),
    }
    assert _order(page) == ["wide-figure-caption", "left-caption", "left-text", "right-top", "right-heading", "right-text"]


def test_an_overfull_line_poking_into_the_gutter_stays_in_its_column() -> None:
    page = {"left-1": (LEFT, 60, 250), "right-1": (RIGHT, 60, 227), "left-overfull": ((57, 305), 253, 313),
            "left-2": (LEFT, 330, 700)}
    assert _order(page) == ["left-1", "left-overfull", "left-2", "right-1"]


def test_authors_side_by_side_read_across_above_the_columns() -> None:
    page = {"title": ((177, 418), 86, 102), "author-1": ((222, 270), 119, 128), "author-2": ((321, 374), 119, 128),
            "left": (LEFT, 157, 790), "right": (RIGHT, 159, 790)}
    assert _order(page) == ["title", "author-1", "author-2", "left", "right"]


def test_a_short_heading_above_full_width_text_leads_into_it() -> None:
    page = {"left": (LEFT, 60, 300), "right": (RIGHT, 60, 280), "heading": ((57, 140), 320, 335),
            "full": (FULL, 345, 500)}
    assert _order(page) == ["left", "right", "heading", "full"]


def test_an_equation_number_follows_its_equation() -> None:
    column = {"text-1": (RIGHT, 600, 690), "equation": ((377, 463), 703, 730), "number": ((526, 539), 711, 721),
              "text-2": (RIGHT, 742, 787)}
    assert _order(column) == ["text-1", "equation", "number", "text-2"]


def test_one_column_page_reads_top_to_bottom() -> None:
    page = {"b": (FULL, 200, 300), "a": (FULL, 60, 180), "figure": ((200, 400), 320, 450), "c": (FULL, 470, 700)}
    assert _order(page) == ["a", "b", "figure", "c"]


def test_a_column_that_goes_on_beside_a_picture_after_its_neighbour_ended_is_still_read_as_columns() -> None:
    """One switch of side (the left column ends, the right goes on below its unlabelled picture) is columns."""
    page = {"left-1": (LEFT, 60, 300), "right-1": (RIGHT, 60, 200), "left-2": (LEFT, 310, 500),
            "right-2": (RIGHT, 520, 760)}
    assert _order(page) == ["left-1", "left-2", "right-1", "right-2"]


def test_a_letters_date_between_its_address_and_its_salutation_is_read_between_them() -> None:
    """KOMA-Script's letter-example-00: the date, flush right, sits beside nothing; boxes that only take turns
    down the page on either side of a gap are not columns."""
    page = {"sender": ((57, 161), 181, 221), "date": ((432, 521), 285, 296), "salutation": ((74, 204), 314, 325)}
    assert _order(page) == ["sender", "date", "salutation"]


def test_a_letters_blocks_that_take_turns_are_read_down_the_page() -> None:
    """A DIN letter (scrlttr2, the corpus's letter-transport): the address beside the reference field reads as
    two columns, then the date alone on the right, the subject and salutation alone on the left, the body
    across: left, right, left again is not two columns."""
    page = {
        "return-address": ((57, 255), 136, 143), "reference-field": ((418, 520), 127, 165),
        "recipient": ((57, 199), 183, 220), "date": ((373, 521), 285, 296), "subject": ((74, 240), 314, 325),
        "salutation": ((74, 177), 357, 368), "body": ((74, 521), 386, 469),
    }
    assert _order(page) == ["return-address", "recipient", "reference-field", "date", "subject", "salutation", "body"]


def test_columns_with_a_picture_in_each_still_read_as_columns() -> None:
    """Left, right, left one-sided stripes with text on both sides between them: unlabelled pictures in either
    column at different heights, not a letter."""
    page = {"left-1": (LEFT, 60, 150), "left-2": (LEFT, 160, 300), "right-1": (RIGHT, 160, 300), "right-2": (RIGHT, 310, 450),
            "left-3": (LEFT, 460, 600), "right-3": (RIGHT, 460, 600), "left-4": (LEFT, 610, 760)}
    assert _order(page) == ["left-1", "left-2", "left-3", "left-4", "right-1", "right-2", "right-3"]
