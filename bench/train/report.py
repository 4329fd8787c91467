#!/usr/bin/env python3
"""The training benchmark's report: markdown for docs/results.md and PNG plots.

    python3 bench/train/report.py RESULTS.json [RESULTS.json ...] [--md OUT.md] [--plots DIR]

Targets (issue #13): the AdamW target is the mean over AdamW's seeds of its last curve value
(val loss on the fixed curve batches at the last step), the Muon target likewise for torch
Muon + AdamW. Steps to a target: the first step where the seed-mean curve is <= the target,
linearly interpolated between evaluation points ("not reached" when it never is). Wall-clock
to a target: those steps x the policy's step time measured alone on the GPU (phase `time`),
and, in brackets, the seed-mean training seconds of the runs themselves at that step (they
shared the GPU with other runs, so these depend on the mix). Final val: the larger final
evaluation (--final-val-batches) after the last step, mean ± sample sd over seeds.

Several RESULTS.json (the calls of a protocol split over several GPU calls, bench/README.md)
are merged: files in the order of their date; the same grid point (model, policy, lr), seed run
(model, policy, seed) or timing (model, policy) in two files: a finished one (status ok or
diverged) beats a truncated or failed one, and among equals the later file wins; a truncated
run never counts as finished (it is counted, not averaged). Files whose protocols differ
(meta.config: corpus, batch, steps, warm-up, model configuration, torch, device) are refused
with one line. The report names the files and says which file each number came from.
"""
import argparse
import json
import math
import os
import re
import statistics
import sys

# meta.config: what must agree between files before they are merged (bench.py writes it; for
# older files it is derived from the rest of meta)
CONFIG_KEYS = ("torch", "device", "batch", "grid_steps", "steps", "warmup_frac", "eval_every",
               "grid_eval_every", "val_batches", "final_val_batches", "aux_ratio", "amp")


class MergeError(Exception):
    pass


def protocol_config(meta):
    if meta.get("config"):
        return meta["config"]
    c = {k: meta.get(k) for k in CONFIG_KEYS}
    corpus = meta.get("corpus") or {}
    c["corpus_train_sha256"] = (corpus.get("train") or {}).get("sha256")
    c["corpus_val_sha256"] = (corpus.get("val") or {}).get("sha256")
    c["models"] = {m: s.get("config") for m, s in (meta.get("sizes") or {}).items()}
    c["plans"] = meta.get("plans")
    return c


def config_conflict(a, b, ignore=()):
    """(text of a's value, text of b's) for the first setting where configs a and b differ
    (a setting missing from either is not compared); None when they agree."""
    for k in sorted(set(a) & set(b)):
        if k in ignore or a[k] is None or b[k] is None:
            continue
        if k == "models":
            for m in sorted(set(a[k]) & set(b[k])):
                if a[k][m] != b[k][m]:
                    diff = sorted(x for x in set(a[k][m]) | set(b[k][m])
                                  if a[k][m].get(x) != b[k][m].get(x))
                    return ("model %s %s %s" % (m, diff[0], a[k][m].get(diff[0])),
                            "%s" % b[k][m].get(diff[0]))
        elif k == "plans":      # the generated optimizer of a (model, policy) both files ran
            for mp in sorted(set(a[k]) & set(b[k])):
                if a[k][mp] != b[k][mp]:
                    return "plan of %s %s" % (mp, a[k][mp]), b[k][mp]
        elif a[k] != b[k]:
            return "%s %s" % (k, a[k]), "%s" % b[k]
    return None


def load_json(path, prog="report.py"):
    """A results.json, or exit with one line naming the file and the cause."""
    try:
        with open(path) as f:
            res = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit("%s: error: %s: %s" % (prog, path, e))
    if not isinstance(res, dict) or "meta" not in res:
        sys.exit("%s: error: %s: not a bench/train results.json (no 'meta')" % (prog, path))
    return res


_RANK = {"ok": 2, "diverged": 2, "truncated": 1}   # finished > truncated > failed / skipped


def lr_rank(e):
    """How much a best_lr entry is worth against another of the same pair (the larger wins;
    a tie goes to the later file): a lr at all, then one chosen by a refinement over one
    chosen by a grid (entries of files before refinement existed have no 'stage': grid),
    then the longer refinement. bench.py's --best-from ranks by the same rule."""
    refined = e.get("stage") == "refine"
    return (e.get("lr") is not None, refined, (e.get("refine_steps") or 0) if refined else 0)


def merge(items):
    """One results dict from [(label, res)] (oldest first); every record gets 'src' (its
    label). Raises MergeError when two files' protocols differ."""
    base_label, base = items[0]
    cfg = protocol_config(base["meta"])
    for label, res in items[1:]:
        why = config_conflict(protocol_config(res["meta"]), cfg)
        if why:
            raise MergeError("%s: %s differs from %s's %s (another protocol: not merged)"
                             % (label, why[0], base_label, why[1]))
    keys = dict(timing=("model", "policy"), timing_batches=("model", "policy", "batch"),
                grid=("model", "policy", "lr"), refine=("model", "policy", "lr", "steps"),
                runs=("model", "policy", "seed"))
    out = {k: {} for k in keys}
    lists = dict(calibration=[], skipped=[], faults=[])
    best = {}
    models, policies, sizes, grids, libs, sources = [], [], {}, {}, {}, []
    for label, res in items:
        meta = res["meta"]
        for k, key in keys.items():
            for r in res.get(k) or []:
                kk = tuple(r.get(x) for x in key)
                old = out[k].get(kk)
                if old is None or _RANK.get(r.get("status"), 0) >= _RANK.get(old.get("status"), 0):
                    out[k][kk] = dict(r, src=label)
        for k in lists:
            lists[k] += [dict(r, src=label) for r in res.get(k) or []]
        for key, e in (res.get("best_lr") or {}).items():
            # a refined lr beats a grid's, a lr beats none; among equals the later file
            if key not in best or lr_rank(e) >= lr_rank(best[key]):
                best[key] = dict(e, src=e.get("source", label) if e.get("source") else label)
        models += [m for m in meta.get("models", []) if m not in models]
        policies += [p for p in meta.get("policies", []) if p not in policies]
        sizes.update(meta.get("sizes") or {})
        grids.update(meta.get("grids") or {})
        libs.update(meta.get("libs") or {})
        def done(lst, res=res):
            return sum(1 for r in res.get(lst) or [] if _RANK.get(r.get("status")) == 2)
        sources.append(dict(label=label, date=meta.get("date"), symoc=meta.get("symoc_commit"),
                            models=meta.get("models"),
                            policies=meta.get("policies"), elapsed_s=meta.get("elapsed_s"),
                            concurrency=meta.get("concurrency"), call=meta.get("call"),
                            grid_done=done("grid"), refine_done=done("refine"),
                            runs_done=done("runs"),
                            truncated=sum(1 for r in res.get("runs") or []
                                          if r.get("status") == "truncated"),
                            faults=len(res.get("faults") or [])))
    # a skip that a finished record of another file made up for is no longer news
    finished = {(r.get("model"), r.get("policy"), r.get("phase"), r.get("seed"), r.get("lr"))
                for k in ("grid", "refine", "runs") for r in out[k].values()
                if _RANK.get(r.get("status")) == 2}
    lists["skipped"] = [s for s in lists["skipped"] if (s.get("model"), s.get("policy"),
                        s.get("phase"), s.get("seed"), s.get("lr")) not in finished]
    meta = dict(base["meta"], models=models, policies=policies, sizes=sizes, grids=grids,
                libs=libs, config=cfg, sources=sources,
                date=" .. ".join(sorted({s["date"] for s in sources if s["date"]})),
                elapsed_s=sum(s["elapsed_s"] or 0 for s in sources),
                concurrency=", ".join(sorted({str(s["concurrency"]) for s in sources
                                              if s["concurrency"]})))
    res = dict(meta=meta, best_lr=best, **lists)
    for k in keys:
        res[k] = list(out[k].values())
    return res


def load_results(paths, prog="report.py"):
    """One results dict from one or several files (several: merged, oldest first)."""
    loaded = [(os.path.basename(p), load_json(p, prog)) for p in paths]
    labels = [lb for lb, _ in loaded]
    if len(set(labels)) < len(labels):     # same basename in two folders: the path then
        loaded = [(p, r) for p, (_, r) in zip(paths, loaded)]
    loaded.sort(key=lambda lr: lr[1]["meta"].get("date") or "")
    return merge(loaded)      # one file too: the same shape (src on every record)

LABEL = {"adamw": "torch AdamW (fused)", "muon": "torch Muon + AdamW",
         "symoc-auto": "symoc auto", "symoc-symo": "symoc symo", "symoc-muon": "symoc muon",
         "symoc-auto-norm": "symoc auto-norm", "symoc-symo-whole": "symoc symo (granularity whole)",
         "symoc-auto-plain": "symoc auto (--line-norm off)", "symoc-auto-embrow": "symoc auto --embedding row",
         "symoc-symo-pair": "symoc symo (granularity whole-head-pair)"}


def _runs(res, m, p, status=("ok",)):
    """A pair's seed runs that finished (truncated ones never count as finished)."""
    return [r for r in res["runs"] if r.get("model") == m and r.get("policy") == p
            and r.get("status") in status and r.get("curve")]


def mean_curve(runs):
    """[(step, mean val, mean train seconds)] over the steps every run reached."""
    if not runs:
        return []
    by = [{c[0]: c for c in r["curve"]} for r in runs]
    steps = sorted(set.intersection(*[set(b) for b in by]))
    out = []
    for s in steps:
        vals = [b[s][2] for b in by]
        out.append((s, sum(vals) / len(vals), sum(b[s][3] for b in by) / len(by)))
    return out


def steps_to(curve, target):
    """(step, train seconds) where the curve first reaches target, interpolated; None."""
    if target is None or not curve:
        return None
    prev = None
    for s, v, t in curve:
        if v <= target:
            if prev is None or prev[1] == v:
                return s, t
            f = (prev[1] - target) / (prev[1] - v)
            return prev[0] + f * (s - prev[0]), prev[2] + f * (t - prev[2])
        prev = (s, v, t)
    return None


def final_stats(runs):
    vals = [r["final_val"] for r in runs if r.get("status") == "ok" and
            isinstance(r.get("final_val"), float) and math.isfinite(r["final_val"])]
    if not vals:
        return None, None, 0
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return statistics.mean(vals), sd, len(vals)


def step_ms(res, m, p):
    for r in res["timing"]:
        if r.get("model") == m and r.get("policy") == p and r.get("status") == "ok":
            return r
    return None


def target_of(res, m, p):
    c = mean_curve(_runs(res, m, p))
    return c[-1][1] if c else None


def analyse(res):
    """{model: {policy: row}} with the numbers of the tables."""
    meta = res["meta"]
    out = {}
    for m in meta["models"]:
        tgt = {"adamw": target_of(res, m, "adamw"), "muon": target_of(res, m, "muon")}
        rows = {}
        for p in meta["policies"]:
            runs = _runs(res, m, p)
            c = mean_curve(runs)
            mean, sd, n = final_stats(runs)
            t = step_ms(res, m, p)
            others = [r for r in res["runs"] if r.get("model") == m and r.get("policy") == p
                      and r.get("status") != "ok"]
            row = dict(runs=len(runs), n_final=n, final=mean, sd=sd,
                       status=sorted({r["status"] for r in runs + others}),
                       not_finished=sorted("%s seed %s%s" % (
                           r["status"], r.get("seed"), " at step %s" % r.get("steps_done")
                           if r.get("steps_done") is not None else "") for r in others),
                       lrs=sorted({r.get("lr") for r in runs}),
                       best=res["best_lr"].get("%s/%s" % (m, p)), timing=t,
                       last_step=c[-1][0] if c else None)
            for ref in ("adamw", "muon"):
                hit = steps_to(c, tgt[ref])
                row["to_" + ref] = hit
                ms = t["step_ms"] if t else None
                row["wall_" + ref] = hit[0] * ms / 1000.0 if hit and ms else None
            rows[p] = row
        for p, row in rows.items():
            for ref in ("adamw", "muon"):
                base = rows.get(ref, {}).get("to_" + ref)
                row["ratio_" + ref] = (row["to_" + ref][0] / base[0]
                                       if row["to_" + ref] and base and base[0] else None)
        out[m] = dict(targets=tgt, rows=rows)
    return out


def _cell(text):
    """Text for a markdown table cell: one line, no column bars."""
    return " ".join(str(text).split()).replace("|", "/")


def _f(x, fmt="%.4f", none="—"):
    return none if x is None else fmt % x


def _letters(res):
    """{file label: A, B, ...} when the results were merged from several files, else {}."""
    src = res["meta"].get("sources") or []
    return {s["label"]: chr(ord("A") + i) for i, s in enumerate(src)} if len(src) > 1 else {}


def _from(res, m, p, letters):
    """Which file each number of the row came from: time, grid, seeds."""
    def of(recs):
        return "".join(letters.get(r.get("src"), "?") for r in recs)
    t = [r for r in res["timing"] if r.get("model") == m and r.get("policy") == p
         and r.get("status") == "ok"][:1]
    g = sorted((r for r in res["grid"] if r.get("model") == m and r.get("policy") == p),
               key=lambda r: r.get("lr") or 0)
    s = sorted(_runs(res, m, p), key=lambda r: r.get("seed") or 0)
    b = res["best_lr"].get("%s/%s" % (m, p)) or {}
    f = sorted((r for r in res.get("refine") or [] if r.get("model") == m
                and r.get("policy") == p), key=lambda r: (r.get("steps") or 0, r.get("lr") or 0))
    parts = ["time %s" % of(t)] if t else []
    if g:
        parts.append("grid %s" % of(g))
    if f:
        parts.append("refine %s" % of(f))
    if not g and not f and b.get("lr") is not None:
        parts.append("lr %s" % letters.get(b.get("src"), b.get("src")))
    if s:
        parts.append("seeds %s" % of(s))
    return ", ".join(parts) or "—"


def render(res, plots_dir=None, plot_prefix=""):
    meta = res["meta"]
    an = analyse(res)
    letters = _letters(res)
    L = []
    L.append("## Training benchmark (issue #13): byte-level LLaMA and GPT-2, %s" % meta["device"])
    L.append("")
    if letters:
        L.append("Generated by `bench/train/report.py` from the `results.json` of %d calls of "
                 "`bench/train/run.sh` (torch %s, %s), merged (a finished run beats a truncated "
                 "one, a later file an earlier one; column *from* names each number's file):"
                 % (len(letters), meta["torch"], meta["amp"]))
        L.append("")
        for s in meta["sources"]:
            call = s.get("call") or {}
            L.append("- **%s** `%s` (%s, %s%s s, %s concurrent runs): %s; models %s; policies %s%s"
                     "; %d grid%s and %d seed runs finished%s%s." % (
                         letters[s["label"]], s["label"], s["date"],
                         "symoc %s, " % s["symoc"] if s.get("symoc") else "",
                         "%.0f" % s["elapsed_s"] if s.get("elapsed_s") else "?",
                         s.get("concurrency") or "?",
                         "phases " + " ".join(call["phases"]) if call.get("phases") else
                         "one call", ",".join(s.get("models") or []),
                         ",".join(s.get("policies") or []),
                         "; lr from " + ", ".join(call["best_from"]) if call.get("best_from")
                         else "", s["grid_done"], ", %d refinement" % s["refine_done"]
                         if s.get("refine_done") else "", s["runs_done"],
                         ", %d truncated" % s["truncated"] if s["truncated"] else "",
                         ", %d device fault(s)" % s["faults"] if s["faults"] else ""))
        L.append("")
    else:
        L.append("Generated by `bench/train/report.py` from `results.json` of `bench/train/run.sh` "
                 "(%s, torch %s, %s; %.0f s in all, %s concurrent runs on the one GPU)."
                 % (meta["date"], meta["torch"], meta["amp"], meta.get("elapsed_s", 0),
                    meta.get("concurrency", "?")))
    c = meta.get("corpus")
    if c:
        L.append("Corpus: %d files of %d Debian bookworm packages (bench/README.md lists the "
                 "roots and the rule), %d bytes: train %d bytes (sha256 `%s…`), held-out val "
                 "%d bytes (whole files, `%s…`); byte tokens (vocabulary 256)."
                 % (c["files"], c["packages"], c["total_bytes"], c["train"]["bytes"],
                    c["train"]["sha256"][:12], c["val"]["bytes"], c["val"]["sha256"][:12]))
    for m, s in meta["sizes"].items():
        cfg = s["config"]
        L.append("- `%s`: %.2f M parameters (%s), %d tokens/step (batch %d x %d)."
                 % (m, s["params"] / 1e6, ", ".join("%s %s" % kv for kv in cfg.items()),
                    s["tokens_per_step"], meta["batch"], cfg["t"]))
    L.append("- Protocol: lr grid of %d steps (seed 0, warm-up %d %% + cosine), best lr by its "
             "last val loss; then %d seeds x %d steps at that lr; val loss every %d steps on "
             "%d fixed val batches, final val on %d. AdamW-stepped blocks of Muon-type "
             "policies at lr x %g; AdamW betas (0.9, 0.95), decay 0.01."
             % (meta["grid_steps"], round(100 * meta["warmup_frac"]), meta["seeds"],
                meta["steps"], meta["eval_every"], meta["val_batches"],
                meta["final_val_batches"], meta["aux_ratio"]))
    ref_steps = sorted({r.get("steps") for r in res.get("refine") or [] if r.get("steps")})
    ref_k = sorted({e.get("refine_k") for e in res["best_lr"].values() if e.get("refine_k")})
    if ref_steps:
        L.append("- Refinement: after its grid, each pair's %s best grid lrs ran for %s steps "
                 "(seed 0, val every %d steps); the pair's lr is the one of the lowest final val "
                 "among them (a tie: the grid's order), and the seed runs use it. A refinement "
                 "run is never counted as a seed run (it is seed 0, the tuning seed, and the "
                 "best of K: biased low)." % ("/".join("%d" % k for k in ref_k) or "K",
                                              "/".join("%d" % n for n in ref_steps),
                                              meta["eval_every"]))
    L.append("")
    for m in meta["models"]:
        a = an[m]
        L.append("### %s" % m)
        L.append("")
        L.append("Targets: AdamW final %s, Muon final %s (seed-mean curve values)."
                 % (_f(a["targets"]["adamw"]), _f(a["targets"]["muon"])))
        L.append("")
        L.append("| policy | lr (grid: last val; refinement: final val; stage) | final val ± sd "
                 "(n) | steps to AdamW's "
                 "(x AdamW) | steps to Muon's (x Muon) | ms/step alone (optimizer) | "
                 "s to AdamW's [shared] | s to Muon's [shared] |%s" % (" from |" if letters
                                                                    else ""))
        L.append("| --- | --- | --- | --- | --- | --- | --- | --- |%s" % (" --- |" if letters
                                                                          else ""))
        for p in meta["policies"]:
            r = a["rows"][p]
            lr = lr_cell(res, m, p, r["best"] or {}, r["lrs"])
            fin = ("%.4f ± %.4f (%d)" % (r["final"], r["sd"], r["n_final"])
                   if r["final"] is not None else "—")
            if r["not_finished"]:      # counted, never averaged
                fin += "; not finished: %s" % ", ".join(r["not_finished"])
            if len(r["lrs"]) > 1:
                fin += "; MIXED lr %s" % ", ".join("%g" % x for x in r["lrs"])

            def hit(ref):
                h = r["to_" + ref]
                if h is None:
                    return "not reached" if r["last_step"] else "—"
                ratio = r["ratio_" + ref]
                return "%.0f (%s)" % (h[0], _f(ratio, "%.2fx"))

            def wall(ref):
                h = r["to_" + ref]
                if h is None:
                    return "—"
                return "%s [%.1f]" % (_f(r["wall_" + ref], "%.1f"), h[1])
            t = r["timing"]
            ms = "%.2f (%.2f)" % (t["step_ms"], t["opt_ms"]) if t else "—"
            L.append("| %s | %s | %s | %s | %s | %s | %s | %s |%s" % (
                LABEL.get(p, p), lr, fin, hit("adamw"), hit("muon"), ms, wall("adamw"),
                wall("muon"), " %s |" % _from(res, m, p, letters) if letters else ""))
        L.append("")
        L.extend(done_when(a, m))
        if plots_dir:
            png = plot(res, m, plots_dir)
            if png:
                L.append("")
                L.append("![%s val loss](%s%s)" % (m, plot_prefix, os.path.basename(png)))
        L.append("")
    sk = res.get("skipped") or []
    if sk:
        L.append("Not run: " + "; ".join("%s/%s lr %g seed %s (%s)" % (
            s["model"], s["policy"], s["lr"], s.get("seed"), s["reason"]) for s in sk[:20]) +
            (" and %d more" % (len(sk) - 20) if len(sk) > 20 else ""))
        L.append("")
    L.extend(faults_section(res, letters))
    errs = [r for r in res["grid"] + (res.get("refine") or []) + res["runs"] + res["timing"]
            if r.get("status") in ("error", "skipped", "died")]
    if errs:     # per (model, policy) and first line of the reason, with a count
        n = {}
        for r in errs:
            k = "%s/%s: %s" % (r.get("model"), r.get("policy"), fault_line(r.get("reason"))[:160])
            n[k] = n.get(k, 0) + 1
        L.append("Errors and skips (runs of the grid, refinement, seed and time phases): " +
                 "; ".join(
            "%s%s" % ("%dx " % c if c > 1 else "", k) for k, c in sorted(n.items())))
        L.append("")
    return "\n".join(L)


def lr_cell(res, m, p, b, seed_lrs):
    """The lr column of (m, p): the chosen lr (b: its best_lr entry), the grid's points (last
    val), the refinement's (final val, per horizon) and the stage that chose it."""
    def pair(r):
        return (r.get("model"), r.get("policy")) == (m, p)
    pts = {r["lr"]: r["last_val"] for r in res["grid"] if pair(r) and r.get("status") == "ok"
           and isinstance(r.get("last_val"), float)}
    pts = pts or {float(k): v for k, v in (b.get("grid") or {}).items() if isinstance(v, float)}
    ref = {}    # steps -> {lr: final val, or None: diverged}
    for r in res.get("refine") or []:
        if pair(r) and r.get("status") in ("ok", "diverged"):
            v = r.get("final_val")
            ref.setdefault(r.get("steps"), {})[r["lr"]] = v if isinstance(v, float) and \
                math.isfinite(v) else None
    if not ref and b.get("refine"):     # the runs are in a file not merged here
        ref[b.get("refine_steps")] = {float(k): v if isinstance(v, float) and math.isfinite(v)
                                      else None for k, v in b["refine"].items()}
    parts = ["grid: " + ", ".join("%g: %.3f" % kv for kv in sorted(pts.items()))] if pts else []
    for n in sorted(ref, key=lambda x: x or 0):
        parts.append("%s-step: %s" % (n, ", ".join(
            "%g: %s" % (lr, "%.4f" % v if v is not None else "diverged")
            for lr, v in sorted(ref[n].items()))))
    if b.get("lr") is None:
        return "— (%s)" % "; ".join([_cell(b.get("reason", "not run"))[:160]] + parts)
    if b.get("stage") == "refine":
        stage = "chosen by the %s-step refinement%s" % (
            b.get("refine_steps"), "" if b.get("grid_lr") in (None, b["lr"]) else
            ", the grid's was %g" % b["grid_lr"])
    else:
        stage = "chosen by the %s-step grid" % res["meta"].get("grid_steps")
    cell = "**%g**%s (%s)" % (b["lr"], " edge" if b.get("edge") else "",
                              "; ".join(parts + [stage]))
    if seed_lrs and seed_lrs != [b["lr"]]:   # seeds of another call's best lr
        cell += "; seeds at lr %s" % ", ".join("%g" % x for x in seed_lrs)
    return cell


def fault_line(reason):
    """The first line of a fault's error, without the generated library's path."""
    line = (reason or "").split("\n")[0]
    return re.sub(r"\S+/lib\w+\.so: ", "", line)[:240]


def faults_section(res, letters=None):
    """Device faults per (model, policy): count, how many were retried, the runs, and each
    distinct first line of the error."""
    faults = res.get("faults") or []
    if not faults:
        return []
    letters = letters or {}
    L = ["### Device faults", "",
         "%d device fault(s) (`faults` in results.json; a faulted run is retried once in a "
         "fresh process, a retry that faults again is lost). Seen so far: Warp Illegal "
         "Instruction in cuBLAS's nvjet GEMM kernels while several processes time-slice the "
         "one H200 (8 or more in the fault hunt, as few as 2 in session 8's runs), never in a "
         "process alone on the GPU (bench/README.md, docs/testing.md)." % len(faults), "",
         "| model/policy | faults (retried) | runs: phase, lr, seed @ step [attempt]%s | error "
         "(first line) |" % (" (file)" if letters else ""), "| --- | --- | --- | --- |"]
    pairs = []
    for f in faults:
        if (f.get("model"), f.get("policy")) not in pairs:
            pairs.append((f.get("model"), f.get("policy")))
    for m, p in pairs:
        fs = [f for f in faults if (f.get("model"), f.get("policy")) == (m, p)]
        errs = {}
        for f in fs:
            e = fault_line(f.get("reason"))
            errs[e] = errs.get(e, 0) + 1
        L.append("| %s/%s | %d (%d) | %s | %s |" % (
            m, p, len(fs), sum(1 for f in fs if f.get("retried")),
            ", ".join("%s lr %g seed %s @ %s%s%s" % (
                f.get("phase", f.get("kind")), f.get("lr") or 0, f.get("seed"), f.get("step"),
                " [2]" if f.get("attempt", 1) > 1 else "",
                " (%s)" % letters.get(f.get("src"), "?") if letters else "") for f in fs),
            "; ".join("%s%s" % ("%dx " % n if n > 1 else "", e.replace("|", "/"))
                      for e, n in errs.items())))
    L.append("")
    return L


def done_when(a, m):
    """Issue #13's 'Done when' rows for this model, measured (auto's, then the same for the
    candidate auto-norm when it ran)."""
    rows = a["rows"]
    out = []
    mu = rows.get("muon")
    if not mu:
        return out

    def check(ok, text):
        out.append("- %s %s" % ("**met**" if ok else "**missed**" if ok is False else "n/a:", text))
    for policy, name in (("symoc-auto", "auto"), ("symoc-auto-norm", "auto-norm")):
        au = rows.get(policy)
        if not au:
            continue
        if au["ratio_muon"] is not None:
            check(au["ratio_muon"] <= 0.87, "%s reaches Muon's final val in %.2fx Muon's steps "
                  "(target <= 0.87x)" % (name, au["ratio_muon"]))
        else:
            check(None, "%s reaches Muon's final val: %s" % (name, "not reached" if au["last_step"]
                                                               else "no data"))
        if au["final"] is not None and mu["final"] is not None:
            gap, sd = mu["final"] - au["final"], max(au["sd"] or 0, mu["sd"] or 0)
            check(gap > 2 * sd, "%s ends %.4f %s Muon (target: below by more than 2 sd = %.4f)"
                  % (name, abs(gap), "below" if gap >= 0 else "above", 2 * sd))
        if au["ratio_adamw"] is not None:
            check(au["ratio_adamw"] <= 0.6, "%s reaches AdamW's final val in %.2fx AdamW's "
                  "steps (target <= 0.6x)" % (name, au["ratio_adamw"]))
        if policy == "symoc-auto":
            sy = rows.get("symoc-symo")
            if sy and sy["final"] is not None and mu["final"] is not None:
                check(sy["final"] <= mu["final"], "symo ends at %.4f vs Muon %.4f (target: no worse)"
                      % (sy["final"], mu["final"]))
    return out


def plot(res, m, plots_dir):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    os.makedirs(plots_dir, exist_ok=True)
    fig, ax = plt.subplots(1, 2, figsize=(12, 4.5))
    any_ = False
    for p in res["meta"]["policies"]:
        runs = _runs(res, m, p)
        c = mean_curve(runs)
        if not c:
            continue
        any_ = True
        steps = [s for s, _, _ in c]
        by = [{x[0]: x[2] for x in r["curve"]} for r in runs]
        lo = [min(b[s] for b in by) for s in steps]
        hi = [max(b[s] for b in by) for s in steps]
        for axis in ax:
            line, = axis.plot(steps, [v for _, v, _ in c], label="%s (%d seeds)"
                              % (LABEL.get(p, p), len(runs)))
            axis.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.2)
    if not any_:
        plt.close(fig)
        return None
    ax[0].set_title("%s: val loss (seed mean, band = min..max)" % m)
    ax[1].set_title("last 60 % of the steps")
    last = max(r["curve"][-1][0] for p in res["meta"]["policies"] for r in _runs(res, m, p))
    ax[1].set_xlim(0.4 * last, last)
    tail = [r["curve"][i][2] for p in res["meta"]["policies"] for r in _runs(res, m, p)
            for i in range(len(r["curve"])) if r["curve"][i][0] >= 0.4 * last
            and math.isfinite(r["curve"][i][2])]
    if tail:
        ax[1].set_ylim(min(tail) - 0.02, max(tail) + 0.02)
    for axis in ax:
        axis.set_xlabel("step")
        axis.set_ylabel("val loss (nats/byte)")
        axis.grid(alpha=0.3)
    ax[0].legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(plots_dir, "train_%s.png" % m)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


BEGIN, END = "<!-- bench/train:begin -->", "<!-- bench/train:end -->"


def update(doc, md):
    """Put md between the markers in doc (the rest of the file untouched)."""
    text = open(doc).read() if os.path.exists(doc) else ""
    block = "%s\n%s\n%s" % (BEGIN, md.rstrip("\n"), END)
    if BEGIN in text and END in text.split(BEGIN, 1)[1]:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    with open(doc, "w") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description="the training benchmark's report; several "
                                 "RESULTS.json (the calls of a split protocol) are merged")
    ap.add_argument("results", nargs="+")
    ap.add_argument("--md", help="write the markdown section here (default: stdout)")
    ap.add_argument("--plots", help="folder for train_MODEL.png")
    ap.add_argument("--plot-prefix", default="", help="path prefix of the images in the md")
    ap.add_argument("--update", metavar="DOC",
                    help="replace the section between %s and %s in DOC (appended when absent)"
                    % (BEGIN, END))
    a = ap.parse_args()
    try:
        res = load_results(a.results)
    except MergeError as e:
        sys.exit("report.py: error: %s" % e)
    md = render(res, a.plots, a.plot_prefix)
    if a.update:
        update(a.update, md)
    if a.md:
        with open(a.md, "w") as f:
            f.write(md + "\n")
    elif not a.update:
        print(md)


if __name__ == "__main__":
    main()
