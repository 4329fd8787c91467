#!/usr/bin/python3
"""Times `symoc analyze` on ViT-B/16 and on a LLaMA-7B-shaped graph whose weights are never opened.

Usage: /usr/bin/python3 bench/analyze/bench_analyze.py [--symoc PATH] [--vit PATH]
                          [--work DIR] [--layers N] [--runs N] [--only vit|llama]
                          [--json FILE] [--check]

ViT-B/16: torchvision's vit_b_16 export (--vit, default /tmp/tv/vit_b_16.onnx, else
exported into --work by bench/import/bench_import.py's helper); its 330 MB of weights
are inline, so the figure to watch is peak RSS against the file size: loadModel defers
payloads and the analysis reads none. Targets: < 1 s, < 300 MiB.

LLaMA-7B: written by make_llama7b.py into --work (default <repo>/build/bench-models):
32 layers (--layers), d_model 4096, 32 heads, 8 KV heads, SwiGLU 11008, vocab 32000,
RMSNorm, RoPE; 5.9 G parameters as external data in one 22 GiB file that is created
sparse and with mode 000. Targets: < 10 s, < 1 GiB.

"Never opened" means: symoc runs as a user that cannot open the weights file, so any
open() of it fails (EACCES) and symoc would exit with an error. When this script runs
as root (whom mode 000 does not stop) symoc runs as nobody (uid/gid 65534) through
setuid in the child; otherwise as the caller. A control run with the same user
checks that opening the file really fails (otherwise the check would prove nothing
and the script stops). The file's size is its full length (the locations and ranges
are valid, as loadModel checks them with stat), its blocks are unallocated.

Each model is analyzed --runs times (default 3): per run wall time, CPU time and peak
RSS (ru_maxrss from wait4), then a table of medians and the largest peak RSS, and the
same as JSON (also to --json FILE). --check: exit 1 when a target is missed. Not a
ctest test: timings depend on the machine.
"""
import argparse
import json
import os
import stat
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "bench", "import"))
sys.path.insert(0, HERE)
import bench_import  # noqa: E402  (run_once, measure, print_table, export_vit)
import make_llama7b  # noqa: E402

NOBODY = 65534


def drop_to_nobody():
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def unprivileged():
    """preexec_fn for runs that must not be able to open mode-000 files."""
    return drop_to_nobody if os.geteuid() == 0 else None


def check_unreadable(weights, preexec):
    """The control: the user symoc runs as cannot open the weights file."""
    r = subprocess.run(["/bin/sh", "-c", 'exec 3< "$1"', "sh", weights],
                       preexec_fn=preexec, capture_output=True, text=True)
    if r.returncode == 0:
        sys.exit(f"bench_analyze: the control could open {weights}: the never-opened "
                 "check would prove nothing")
    return r.stderr.strip()


def llama_model(work, layers):
    d = os.path.join(work, "llama7b")
    os.makedirs(d, exist_ok=True)
    # The unprivileged user must reach the model (not the weights).
    for p in (work, d):
        os.chmod(p, os.stat(p).st_mode | stat.S_IXOTH | stat.S_IROTH)
    out = os.path.join(d, f"llama7b_{layers}l.onnx")
    info = make_llama7b.build(out, layers, seq=16)
    os.chmod(out, 0o644)
    st = os.stat(info["weights"])
    info["weights_allocated_mib"] = round(st.st_blocks * 512 / 2**20, 2)
    info["weights_mode"] = oct(stat.S_IMODE(st.st_mode))
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symoc", default=bench_import.default_symoc())
    ap.add_argument("--vit", default="/tmp/tv/vit_b_16.onnx")
    ap.add_argument("--work", default=os.path.join(REPO, "build", "bench-models"))
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", choices=["vit", "llama"])
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = ap.parse_args()
    symoc = os.path.abspath(args.symoc)
    if not os.access(symoc, os.X_OK):
        sys.exit(f"bench_analyze: {symoc} not found: build it first or pass --symoc")

    results = []
    if args.only in (None, "vit"):
        vit = args.vit if os.path.isfile(args.vit) else bench_import.export_vit(args.work)
        r = bench_import.measure("vit_b_16", [symoc, "analyze", vit], args.runs,
                                 1.0, 300.0, "bench_analyze")
        r["file_mib"] = round(os.path.getsize(vit) / 2**20, 1)
        r["path"] = vit
        results.append(r)
    if args.only in (None, "llama"):
        info = llama_model(os.path.abspath(args.work), args.layers)
        print(f"bench_analyze: {info['model']}: {info['nodes']} nodes, "
              f"{info['parameters']:,} parameters; weights {info['weights']}: "
              f"{info['weight_bytes'] / 2**30:.1f} GiB, {info['weights_allocated_mib']} MiB "
              f"allocated, mode {info['weights_mode']}", flush=True)
        preexec = unprivileged()
        denied = check_unreadable(info["weights"], preexec)
        user = "nobody" if preexec else "the caller"
        print(f"bench_analyze: control: as {user}, opening the weights fails ({denied})")
        r = bench_import.measure(f"llama7b ({args.layers} layers)",
                                 [symoc, "analyze", info["model"]], args.runs, 10.0,
                                 1024.0, "bench_analyze", preexec)
        r["file_mib"] = round(os.path.getsize(info["model"]) / 2**20, 2)
        r["weights_never_opened"] = True  # every run succeeded although it could not open them
        r["runs_as"] = user
        r.update({k: info[k] for k in ("model", "weights", "weight_bytes", "parameters",
                                        "nodes", "layers")})
        results.append(r)

    bench_import.print_table(
        f"symoc analyze (median of {args.runs} runs; peak RSS is the largest)", results)
    doc = {"benchmark": "symoc analyze", "symoc": symoc, "results": results}
    print(json.dumps(doc, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
    ok = all(r["ok"] for r in results)
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
