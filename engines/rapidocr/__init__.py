"""The CPU OCR engine: RapidOCR's pipeline on PP-OCR ONNX models from pip wheels (``engine``), the models and
their charsets (``ppocr_models``, ``charsets``, ``ctc_head``), the runtimes (``openvino_session``, ``onnx_rewrites``),
the detector's canvas (``content_bands``, ``gutters``), and the text of each line (``lines``, ``spaces``)."""
