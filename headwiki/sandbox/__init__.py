"""The negation ablation sandbox app (`headwiki sandbox`): a marimo notebook over ablation.sandbox and the DB."""

# Thread settings of the app's process, set before numpy and torch load (a value the user set wins). numpy's OpenBLAS
# threads busy-wait like OpenMP's do (headwiki/cli.py sets OMP_WAIT_POLICY=PASSIVE for torch); the sandbox's statistics
# are small matrix products one thread does in milliseconds, and on the shared 2-core machine two spinning BLAS threads
# made them ~4x slower (median 0.64-0.71 s vs 0.15-0.18 s of statistics per toy toggle, 432 items, load 16, measured
# side by side). Same numbers either way.
APP_THREAD_ENV: dict[str, str] = {"OMP_WAIT_POLICY": "PASSIVE", "OPENBLAS_NUM_THREADS": "1"}
