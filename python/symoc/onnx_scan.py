"""Reads an ONNX file's initializer names straight from the protobuf wire format: no onnx
package and no torch needed (symoc.api uses it after an export; tests/sweep/zoo_sweep.py
where torch is absent)."""


def _varint(buf, i):
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def _fields(buf, start, end):
    """(field number, wire type, value or (start, end)) of one protobuf message."""
    i = start
    while i < end:
        key, i = _varint(buf, i)
        field, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(buf, i)
            yield field, wt, v
        elif wt == 2:
            n, i = _varint(buf, i)
            yield field, wt, (i, i + n)
            i += n
        elif wt == 1:
            i += 8
        elif wt == 5:
            i += 4
        else:
            raise ValueError("unsupported protobuf wire type %d" % wt)


def initializer_names(path):
    """Names of the graph's initializers (ModelProto.graph = 7, GraphProto.initializer = 5,
    TensorProto.name = 8), read without the onnx package."""
    with open(path, "rb") as f:
        buf = memoryview(f.read())
    names = []
    for field, wt, v in _fields(buf, 0, len(buf)):
        if field == 7 and wt == 2:
            for gf, gwt, gv in _fields(buf, *v):
                if gf == 5 and gwt == 2:
                    for tf, twt, tv in _fields(buf, *gv):
                        if tf == 8 and twt == 2:
                            names.append(bytes(buf[tv[0]:tv[1]]).decode("utf-8", "replace"))
                            break
    return names
