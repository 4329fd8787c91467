#!/usr/bin/python3
"""The training benchmark's corpus: text files of Debian bookworm packages on this machine.

    /usr/bin/python3 bench/train/corpus.py build OUT_DIR [--xz]
    /usr/bin/python3 bench/train/corpus.py check OUT_DIR      (sha256 of train/val vs manifest)

Sources (SOURCES below): regular files (no symbolic links) under each root whose name matches
the root's patterns and that a Debian package owns (dpkg's /var/lib/dpkg/info/*.list; files no
package owns, e.g. __pycache__ or locally installed ones, are left out). The list is sorted by
path (bytewise) and each file is read whole; files are joined with one NUL byte between them.
Split by file, not by offset, so both splits are the same mixture: a file goes to validation
when the first 8 hex digits of sha256(path) taken mod 100 are < VAL_PERCENT. Tokens are the
byte values (vocabulary 256).

Writes OUT_DIR/train.bin, val.bin (raw bytes), files.tsv (path, bytes, package, split) and
manifest.json (roots, patterns, counts, byte totals and sha256 per split, bytes per package
and the package versions dpkg reports); --xz also writes train.bin.xz and val.bin.xz (what
travels to the GPU machine) and removes nothing.
"""
import argparse
import fnmatch
import glob
import hashlib
import json
import lzma
import os
import subprocess
import sys

# (root, filename patterns): chosen for ~70 MB of source code and documentation in four
# languages (Python, C/C++ headers, Perl) from packages every symoc build machine has.
SOURCES = [
    ("/usr/lib/python3.11", ["*.py"]),                       # libpython3.11-stdlib & co.
    ("/usr/lib/python3/dist-packages/numpy", ["*.py"]),      # python3-numpy
    ("/usr/lib/python3/dist-packages/torch", ["*.py"]),      # python3-torch
    ("/usr/include/c++/12", ["*"]),                          # libstdc++-12-dev
    ("/usr/include/linux", ["*.h"]),                         # linux-libc-dev
    ("/usr/share/perl/5.36.0", ["*.pm", "*.pl", "*.pod"]),   # perl-modules-5.36
]
TOP_LEVEL_HEADERS = ("/usr/include", ["*.h"])                # libc6-dev & co., depth 1 only
VAL_PERCENT = 5
MIN_BYTES = 50_000_000


def dpkg_owners():
    """{path: package} from dpkg's file lists."""
    owners = {}
    for lst in sorted(glob.glob("/var/lib/dpkg/info/*.list")):
        pkg = os.path.basename(lst)[:-5].split(":")[0]
        with open(lst, "rb") as f:
            for line in f:
                owners.setdefault(line.rstrip(b"\n").decode("utf-8", "surrogateescape"), pkg)
    return owners


def candidate_files():
    out = []
    for root, pats in SOURCES:
        for d, dirs, files in os.walk(root):   # os.walk does not follow directory links
            dirs.sort()
            for name in files:
                if any(fnmatch.fnmatchcase(name, p) for p in pats):
                    out.append(os.path.join(d, name))
    root, pats = TOP_LEVEL_HEADERS
    for name in os.listdir(root):
        if any(fnmatch.fnmatchcase(name, p) for p in pats):
            out.append(os.path.join(root, name))
    return sorted({p for p in out if os.path.isfile(p) and not os.path.islink(p)},
                  key=lambda p: p.encode("utf-8", "surrogateescape"))


def is_val(path):
    return int(hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()[:8], 16) \
        % 100 < VAL_PERCENT


def package_versions(pkgs):
    if not pkgs:
        return {}
    r = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Version}\n"] + sorted(pkgs),
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return dict(line.split(" ", 1) for line in r.stdout.splitlines() if " " in line)


def build(out_dir, xz):
    owners = dpkg_owners()
    if not owners:
        sys.exit("corpus.py: error: no dpkg file lists under /var/lib/dpkg/info (the corpus is "
                 "defined as files of Debian packages)")
    os.makedirs(out_dir, exist_ok=True)
    parts = {"train": [], "val": []}
    rows, per_pkg = [], {}
    for path in candidate_files():
        pkg = owners.get(path)
        if pkg is None:
            continue
        with open(path, "rb") as f:
            data = f.read()
        split = "val" if is_val(path) else "train"
        parts[split].append(data)
        rows.append("%s\t%d\t%s\t%s" % (path, len(data), pkg, split))
        per_pkg[pkg] = per_pkg.get(pkg, 0) + len(data)
    manifest = dict(
        sources=[dict(root=r, patterns=p) for r, p in SOURCES] +
        [dict(root=TOP_LEVEL_HEADERS[0], patterns=TOP_LEVEL_HEADERS[1], depth=1)],
        rule="regular files owned by a dpkg package, sorted bytewise by path, joined by one "
             "NUL byte; val = files with int(sha256(path)[:8], 16) %% 100 < %d" % VAL_PERCENT,
        files=len(rows), packages=len(per_pkg),
        bytes_per_package=dict(sorted(per_pkg.items(), key=lambda kv: -kv[1])),
        package_versions=package_versions(per_pkg))
    for split, chunks in parts.items():
        blob = b"\0".join(chunks)
        with open(os.path.join(out_dir, split + ".bin"), "wb") as f:
            f.write(blob)
        manifest[split] = dict(files=len(chunks), bytes=len(blob),
                               sha256=hashlib.sha256(blob).hexdigest())
        if xz:
            with lzma.open(os.path.join(out_dir, split + ".bin.xz"), "wb", preset=6) as f:
                f.write(blob)
            manifest[split]["xz_bytes"] = os.path.getsize(os.path.join(out_dir, split + ".bin.xz"))
    total = manifest["train"]["bytes"] + manifest["val"]["bytes"]
    manifest["total_bytes"] = total
    with open(os.path.join(out_dir, "files.tsv"), "w") as f:
        f.write("path\tbytes\tpackage\tsplit\n" + "\n".join(rows) + "\n")
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print("corpus %s: %d files of %d packages, %d bytes (train %d, val %d), sha256 train %s"
          % (out_dir, len(rows), len(per_pkg), total, manifest["train"]["bytes"],
             manifest["val"]["bytes"], manifest["train"]["sha256"][:16]))
    if total < MIN_BYTES:
        sys.exit("corpus.py: error: only %d bytes (< %d): are the packages above installed?"
                 % (total, MIN_BYTES))
    return manifest


def load_split(corpus_dir, split):
    """Bytes of a split: SPLIT.bin, else SPLIT.bin.xz (checked against the manifest)."""
    raw = os.path.join(corpus_dir, split + ".bin")
    if os.path.isfile(raw):
        with open(raw, "rb") as f:
            data = f.read()
    elif os.path.isfile(raw + ".xz"):
        with lzma.open(raw + ".xz", "rb") as f:
            data = f.read()
    else:
        raise FileNotFoundError("%s: neither %s.bin nor %s.bin.xz" % (corpus_dir, split, split))
    man = os.path.join(corpus_dir, "manifest.json")
    if os.path.isfile(man):
        want = json.load(open(man))[split]["sha256"]
        got = hashlib.sha256(data).hexdigest()
        if got != want:
            raise ValueError("%s/%s: sha256 %s, the manifest says %s" % (corpus_dir, split, got,
                                                                       want))
    return data


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("out")
    b.add_argument("--xz", action="store_true")
    c = sub.add_parser("check")
    c.add_argument("dir")
    a = ap.parse_args()
    if a.cmd == "build":
        build(a.out, a.xz)
    else:
        for s in ("train", "val"):
            print("%s: %d bytes, sha256 ok" % (s, len(load_split(a.dir, s))))


if __name__ == "__main__":
    main()
