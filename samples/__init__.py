"""Sample documents for the README, the tests and the benchmarks (generated, not shipped)."""
