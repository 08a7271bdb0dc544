"""Ray Tune sweeps over compression ratio, token pooling and resolution (see the sweep issue)."""
