"""NUX benchmarks: `make bench` (python -m benchmarks [NAME ...]).

Each ``bench_<topic>.py`` module exposes ``run() -> list[Row]``; every figure is quoted against a
baseline measured in the same run, because these machines are noisy.
"""
