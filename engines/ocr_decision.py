"""Whether a page that has a text layer must still be read through OCR (the layout engine's ``ocr: auto``).

Having some text is not having the page's text. Two kinds of real pages have a text
layer that holds little or none of what is printed:

* a scan with a few words of real text on it: the download footer that journal archives
  stamp on every scanned page, a scanner app's watermark ("Scanned with ..."), a Bates
  number, a fax header. Read by its text layer, such a page gave those few words and
  lost the rest;
* a text layer whose glyphs have no Unicode mapping (fonts without a ToUnicode map, old
  Type 3 bitmap fonts): MuPDF gives U+FFFD for them, or with its default flags the glyph
  numbers as characters (the shifted-letter "/LQH WKH" of a font subset without its map).

pymupdf4llm ships the analysis for this decision (``pymupdf4llm.ocr.analyze_page``: the
page's text, image and vector areas, its replacement characters, and an ONNX model of
whether a page with images needs OCR, about 8 ms a page). The engine takes its verdict
for unreadable text, and for images only where they are most of the page: pymupdf4llm
also says "OCR" for born-digital pages with a picture that holds words, where the picture
should stay a Picture element whose words the picture stage reads. An earlier OCR layer
(invisible text, as OCRmyPDF writes it) counts as the page's text, as it did before, also
where a footer is stamped on beside it (journal archives serve scans with both).

A page read as a scan has its text layer taken off (its words are in its pixels, and
come back through OCR with the rest); a page with some legible spans keeps them and has
the rest read (pymupdf4llm's ``exec_ocr_full``, which renders the page without the
legible text: with none left it would render nothing, hence the two cases).
"""

from __future__ import annotations

from typing import Literal

#: Images must cover at least this share of the page's content for a page with text to be read as a scan...
SCAN_SHARE = 0.5
#: ... and its text spans less than this share: a few words (a footer line covers under 1 %), not a slide's text
#: over a full-page background picture.
FEW_WORDS_SHARE = 0.05

#: Why a page with a text layer is read through OCR anyway.
OCRReason = Literal["scan", "unreadable text", "partly unreadable text"]

#: The reasons for which the page is read as a scan, its text layer set aside (the rest keep the legible text).
READ_AS_SCAN: frozenset[OCRReason] = frozenset({"scan", "unreadable text"})


def text_blocks(page) -> list[dict]:
    """``page``'s text, image and vector blocks as ``analyze_page`` extracts them (``get_text("dict")`` with its flags):
    extracted once per page, for this decision and ``engines.text_direction``."""
    import pymupdf
    from pymupdf4llm.ocr.analyze_page import FLAGS

    return page.get_text("dict", flags=FLAGS, clip=pymupdf.INFINITE_RECT())["blocks"]


def text_layer_falls_short(page, blocks: list[dict]) -> OCRReason | None:
    """Why ``page`` (a PyMuPDF page with some text) needs OCR, or None when its text layer is its text.

    ``scan``: images cover most of the page's content, its text spans little of it, and
    pymupdf4llm's model finds text in the images (unless an earlier OCR layer is most of
    its text); at least a tenth of its characters are U+FFFD (pymupdf4llm's own bound)
    and every text span has some (``unreadable text``) or some spans are legible
    (``partly unreadable text``: those are kept, the rest is read through OCR).
    """
    from pymupdf4llm.ocr.analyze_page import analyze_page

    analysis = analyze_page(page, blocks=blocks)  # with replace_ocr off it changes nothing
    if analysis["reason"] == "chars_bad":
        legible_area = analysis["txt_area"] - analysis["bad_areas"]  # of spans without U+FFFD
        return "partly unreadable text" if legible_area > 1e-3 * analysis["txt_area"] else "unreadable text"
    scan_like = analysis["img_area"] >= SCAN_SHARE and analysis["txt_area"] < FEW_WORDS_SHARE
    if analysis["needs_ocr"] and scan_like and not _has_earlier_ocr(blocks, analysis["chars_total"]):
        return "scan"
    return None


def _has_earlier_ocr(blocks: list[dict], characters: int) -> bool:
    """Whether most of the page's ``characters`` are an earlier tool's OCR layer (invisible text, pymupdf4llm's
    ``is_ocr_span``): a served scan often has both, its OCR layer and the archive's visible footer, and
    ``analyze_page`` calls a page with any visible text not OCR'd."""
    from pymupdf4llm.ocr.analyze_page import is_ocr_span

    earlier = sum(len(span["text"].strip()) for block in blocks
                  for line in block.get("lines", ()) for span in line["spans"] if is_ocr_span(span))
    return earlier * 2 > characters


def remove_text(page) -> None:
    """Take every text span off ``page`` (its images and drawings stay): the page is then read as a scan."""
    import pymupdf

    page.add_redact_annot(page.rect)
    page.apply_redactions(images=pymupdf.PDF_REDACT_IMAGE_NONE, graphics=pymupdf.PDF_REDACT_LINE_ART_NONE,
                          text=pymupdf.PDF_REDACT_TEXT_REMOVE)
