"""Vision-language model helpers shared by the engines, the compression toolkit and training: loading and tiny local checkpoints. No Ray here."""
