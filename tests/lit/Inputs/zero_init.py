"""zero_init.py IN OUT NAME [NAME ...]: the model with the named initializers set to zeros
(a zero-initialized classifier, as timm's MLP-Mixer and ResMLP make)."""
import sys

import numpy as np
import onnx
from onnx import numpy_helper

src, dst, names = sys.argv[1], sys.argv[2], set(sys.argv[3:])
m = onnx.load(src)
done = set()
for i, t in enumerate(m.graph.initializer):
    if t.name in names:
        a = numpy_helper.to_array(t)
        m.graph.initializer[i].CopyFrom(numpy_helper.from_array(np.zeros_like(a), t.name))
        done.add(t.name)
missing = names - done
if missing:
    sys.exit("zero_init.py: no initializer %s in %s" % (", ".join(sorted(missing)), src))
onnx.save(m, dst)
