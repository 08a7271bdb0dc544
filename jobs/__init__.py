"""Job entrypoints, runnable as ``python -m jobs.<name>`` locally or under ``ray job submit``."""
