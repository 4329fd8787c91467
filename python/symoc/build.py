"""Building what `symoc compile` wrote (no torch needed)."""
import glob
import os
import subprocess

__all__ = ["SymocError", "build_library", "compile_model"]


class SymocError(RuntimeError):
    """A failure reported by the generated library, or a mismatch found by the bridge."""


def compile_model(symoc, model, out_dir, policy="symo", overrides=(), extra=(), verify=True,
                  claims=None):
    """Run `symoc compile MODEL --policy P -o OUT [--override X ...]`; raise on failure.

    symoc compile verifies every claim numerically first and builds no step on one that
    fails (it is dropped and named on stderr). verify=False passes --no-verify (the plan
    notes that the claims were not checked); claims=FILE builds on that claims document
    instead of the analysis' own."""
    cmd = [symoc, "compile", model, "--policy", policy, "-o", out_dir]
    for o in overrides:
        cmd += ["--override", o]
    if not verify:
        cmd.append("--no-verify")
    if claims:
        cmd += ["--claims", claims]
    cmd += list(extra)
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise SymocError("`%s` failed (exit %d): %s" % (" ".join(cmd), r.returncode,
                                                       r.stderr.strip()))
    return out_dir


def build_library(build_dir, cmake="cmake", jobs=2, quiet=True, runtime_dir=None, cmake_args=(),
                  cuda=None):
    """Configure and build the folder `symoc compile` wrote (its CMakeLists.txt) and return
    the path of the generated shared library. Re-running is cheap (an up-to-date build).
    runtime_dir: symoc's runtime/ source folder, when not the one `symoc compile` recorded
    (e.g. the sources were generated on another machine). cmake_args: extra configure
    arguments (a generator, a compiler launcher, CMAKE_PREFIX_PATH).
    cuda: build the CUDA entry points (SYMOC_CUDA); None = when torch sees a CUDA device
    (compiling the CUDA runtime takes minutes and is useless without a GPU)."""
    src = os.path.abspath(build_dir)
    if not os.path.isfile(os.path.join(src, "CMakeLists.txt")):
        raise SymocError("%s: no CMakeLists.txt (expected the output folder of `symoc compile`)"
                         % src)
    bdir = os.path.join(src, "build")
    out = subprocess.DEVNULL if quiet else None
    configure = [cmake, "-S", src, "-B", bdir, "-DCMAKE_BUILD_TYPE=Release"]
    if runtime_dir:
        configure.append("-DSYMOC_RUNTIME_DIR=" + os.path.abspath(runtime_dir))
    if cuda is None:
        try:
            import torch
            cuda = bool(torch.cuda.is_available())
        except ImportError:
            cuda = False
    configure.append("-DSYMOC_CUDA=" + ("ON" if cuda else "OFF"))
    configure += list(cmake_args)
    for cmd in (configure,
                [cmake, "--build", bdir, "-j", str(jobs)]):
        r = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            tail = (r.stderr or "").strip().splitlines()[-5:]
            raise SymocError("%s: `%s` failed (exit %d): %s"
                             % (src, " ".join(cmd), r.returncode, " | ".join(tail)))
    libs = sorted(set(glob.glob(os.path.join(bdir, "**", "lib*_optimizer.so"), recursive=True)))
    if len(libs) != 1:
        raise SymocError("%s: expected one lib*_optimizer.so after the build, found %s"
                         % (bdir, libs or "none"))
    return libs[0]
