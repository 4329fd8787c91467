#!/usr/bin/python3
"""Exits 1 naming each file of DIR that holds a control byte other than newline and tab."""
import os
import sys

bad = 0
for name in sorted(os.listdir(sys.argv[1])):
    path = os.path.join(sys.argv[1], name)
    if os.path.isfile(path):
        data = open(path, "rb").read()
        n = sum(1 for c in data if (c < 32 and c not in (9, 10)) or c == 127)
        if n:
            print("%s: %d control bytes" % (name, n))
            bad += 1
print("files with control bytes: %d" % bad)
sys.exit(1 if bad else 0)
