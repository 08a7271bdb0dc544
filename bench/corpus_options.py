"""The layout engine with different options on the corpus' scans, side by side in one process.

    python -m bench.corpus_options --corpus /tmp/corpus 'base={}' 'ort={"runtime": "onnxruntime"}' \
        'batch8={"rec_batch": 8}' 'upright={"orient": false}' [--dpi 150]

Each argument is NAME=JSON, options over the defaults, one engine each, one thread: the
layout engine's own (``PyMuPDFLayoutOptions``: ``orient``, ``deskew``, ...) and RapidOCR's
(``engines/rapidocr/options.py``), told apart by name. Documents are read in turn by every engine (the order
alternating from one document to the next, each engine warmed up on the document's first
page, outside the timing), so the machine's drift falls on all of them alike. Prints
seconds per page, the ratio to the first engine, CER and word recall against the
born-digital text layer (``bench/scoring.py``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from bench import scoring
from bench.corpus_workload import corpus_documents, page_images, read_with_engine, references


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("engines", nargs="+", metavar="NAME=JSON", help="RapidOCR options of one engine")
    parser.add_argument("--corpus", type=Path, help="a built corpus (python -m samples.corpus.build); built here if absent")
    parser.add_argument("--dpi", type=int, default=150)
    args = parser.parse_args(argv)

    from engines.pymupdf_layout import PyMuPDFLayoutEngine, PyMuPDFLayoutOptions
    from engines.rapidocr.options import RapidOCROptions

    engines = {}
    for item in args.engines:
        name, _, text = item.partition("=")
        options = json.loads(text or "{}")
        layout = {key: options.pop(key) for key in list(options) if key in PyMuPDFLayoutOptions.model_fields and key != "rapidocr"}
        ocr = RapidOCROptions(**{"threads": 1, **options})
        engines[name] = PyMuPDFLayoutEngine(PyMuPDFLayoutOptions(**{"threads": 1, **layout}, rapidocr=ocr))
    with tempfile.TemporaryDirectory() as tmp:
        _, built = corpus_documents(args.corpus, None, args.dpi, Path(tmp))
        seconds = dict.fromkeys(engines, 0.0)
        texts: dict[str, list[str]] = {name: [] for name in engines}
        refs: list[str] = []
        for number, document in enumerate(built):
            pages = page_images(document["scanned"][str(args.dpi)], args.dpi)
            refs += references(document["pdf"])
            order = list(engines) if number % 2 else list(engines)[::-1]
            for name in order:
                engines[name].layout(pages[:1])
            for name in order:
                read, took = read_with_engine(engines[name], pages)
                texts[name] += read
                seconds[name] += took
    first = next(iter(engines))
    print(f"{len(refs)} scanned pages at {args.dpi} dpi, one thread per engine")
    for name in engines:
        cer = scoring.cer(texts[name], refs)[0]
        print(f"  {name:16s} {seconds[name] / len(refs):6.3f} s/page  {seconds[first] / seconds[name]:5.2f}x {first}"
              f"  CER {cer:.4f}  word recall {scoring.word_recall(texts[name], refs):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
