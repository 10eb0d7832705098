"""Benchmarks: `./dev bench <name>` runs `bench/<name>.py`'s `main(argv)` and prints figures."""
