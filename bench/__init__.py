"""Charter's benchmark suite: every figure is a ratio against a baseline measured in the same run.

Run ``python -m bench.run [--quick] [--only NAME] [--json OUT]`` from the repository root; see
``BENCHMARKS.md``.
"""
