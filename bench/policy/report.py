"""results.json (one or several, merged) -> results.md + PNGs (bench/policy/run.py's report)."""
import json
import os
import sys

ELEM_BW_TARGET, ELEM_TORCH_TARGET = 0.70, 0.5     # issue #7's targets (figures, not tests)
MAT_GEMM_TARGET, MAT_MUON_TARGET = 0.60, 0.8
ORDER = ["adamw", "adam-mini", "muon", "shampoo", "lau-su", "symo", "symo-large"]


def load(paths):
    data = {"rows": [], "check": [], "limits": None, "compile_cost": None}
    for p in paths:
        if not os.path.exists(p):
            continue
        with open(p) as f:
            d = json.load(f)
        # The first file wins; a later one fills (model, policy) rows that are missing or
        # were skipped there (a run split over several calls of the timing machine).
        have = {(r["model"], r["policy"]) for r in data["rows"] if "gen_ms" in r}
        for r in d.get("rows", []):
            key = (r["model"], r["policy"])
            if key in have or ("gen_ms" not in r and any((x["model"], x["policy"]) == key
                                                         for x in data["rows"])):
                continue
            data["rows"] = [x for x in data["rows"] if (x["model"], x["policy"]) != key]
            r["source"] = os.path.basename(os.path.dirname(os.path.abspath(p)))
            r["limits"] = d.get("limits")
            data["rows"].append(r)
            if "gen_ms" in r:
                have.add(key)
        data["check"] += [c for c in d.get("check", []) if c not in data["check"]]
        data["limits"] = data["limits"] or d.get("limits")
        data["compile_cost"] = data["compile_cost"] or d.get("compile_cost")
        data.setdefault("limits_all", []).append(d.get("limits"))
    return data


def fmt_ms(x):
    if x is None:
        return "-"
    return "%.0f" % x if x >= 1000 else ("%.1f" % x if x >= 10 else "%.2f" % x)


def mib(b):
    return "%.0f" % (b / 2 ** 20) if b >= 2 ** 24 else "%.2f" % (b / 2 ** 20)


def write(out, paths, name=None):
    d = load(paths)
    lim = d["limits"] or {}
    L = []
    title = name or ("%s, %s threads" % (lim.get("cpu", "?"), lim.get("threads", "?")))
    L.append("# Policy benchmark: %s" % title)
    L.append("")
    L.append("Run %s on %s (%s CPUs; torch %s with %s threads; OpenBLAS/OpenMP %s threads). "
             "Generated = the `symoc compile --policy P` library through its C ABI; reference = "
             "PyTorch on the same tensors in the same process, interleaved; medians after one "
             "warm-up step (the first step allocates the state)."
             % (lim.get("date", "?"), lim.get("host", "?"), lim.get("cpus", "?"),
                lim.get("torch", "?"), lim.get("torch_threads", "?"), lim.get("threads", "?")))
    L.append("")
    L.append("**Machine limits (same run):** sgemm (OpenBLAS, n = %s) **%.1f GFLOP/s**, triad "
             "**%.1f GB/s**." % (lim.get("sgemm_n", "?"), lim.get("sgemm_gflops", 0),
                                 lim.get("triad_gbs", 0)))
    L.append("")
    if d["check"]:
        L.append("## First-step agreement (generated vs torch reference)")
        L.append("")
        L.append("| model | policy | max rel. error of the update | parameter | tolerance | |")
        L.append("| --- | --- | ---: | --- | ---: | --- |")
        for c in d["check"]:
            L.append("| %s | %s | %.2e | %s | %.0e | %s |" % (c["model"], c["policy"],
                     c["max_rel_err"], c["worst_param"], c["tol"], "OK" if c["ok"] else "FAIL"))
        L.append("")
    rows = [r for r in d["rows"] if r.get("group") == "main"]
    models = []
    for r in rows:
        if r["model"] not in models:
            models.append(r["model"])
    misses = []
    for m in models:
        mr = sorted([r for r in rows if r["model"] == m],
                    key=lambda r: ORDER.index(r["policy"]) if r["policy"] in ORDER else 99)
        if not mr:
            continue
        L.append("## %s (%.1f M parameters)" % (m, mr[0]["params"] / 1e6))
        L.append("")
        L.append("| policy | kind | generated ms | torch reference | ref ms | gen / ref | gen / torch AdamW "
                 "| state MiB | state / AdamW | bound ms | roofline | GFLOP/s | GB/s | run |")
        L.append("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        muon_ref = next((r.get("ref_ms") for r in mr if r["policy"] == "muon"), None)
        for r in mr:
            if "gen_ms" not in r:
                L.append("| %s | | %s | | | | | | | | | | | %s |" % (r["policy"], r.get("skipped", "-"),
                                                                  r.get("source", "")))
                continue
            L.append("| %s | %s | %s | %s | %s | %s | %.2f | %s | %.3f | %s | %.0f%% | %.1f | %.1f | %s |" % (
                r["policy"], r["kind"], fmt_ms(r["gen_ms"]), r.get("ref") or "(torch AdamW)",
                fmt_ms(r.get("ref_ms")), ("%.2f" % r["ratio_ref"]) if r.get("ratio_ref") else "-",
                r.get("ratio_torch_adamw", float("nan")), mib(r["state_bytes"]),
                r["state_bytes"] / r["adamw_state_bytes"], fmt_ms(r["bound_ms"]),
                100 * r["roofline_fraction"], r["achieved_gflops"], r["achieved_gbs"], r.get("source", "")))
            if r["kind"] == "elementwise":
                bw = r["achieved_gbs"] / (r.get("limits") or lim)["triad_gbs"]
                ok1, ok2 = bw >= ELEM_BW_TARGET, r.get("ratio_torch_adamw", 9) <= ELEM_TORCH_TARGET
                misses.append((m, r["policy"], "elementwise", "%.0f%% of triad bandwidth (target >= 70%%)"
                               % (100 * bw), ok1, "%.2fx torch AdamW (target <= 0.5x)"
                               % r.get("ratio_torch_adamw", float("nan")), ok2))
            else:
                gf = r["achieved_gflops"] / (r.get("limits") or lim)["sgemm_gflops"]
                rm = r["gen_ms"] / muon_ref if muon_ref else None
                misses.append((m, r["policy"], "matrix", "%.0f%% of sgemm rate (target >= 60%%)"
                               % (100 * gf), gf >= MAT_GEMM_TARGET,
                               ("%.2fx torch Muon (target <= 0.8x)" % rm) if rm else "no torch Muon",
                               rm is not None and rm <= MAT_MUON_TARGET))
        L.append("")
    L.append("kind: `matrix` when the plan's FLOPs at the sgemm rate outweigh its bytes at the "
             "triad bandwidth. bound = sum over the plan's units of max(FLOPs / sgemm rate, bytes / "
             "bandwidth); bytes = weights and gradients read, weights written, every state float "
             "read and written once; FLOPs = the plan's estimates (docs/compile.md). roofline = bound "
             "/ measured. GFLOP/s and GB/s: plan FLOPs and bytes over the measured time.")
    L.append("")
    if misses:
        L.append("## Targets (issue #7)")
        L.append("")
        L.append("| model | policy | kind | rate | | time | |")
        L.append("| --- | --- | --- | --- | --- | --- | --- |")
        for m, p, k, a, oa, b, ob in misses:
            L.append("| %s | %s | %s | %s | %s | %s | %s |" % (m, p, k, a, "met" if oa else "**missed**",
                                                              b, "met" if ob else "**missed**"))
        L.append("")
    cc = d.get("compile_cost")
    if cc:
        L.append("## symoc's own cost (bench/compile, on %s, %s CPUs)" % (cc.get("host", "?"), cc.get("cpus", "?")))
        L.append("")
        L.append("| model | step | wall s | peak RSS MiB |")
        L.append("| --- | --- | ---: | ---: |")
        for r in cc["rows"]:
            L.append("| %s | %s | %.3f | %.1f |" % (r["model"], r["step"], r["median_wall_s"],
                                                    r["median_peak_rss_mib"]))
        t = cc["gpt2_small_analyze_plus_compile_s"]
        L.append("")
        L.append("GPT-2 small analyze + compile: **%.2f s** (target < 2 s: %s)." % (t, "met" if t < 2 else "missed"))
        L.append("")
    srows = [r for r in d["rows"] if r.get("group") == "scaling"]
    if srows:
        widths = sorted({r["width"] for r in srows})
        pols = [p for p in ORDER if any(r["policy"] == p for r in srows)]
        L.append("## Scaling: step time (ms) against width d (GPT-2 shape, 1 layer, vocab 1024, "
                 "1024 positions, d/64 heads)")
        L.append("")
        L.append("generated (torch reference where one exists; skipped where the run's budget was spent)")
        L.append("")
        L.append("| d | params | " + " | ".join(pols) + " |")
        L.append("| ---: | ---: | " + " | ".join("---:" for _ in pols) + " |")
        for w in widths:
            cells = []
            par = next((r["params"] for r in srows if r["width"] == w), 0)
            for p in pols:
                r = next((r for r in srows if r["width"] == w and r["policy"] == p), None)
                if r is None or "gen_ms" not in r:
                    cells.append("-")
                else:
                    cells.append(fmt_ms(r["gen_ms"]) + (" (%s)" % fmt_ms(r["ref_ms"]) if r.get("ref_ms") else ""))
            L.append("| %d | %.1f M | %s |" % (w, par / 1e6, " | ".join(cells)))
        L.append("")
    pngs = plots(out, d)
    for p in pngs:
        L.append("![%s](%s)" % (os.path.basename(p), os.path.basename(p)))
    L.append("")
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write("\n".join(L))
    print("wrote", os.path.join(out, "results.md"), *pngs)


def plots(out, d):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("report: no matplotlib, no PNG", file=sys.stderr)
        return []
    made = []
    rows = [r for r in d["rows"] if r.get("group") == "main" and "gen_ms" in r]
    models = sorted({r["model"] for r in rows})
    if rows:
        fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.5), squeeze=False)
        for ax, m in zip(axes[0], models):
            mr = sorted([r for r in rows if r["model"] == m], key=lambda r: ORDER.index(r["policy"]))
            x = range(len(mr))
            ax.bar([i - 0.2 for i in x], [r["gen_ms"] for r in mr], 0.4, label="generated (symoc)")
            ax.bar([i + 0.2 for i in x], [r.get("ref_ms") or r.get("torch_adamw_ms") or 0 for r in mr], 0.4,
                   label="torch reference (AdamW where none)")
            ax.bar([i for i in x], [r["bound_ms"] for r in mr], 0.8, fill=False, edgecolor="k",
                   linestyle="--", label="roofline bound")
            ax.set_xticks(list(x))
            ax.set_xticklabels([r["policy"] for r in mr], rotation=30)
            ax.set_yscale("log")
            ax.set_ylabel("step time (ms)")
            ax.set_title(m)
            ax.legend(fontsize=7)
        fig.tight_layout()
        p = os.path.join(out, "policies.png")
        fig.savefig(p, dpi=110)
        made.append(p)
    srows = [r for r in d["rows"] if r.get("group") == "scaling" and "gen_ms" in r]
    if srows:
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        for i, p in enumerate([p for p in ORDER if any(r["policy"] == p for r in srows)]):
            pr = sorted([r for r in srows if r["policy"] == p], key=lambda r: r["width"])
            c = "C%d" % i
            ax.plot([r["width"] for r in pr], [r["gen_ms"] for r in pr], "o-", color=c, label=p + " (symoc)")
            rr = [r for r in pr if r.get("ref_ms")]
            if rr:
                ax.plot([r["width"] for r in rr], [r["ref_ms"] for r in rr], "s--", color=c,
                        label=p + " (torch)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("width d")
        ax.set_ylabel("step time (ms)")
        ax.set_title("step time vs width (GPT-2 shape, 1 layer)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        p = os.path.join(out, "scaling.png")
        fig.savefig(p, dpi=110)
        made.append(p)
    return made


if __name__ == "__main__":
    write(sys.argv[1], sys.argv[2:])
