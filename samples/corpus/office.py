"""An office-style document as OpenDocument flat XML (``.fodt``), for LibreOffice to export to PDF.

Office suites write PDFs differently from TeX: real space characters, TrueType fonts
(Liberation), justified text without hyphenation, headers and footers from the page
style, tables with ruled cells, a two-column section. ``soffice --headless --convert-to
pdf`` turns this source into the corpus's office document (``samples.corpus.build``).
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from samples.corpus.prose import Prose

_NAMESPACES = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:style="urn:oasis:names:tc:opendocument:xmlns:style:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
    'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
    'xmlns:fo="urn:oasis:names:tc:opendocument:xmlns:xsl-fo-compatible:1.0" '
    'xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0"'
)

_STYLES = """
<office:font-face-decls>
 <style:font-face style:name="Liberation Serif" svg:font-family="'Liberation Serif'" style:font-family-generic="roman"/>
 <style:font-face style:name="Liberation Sans" svg:font-family="'Liberation Sans'" style:font-family-generic="swiss"/>
</office:font-face-decls>
<office:styles>
 <style:style style:name="Standard" style:family="paragraph">
  <style:text-properties style:font-name="Liberation Serif" fo:font-size="11pt" fo:language="en" fo:country="GB"/>
 </style:style>
 <style:style style:name="Text_20_body" style:display-name="Text body" style:family="paragraph" style:parent-style-name="Standard">
  <style:paragraph-properties fo:margin-top="0cm" fo:margin-bottom="0.25cm" fo:text-align="justify" fo:line-height="115%"/>
 </style:style>
 <style:style style:name="Title" style:family="paragraph" style:parent-style-name="Standard">
  <style:paragraph-properties fo:text-align="center" fo:margin-bottom="0.5cm"/>
  <style:text-properties style:font-name="Liberation Sans" fo:font-size="22pt" fo:font-weight="bold"/>
 </style:style>
 <style:style style:name="Heading_20_1" style:display-name="Heading 1" style:family="paragraph" style:parent-style-name="Standard" style:default-outline-level="1">
  <style:paragraph-properties fo:margin-top="0.4cm" fo:margin-bottom="0.2cm" fo:keep-with-next="always"/>
  <style:text-properties style:font-name="Liberation Sans" fo:font-size="15pt" fo:font-weight="bold"/>
 </style:style>
 <style:style style:name="Table_20_Contents" style:display-name="Table Contents" style:family="paragraph" style:parent-style-name="Standard">
  <style:text-properties style:font-name="Liberation Sans" fo:font-size="10pt"/>
 </style:style>
 <style:style style:name="Caption" style:family="paragraph" style:parent-style-name="Standard">
  <style:paragraph-properties fo:margin-top="0.2cm" fo:margin-bottom="0.3cm"/>
  <style:text-properties fo:font-size="10pt" fo:font-style="italic"/>
 </style:style>
 <style:style style:name="Header" style:family="paragraph" style:parent-style-name="Standard">
  <style:text-properties style:font-name="Liberation Sans" fo:font-size="9pt"/>
 </style:style>
 <style:style style:name="Footer" style:family="paragraph" style:parent-style-name="Standard">
  <style:paragraph-properties fo:text-align="center"/>
  <style:text-properties style:font-name="Liberation Sans" fo:font-size="9pt"/>
 </style:style>
</office:styles>
<office:automatic-styles>
 <style:page-layout style:name="pm1">
  <style:page-layout-properties fo:page-width="21cm" fo:page-height="29.7cm" fo:margin-top="1.2cm" fo:margin-bottom="1.2cm" fo:margin-left="2.2cm" fo:margin-right="2.2cm"/>
  <style:header-style><style:header-footer-properties fo:min-height="0.6cm" fo:margin-bottom="0.4cm"/></style:header-style>
  <style:footer-style><style:header-footer-properties fo:min-height="0.6cm" fo:margin-top="0.4cm"/></style:footer-style>
 </style:page-layout>
 <style:style style:name="Columns" style:family="section">
  <style:section-properties><style:columns fo:column-count="2" fo:column-gap="0.8cm"/></style:section-properties>
 </style:style>
 <style:style style:name="Grid" style:family="table"><style:table-properties style:width="16.6cm" table:align="margins"/></style:style>
 <style:style style:name="Cell" style:family="table-cell">
  <style:table-cell-properties fo:padding="0.1cm" fo:border="0.5pt solid #000000"/>
 </style:style>
</office:automatic-styles>
"""


def _p(style: str, text: str) -> str:
    return f'<text:p text:style-name="{style}">{escape(text)}</text:p>'


def _h(text: str) -> str:
    return f'<text:h text:style-name="Heading_20_1" text:outline-level="1">{escape(text)}</text:h>'


def _table(prose: Prose) -> str:
    heads = ["District", *prose.nouns(3)]
    rows = [heads] + [[name, *prose.numbers(3, 1.0, 250.0)] for name in ("Northgate", "Riverside", "Old Town", "Harbour", "Hillcrest")]
    cells = "".join(
        "<table:table-row>" + "".join(
            f'<table:table-cell table:style-name="Cell" office:value-type="string">{_p("Table_20_Contents", value)}</table:table-cell>'
            for value in row
        ) + "</table:table-row>"
        for row in rows
    )
    return f'<table:table table:name="Figures" table:style-name="Grid"><table:table-column table:number-columns-repeated="{len(heads)}"/>{cells}</table:table>'


def office_document(prose: Prose, title: str) -> str:
    """The flat ODT source: title, sections, a table, a list and a two-column section."""
    body = [_p("Title", title)]
    body += [_h("Summary"), *(_p("Text_20_body", prose.paragraph()) for _ in range(2))]
    body += [_h("Ridership"), *(_p("Text_20_body", prose.paragraph()) for _ in range(2))]
    body += [_table(prose), _p("Caption", "Table 1: " + prose.sentence())]
    body += [_p("Text_20_body", prose.paragraph()), _h("Planned measures")]
    body += ["<text:list>" + "".join(f"<text:list-item>{_p('Text_20_body', prose.sentence())}</text:list-item>" for _ in range(4)) + "</text:list>"]
    body += [_p("Text_20_body", prose.paragraph()) for _ in range(2)]
    body += [_h("Network notes"), '<text:section text:style-name="Columns" text:name="Notes">',
             *(_p("Text_20_body", prose.paragraph()) for _ in range(7)), "</text:section>"]
    body += [_h("Outlook"), *(_p("Text_20_body", prose.paragraph()) for _ in range(3))]
    master = (
        '<office:master-styles><style:master-page style:name="Standard" style:page-layout-name="pm1">'
        f'<style:header>{_p("Header", title + " - annual review")}</style:header>'
        '<style:footer><text:p text:style-name="Footer">Page <text:page-number text:select-page="current"/></text:p></style:footer>'
        "</style:master-page></office:master-styles>"
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<office:document {_NAMESPACES} office:version="1.3" '
        'office:mimetype="application/vnd.oasis.opendocument.text">'
        f"{_STYLES}{master}<office:body><office:text>{''.join(body)}</office:text></office:body></office:document>\n"
    )
