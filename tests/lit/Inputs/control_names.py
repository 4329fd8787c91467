#!/usr/bin/python3
"""Writes a copy of MODEL whose first initializer's name carries control bytes (a carriage
return that would end a // comment, a form feed, a vertical tab, a 0x01) and C++ after them:
the emitter must keep every byte of a name inside a string literal or a sanitized comment.
Usage: control_names.py MODEL OUT"""
import sys

import onnx

m = onnx.load(sys.argv[1])
old = m.graph.initializer[0].name
evil = old + '\rstatic int injected = __builtin_printf("INJECTED\\n");\r//\f\v\x01 end'
m.graph.initializer[0].name = evil
for n in m.graph.node:
    n.input[:] = [evil if i == old else i for i in n.input]
onnx.save(m, sys.argv[2])
