# Where a Shampoo refresh goes: 12 steps of a generated Shampoo library on random CUDA weights and
# fixed gradients (bench_gpu.py's), each step's wall time; with SYMOC_CUDA_EIGH_TIMING=1 the
# tridiagonal eigensolver prints each solve's batch and its three stages' times.
#   SYMOC_CUDA_EIG=f32 SYMOC_CUDA_EIGH_TIMING=1 python3 bench/gpu/shampoo_refresh_probe.py LIB.so
import os, sys, time, torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import bench_gpu as b
from symoc.torch import SymocOptimizer
lib = b.load_library(sys.argv[1])
named = b.params_of(lib, 4)
opt = SymocOptimizer(named, library=sys.argv[1], lr=1e-3)
for k in range(12):
    torch.cuda.synchronize(); t = time.perf_counter()
    opt.step(); torch.cuda.synchronize()
    print("step %d: %.1f ms" % (k, (time.perf_counter() - t) * 1e3), flush=True)
