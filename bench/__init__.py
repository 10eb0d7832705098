"""Benchmarks: `./dev bench [name ...]` runs bench/<name>.py and prints its figures.

Targets are checked here, by people reading the output, and never in timed tests: these machines
are noisy, so every figure is reported next to a baseline measured in the same run.
"""
