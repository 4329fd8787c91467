#!/usr/bin/python3
"""Write models/expected/<fixture>.json: the symmetries that truly hold for each fixture.

Usage: /usr/bin/python3 models/make_expected.py [--out DIR]

The claims are written by hand from the architecture of each torch module in
export_fixtures.py (not by analysing the ONNX graph): this script only saves typing the same
member lists for every layer. Tensor shapes are read from the torch modules to fill in
extents. tests/python/test_ground_truth.py applies every claim to the torch parameters and
checks that it holds (and that every "not" entry does not).

Document layout (symoc.symmetry/1, docs/symmetry-schema.md), plus three additions that the
schema does not have yet (see models/README.md, "Expected files"):
  "not":             claims that look plausible and are FALSE (checked to change the output);
  "extended_claims": true symmetries the schema cannot express; they use the proposed
                     extensions variance "abs" (multiply by |A|) and group "Z2" (diagonal +-1);
  group "heads" carries "heads" and "head_dim" (the schema names outer/inner/pairs only).
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import export_fixtures as ef  # noqa: E402


class Doc:
    def __init__(self, base, loss):
        model, _ = ef.build_model(base)
        self.shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
        self.loss = loss
        self.spaces, self.claims, self.nots, self.ext = [], [], [], []

    # -- members
    def m(self, init, axis, variance, offset=0, extent=None, stride=1):
        if init not in self.shapes:
            raise KeyError("no parameter %s" % init)
        dim = self.shapes[init][axis]
        if extent is None:
            extent = (dim - offset + stride - 1) // stride
        assert offset + (extent - 1) * stride < dim, (init, axis, offset, extent, stride)
        return {"initializer": init, "axis": axis, "offset": offset, "extent": extent,
                "stride": stride, "variance": variance}

    def space(self, name, n, note):
        sid = "s%d" % len(self.spaces)
        self.spaces.append({"id": sid, "name": name, "n": n, "note": note})
        return sid

    def _add(self, lst, prefix, d):
        d = dict(d)
        d["id"] = "%s%d" % (prefix, len(lst))
        lst.append({k: d[k] for k in ["id"] + [k for k in d if k != "id"]})

    def lin(self, space, group, members, note, exact=True, where="claims"):
        n = self.spaces[int(space[1:])]["n"]
        for mem in members:
            assert mem["extent"] == n, (note, mem, n)
        c = {"kind": "linear", "space": space, "n": n, "group": group, "exact": exact,
             "members": members, "note": note}
        self._where(where, c)

    def shift(self, members, note, where="claims", output=None):
        c = {"kind": "shift", "exact": True, "members": members, "note": note}
        if output:  # the loss's softmax is over this output (compared after it; others raw)
            c.update(output=output, output_axis=-1)
        self._where(where, c)

    def scale(self, inits, note, exact=False, where="claims"):
        for i in inits:
            assert i in self.shapes, i
        self._where(where, {"kind": "scale", "exact": exact,
                            "members": [{"initializer": i} for i in inits], "note": note})

    def _where(self, where, c):
        lst, prefix = {"claims": (self.claims, "c"), "not": (self.nots, "n"),
                       "ext": (self.ext, "x")}[where]
        self._add(lst, prefix, c)

    def dump(self, fixture, note=None):
        d = {"schema": "symoc.symmetry/1", "model": "models/%s.onnx" % fixture,
             "loss": self.loss, "spaces": self.spaces, "claims": self.claims}
        if self.ext:
            d["extended_claims"] = self.ext
        d["not"] = self.nots
        if note:
            d["note"] = note
        return d


S, B, O, GL, SCALE, Z2 = ({"name": n} for n in ("S", "B", "O", "GL", "Scale+", "Z2"))


def heads(h, dh, outer, inner, pairs=None):
    g = {"name": "heads", "heads": h, "head_dim": dh, "outer": outer, "inner": inner}
    if pairs is not None:
        g["pairs"] = pairs
    return g


# --------------------------------------------------------------------------- MLPs
def mlp(base, act):
    d = Doc(base, "none")
    for i, (a, b) in enumerate((("fc1", "fc2"), ("fc2", "fc3"))):
        s = d.space("hidden%d" % (i + 1), 32, "%s output after %s" % (a, act))
        units = [d.m(a + ".weight", 0, "out"), d.m(a + ".bias", 0, "out"),
                 d.m(b + ".weight", 1, "in")]
        if act == "relu":
            d.lin(s, S, units, "ReLU hidden units are interchangeable")
            d.lin(s, SCALE, units, "ReLU is positively homogeneous: rows of %s and its bias "
                  "times d, columns of %s divided by d" % (a, b))
            if i == 0:
                d.lin(s, B, units, "ReLU is not odd", where="not")
                d.lin(s, O, units, "ReLU acts per unit", where="not")
                d.lin(s, SCALE, units[:1] + units[2:], "scaling without the bias", where="not")
        elif act == "tanh":
            d.lin(s, B, units, "Tanh is odd: signed permutations of the hidden units")
            if i == 0:
                d.lin(s, SCALE, units, "Tanh is not homogeneous", where="not")
                d.lin(s, O, units, "Tanh acts per unit", where="not")
        else:   # gelu (exact, or written out with tanh)
            d.lin(s, S, units, "GELU hidden units are interchangeable")
            if i == 0:
                d.lin(s, SCALE, units, "GELU is not positively homogeneous", where="not")
                d.lin(s, B, units, "GELU is not odd (even when written with a Tanh)",
                      where="not")
    return d


def adv_relu_const_add():
    d = Doc("adv_relu_const_add", "none")
    s1 = d.space("hidden1", 32, "fc1 output after ReLU, plus a fixed constant vector: no symmetry")
    u1 = [d.m("fc1.weight", 0, "out"), d.m("fc1.bias", 0, "out"), d.m("fc2.weight", 1, "in")]
    s2 = d.space("hidden2", 32, "fc2 output after ReLU")
    u2 = [d.m("fc2.weight", 0, "out"), d.m("fc3.weight", 1, "in")]
    d.lin(s2, S, u2, "ReLU hidden units (fc2 has no bias)")
    d.lin(s2, SCALE, u2, "ReLU positive homogeneity")
    d.lin(s1, S, u1, "the added constant is not a parameter: permuting the units would need "
          "it permuted", where="not")
    d.lin(s1, SCALE, u1, "relu(x)+c is not homogeneous", where="not")
    return d


def adv_slice_hidden():
    d = Doc("adv_slice_hidden", "none")
    lo, hi = ef.SliceHidden.LO, ef.SliceHidden.HI
    s = d.space("live", hi - lo, "hidden units %d..%d, kept by the Slice" % (lo, hi - 1))
    live = [d.m("fc1.weight", 0, "out", lo, hi - lo), d.m("fc1.bias", 0, "out", lo, hi - lo),
            d.m("fc2.weight", 1, "in")]
    d.lin(s, S, live, "only the kept units are interchangeable")
    d.lin(s, SCALE, live, "ReLU positive homogeneity on the kept units")
    for off, ext in ((0, lo), (hi, 32 - hi)):
        sd = d.space("dead%d" % off, ext, "hidden units %d..%d, dropped by the Slice" %
                     (off, off + ext - 1))
        d.lin(sd, GL, [d.m("fc1.weight", 0, "out", off, ext), d.m("fc1.bias", 0, "out", off, ext)],
              "dead units: their fc1 rows never reach the output (any change is invisible)")
    sf = d.space("all_hidden", 32, "all of fc1's outputs (not a real space: the Slice splits it)")
    d.lin(sf, S, [d.m("fc1.weight", 0, "out"), d.m("fc1.bias", 0, "out")],
          "a permutation of all 32 units moves dead units into the kept range", where="not")
    d.lin(s, S, live[:2],
          "kept units permuted without fc2's columns", where="not")
    return d


def adv_fixed_gain():
    d = Doc("adv_fixed_gain", "none")
    s = d.space("normed", 32, "fc1 output, RMS-normalized, times a fixed gain (Constant)")
    u = [d.m("fc1.weight", 0, "out"), d.m("fc1.bias", 0, "out"), d.m("fc2.weight", 1, "in")]
    d.scale(["fc1.weight", "fc1.bias"], "RMSNorm removes a common scale of its input "
            "(up to eps 1e-6)")
    d.lin(s, Z2, u, "sign flips commute with RMSNorm and with the fixed elementwise gain",
          where="ext")
    d.lin(s, S, u, "the fixed gain would have to be permuted", where="not")
    d.lin(s, B, u, "the fixed gain would have to be permuted", where="not")
    d.lin(s, O, u, "RMSNorm alone is O(n)-equivariant, the fixed gain breaks it", where="not")
    return d


# --------------------------------------------------------------------------- ResNet
def resnet():
    d = Doc("resnet_cnn", "none")

    def bn(name, stats=True):
        ms = [d.m(name + ".weight", 0, "out"), d.m(name + ".bias", 0, "out")]
        if stats:   # buffers; irrelevant to a training-mode forward, permuted for consistency
            ms += [d.m(name + ".running_mean", 0, "out"), d.m(name + ".running_var", 0, "out")]
        return ms

    r = d.space("residual", 8, "stem output and both blocks' outputs (identity skips)")
    res_s = [d.m("conv0.weight", 0, "out")] + bn("bn0")
    res_g = bn("bn0", False)
    for l in ("layer1", "layer2"):
        res_s += [d.m(l + ".conv1.weight", 1, "in"), d.m(l + ".conv2.weight", 0, "out")] + \
            bn(l + ".bn2")
        res_g += bn(l + ".bn2", False) + [d.m(l + ".conv1.weight", 1, "in")]
    res_s.append(d.m("fc.weight", 1, "in"))
    res_g.append(d.m("fc.weight", 1, "in"))
    d.lin(r, S, res_s, "residual channels are interchangeable (BN stats permuted along)")
    d.lin(r, SCALE, res_g, "ReLU after each add is positively homogeneous: BN gains and "
          "biases feeding the stream times d, its readers' input channels divided by d")
    for l in ("layer1", "layer2"):
        h = d.space(l + ".hidden", 8, "inside the block: conv1 -> bn1 -> relu -> conv2")
        hs = [d.m(l + ".conv1.weight", 0, "out")] + bn(l + ".bn1") + \
            [d.m(l + ".conv2.weight", 1, "in")]
        d.lin(h, S, hs, "block-internal channels are interchangeable")
        d.lin(h, SCALE, bn(l + ".bn1", False) + [d.m(l + ".conv2.weight", 1, "in")],
              "ReLU homogeneity between bn1's affine output and conv2's input channels")
        if l == "layer1":
            d.lin(h, B, hs, "ReLU is not odd", where="not")
    for conv, n in (("conv0", 8), ("layer1.conv1", 8), ("layer1.conv2", 8),
                    ("layer2.conv1", 8), ("layer2.conv2", 8)):
        sc = d.space(conv + ".out", n, "output channels of %s, normalized by the next "
                     "BatchNorm (training mode)" % conv)
        d.lin(sc, SCALE, [d.m(conv + ".weight", 0, "out")], "BatchNorm in training mode "
              "removes a per-channel scale of its input (up to eps 1e-5; running stats "
              "would need d and d^2)", exact=False)
    d.lin(r, O, res_s, "ReLU and per-channel BN act per channel", where="not")
    d.lin(r, SCALE, [m for m in res_g if not m["initializer"].endswith(".bias")],
          "residual scaling without the BN biases", where="not")
    return d


# --------------------------------------------------------------------------- GPT-2
def gpt2(base):
    d = Doc(base, "cross-entropy")
    D, H, DH, FF = 32, 4, 8, 128
    r = d.space("residual", D, "embeddings, attention and MLP outputs, all LayerNorm inputs")
    res = [d.m("wte.weight", 1, "out"), d.m("wpe.weight", 1, "out")]
    for i in range(2):
        p = "h.%d." % i
        res += [d.m(p + "ln_1.weight", 0, "out"), d.m(p + "ln_1.bias", 0, "out"),
                d.m(p + "attn.c_attn.weight", 1, "in"),
                d.m(p + "attn.c_proj.weight", 0, "out"), d.m(p + "attn.c_proj.bias", 0, "out"),
                d.m(p + "ln_2.weight", 0, "out"), d.m(p + "ln_2.bias", 0, "out"),
                d.m(p + "mlp.c_fc.weight", 1, "in"),
                d.m(p + "mlp.c_proj.weight", 0, "out"), d.m(p + "mlp.c_proj.bias", 0, "out")]
    res += [d.m("ln_f.weight", 0, "out"), d.m("ln_f.bias", 0, "out")]
    d.lin(r, S, res, "LayerNorm is permutation-equivariant (gains and biases permuted); the "
          "tied head reuses wte, already a member")
    for i in range(2):
        p = "h.%d." % i
        W, Bb, P = p + "attn.c_attn.weight", p + "attn.c_attn.bias", p + "attn.c_proj.weight"

        def rows(j, var):
            return [d.m(W, 0, var, j * D, D), d.m(Bb, 0, var, j * D, D)]
        qk = d.space(p + "attn.qk", D, "query/key channels, 4 heads x 8 (c_attn rows 0..63)")
        vo = d.space(p + "attn.vo", D, "value channels, 4 heads x 8 (c_attn rows 64..95, "
                     "c_proj columns)")
        hd = d.space(p + "attn.heads", D, "the head axis shared by Q, K, V and c_proj")
        d.lin(qk, heads(H, DH, "1", "GL"), rows(0, "out") + rows(1, "in"),
              "scores q.k are invariant under q -> A q, k -> A^-T k per head (no RoPE)")
        d.lin(vo, heads(H, DH, "1", "GL"), rows(2, "out") + [d.m(P, 1, "in")],
              "softmax rows sum to 1, so V's bias passes through; c_proj absorbs A^-1")
        d.lin(hd, heads(H, DH, "S", "1"), rows(0, "out") + rows(1, "out") + rows(2, "out") +
              [d.m(P, 1, "in")], "heads are interchangeable (Q, K, V and c_proj together)")
        hid = d.space(p + "mlp.hidden", FF, "c_fc output, GELU (tanh form)")
        hm = [d.m(p + "mlp.c_fc.weight", 0, "out"), d.m(p + "mlp.c_fc.bias", 0, "out"),
              d.m(p + "mlp.c_proj.weight", 1, "in")]
        d.lin(hid, S, hm, "GELU hidden units")
        for ln, cons in (("ln_1", "attn.c_attn.weight"), ("ln_2", "mlp.c_fc.weight")):
            g = d.space(p + ln + ".out", D, "%s output, read only by %s" % (ln, cons))
            d.lin(g, SCALE, [d.m(p + ln + ".weight", 0, "out"), d.m(p + ln + ".bias", 0, "out"),
                             d.m(p + cons, 1, "in")],
                  "gain/bias of %s times d, input columns of %s divided by d" % (ln, cons))
        if i == 0:
            d.lin(hid, SCALE, hm, "GELU is not homogeneous", where="not")
            d.lin(qk, heads(H, DH, "1", "GL"), rows(0, "out") + rows(1, "out"),
                  "K must take A^-T, not A", where="not")
            d.lin(qk, GL, rows(0, "out") + rows(1, "in"),
                  "mixing channels across heads breaks the per-head softmax", where="not")
            d.lin(hd, heads(H, DH, "S", "1"), rows(0, "out") + rows(1, "out"),
                  "permuting Q/K heads without V and c_proj", where="not")
    lf = d.space("ln_f.out", D, "ln_f output, read by the tied head (wte)")
    d.lin(r, B, res, "LayerNorm subtracts the mean: sign flips do not commute", where="not")
    d.lin(r, O, res, "LayerNorm's elementwise gain breaks rotations", where="not")
    d.lin(lf, SCALE, [d.m("ln_f.weight", 0, "out"), d.m("ln_f.bias", 0, "out"),
                      d.m("wte.weight", 1, "in")],
          "tied head: wte's columns also feed the input embedding", where="not")
    d.shift([{"initializer": "wte.weight", "axis": 0, "role": "weight"}],
            "tied embedding/head: the same matrix feeds the input, no logit shift", where="not")
    d.scale(["wte.weight", "wpe.weight"] + ["h.%d.%s.%s" % (i, l, t) for i in range(2)
                                            for l in ("attn.c_proj", "mlp.c_proj")
                                            for t in ("weight", "bias")],
            "scaling the residual stream: LayerNorms absorb it but the tied head scales the "
            "logits", where="not")
    return d


# --------------------------------------------------------------------------- LLaMA
def llama():
    d = Doc("llama", "cross-entropy")
    D, H, KV, DH, FF = 32, 4, 2, 8, 64
    rep = H // KV
    rope_pairs = [[i, i + DH // 2] for i in range(DH // 2)]
    r = d.space("residual", D, "embedding, o_proj and down_proj outputs; RMSNorm inputs")
    res_s = [d.m("embed_tokens.weight", 1, "out")]
    res_b = [d.m("embed_tokens.weight", 1, "out")]
    gains = []
    for i in range(2):
        p = "layers.%d." % i
        body = [d.m(p + "self_attn.%s_proj.weight" % x, 1, "in") for x in "qkv"] + \
            [d.m(p + "self_attn.o_proj.weight", 0, "out")] + \
            [d.m(p + "mlp.%s_proj.weight" % x, 1, "in") for x in ("gate", "up")] + \
            [d.m(p + "mlp.down_proj.weight", 0, "out")]
        res_s += body + [d.m(p + n + ".weight", 0, "out")
                         for n in ("input_layernorm", "post_attention_layernorm")]
        res_b += body + [dict(d.m(p + n + ".weight", 0, "out"), variance="abs")
                         for n in ("input_layernorm", "post_attention_layernorm")]
        gains += [p + n + ".weight" for n in ("input_layernorm", "post_attention_layernorm")]
    res_s += [d.m("norm.weight", 0, "out"), d.m("lm_head.weight", 1, "in")]
    res_b += [dict(d.m("norm.weight", 0, "out"), variance="abs"), d.m("lm_head.weight", 1, "in")]
    d.lin(r, S, res_s, "RMSNorm gains are permuted with the stream")
    d.lin(r, B, res_b, "signed permutations: x/rms(x) is odd per channel; each gain takes "
          "|A| (permuted, not sign-flipped) so that A x * |A| g = A (x * g)", where="ext")
    d.scale(["embed_tokens.weight"] + ["layers.%d.%s.weight" % (i, w) for i in range(2)
                                       for w in ("self_attn.o_proj", "mlp.down_proj")],
            "every residual write times c: each RMSNorm removes it (up to eps 1e-6)")
    d.shift([{"initializer": "lm_head.weight", "axis": 0, "role": "weight"}],
            "untied LM head: adding v to every row adds v.x to every logit (softmax "
            "cross-entropy is invariant)", output="logits")
    for i in range(2):
        p = "layers.%d." % i
        Q, K, V, Oo = (p + "self_attn.%s_proj.weight" % x for x in "qkvo")
        for g in range(KV):
            qk = d.space(p + "attn.qk%d" % g, DH, "KV head %d's key channels and the channels "
                         "of its query heads %s" % (g, list(range(g * rep, g * rep + rep))))
            qrows = [d.m(Q, 0, "out", (g * rep + j) * DH, DH) for j in range(rep)]
            d.lin(qk, heads(1, DH, "1", "rope", rope_pairs), qrows + [d.m(K, 0, "in", g * DH, DH)],
                  "RoPE (rotate-half, pairs i, i+4): per frequency pair a rotation-scaling "
                  "commutes with the rotary map; q takes A, k takes A^-T")
            vo = d.space(p + "attn.vo%d" % g, DH, "KV head %d's value channels" % g)
            d.lin(vo, heads(1, DH, "1", "GL"),
                  [d.m(V, 0, "out", g * DH, DH)] +
                  [d.m(Oo, 1, "in", (g * rep + j) * DH, DH) for j in range(rep)],
                  "V of KV head %d and the o_proj columns of all query heads reading it" % g)
            qh = d.space(p + "attn.qheads%d" % g, rep * DH, "query heads of KV group %d" % g)
            d.lin(qh, heads(rep, DH, "S", "1"),
                  [d.m(Q, 0, "out", g * rep * DH, rep * DH),
                   d.m(Oo, 1, "in", g * rep * DH, rep * DH)],
                  "query heads sharing one KV head are interchangeable")
            if i == 0 and g == 0:
                d.lin(qk, heads(1, DH, "1", "GL"), qrows + [d.m(K, 0, "in", 0, DH)],
                      "GL(d_h) on Q/K is false under RoPE", where="not")
                d.lin(qk, heads(1, DH, "1", "O"), qrows + [d.m(K, 0, "in", 0, DH)],
                      "O(d_h) on Q/K is false under RoPE", where="not")
                d.lin(qk, heads(1, DH, "1", "rope", [[2 * j, 2 * j + 1] for j in range(DH // 2)]),
                      qrows + [d.m(K, 0, "in", 0, DH)],
                      "adjacent-pair rotations: wrong pairing for rotate-half RoPE", where="not")
        # Permuting KV heads with their query groups: the space is the KV-group index
        # (n = 2); one member per channel inside a group, strided by the group size.
        kvh = d.space(p + "attn.kvgroups", KV, "KV-head index: KV head g with query heads "
                      "g*%d .. g*%d+%d" % (rep, rep, rep - 1))
        d.lin(kvh, S,
              [d.m(Q, 0, "out", c, KV, rep * DH) for c in range(rep * DH)] +
              [d.m(K, 0, "out", c, KV, DH) for c in range(DH)] +
              [d.m(V, 0, "out", c, KV, DH) for c in range(DH)] +
              [d.m(Oo, 1, "in", c, KV, rep * DH) for c in range(rep * DH)],
              "KV heads are interchangeable together with their query groups (one member per "
              "channel of a group, stride = group size)")
        if i == 0:
            d.lin(kvh, S, [d.m(K, 0, "out", c, KV, DH) for c in range(DH)] +
                  [d.m(V, 0, "out", c, KV, DH) for c in range(DH)],
                  "permuting KV heads without their query groups", where="not")
        if i == 0:
            cross = d.space(p + "attn.qheads_cross", 2 * DH, "query heads 1 and 2 (different "
                            "KV groups)")
            d.lin(cross, heads(2, DH, "S", "1"), [d.m(Q, 0, "out", DH, 2 * DH),
                                                  d.m(Oo, 1, "in", DH, 2 * DH)],
                  "swapping query heads of different KV groups", where="not")
        hid = d.space(p + "mlp.hidden", FF, "SwiGLU hidden: silu(gate) * up")
        G, U, Dn = (p + "mlp.%s_proj.weight" % x for x in ("gate", "up", "down"))
        d.lin(hid, S, [d.m(G, 0, "out"), d.m(U, 0, "out"), d.m(Dn, 1, "in")],
              "SwiGLU hidden units")
        d.lin(hid, SCALE, [d.m(U, 0, "out"), d.m(Dn, 1, "in")],
              "up rows times d, down columns divided by d (the product is linear in up)")
        d.lin(hid, B, [dict(d.m(G, 0, "out"), variance="abs"), d.m(U, 0, "out"),
                       d.m(Dn, 1, "in")],
              "sign flips of up and down (gate only permuted)", where="ext")
        for n, cons in (("input_layernorm", ["self_attn.%s_proj" % x for x in "qkv"]),
                        ("post_attention_layernorm", ["mlp.gate_proj", "mlp.up_proj"])):
            g = d.space(p + n + ".out", D, "%s output" % n)
            d.lin(g, SCALE, [d.m(p + n + ".weight", 0, "out")] +
                  [d.m(p + c + ".weight", 1, "in") for c in cons],
                  "gain times d, its readers' input columns divided by d")
        if i == 0:
            d.lin(hid, SCALE, [d.m(G, 0, "out"), d.m(Dn, 1, "in")],
                  "silu is not homogeneous: no gauge between gate and down", where="not")
            d.lin(hid, B, [d.m(G, 0, "out"), d.m(U, 0, "out"), d.m(Dn, 1, "in")],
                  "silu is not odd", where="not")
    g = d.space("norm.out", D, "final norm output")
    d.lin(g, SCALE, [d.m("norm.weight", 0, "out"), d.m("lm_head.weight", 1, "in")],
          "final gain times d, lm_head columns divided by d")
    d.lin(r, B, res_s, "signed permutation with the gains sign-flipped too ('out')",
          where="not")
    d.lin(r, O, res_s, "trainable elementwise gains break rotations", where="not")
    d.shift([{"initializer": "embed_tokens.weight", "axis": 0, "role": "weight"}],
            "the input embedding has no shift gauge", where="not")
    return d


# --------------------------------------------------------------------------- TransformerEncoder
def encoder():
    d = Doc("transformer_encoder", "none")
    D, H, DH, FF = 32, 4, 8, 64
    r = d.space("residual", D, "inp output and every post-LN layer's stream")
    res = [d.m("inp.weight", 0, "out"), d.m("inp.bias", 0, "out")]
    for i in range(2):
        p = "encoder.layers.%d." % i
        res += [d.m(p + "self_attn.in_proj_weight", 1, "in"),
                d.m(p + "self_attn.out_proj.weight", 0, "out"),
                d.m(p + "self_attn.out_proj.bias", 0, "out"),
                d.m(p + "norm1.weight", 0, "out"), d.m(p + "norm1.bias", 0, "out"),
                d.m(p + "linear1.weight", 1, "in"),
                d.m(p + "linear2.weight", 0, "out"), d.m(p + "linear2.bias", 0, "out"),
                d.m(p + "norm2.weight", 0, "out"), d.m(p + "norm2.bias", 0, "out")]
    res.append(d.m("out.weight", 1, "in"))
    d.lin(r, S, res, "LayerNorm is permutation-equivariant")
    for i in range(2):
        p = "encoder.layers.%d." % i
        W, Bb = p + "self_attn.in_proj_weight", p + "self_attn.in_proj_bias"
        P = p + "self_attn.out_proj.weight"

        def rows(j, var):
            return [d.m(W, 0, var, j * D, D), d.m(Bb, 0, var, j * D, D)]
        qk = d.space(p + "qk", D, "packed in_proj rows 0..63: q and k, 4 heads x 8")
        d.lin(qk, heads(H, DH, "1", "GL"), rows(0, "out") + rows(1, "in"), "per-head Q-K GL")
        vo = d.space(p + "vo", D, "in_proj rows 64..95 and out_proj columns")
        d.lin(vo, heads(H, DH, "1", "GL"), rows(2, "out") + [d.m(P, 1, "in")], "per-head V-O GL")
        hd = d.space(p + "heads", D, "head axis")
        d.lin(hd, heads(H, DH, "S", "1"), rows(0, "out") + rows(1, "out") + rows(2, "out") +
              [d.m(P, 1, "in")], "head permutation")
        ff = d.space(p + "ff", FF, "linear1 output, ReLU")
        fm = [d.m(p + "linear1.weight", 0, "out"), d.m(p + "linear1.bias", 0, "out"),
              d.m(p + "linear2.weight", 1, "in")]
        d.lin(ff, S, fm, "ReLU hidden units")
        d.lin(ff, SCALE, fm, "ReLU positive homogeneity")
        d.scale([p + "norm1.weight", p + "norm1.bias", p + "linear1.bias", p + "linear2.bias"],
                "norm2's input x + ff(x), x = norm1's output, scales by c when norm1's "
                "affine and both FF biases do (ReLU homogeneous); norm2 removes c (eps 1e-5)")
        if i == 0:
            d.lin(ff, B, fm, "ReLU is not odd", where="not")
    d.lin(r, B, res, "LayerNorm mean subtraction breaks sign flips", where="not")
    d.lin(r, SCALE, res[:2] + [m for m in res[2:] if m["variance"] == "in"],
          "per-channel scaling of a LayerNorm input", where="not")
    return d


# --------------------------------------------------------------------------- MoE
def moe(base="moe"):
    d = Doc(base, "none")
    D, E, Hh = 32, 4, 64
    x = d.space("model", D, "inp output, MoE input, residual, out input: no nonlinearity "
                "acts on it")
    d.lin(x, GL, [d.m("inp.weight", 0, "out"), d.m("inp.bias", 0, "out"),
                  d.m("router.weight", 1, "in"), d.m("experts.w1", 2, "in"),
                  d.m("experts.w2", 1, "out"), d.m("experts.b2", 1, "out"),
                  d.m("out.weight", 1, "in")],
          "every reader of the model space is linear in it (router, experts' first layer, out)")
    e = d.space("experts", E, "expert index: router rows and axis 0 of the stacked experts")
    ex = [d.m("router.weight", 0, "out"), d.m("router.bias", 0, "out"),
          d.m("experts.w1", 0, "out"), d.m("experts.b1", 0, "out"),
          d.m("experts.w2", 0, "out"), d.m("experts.b2", 0, "out")]
    d.lin(e, S, ex, "experts are interchangeable with their router rows")
    d.shift([{"initializer": "router.weight", "axis": 0, "role": "weight"},
             {"initializer": "router.bias", "axis": 0, "role": "bias"}],
            "router logit shift: softmax and top-k see the same ordering and probabilities; "
            "here the model output itself is invariant (no loss needed)")
    h = d.space("expert_hidden", Hh, "hidden units of every expert (one element for all "
                "experts: a member cannot select one expert)")
    hm = [d.m("experts.w1", 1, "out"), d.m("experts.b1", 1, "out"), d.m("experts.w2", 2, "in")]
    d.lin(h, S, hm, "ReLU hidden units, same permutation in every expert")
    d.lin(h, SCALE, hm, "ReLU homogeneity, same scaling in every expert")
    d.lin(e, SCALE, [d.m("experts.w1", 0, "out"), d.m("experts.b1", 0, "out"),
                     d.m("experts.w2", 0, "in")],
          "ReLU homogeneity per expert: expert e's first layer times d_e, its second layer "
          "divided by d_e")
    d.lin(e, S, ex[:2], "permuting router rows without the experts", where="not")
    d.lin(e, SCALE, ex[:2], "scaling router logits changes softmax", where="not")
    d.lin(h, B, hm, "ReLU is not odd", where="not")
    return d


BUILDERS = {
    "mlp_relu": lambda: mlp("mlp_relu", "relu"),
    "mlp_tanh": lambda: mlp("mlp_tanh", "tanh"),
    "mlp_gelu": lambda: mlp("mlp_gelu", "gelu"),
    "adv_gelu_scale": lambda: mlp("adv_gelu_scale", "gelu"),
    "adv_relu_const_add": adv_relu_const_add,
    "adv_slice_hidden": adv_slice_hidden,
    "adv_fixed_gain": adv_fixed_gain,
    "resnet_cnn": resnet,
    "gpt2": lambda: gpt2("gpt2"),
    "llama": llama,
    "transformer_encoder": encoder,
    "moe": moe,
    "moe_mixtral": lambda: moe("moe_mixtral"),
}

NOTES = {
    "mlp_tanh_constants": "Every parameter is a Constant node whose output carries the "
    "parameter name (no initializers). These claims hold when those Constants are taken as "
    "the parameters; a tool that treats every Constant as fixed sees no trainable tensor.",
    "adv_fixed_gain": "The RMSNorm gain is a Constant node (fixed), not an initializer.",
    "adv_relu_const_add": "The vector added after the first ReLU is a Constant node (fixed).",
    "resnet_cnn": "BatchNormalization in training mode; running_mean/running_var are "
    "initializers (buffers, not trained); they are permuted along in the S claims.",
    "moe": "Router logit shift and expert permutation leave the graph output itself invariant.",
    "moe_mixtral": "Mixtral order (top-k on the logits, softmax over the k selected logits, "
    "experts gathered by the selected positions); the same symmetries as moe.",
}


def compact_json(doc):
    """Indented JSON with every innermost object or list (a member, a group, a pair) on one
    line, so that a claim reads as one member per line."""
    def leaf(v):
        return not any(isinstance(x, (dict, list)) for x in (v.values() if isinstance(v, dict) else v))

    def fmt(v, ind):
        if not isinstance(v, (dict, list)) or not v or leaf(v):
            return json.dumps(v)
        pad, inner = " " * ind, " " * (ind + 1)
        if isinstance(v, dict):
            items = ["%s%s: %s" % (inner, json.dumps(k), fmt(x, ind + 1)) for k, x in v.items()]
            return "{\n" + ",\n".join(items) + "\n" + pad + "}"
        if all(isinstance(x, list) and leaf(x) for x in v):   # e.g. rope pairs
            return json.dumps(v)
        return "[\n" + ",\n".join(inner + fmt(x, ind + 1) for x in v) + "\n" + pad + "]"
    return fmt(doc, 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(HERE, "expected"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for fixture in sorted(ef.FIXTURES):
        base = ef.base_of(fixture)
        doc = BUILDERS[base]().dump(fixture, NOTES.get(fixture) or NOTES.get(base))
        path = os.path.join(a.out, fixture + ".json")
        with open(path, "w") as f:
            f.write(compact_json(doc) + "\n")
        print("%-22s %3d claims  %2d extended  %2d not" % (
            fixture, len(doc["claims"]), len(doc.get("extended_claims", [])), len(doc["not"])))


if __name__ == "__main__":
    main()
