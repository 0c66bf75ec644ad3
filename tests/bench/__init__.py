"""Benchmarks: ``python -m tests.bench.run [--quick] [--profile]`` (``make bench`` / ``make bench-quick``).

Nothing here is collected by pytest, and nothing here is product code: the
comparison hosts may use asyncio and threads.
"""
