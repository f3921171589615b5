"""`make bench`: the project's speed and scale measurements (see benchmarks/run.py)."""
