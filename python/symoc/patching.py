"""Attributes replaced for the length of a block (symoc.torch's export retries: attention as
matmul and softmax, complex numbers as real pairs, activation checkpointing called directly)."""
import contextlib


@contextlib.contextmanager
def patched(obj, **values):
    """Sets the named attributes of obj (a module or a class) for the block and restores them
    after, also on an exception; an attribute obj only inherited is deleted again, so the
    inherited one shows through as before."""
    own = {k: vars(obj)[k] for k in values if k in vars(obj)}
    for k, v in values.items():
        setattr(obj, k, v)
    try:
        yield
    finally:
        for k in values:
            if k in own:
                setattr(obj, k, own[k])
            else:
                delattr(obj, k)
