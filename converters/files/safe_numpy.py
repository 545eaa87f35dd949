"""numpy objects from pickles, rebuilt only from plain number types.

numpy's own unpickling trusts the file: a `numpy.dtype` whose pickled state
declares object fields (or names a field it never defines) makes numpy take
pointers from the file's bytes, and the process dies with SIGSEGV or SIGBUS
when they are touched. So the unpicklers never call numpy with a file's
values. They get these stand-ins under numpy's names instead:

- `DtypeStandIn` records `numpy.dtype(name, align, copy)` and its BUILD state;
  `plain_dtype` turns the pair into a real dtype only for a plain number
  type (`[<>|=]?[biufc]N` by name; state without fields, names, subarray or
  metadata; a valid byte order), else raises `UnsafeValue`.
- `reconstruct` + `ArrayStandIn` record `_reconstruct(ndarray, ...)` and the
  array's state (shape, dtype, order, bytes); `.build()` makes the array only
  after `tensor_check.check_tensor` (dtype, shape x itemsize == bytes) and the
  file's tensor budget have passed it.
- `scalar` rebuilds a numpy scalar (a stored accuracy) from a plain dtype and
  exactly itemsize bytes.
- `encode` is `_codecs.encode` for latin1 only (how protocol 2 spells bytes).
"""
from __future__ import annotations

import re

import numpy as np

from converters.files.tensor_check import check_tensor, show

_PLAIN_NAME = re.compile(r"[<>|=]?[biufc][0-9]{1,2}")
_KINDS = {"b": "bool", "i": "int", "u": "uint", "f": "float", "c": "complex", "O": "object", "V": "void (raw bytes)",
          "U": "str", "S": "bytes", "M": "datetime64", "m": "timedelta64"}


class UnsafeValue(Exception):
    """A value from a file that must not become a numpy object. Readers
    report it as a CheckpointError naming the file."""


def _describe(name, state) -> str:
    """What a pickled dtype claims to be, without building it."""
    text = show(name, 20)
    if isinstance(name, str) and name[:1] in "<>|=":
        text = name[1:]
    if isinstance(state, tuple) and len(state) >= 5 and (state[3] is not None or state[4] is not None):
        return f"{text} with fields (structured)"
    if isinstance(state, tuple) and len(state) >= 3 and state[2] is not None:
        return f"{text} with a subarray"
    if isinstance(name, str) and _PLAIN_NAME.fullmatch(name):
        try:
            return np.dtype(name).name
        except TypeError:
            return text
    kind = _KINDS.get(text[:1]) if isinstance(name, str) else None
    return f"{kind} ({text})" if kind else text


def plain_dtype(name, state=None) -> np.dtype:
    """The numpy dtype `numpy.dtype(name)` + BUILD(state) would make, if it
    is a plain number type; else UnsafeValue."""
    desc = _describe(name, state)
    if not isinstance(name, str) or not _PLAIN_NAME.fullmatch(name):
        raise UnsafeValue(f"numpy dtype {desc} is not a plain number type")
    try:
        dt = np.dtype(name)
    except TypeError:
        raise UnsafeValue(f"numpy dtype {desc} is not a plain number type") from None
    if state is not None:
        if not (isinstance(state, tuple) and len(state) in (8, 9) and state[0] in (3, 4)):
            raise UnsafeValue(f"numpy dtype {desc}: its pickled state {show(state, 60)} is not numpy's")
        order, subarray, names, fields = state[1:5]
        if subarray is not None or names is not None or fields is not None or (len(state) == 9 and state[8]):
            raise UnsafeValue(f"numpy dtype {desc}: its pickled state adds fields, a subarray or metadata, "
                              f"which a plain number type has not (a forged dtype)")
        if order not in ("<", ">", "|", "="):
            raise UnsafeValue(f"numpy dtype {desc}: byte order {show(order, 10)} is not one of < > | =")
        if order in "<>" and dt.itemsize > 1:
            dt = dt.newbyteorder(order)
    if dt.fields is not None or dt.subdtype is not None or dt.hasobject or dt.kind not in "biufc":
        raise UnsafeValue(f"numpy dtype {desc} is not a plain number type")
    return dt


class DtypeStandIn:
    """`numpy.dtype(...)` as a pickle calls it; nothing numpy is built."""

    def __init__(self, name=None, align=False, copy=True, *rest):
        self.name, self.state = name, None

    def __setstate__(self, state):
        if self.state is not None:
            raise UnsafeValue("a numpy dtype's state is set twice (a forged dtype)")
        self.state = state

    def describe(self) -> str:
        return _describe(self.name, self.state)

    def resolve(self) -> np.dtype:
        return plain_dtype(self.name, self.state)


def _dtype_of(value) -> np.dtype:
    if not isinstance(value, DtypeStandIn):
        raise UnsafeValue(f"expected a numpy dtype, found {type(value).__name__}")
    return value.resolve()


def scalar(dtype, data):
    """`numpy.core.multiarray.scalar(dtype, bytes)`, for plain dtypes only."""
    dt = _dtype_of(dtype)
    if not isinstance(data, bytes) or len(data) != dt.itemsize:
        raise UnsafeValue(f"a numpy {dt.name} scalar needs {dt.itemsize} bytes, the file gives "
                          f"{len(data) if isinstance(data, bytes) else type(data).__name__}")
    return np.frombuffer(data, dtype=dt)[0]


def encode(text, encoding="utf-8", errors="strict"):
    """`_codecs.encode` as protocol 2 uses it: str -> bytes, latin1 only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise UnsafeValue(f"_codecs.encode is admitted only for str -> bytes in latin1, not {show(encoding, 20)}")
    return text.encode("latin1")


class NdarrayName:
    """Stands for `numpy.ndarray` as the class argument of `_reconstruct`."""


def reconstruct(cls, shape=None, typecode=None):
    """`numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')`."""
    if cls is not NdarrayName:
        name = {DtypeStandIn: "numpy.dtype"}.get(cls, getattr(cls, "__name__", cls))
        raise UnsafeValue(f"_reconstruct builds only numpy.ndarray, not {show(name, 40)}")
    return ArrayStandIn()


class ArrayStandIn:
    """An array as pickled: recorded by `__setstate__`, validated by
    `check()` (once per key it stands under), built by `build()`."""

    def __init__(self):
        self.state = None
        self.dtype = None  # set by check()
        self.array = None  # set by build(); the same array may stand under several keys

    def __setstate__(self, state):
        if self.state is not None:
            raise UnsafeValue("an array's state is set twice (forged)")
        if isinstance(state, tuple) and len(state) == 4:
            state = (1,) + state
        if not (isinstance(state, tuple) and len(state) == 5):
            raise UnsafeValue(f"an array's pickled state {show(state, 60)} is not numpy's")
        self.state = state

    def check(self, source, key: str, budget) -> None:
        """The shared tensor check (dtype, shape x itemsize == bytes) and the
        file's budget; raises CheckpointError or UnsafeValue."""
        if self.state is None:
            raise UnsafeValue("an array without its state (damaged)")
        _version, shape, dtype, fortran, data = self.state
        dt, name = None, type(dtype).__name__
        if isinstance(dtype, DtypeStandIn):
            try:
                dt = dtype.resolve()
                name = dt.name
            except UnsafeValue:
                if isinstance(dtype.name, str) and _PLAIN_NAME.fullmatch(dtype.name):
                    raise  # a number type by name, with a forged state
                name = dtype.describe()  # object, str, structured...: refused by check_tensor
        stored = len(data) if isinstance(data, bytes) else -1
        budget.take(key, check_tensor(source, key, name, shape, stored))  # refuses all but the plain dtypes
        if type(fortran) is not bool:
            raise UnsafeValue(f"array order flag {show(fortran, 20)} is not a bool")
        self.dtype = dt

    def build(self) -> np.ndarray:
        """The array, after `check()`: a writable copy in native byte order,
        as numpy's own unpickling returns; the file's bytes go once it exists."""
        if self.array is None:
            if self.dtype is None:
                raise UnsafeValue("an array built before it was checked")
            _version, shape, _dtype, fortran, data = self.state
            view = np.frombuffer(data, dtype=self.dtype).reshape(tuple(shape), order="F" if fortran else "C")
            self.array = view.astype(self.dtype.newbyteorder("="), order="K", copy=True)
            self.state = view = data = None
        return self.array


__all__ = ["ArrayStandIn", "DtypeStandIn", "NdarrayName", "UnsafeValue", "encode", "plain_dtype", "reconstruct",
           "scalar"]
