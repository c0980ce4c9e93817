"""The negation ablation sandbox app (`headwiki sandbox`): a marimo notebook over ablation.sandbox and the DB."""

# Thread settings of the app's process, set before numpy and torch load (a value the user set wins). numpy's OpenBLAS
# threads busy-wait like OpenMP's do (headwiki/cli.py sets OMP_WAIT_POLICY=PASSIVE for torch); the sandbox's statistics
# are small matrix products one thread does in milliseconds, and on the shared 2-core machine two spinning BLAS threads
# made them 5-10x slower (~0.4 s of a 1 s toy toggle; benchmarks/results/sandbox-cpu.md). Same numbers either way.
APP_THREAD_ENV: dict[str, str] = {"OMP_WAIT_POLICY": "PASSIVE", "OPENBLAS_NUM_THREADS": "1"}
