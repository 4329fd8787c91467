#!/usr/bin/python3
"""Shrinks a problem case of fuzz_graphs.py (or fuzz_semantic.py) to fewer nodes.

Usage: fuzz_minimize.py --symoc PATH CASE.onnx OUT.onnxtxt [--loss cross-entropy]
                        [--timeout T]

The problem is what fuzz_graphs.check_case says of CASE (a false claim by symoc's verify, a
false claim that apply_claims finds, a crash, an unclear error) and, for false claims, the
group kind of the failing claims. Greedy passes until nothing changes: drop a graph output;
bypass a node (its readers read one of its inputs instead); make an initializer all zeros,
all ones, or a fixed random normal (simpler numbers); drop dead nodes and initializers. A
change is kept when the case still shows the same problem. Writes the result as ONNX text
(tests/sweep/onnx_text.py) and prints it.
"""
import argparse
import copy
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnx.parser  # noqa: E402
from onnx import numpy_helper  # noqa: E402

import fuzz_graphs  # noqa: E402
from onnx_text import to_text  # noqa: E402


def signature(args, model, work):
    path = os.path.join(work, "m.onnx")
    jpath = os.path.join(work, "m.json")
    if os.path.exists(jpath):
        os.remove(jpath)
    onnx.save(model, path)
    cmd = [args.symoc, "analyze", path, "--verify", "--json", jpath, "--dim", "batch=3"]
    if args.loss:
        cmd += ["--loss", args.loss]
    _, kind, detail, _, ind = fuzz_graphs.check_case(args, 0, path, cmd, jpath)
    if kind in ("crash", "unclear"):
        return (kind,)
    if kind == "false-claim":
        return (kind, tuple(sorted({w.split()[2].split("(")[0] for w in detail.split("; ")
                                    if len(w.split()) > 2})))
    if ind and ind[0] == "false-claim-indep":
        return (ind[0], tuple(sorted({w.split()[1].split("(")[0]
                                      for w in ind[1].split(" | ")[1].split("; ")})))
    return None


def prune(m):
    g = m.graph
    live = {o.name for o in g.output}
    keep = []
    for n in reversed(g.node):
        if any(o in live for o in n.output):
            keep.append(n)
            live.update(i for i in n.input if i)
    del g.node[:]
    g.node.extend(reversed(keep))
    inits = [t for t in g.initializer if t.name in live]
    del g.initializer[:]
    g.initializer.extend(inits)


def candidates(m, simplified):
    g = m.graph
    for k in range(len(g.output)):
        if len(g.output) > 1:
            def drop(mm, k=k):
                del mm.graph.output[k]
            yield f"drop output {g.output[k].name}", drop
    outs = {o.name: o for o in g.output}
    for i, n in enumerate(g.node):
        if n.op_type == "Constant" or len(n.output) != 1:
            continue
        for j, src in enumerate(n.input):
            if not src:
                continue

            def bypass(mm, i=i, src=src):
                dst = mm.graph.node[i].output[0]
                for other in mm.graph.node:
                    for k, x in enumerate(other.input):
                        if x == dst:
                            other.input[k] = src
                for o in mm.graph.output:
                    if o.name == dst:
                        if any(src == x.name for x in mm.graph.output):
                            raise ValueError("output twice")
                        o.name = src
                        o.type.tensor_type.ClearField("shape")
                del mm.graph.node[i]
            yield f"bypass {n.op_type} {n.output[0]} by input {j}", bypass
    for k, t in enumerate(g.initializer):
        if t.data_type != 1 or t.name in simplified:
            continue
        for what in ("zeros", "ones", "normal"):
            def simplify(mm, k=k, what=what):
                t = mm.graph.initializer[k]
                a = numpy_helper.to_array(t)
                b = {"zeros": np.zeros_like(a), "ones": np.ones_like(a),
                     "normal": np.round(np.random.default_rng(k).standard_normal(a.shape), 2)
                     .astype(a.dtype)}[what]
                if np.array_equal(a, b):
                    raise ValueError("same")
                t.CopyFrom(numpy_helper.from_array(b, t.name))
            yield (f"{t.name} {what}", t.name), simplify


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symoc", required=True)
    ap.add_argument("--loss")
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("case")
    ap.add_argument("out")
    args = ap.parse_args()
    model = onnx.load(args.case)
    work = tempfile.mkdtemp(prefix="symoc-min-")
    want = signature(args, model, work)
    if want is None:
        sys.exit(f"fuzz_minimize: {args.case}: no problem to minimize")
    print(f"fuzz_minimize: problem {want}, {len(model.graph.node)} nodes", file=sys.stderr)
    changed = True
    simplified = set()  # initializers already made simpler (each once: no flip-flop)
    while changed:
        changed = False
        for desc, f in list(candidates(model, simplified)):
            m = copy.deepcopy(model)
            try:
                f(m)
            except (ValueError, IndexError):
                continue
            prune(m)
            if signature(args, m, work) == want:
                model = m
                changed = True
                if isinstance(desc, tuple):
                    desc, name = desc
                    simplified.add(name)
                print(f"  kept: {desc} ({len(model.graph.node)} nodes)", file=sys.stderr)
                break
    text = to_text(model)
    onnx.parser.parse_model(text)  # reads back
    with open(args.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
