"""pgqueue's benchmark suite: ``python benchmarks/run.py`` (see README, section performance)."""
