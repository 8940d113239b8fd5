"""Benchmarks of runner: its engine vs hand-written NumPy vs PyTorch CPU, the CLI end to end,
the machine's fp32 GEMM peak, tracking and gradient-check shares, scaling and sweeps.

Run ``python -m benchmarks --help``; results and analysis are in docs/benchmarks.md.
Timings come from subprocesses run one after another (A/B/C interleaved per repeat), reported as
medians; no benchmark figure is asserted anywhere in the test suite.
"""
