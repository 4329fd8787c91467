import json, sys
# mutate.py IN OUT MODE: break one GQA claim in a way that must not verify.
d = json.load(open(sys.argv[1]))
mode = sys.argv[3]
keep = []
for c in d["claims"]:
    g = c["group"]["name"]
    if mode == "groups-without-q" and g == "S" and c["n"] == 2:
        c["members"] = [m for m in c["members"] if m["initializer"] != "Wq"]
        keep.append(c)
    if mode == "heads-across-groups" and g == "heads" and c["members"][0]["offset"] == 0:
        for m in c["members"]:
            m["offset"] = 3  # query heads 1 and 2: different key/value groups
        keep.append(c)
assert len(keep) == 1, keep
d["claims"] = keep
json.dump(d, open(sys.argv[2], "w"))
