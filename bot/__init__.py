"""modbot: a Matrix application service that keeps known abuse imagery off self-hosted servers."""

import os

# One BLAS thread per process, set before anything imports numpy. PDQ's blur is a pair of
# small matrix products run from several hashing threads at once; OpenBLAS's own worker
# threads would only spin beside them (measured: a third of the bot's CPU, for nothing).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

__version__ = "0.1.0"
