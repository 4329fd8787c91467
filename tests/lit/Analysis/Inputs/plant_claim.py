#!/usr/bin/python3
"""plant_claim.py IN.json OUT.json: a claims document with one false claim planted in the
middle of the true ones. The planted claim ("planted") is a copy of the largest permutation
claim with every consuming ("in") member removed: the producer's rows are permuted and
nobody undoes it, so the outputs change."""
import copy
import json
import sys

doc = json.load(open(sys.argv[1]))
claims = doc["claims"]
perms = [c for c in claims if c["kind"] == "linear" and c["group"]["name"] == "S"
         and any(m["variance"] == "in" for m in c["members"])
         and any(m["variance"] == "out" for m in c["members"])]
if not perms:
    sys.exit("plant_claim.py: no permutation claim with producers and consumers to copy")
src = max(perms, key=lambda c: c["n"])
bad = copy.deepcopy(src)
bad["id"] = "planted"
bad["note"] = "one-sided copy of " + src["id"] + " (false)"
bad["members"] = [m for m in bad["members"] if m["variance"] == "out"]
claims.insert(len(claims) // 2, bad)
json.dump(doc, open(sys.argv[2], "w"), indent=1)
