#!/usr/bin/env python3
"""CI check of the CUDA build (no GPU needed): generated code compiles with SYMOC_WITH_CUDA
against symoc_runtime_cuda (-Wall -Wextra -Werror), exports the CUDA entry points, and fails
cleanly where there is no usable GPU.

    test_cuda_build.py --symoc BIN --runtime-lib LIB.a --cuda-lib LIB.a --cuda-lib-dir DIR --link FLAGS --work DIR

For each policy (adamw, muon, symo, symo-coupled, auto-norm: device rules; symo and symo-coupled carry Symo pieces
and coupled axes in the block table) it checks: create_cuda,
step_cuda, is_cuda are non-NULL; is_cuda(create()) == 0; step_cuda on a CPU optimizer and
step on ... are refused with SYMOC_ERR_ARGUMENT and a message; create_cuda on a machine
without a GPU returns NULL with "create_cuda: ..." in last_error(NULL) (on a machine with a
GPU it must succeed and is_cuda must be 1); the CPU step still works.
"""
import argparse
import ctypes
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRC, "python"))


def main():
    ap = argparse.ArgumentParser()
    for k in ("--symoc", "--runtime-lib", "--cuda-lib", "--cuda-lib-dir", "--work"):
        ap.add_argument(k, required=True)
    ap.add_argument("--link", default="-llapacke -lopenblas -fopenmp")
    ap.add_argument("--cxx", default="g++")
    a = ap.parse_args()
    from symoc.torch import load_library  # noqa: E402 (imports torch; skip when absent)
    os.makedirs(a.work, exist_ok=True)
    fails = []
    for pol in ("adamw", "muon", "symo", "symo-coupled", "auto-norm"):
        out = os.path.join(a.work, pol)
        name = "gpt2_cu_" + pol.replace("-", "_")
        r = subprocess.run([a.symoc, "compile", os.path.join(SRC, "models", "gpt2.onnx"), "--policy", pol,
                            "--name", name, "-o", out], capture_output=True, text=True)
        if r.returncode:
            fails.append("%s: symoc compile failed: %s" % (pol, r.stderr.strip()[-300:]))
            continue
        so = os.path.join(out, "lib%s_optimizer.so" % name)
        cuda = a.cuda_lib_dir
        cmd = [a.cxx, "-std=c++17", "-O1", "-fPIC", "-shared", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden",
               "-DSYMOC_WITH_CUDA=1", "-I", out, "-I", os.path.join(SRC, "runtime", "include"), "-I",
               os.path.join(SRC, "runtime", "cuda", "include"), os.path.join(out, name + "_optimizer.cpp"),
               ] + a.cuda_lib.split() + [a.runtime_lib, "-L", cuda, "-lcublasLt", "-lcublas", "-lcusolver", "-lcudart",
               "-Wl,-rpath," + cuda, "-o", so] + a.link.split()
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            fails.append("%s: compile failed: %s" % (pol, (r.stdout + r.stderr).strip()[-1500:]))
            continue
        lib = load_library(so)
        api = lib.api
        if not (api.create_cuda and api.step_cuda and api.is_cuda):
            fails.append("%s: CUDA entry points are NULL" % pol)
            continue
        cpu = api.create(ctypes.c_float(1e-3))
        if api.is_cuda(cpu) != 0:
            fails.append("%s: is_cuda(create()) != 0" % pol)
        n = api.num_params()
        rc = api.step_cuda(cpu, None, None, None, n, None, 0, None)
        msg = (api.last_error(cpu) or b"").decode()
        if rc != 1 or "use step" not in msg:
            fails.append("%s: step_cuda on a CPU optimizer: rc %d, %r" % (pol, rc, msg))
        dev = api.create_cuda(ctypes.c_float(1e-3), 0)
        if dev:
            if api.is_cuda(dev) != 1:
                fails.append("%s: is_cuda(create_cuda()) != 1" % pol)
            rc = api.step(dev, None, None, n)
            msg = (api.last_error(dev) or b"").decode()
            if rc != 1 or "step_cuda" not in msg:
                fails.append("%s: step on a CUDA optimizer: rc %d, %r" % (pol, rc, msg))
            api.destroy(dev)
            print("%s: a GPU is present: create_cuda succeeded" % pol)
        else:
            msg = (api.last_error(None) or b"").decode()
            if not msg.startswith("create_cuda: "):
                fails.append("%s: create_cuda failed without a 'create_cuda: ' message: %r" % (pol, msg))
            print("%s: no usable GPU: %s" % (pol, msg))
        # The CPU step of the CUDA-enabled library still works.
        import torch
        ws = [torch.randn(s) * 0.1 for _, s, _ in lib.params]
        gs = [torch.randn(s) for _, s, _ in lib.params]
        before = [w.clone() for w in ws]
        W = (ctypes.c_void_p * n)(*[w.data_ptr() for w in ws])
        G = (ctypes.c_void_p * n)(*[g.data_ptr() for g in gs])
        rc = api.step(cpu, W, G, n)
        moved = sum(not torch.equal(a_, b_) for a_, b_ in zip(ws, before))
        if rc != 0 or moved != n:
            fails.append("%s: CPU step rc %d, %d of %d parameters moved" % (pol, rc, moved, n))
        api.destroy(cpu)
    for f in fails:
        print("FAIL", f)
    print("%s: %d failure(s)" % ("cuda build", len(fails)))
    return 1 if fails else 0


if __name__ == "__main__":
    try:
        import torch  # noqa: F401
    except ImportError:
        print("torch not importable: skipped")
        sys.exit(77)
    sys.exit(main())
