"""The OCR job's dataflow on Ray Data: the graph of stages (``dataflow``), the run that feeds it
documents and writes their outputs as they finish (``run``), and the run summary (``summary``).
The stage functions and actor classes are in ``actors/``, the engines in ``engines/``."""
