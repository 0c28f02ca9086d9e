"""The builder benchmark of issue 6 (``scripts/bench builder``).

``__main__`` drives it (sample, plan phases, a full run and a rerun against the local v4 API),
``phases`` times the builder's library calls in a child process, and ``report`` renders
``docs/benchmarks-builder.md`` and its plots from the raw JSON.
"""
