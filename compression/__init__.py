"""Model compression and cheaper inference: PELA low-rank factors, image-token pooling, resolution budgets, FLOP
counting. Pure PyTorch/transformers; no Ray."""
