"""Pure document handling (no Ray): inputs, page splitting, crops, reports, writing."""
