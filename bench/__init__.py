"""Benchmarks: `./dev bench NAME [options]` runs `bench/NAME.py`'s `main(argv)` and prints figures.

Targets are checked by people reading the output, never in timed tests: these machines are noisy,
so every figure is reported next to a baseline measured in the same run.
"""
