"""The engine layer: specs and run ids (spec.py), run(spec) and the fit cache (train.py), the worker
processes (pool.py), the run registry (registry.py), background jobs (jobs.py), the suites of the
study (suites/) and the metrics every run records (metrics.py)."""
