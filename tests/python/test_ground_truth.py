#!/usr/bin/python3
"""Check models/expected/<fixture>.json against the torch modules the fixtures came from.

For every fixture: rebuild its torch module (models/export_fixtures.py, same seed), convert
it to float64, and for every claim draw random group elements, apply them to the parameters
exactly as docs/symmetry-schema.md defines member semantics, and compare outputs. The same is
done on the ONNX file itself (its initializers transformed, the graph run by
tests/python/onnx_numpy.py in float64). Criteria:
  * "exact": true claims: relative error < 1e-9;
  * "exact": false claims (normalization epsilon): relative error < 5e-4 (measured: up to
    1e-4 for BatchNorm with eps 1e-5, 1e-6 for RMSNorm with eps 1e-6);
  * "shift" claims with loss "cross-entropy": outputs compared after a softmax over the last
    (vocabulary) axis; otherwise the raw outputs;
  * every "not" entry must CHANGE the output: relative error > 1e-3.
For fixtures with BatchNorm, the exact claims are also checked with the torch module in
eval mode, where the running statistics (members of the S claims) are read.
Also checked: every member names a tensor of the ONNX file (initializer, or for
mlp_tanh_constants a Constant output) with the torch shape and value, its coordinates fit;
self-checks that the harness detects wrong transforms (a claim with a member dropped, a GL
claim with "in"/"out" swapped).

Extensions beyond the schema used by "extended_claims" (documented in models/README.md):
variance "abs" (multiply by |A|) and group "Z2" (diagonal +-1).

Exit status 0 when everything holds; prints one line per fixture and every failure.
"""
import copy
import json
import os
import sys
import zlib

try:
    import numpy as np
    import onnx
    import onnx.numpy_helper
    import torch
except ImportError as ex:   # ctest reports exit 77 as skipped
    print("skipped: %s" % ex)
    sys.exit(77)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = os.path.join(ROOT, "models")
sys.path.insert(0, MODELS)
import export_fixtures as ef  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import onnx_numpy  # noqa: E402

TOL_EXACT, TOL_APPROX, TOL_NOT = 1e-9, 5e-4, 1e-3
TRIALS = 3


# ------------------------------------------------------------------ group elements
def rand_orth(n, rng):
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def rand_perm(n, rng):
    return np.eye(n)[rng.permutation(n)]


def draw_once(group, n, rng):
    name = group["name"]
    if name == "S":
        return rand_perm(n, rng)
    if name == "B":
        return rand_perm(n, rng) * rng.choice([-1.0, 1.0], n)[:, None]
    if name == "Z2":
        return np.diag(rng.choice([-1.0, 1.0], n))
    if name == "O":
        return rand_orth(n, rng)
    if name == "GL":   # well conditioned: singular values in [e^-0.5, e^0.5]
        return rand_orth(n, rng) @ np.diag(np.exp(rng.uniform(-0.5, 0.5, n))) @ rand_orth(n, rng)
    if name == "Scale+":
        return np.diag(np.exp(rng.uniform(-1.0, 1.0, n)))
    if name == "heads":
        h, dh = group["heads"], group["head_dim"]
        if h * dh != n:
            raise ValueError("heads %d x head_dim %d != n %d" % (h, dh, n))
        outer = rand_perm(h, rng) if group["outer"] == "S" else np.eye(h)
        blocks = []
        for _ in range(h):
            inner = group["inner"]
            if inner == "1":
                blocks.append(np.eye(dh))
            elif inner in ("O", "GL"):
                blocks.append(draw_once({"name": inner}, dh, rng))
            elif inner == "rope":
                b = np.eye(dh)
                for i, j in group["pairs"]:
                    r, phi = np.exp(rng.uniform(-0.5, 0.5)), rng.uniform(0, 2 * np.pi)
                    a, s = r * np.cos(phi), r * np.sin(phi)
                    b[i, i], b[i, j], b[j, i], b[j, j] = a, -s, s, a
                blocks.append(b)
            else:
                raise ValueError("unknown inner group %r" % inner)
        bd = np.zeros((n, n))
        for k, b in enumerate(blocks):
            bd[k * dh:(k + 1) * dh, k * dh:(k + 1) * dh] = b
        return np.kron(outer, np.eye(dh)) @ bd
    raise ValueError("unknown group %r" % name)


def draw(group, n, rng):
    """A group element that is not the identity (S(2) would be vacuous half the time)."""
    for _ in range(100):
        a = draw_once(group, n, rng)
        if not np.allclose(a, np.eye(n)):
            return a
    raise ValueError("group %r of size %d has no non-identity element" % (group, n))


# ------------------------------------------------------------------ applying claims
def coords(mem):
    return [mem["offset"] + k * mem["stride"] for k in range(mem["extent"])]


def apply_member(t, mem, a):
    """In place: the schema's member semantics for the n x n matrix a."""
    var = mem["variance"]
    if var == "out":
        m = a
    elif var == "in":
        m = np.linalg.inv(a).T
    elif var == "abs":
        m = np.abs(a)
    else:
        raise ValueError("unknown variance %r" % var)
    ax = mem["axis"]
    idx = torch.tensor(coords(mem))
    sub = t.index_select(ax, idx).movedim(ax, 0)
    new = (torch.from_numpy(m) @ sub.reshape(len(idx), -1)).reshape(sub.shape).movedim(0, ax)
    t.index_copy_(ax, idx, new.contiguous())


def transform(params, claim, rng):
    """Return a transformed copy of params (name -> float64 tensor) for one random element."""
    p = {k: v.clone() for k, v in params.items()}
    kind = claim["kind"]
    if kind == "linear":
        a = draw(claim["group"], claim["n"], rng)
        for mem in claim["members"]:
            apply_member(p[mem["initializer"]], mem, a)
    elif kind == "shift":
        # one gauge: the same v (indexed along the other axis) for every weight member
        v = None
        c = rng.standard_normal()
        for mem in claim["members"]:
            t = p[mem["initializer"]]
            if mem["role"] == "bias":
                t += c
            else:
                if v is None:
                    shape = list(t.shape)
                    del shape[mem["axis"]]
                    v = torch.from_numpy(rng.standard_normal(shape))
                t += v.unsqueeze(mem["axis"])
    elif kind == "scale":
        c = float(rng.choice([-1, 1]) * rng.uniform(0.25, 0.7))
        c = float(np.exp(c))
        for mem in claim["members"]:
            p[mem["initializer"]] *= c
    else:
        raise ValueError("unknown claim kind %r" % kind)
    return p


class ClaimError(Exception):
    pass


class Harness:
    def __init__(self, base, train=True):
        model, args = ef.build_model(base)
        self.model = model.double().train(train)
        self.params = {k: v.detach().clone() for k, v in self.model.state_dict().items()
                       if v.is_floating_point()}
        self.trainable = {k for k, _ in self.model.named_parameters()}
        g = torch.Generator().manual_seed(4242)
        extra = ef.BASE[base][2](g)
        self.inputs = [tuple(x.double() if x.is_floating_point() else x for x in xs)
                       for xs in (args, extra)]
        self.ref = [self.run(self.params, xs) for xs in self.inputs]

    def run(self, params, xs):
        m = copy.deepcopy(self.model)
        sd = m.state_dict()
        sd.update(params)
        m.load_state_dict(sd)
        with torch.no_grad():
            return m(*xs)

    def rel_err(self, claim, loss, rng):
        try:
            p = transform(self.params, claim, rng)
        except (ValueError, KeyError, IndexError, RuntimeError, np.linalg.LinAlgError) as ex:
            raise ClaimError("cannot apply claim %s: %s" % (claim.get("id"), ex)) from ex
        worst = 0.0
        for xs, ref in zip(self.inputs, self.ref):
            out = self.run(p, xs)
            r0 = ref
            if claim["kind"] == "shift" and loss == "cross-entropy":
                out, r0 = torch.softmax(out, -1), torch.softmax(r0, -1)
            worst = max(worst, float((out - r0).norm() / r0.norm()))
        return worst


class OnnxHarness(Harness):
    """The same claims on the ONNX file itself, run by tests/python/onnx_numpy.py (float64):
    parameters are the file's initializers (or, for mlp_tanh_constants, the named Constant
    outputs), transformed and fed back as overrides."""

    def __init__(self, fixture, torch_harness):
        self.proto = onnx.load(os.path.join(MODELS, fixture + ".onnx"))
        tensors = onnx_tensors(os.path.join(MODELS, fixture + ".onnx"))
        self.params = {k: torch.from_numpy(tensors[k].astype(np.float64))
                       for k in torch_harness.params if k in tensors}
        self.trainable = torch_harness.trainable
        self.names = [i.name for i in self.proto.graph.input]
        self.inputs = torch_harness.inputs
        self.ref = [self.run(self.params, xs) for xs in self.inputs]

    def run(self, params, xs):
        feeds = {n: x.numpy() for n, x in zip(self.names, xs)}
        out = onnx_numpy.run(self.proto, feeds, {k: v.numpy() for k, v in params.items()})
        return torch.from_numpy(np.asarray(out[0], dtype=np.float64))


# ------------------------------------------------------------------ checks
def onnx_tensors(path):
    """name -> numpy value of every initializer and every Constant node's output."""
    m = onnx.load(path)
    t = {i.name: onnx.numpy_helper.to_array(i) for i in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    t.setdefault(n.output[0], onnx.numpy_helper.to_array(a.t))
    return t


def check_structure(fixture, doc, harness, errors):
    tensors = onnx_tensors(os.path.join(MODELS, fixture + ".onnx"))
    for lst in ("claims", "extended_claims", "not"):
        for c in doc.get(lst, []):
            where = "%s %s %s" % (fixture, lst, c["id"])
            for mem in c["members"]:
                name = mem["initializer"]
                if name not in tensors:
                    errors.append("%s: %s is not a tensor of the ONNX file" % (where, name))
                    continue
                if name not in harness.params:
                    errors.append("%s: %s is not a torch parameter/buffer" % (where, name))
                    continue
                shape = list(harness.params[name].shape)
                if list(tensors[name].shape) != shape:
                    errors.append("%s: %s has dims %s in ONNX, %s in torch"
                                  % (where, name, list(tensors[name].shape), shape))
                elif not np.allclose(
                        tensors[name], harness.params[name].numpy(), rtol=1e-6, atol=1e-7):
                    # the rebuilt torch module must be the exported one (same seed)
                    errors.append("%s: %s differs between the ONNX file and the rebuilt torch "
                                  "module" % (where, name))
                if c["kind"] == "linear":
                    cs = coords(mem)
                    if len(cs) != c["n"]:
                        errors.append("%s: member %s has %d coordinates, n = %d"
                                      % (where, name, len(cs), c["n"]))
                    if min(cs) < 0 or max(cs) >= shape[mem["axis"]] or len(set(cs)) != len(cs):
                        errors.append("%s: member %s coordinates out of range" % (where, name))
            if c["kind"] == "shift" and doc["loss"] != "cross-entropy" and lst == "claims":
                # allowed only where the graph output itself is invariant (checked raw)
                pass


def check_claims(fixture, doc, h, errors, report, label="torch"):
    fixture_label = fixture
    fixture = "%s [%s]" % (fixture, label)
    seed = zlib.crc32(fixture_label.encode())
    rng = np.random.default_rng(seed)
    loss = doc["loss"]
    worst_exact, worst_approx, least_not = 0.0, 0.0, np.inf
    for lst in ("claims", "extended_claims"):
        for c in doc.get(lst, []):
            tol = TOL_EXACT if c["exact"] else TOL_APPROX
            for _ in range(TRIALS):
                try:
                    e = h.rel_err(c, loss, rng)
                except ClaimError as ex:
                    errors.append("%s %s: %s" % (fixture, lst, ex))
                    break
                if c["exact"]:
                    worst_exact = max(worst_exact, e)
                else:
                    worst_approx = max(worst_approx, e)
                if not e < tol:
                    errors.append("%s %s %s (%s): rel err %.3g > %g  [%s]"
                                  % (fixture, lst, c["id"], c.get("group", {}).get("name", c["kind"]),
                                     e, tol, c["note"]))
                    break
    for c in doc["not"]:
        for _ in range(TRIALS):
            try:
                e = h.rel_err(c, loss, rng)
            except ClaimError as ex:
                errors.append("%s not: %s" % (fixture, ex))
                break
            least_not = min(least_not, e)
            if not e > TOL_NOT:
                errors.append("%s not %s: claimed false but rel err only %.3g  [%s]"
                              % (fixture, c["id"], e, c["note"]))
                break
    report.append((worst_exact, worst_approx, least_not))


def self_checks(fixture, doc, h, errors):
    """The harness must see wrong transforms: returns how many self-checks ran."""
    rng = np.random.default_rng(7)
    ran = 0
    linear = [c for c in doc["claims"] + doc.get("extended_claims", [])
              if c["kind"] == "linear" and len(c["members"]) >= 2]
    if linear:
        c = copy.deepcopy(linear[0])
        dropped = c["members"].pop()
        e = h.rel_err(c, doc["loss"], rng)
        ran += 1
        if not e > TOL_NOT:
            errors.append("%s self-check: claim %s without member %s still holds (rel err %.3g)"
                          % (fixture, c["id"], dropped["initializer"], e))
    # GL claims pair "out" and "in" members; one member taking A instead of A^-T breaks it
    # (swapping every member would only replace A by A^-T, still a group element).
    gl = [c for c in doc["claims"] if c["kind"] == "linear" and
          (c["group"]["name"] == "GL" or c["group"].get("inner") == "GL") and
          {m["variance"] for m in c["members"]} == {"in", "out"}]
    if gl:
        c = copy.deepcopy(gl[0])
        mem = next(m for m in c["members"] if m["variance"] == "in")
        mem["variance"] = "out"
        e = h.rel_err(c, doc["loss"], rng)
        ran += 1
        if not e > TOL_NOT:
            errors.append("%s self-check: GL claim %s with %s taking A instead of A^-T still "
                          "holds (%.3g)" % (fixture, c["id"], mem["initializer"], e))
    return ran


def main():
    import argparse
    ap = argparse.ArgumentParser(description="check expected symmetry claims against torch")
    ap.add_argument("--expected", default=os.path.join(MODELS, "expected"),
                    help="folder of <fixture>.json claims files (default: models/expected)")
    ap.add_argument("fixtures", nargs="*", help="fixtures to check (default: all)")
    a = ap.parse_args()
    fixtures = a.fixtures or sorted(ef.FIXTURES)
    unknown = [f for f in fixtures if f not in ef.FIXTURES]
    if unknown:
        sys.exit("test_ground_truth.py: unknown fixture(s) %s" % unknown)
    errors = []
    totals = {"claims": 0, "extended": 0, "not": 0, "self": 0}
    harnesses = {}
    for fixture in fixtures:
        path = os.path.join(a.expected, fixture + ".json")
        if not os.path.exists(path):
            errors.append("%s: missing %s" % (fixture, path))
            continue
        with open(path) as f:
            doc = json.load(f)
        if doc.get("schema") != "symoc.symmetry/1":
            errors.append("%s: schema is %r" % (path, doc.get("schema")))
        base = ef.base_of(fixture)
        if base not in harnesses:
            harnesses[base] = Harness(base)
        h = harnesses[base]
        n_err = len(errors)
        check_structure(fixture, doc, h, errors)
        report = []
        check_claims(fixture, doc, h, errors, report)
        check_claims(fixture, doc, OnnxHarness(fixture, h), errors, report, "onnx")
        if any(isinstance(m, torch.nn.BatchNorm2d) for m in h.model.modules()):
            # Eval mode reads BatchNorm's running statistics: the exact claims, which permute
            # them along, must hold there too (training mode never reads them).
            ev = dict(doc, claims=[c for c in doc["claims"] if c["exact"]])
            ev["not"] = []
            check_claims(fixture, ev, Harness(base, train=False), errors, [], "torch eval")
        try:
            ran = self_checks(fixture, doc, h, errors)
        except ClaimError as ex:
            errors.append("%s self-check: %s" % (fixture, ex))
            ran = 0
        (we, wa, ln), (owe, owa, oln) = report
        print("%-22s %3d claims %2d extended %2d not %d self-checks | torch / onnx: max err "
              "exact %.0e / %.0e, approx %.0e / %.0e; min err of false claims %.2g / %.2g  %s"
              % (fixture, len(doc["claims"]), len(doc.get("extended_claims", [])),
                 len(doc["not"]), ran, we, owe, wa, owa, ln, oln,
                 "ok" if len(errors) == n_err else "FAIL"))
        totals["claims"] += len(doc["claims"])
        totals["extended"] += len(doc.get("extended_claims", []))
        totals["not"] += len(doc["not"])
        totals["self"] += ran
    for e in errors:
        print("FAIL: " + e)
    print("%d fixtures, %d claims, %d extended claims, %d false claims, %d self-checks: %s"
          % (len(fixtures), totals["claims"], totals["extended"], totals["not"], totals["self"],
             "%d failure(s)" % len(errors) if errors else "all hold"))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
