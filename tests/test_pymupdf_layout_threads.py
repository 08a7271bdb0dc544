"""The PyMuPDF layout engine pins its ONNX sessions even when pymupdf was imported first.

pymupdf builds its layout model's sessions when it is imported, with onnxruntime's default
threads; in an actor the split stage's modules import it before any engine exists. An
engine asked for one thread must rebuild them pinned, or two one-thread actors each spin
threads on every core.
"""

from __future__ import annotations

import onnxruntime
import pymupdf  # noqa: F401 - imported first on purpose, as in an actor process

from engines.pymupdf_layout import PyMuPDFLayoutEngine, PyMuPDFLayoutOptions


def test_layout_sessions_are_rebuilt_with_the_configured_threads(monkeypatch):
    built: list[int] = []
    original = onnxruntime.InferenceSession.__init__

    def recording_init(session, path_or_bytes, sess_options=None, *args, **kwargs):
        built.append(sess_options.intra_op_num_threads if sess_options is not None else 0)
        original(session, path_or_bytes, sess_options, *args, **kwargs)

    monkeypatch.setattr(onnxruntime.InferenceSession, "__init__", recording_init)
    PyMuPDFLayoutEngine(PyMuPDFLayoutOptions(threads=1))
    assert built, "the layout model's sessions were not rebuilt"
    assert set(built) == {1}, f"sessions built with intra-op threads {built}"
