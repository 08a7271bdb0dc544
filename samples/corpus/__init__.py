"""A corpus of real-looking documents the project makes itself: LaTeX papers and a manual, an office export.

``samples.corpus.build`` typesets them (pdfTeX, LuaTeX, LibreOffice) and renders their
scanned twins; the born-digital PDF's text layer is each page's reference.
"""
