"""The engine of the log g study: simulator, data sets, registry, training, jobs, explanations.

Torch's OpenMP threads busy-wait by default; on a shared 2-core machine that makes small
models 20-40x slower. PASSIVE waiting is set here, before any module imports torch.
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
