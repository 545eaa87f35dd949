"""Hostile and malformed checkpoint files, for tests/test_fuzz_inputs.py.

`build_cases(folder)` writes valid GENet_small checkpoints in every format the
converter reads, then one file per attack or accident, and returns the cases
(name, class, source, destination, CLI options, expected exit code). Pickle
payloads are written opcode by opcode (the opcodes both `pickle` and torch's
weights-only unpickler read), so each attack is exactly the bytes a hostile
author would ship; nothing here is ever unpickled by the test itself.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import pickletools
import socket
import stat
import struct
import warnings
import zipfile
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np

SEED_ARCH = "small"


# --------------------------------------------------------------------------- pickle opcodes

def G(module: str, name: str) -> bytes:  # GLOBAL
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def U(text: str) -> bytes:  # BINUNICODE
    data = text.encode("utf-8", "surrogatepass")
    return b"X" + struct.pack("<I", len(data)) + data


def I(n: int) -> bytes:  # BININT1 / BININT / LONG1
    if 0 <= n < 256:
        return b"K" + bytes([n])
    if -2 ** 31 <= n < 2 ** 31:
        return b"J" + struct.pack("<i", n)
    data = pickle.encode_long(n)
    return b"\x8a" + bytes([len(data)]) + data


def T(*items: bytes) -> bytes:  # MARK ... TUPLE
    return b"(" + b"".join(items) + b"t"


def PUT(i: int) -> bytes:
    return b"r" + struct.pack("<I", i)


def GET(i: int) -> bytes:
    return b"j" + struct.pack("<I", i)


def BYTES(data: bytes) -> bytes:
    """bytes as protocol 2 spells them (and torch's unpickler reads): _codecs.encode(str, 'latin1')."""
    return G("_codecs", "encode") + U(data.decode("latin1")) + U("latin1") + b"\x86R"


def dtype_ops(name: str, state: Optional[bytes] = None) -> bytes:
    """numpy.dtype(name, False, True), then BUILD with `state` (what numpy's
    own pickles do; the state is where a forger lies)."""
    ops = G("numpy", "dtype") + U(name) + b"\x89\x88\x87R"
    return ops + state + b"b" if state is not None else ops


def plain_dtype(name: str = "f4", order: str = "<") -> bytes:
    return dtype_ops(name, T(I(3), U(order), b"NNN", I(-1), I(-1), I(0)))


def object_dtype() -> bytes:
    return dtype_ops("O8", T(I(3), U("|"), b"NNN", I(-1), I(-1), I(63)))


def object_field_dtype(flags: int = 0, offset: int = 0, itemsize: int = 8) -> bytes:
    """A void dtype whose pickled state declares an object field: with the
    list-pickle flag cleared, numpy takes the array's pointers from the file."""
    fields = b"}" + U("a") + T(object_dtype(), I(offset)) + b"s"
    return dtype_ops("V8", T(I(3), U("|"), b"N", U("a") + b"\x85", fields, I(itemsize), I(1), I(flags)))


def object_subarray_dtype() -> bytes:
    return dtype_ops("V8", T(I(3), U("|"), T(object_dtype(), T(I(1))), b"NN", I(8), I(1), I(0)))


def unnamed_field_dtype() -> bytes:
    """A void dtype whose state names fields 'a' and 'b' but defines only 'a'."""
    fields = b"}" + U("a") + T(plain_dtype(), I(0)) + b"s"
    return dtype_ops("V8", T(I(3), U("|"), b"N", T(U("a"), U("b")), fields, I(8), I(1), I(0)))


def float_with_object_field() -> bytes:
    """float32 by its name, with an object field in its state."""
    fields = b"}" + U("a") + T(object_dtype(), I(0)) + b"s"
    return dtype_ops("f4", T(I(3), U("<"), b"N", U("a") + b"\x85", fields, I(8), I(1), I(0)))


def ndarray_ops(dtype: bytes, shape, data: bytes, module: str = "numpy.core.multiarray",
                cls: bytes = None) -> bytes:
    """numpy's own pickle of an array: _reconstruct(ndarray, (0,), b'b') + BUILD(1, shape, dtype, False, data)."""
    cls = cls if cls is not None else G("numpy", "ndarray")
    return (G(module, "_reconstruct") + cls + I(0) + b"\x85" + BYTES(b"b") + b"\x87R"
            + T(I(1), T(*map(I, shape)), dtype, b"\x89", BYTES(data)) + b"b")


def scalar_ops(dtype: bytes, data: bytes, module: str = "numpy.core.multiarray") -> bytes:
    return G(module, "scalar") + dtype + BYTES(data) + b"\x86R"


def memo_bytes_bomb(mib: int = 1, copies: int = 1200, slot: int = 900000) -> bytes:
    """A list of `copies` bytes objects, each _codecs.encode of one memoised
    `mib`-MiB string: ~1 MiB of file, `copies` MiB of memory."""
    first = G("_codecs", "encode") + PUT(slot + 1) + U("A" * (mib << 20)) + PUT(slot) + U("latin1") + b"\x86R"
    again = GET(slot + 1) + GET(slot) + U("latin1") + b"\x86R"
    return b"](" + first + again * (copies - 1) + b"e"


def memo_tuple_bomb(levels: int = 64, slot: int = 900000) -> bytes:
    """A tuple holding t[0..levels], t[i+1] = (t[i], t[i]) through memo
    references: 2**64 leaves, so hashing or printing it never ends."""
    ops = U("x") + PUT(slot)
    for i in range(levels):
        ops += GET(slot + i) + GET(slot + i) + b"\x86" + PUT(slot + i + 1)
    return b"(" + ops + b"t"


def deep_tuple(depth: int = 1_000_000) -> bytes:
    """((((...)))) nested `depth` deep, 1 byte a level: hashing it overflows the C stack."""
    return b")" + b"\x85" * depth


def add_item(pickle_bytes: bytes, key: bytes, value: bytes) -> bytes:
    """Append `top[key] = value` to a pickle whose top object is a dict."""
    assert pickle_bytes.endswith(b".")
    return pickle_bytes[:-1] + key + value + b"s."


def add_item_to_file(src: str, dst: str, key: bytes, value: bytes) -> None:
    """`add_item` on a pickle file, copying its bulk in the kernel."""
    size = os.path.getsize(src)
    _copy_range(src, dst, 0, size - 1)
    with open(dst, "ab") as f:
        f.write(key + value + b"s.")


# --------------------------------------------------------------------------- valid files

@dataclass
class Case:
    name: str
    klass: str
    src: str
    dst: str
    args: List[str] = field(default_factory=lambda: ["--no-verify"])
    expect: int = 2
    fsize_limit: Optional[int] = None  # RLIMIT_FSIZE while converting: a full disk
    note: str = ""
    make: Optional[Callable[[], None]] = field(default=None, repr=False, compare=False)  # writes `src`

    def to_json(self):
        return {k: v for k, v in asdict(self).items() if k != "make"}


def _state(folder: str, layout: str) -> Dict[str, np.ndarray]:
    """The same weights read back from the valid safetensors file (faster
    than drawing them again; never cached: the fuzz worker measures each
    case's memory)."""
    import safetensors.numpy

    from converters.table.mapping import mapping_table

    return mapping_table(SEED_ARCH).convert(safetensors.numpy.load_file(valid_paths(folder)["safetensors"]),
                                            "timm", layout)


def _torch(state):
    import torch

    return {k: torch.from_numpy(np.asarray(v, order="C")) for k, v in state.items()}


VALID = ("pdparams", "pdparams2", "pth", "legacy", "safetensors")


def valid_paths(folder: str) -> Dict[str, str]:
    return {k: os.path.join(folder, f"valid_{k}") for k in VALID}


def write_valid(folder: str) -> Dict[str, str]:
    """GENet_small in each format, written by the frameworks' own savers
    (paddle.save's pickle: protocol 4 of arrays; protocol 2 as older Paddle)."""
    import safetensors.numpy
    import torch

    from converters.table.mapping import mapping_table
    from parity.core.seeded import seeded_state

    os.makedirs(folder, exist_ok=True)
    paths = valid_paths(folder)
    table, state = mapping_table(SEED_ARCH), seeded_state(SEED_ARCH)
    paddle = table.convert(state, "official", "paddle")
    with open(paths["pdparams"], "wb") as f:
        pickle.dump(paddle, f, protocol=4)
    with open(paths["pdparams2"], "wb") as f:
        pickle.dump(paddle, f, protocol=2)
    official = _torch(state)
    torch.save({"state_dict": official}, paths["pth"])
    torch.save({"state_dict": official}, paths["legacy"], _use_new_zipfile_serialization=False)
    timm = table.convert(state, "official", "timm")
    safetensors.numpy.save_file({k: np.asarray(v, order="C") for k, v in timm.items()}, paths["safetensors"])
    return paths


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def _copy_range(src: str, dst: str, start: int, length: int, head: bytes = b"") -> None:
    """dst = head + src[start:start + length], copied in the kernel where it can."""
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        fo.write(head)
        fo.flush()
        done = 0
        while done < length:
            try:
                n = os.copy_file_range(fi.fileno(), fo.fileno(), length - done, start + done)
            except (AttributeError, OSError):
                fi.seek(start + done)
                n = fo.write(fi.read(length - done))
                fo.flush()
            if n <= 0:
                break
            done += n


# --------------------------------------------------------------------------- torch file surgery

def _zip_records(path: str):
    with zipfile.ZipFile(path) as z:
        return [(i.filename, z.read(i)) for i in z.infolist()]


def write_zip(path: str, records, compress=(), align: int = 64) -> None:
    """A zip like torch's: records stored, their data aligned to `align`
    bytes (torch memory-maps them); names in `compress` are deflated."""
    with open(path, "wb") as raw, zipfile.ZipFile(raw, "w") as z, warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Duplicate name")  # on purpose, in one case
        for name, data in records:
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED if name in compress else zipfile.ZIP_STORED
            start = raw.tell() + 30 + len(name.encode()) + 4
            pad = -start % align
            info.extra = struct.pack("<HH", 0xCAFE, pad) + b"\0" * pad
            z.writestr(info, data)


def _data_pkl(records) -> str:
    return next(n for n, _ in records if n.endswith("/data.pkl"))


def patch_zip_pickle(src: str, dst: str, fn) -> None:
    records = _zip_records(src)
    name = _data_pkl(records)
    write_zip(dst, [(n, fn(d) if n == name else d) for n, d in records])


def _legacy_parts(data: bytes):
    """(head, main pickle, tail) of a legacy torch file: magic, protocol and
    sys-info pickles, then the object pickle, then storage keys and data."""
    f = io.BytesIO(data)
    ends = []
    while len(ends) < 4:
        for op, _arg, pos in pickletools.genops(f):
            if op.name == "STOP":
                ends.append(f.tell())
                break
    return data[:ends[2]], data[ends[2]:ends[3]], data[ends[3]:]


def patch_legacy_pickle(src: str, dst: str, fn) -> None:
    with open(src, "rb") as f:
        head, main, tail = _legacy_parts(f.read())
    with open(dst, "wb") as f:
        f.write(head + fn(main) + tail)


# --------------------------------------------------------------------------- safetensors surgery

# --------------------------------------------------------------------------- the cases

def _seeded_bias(shape) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32) * 0.1


def _st_header(path: str):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)), 8 + n


def build_cases(folder: str) -> List[Case]:
    """Every case, its source written on demand by `case.make()` (the fuzz
    worker writes each file just before its case and deletes it after, so
    the cases never occupy the disk at once). `write_valid(folder)` first."""
    import torch

    from converters.table.mapping import mapping_table

    valid = valid_paths(folder)
    cases: List[Case] = []
    out_root = os.path.join(folder, "out")

    def add(name, klass, make=None, src=None, ext=None, dst=None, **kw):
        n = len(cases)
        ext = ext or (".pth" if name.startswith("pdparams") else ".pdparams")  # always across frameworks
        src = src or os.path.join(folder, f"src{n:03d}")
        if dst is None:
            dst = os.path.join(out_root, f"case{n:03d}", "converted" + ext)
        cases.append(Case(name=name, klass=klass, src=src, dst=dst, make=(lambda: make(src)) if make else None, **kw))

    def data(fn):
        """A maker writing the bytes fn() returns."""
        return lambda p: _write(p, fn())

    def pd_item(k: bytes, value: bytes, base: str = "pdparams"):
        """The valid .pdparams (or another pickle) with `top[k] = value` appended."""
        return lambda p: add_item_to_file(valid[base], p, k, value)

    def torch_saved(fn, legacy=False):
        def make(p):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # quantized tensors are deprecated, on purpose here
                torch.save(fn(), p, _use_new_zipfile_serialization=not legacy)
        return make

    # Controls: every valid file converts (a check that can fail).
    for fmt in VALID:
        add(f"valid {fmt}", "valid file (control)", src=valid[fmt], ext=".pth" if "pdparams" in fmt else ".pdparams",
            expect=0)

    key = "fc_linear.bias"
    bias_shape = dict(mapping_table(SEED_ARCH).expected("paddle"))[key]

    # ---- forged dtypes and reduce chains (.pdparams): one entry of a valid file replaced
    n = bias_shape[0]
    pointers = b"A" * 8 * n  # what numpy would take for object pointers
    forged = {  # fc_linear.bias replaced; with verification on, as a user would run it
        "object field, list-pickle flag cleared": ndarray_ops(object_field_dtype(0), bias_shape, pointers),
        "object field, numpy._core path": ndarray_ops(object_field_dtype(0), bias_shape, pointers,
                                                      module="numpy._core.multiarray"),
        "object field at offset 4096": ndarray_ops(object_field_dtype(0, offset=4096), bias_shape, pointers),
        "object field, item size 2**31": ndarray_ops(object_field_dtype(0, itemsize=2 ** 31), bias_shape, pointers),
        "object subarray": ndarray_ops(object_subarray_dtype(), bias_shape, pointers),
        "object dtype array from raw bytes": ndarray_ops(object_dtype(), bias_shape, pointers),
        "dtype with byte order 'X'": ndarray_ops(plain_dtype("f4", "X"), bias_shape, b"\0" * 4 * n),
        "bytes shorter than the shape": ndarray_ops(plain_dtype("f4"), bias_shape, b"\0" * 16),
        "shape 2**40 over 16 bytes": ndarray_ops(plain_dtype("f4"), (2 ** 40,), b"\0" * 16),
        "_reconstruct of numpy.dtype": ndarray_ops(plain_dtype("f4"), bias_shape, b"\0" * 4 * n,
                                                   cls=G("numpy", "dtype")),
        "float32 dtype with an object field": ndarray_ops(float_with_object_field(), bias_shape, pointers),
        "scalar of an object-field dtype": scalar_ops(object_field_dtype(0), b"A" * 8),
        "scalar of a dtype naming a missing field": scalar_ops(unnamed_field_dtype(), b"A" * 8),
        "_codecs.encode with zlib_codec": G("_codecs", "encode") + U("x" * 64) + U("zlib_codec") + b"\x86R",
    }
    for what, ops in forged.items():
        add(f"pdparams: {what}", "forged dtype / reduce chain",
            pd_item(U(key), ops), ext=".pdparams", args=[])
    add("pdparams (protocol 2): object field, list-pickle flag cleared", "forged dtype / reduce chain",
        pd_item(U(key), forged["object field, list-pickle flag cleared"], "pdparams2"),
        ext=".pdparams", args=[])
    add("pdparams: object-field scalar as a key", "forged dtype / reduce chain",
        pd_item(scalar_ops(object_field_dtype(0), b"A" * 8), I(1)),
        ext=".pth", args=[])

    # ---- forged numpy dtypes inside .pth files, through the allow-listed numpy globals
    def zip_item(k, ops):
        return lambda p: patch_zip_pickle(valid["pth"], p, lambda d: add_item(d, k, ops))

    def legacy_item(k, ops):
        return lambda p: patch_legacy_pickle(valid["legacy"], p, lambda d: add_item(d, k, ops))

    # A dict key is hashed on load, and hashing reads the forged "pointers".
    forged_scalar = scalar_ops(object_field_dtype(0), b"A" * 8)
    add("pth zip: object-field numpy scalar as a key", "forged dtype / reduce chain", zip_item(forged_scalar, I(1)))
    add("pth zip: numpy._core object-field scalar as a key", "forged dtype / reduce chain",
        zip_item(scalar_ops(object_field_dtype(0), b"A" * 8, module="numpy._core.multiarray"), I(1)))
    add("pth zip: object-subarray numpy scalar as a key", "forged dtype / reduce chain",
        zip_item(scalar_ops(object_subarray_dtype(), b"A" * 8), I(1)))
    add("pth zip: object-field numpy scalar as a value", "forged dtype / reduce chain",
        zip_item(U("acc"), forged_scalar))
    missing_field = scalar_ops(unnamed_field_dtype(), b"A" * 8)
    add("pth zip: numpy scalar of a dtype naming a missing field", "forged dtype / reduce chain",
        zip_item(U("acc"), missing_field))
    add("pth legacy: object-field numpy scalar as a key", "forged dtype / reduce chain",
        legacy_item(forged_scalar, I(1)))
    add("pth legacy: numpy scalar of a dtype naming a missing field", "forged dtype / reduce chain",
        legacy_item(U("acc"), missing_field))

    # ---- memo and allocation bombs
    add("pdparams: one string encoded 1200 times", "memo / allocation bomb",
        pd_item(U("junk"), memo_bytes_bomb()))
    add("pdparams: tuple doubled 64 times as a key", "memo / allocation bomb",
        pd_item(memo_tuple_bomb(), I(1)))
    add("pdparams: tuple nested 10**6 deep as a key", "memo / allocation bomb",
        pd_item(deep_tuple(), I(1)))
    add("pdparams: one array under 3000 keys", "memo / allocation bomb",
        data(lambda: b"\x80\x02}" + ndarray_ops(plain_dtype("f4"), (1 << 18,), b"\0" * (1 << 20)) + PUT(900000)
             + b"0(" + b"".join(U(f"k{i}") + GET(900000) for i in range(3000)) + b"u."))
    add("pth zip: one string encoded 1200 times", "memo / allocation bomb", zip_item(U("junk"), memo_bytes_bomb()))
    add("pth zip: tuple doubled 64 times as a key", "memo / allocation bomb", zip_item(memo_tuple_bomb(), I(1)))
    add("pth zip: tuple nested 10**6 deep as a key", "memo / allocation bomb", zip_item(deep_tuple(), I(1)))
    add("pth legacy: tuple doubled 64 times as a key", "memo / allocation bomb", legacy_item(memo_tuple_bomb(), I(1)))
    add("pth zip: bytearray(1.2 GiB) from 20 bytes", "memo / allocation bomb",
        zip_item(U("junk"), G("builtins", "bytearray") + I(1200 << 20) + b"\x85R"))
    add("pth zip: 3000 bfloat16 tensors on one 1 MiB storage", "memo / allocation bomb",
        torch_saved(lambda: dict.fromkeys([f"k{i}" for i in range(3000)], torch.zeros(1 << 19, dtype=torch.bfloat16))))

    def expanded():
        sd = _torch(_state(folder, "official"))
        sd["junk"] = torch.zeros(1, dtype=torch.bfloat16).expand(40000, 40000)
        return {"state_dict": sd}

    add("pth zip: bfloat16 view of 1.6e9 elements over 2 bytes", "memo / allocation bomb", torch_saved(expanded))

    st_header, st_start = _st_header(valid["safetensors"])
    st_size = os.path.getsize(valid["safetensors"])
    body_len = st_size - st_start

    def st_file(header=None, raw=None, length=None):
        def make(p):
            raw_ = raw if raw is not None else json.dumps(header).encode()
            head = struct.pack("<Q", len(raw_) if length is None else length) + raw_
            _copy_range(valid["safetensors"], p, st_start, body_len, head)
        return make

    same = {"dtype": "BF16", "shape": [body_len // 2], "data_offsets": [0, body_len // 2 * 2]}
    add("safetensors: 3000 entries on the same bytes", "memo / allocation bomb",
        st_file(dict.fromkeys([f"k{i}" for i in range(3000)], same)))

    # ---- truncations at every 1/16 of each valid file
    for fmt in ("pdparams", "pth", "legacy", "safetensors"):
        size = os.path.getsize(valid[fmt])
        for k in range(1, 16):
            add(f"{fmt} cut at {k}/16", "truncation",
                lambda p, fmt=fmt, n=size * k // 16: _copy_range(valid[fmt], p, 0, n))

    # ---- safetensors header corruptions: one entry of the valid header changed
    meta = st_header.get("__metadata__")
    order = sorted((k for k in st_header if k != "__metadata__"), key=lambda k: st_header[k]["data_offsets"][0])
    e0 = next(k for k in order if len(st_header[k]["shape"]) >= 2)  # a conv weight
    e1 = order[order.index(e0) + 1]

    def changed(fn):
        h = json.loads(json.dumps(st_header))
        fn(h)
        return h

    def entry(k, name, value):
        return changed(lambda h: h[k].__setitem__(name, value))

    end0 = st_header[e0]["data_offsets"][1]
    shape0 = st_header[e0]["shape"]
    corrupt = {
        "offsets empty": entry(e0, "data_offsets", []),
        "offsets null": entry(e0, "data_offsets", None),
        "offsets strings": entry(e0, "data_offsets", ["0", str(end0)]),
        "offsets floats": entry(e0, "data_offsets", [0.0, float(end0)]),
        "offsets reversed": entry(e0, "data_offsets", [end0, 0]),
        "offsets beyond the file": entry(e0, "data_offsets", [0, body_len + 4096]),
        "two entries on the same bytes": entry(e1, "data_offsets", st_header[e0]["data_offsets"]),
        "entry nested": changed(lambda h: h.__setitem__(e0, {"inner": h[e0]})),
        "entry a string": changed(lambda h: h.__setitem__(e0, "F32")),
        "dtype a list": entry(e0, "dtype", ["F32"]),
        "shape negative": entry(e0, "shape", [-1] + shape0[1:]),
        "shape strings": entry(e0, "shape", [str(d) for d in shape0]),
        "shape product overflows int64": entry(e0, "shape", [2 ** 32, 2 ** 32]),
        "shape of booleans": entry(e0, "shape", [True] * len(shape0)),
        "metadata not an object": changed(lambda h: h.__setitem__("__metadata__", [1, 2])),
    }
    for what, h in corrupt.items():
        add(f"safetensors: {what}", "header corruption", st_file(h))
    raw = {"header a list": b"[1, 2, 3]", "header not JSON": b"{not json       ",
           "header invalid UTF-8": b'{"\xff\xfe": 1}',
           "header nested 100000 deep": b'{"a":' + b"[" * 100000 + b"]" * 100000 + b"}"}
    for what, r in raw.items():
        add(f"safetensors: {what}", "header corruption", st_file(raw=r))
    add("safetensors: header length 2**40", "header corruption", st_file(st_header, length=2 ** 40))
    add("safetensors: header length past the end", "header corruption", st_file(st_header, length=st_size))
    assert meta is None or isinstance(meta, dict)

    # ---- torch zip structure
    def zip_variant(fn):
        def make(p):
            records = _zip_records(valid["pth"])
            pkl = _data_pkl(records)
            fn(p, records, pkl, pkl[: -len("data.pkl")])
        return make

    add("pth zip: a tensor record deflated", "header corruption",
        zip_variant(lambda p, r, pkl, pre: write_zip(p, r, compress={f"{pre}data/0"})))
    add("pth zip: two data.pkl records", "header corruption",
        zip_variant(lambda p, r, pkl, pre: write_zip(p, r[:1] + [(pkl, add_item(dict(r)[pkl], U("x"), I(1)))] + r[1:])))
    add("pth zip: no data.pkl", "header corruption",
        zip_variant(lambda p, r, pkl, pre: write_zip(p, [(n.replace("data.pkl", "other.pkl"), d) for n, d in r])))
    add("pth zip: tensor record shorter than its storage", "header corruption",
        zip_variant(lambda p, r, pkl, pre: write_zip(
            p, [(n, d[: len(d) // 2] if n == f"{pre}data/0" else d) for n, d in r])))

    # ---- wrong dtypes: one tensor of an otherwise valid checkpoint
    official = dict(mapping_table(SEED_ARCH).expected("official"))
    nbt = next(k for k in official if k.endswith("num_batches_tracked"))
    weight = "module_list.0.netblock.weight"
    torch_wrong = {
        "bool bias": (key, lambda t: t.bool()),
        "complex64 bias": (key, lambda t: t.to(torch.complex64)),
        "int32 bias": (key, lambda t: t.int()),
        "int64 weight": (weight, lambda t: t.long()),
        "float32 step counter holding 0.5": (nbt, lambda t: t.float() + 0.5),
        "uint16 bias": (key, lambda t: t.to(torch.uint16)),
        "float8 bias": (key, lambda t: t.to(torch.float8_e4m3fn)),
        "quantized qint8 weight": (weight, lambda t: torch.quantize_per_tensor(t, 0.1, 0, torch.qint8)),
        "sparse COO weight": ("fc_linear.weight", lambda t: t.to_sparse()),
        "meta-device bias": (key, lambda t: torch.empty(t.shape, device="meta")),
    }

    def torch_with(k, fn):
        def state():
            sd = _torch(_state(folder, "official"))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sd[k] = fn(sd[k])
            return {"state_dict": sd}
        return state

    for what, (k, fn) in torch_wrong.items():
        add(f"pth zip: {what}", "wrong dtype", torch_saved(torch_with(k, fn)), args=[])
    add("pth legacy: complex64 bias", "wrong dtype",
        torch_saved(torch_with(key, lambda t: t.to(torch.complex64)), legacy=True), args=[])
    np_wrong = {
        "bool bias": lambda b: b.astype(bool),
        "complex64 bias": lambda b: b.astype(np.complex64),
        "int32 bias": lambda b: b.astype(np.int32),
        "datetime64 bias": lambda b: b.astype(np.int64).astype("datetime64[s]"),
        "str bias": lambda b: b.astype("U8"),
        "object bias": lambda b: np.array([None] * b.size, dtype=object),
        "structured bias": lambda b: np.zeros(b.shape, dtype=[("a", "<f4"), ("b", "<f4")]),
        "uint16 bias": lambda b: b.view(np.uint16)[::2].copy(),
        "longdouble bias": lambda b: b.astype(np.longdouble),
    }

    def paddle_with(k, value):
        """The valid .pdparams with `k` set again, to numpy's own pickle of `value`."""
        return lambda p: add_item_to_file(valid["pdparams"], p, k if isinstance(k, bytes) else U(k),
                                          pickle.dumps(value(), protocol=2)[2:-1])

    bias = lambda: _seeded_bias(bias_shape)  # noqa: E731
    for what, fn in np_wrong.items():
        add(f"pdparams: {what}", "wrong dtype", paddle_with(key, lambda fn=fn: fn(bias())), args=[])
    widths = {"BOOL": 1, "I32": 4, "C64": 8, "F8_E4M3": 1}
    for dt, width in widths.items():
        def retyped(h, dt=dt, width=width):
            e = h["head.fc.bias"]
            e["dtype"] = dt
            e["shape"] = [(e["data_offsets"][1] - e["data_offsets"][0]) // width]  # only the dtype is wrong
        add(f"safetensors: {dt} bias", "wrong dtype", st_file(changed(retyped)), args=[])
    add("pdparams: big-endian float32 bias", "valid file (control)",
        paddle_with(key, lambda: bias().astype(">f4")), expect=0)

    # ---- integer and other non-string keys
    add("pdparams: integer key", "integer dict key", paddle_with(I(0), bias), args=[])
    add("pdparams: tuple key", "integer dict key", paddle_with(T(U("a"), I(1)), bias), args=[])
    add("pdparams: key with a newline", "integer dict key", paddle_with("fc_linear.bias\nfc", bias), args=[])

    def int_key():
        sd = _torch(_state(folder, "official"))
        sd[7] = sd.pop(key)
        return {"state_dict": sd}

    add("pth zip: integer key in the state dict", "integer dict key", torch_saved(int_key), args=[])

    # ---- non-regular files
    def unix_socket(p):
        s = socket.socket(socket.AF_UNIX)
        s.bind(p)
        s.close()

    def fifo_link(p):
        os.mkfifo(p + ".fifo")
        os.symlink(p + ".fifo", p)

    add("a FIFO", "non-regular file", os.mkfifo)
    add("/dev/zero", "non-regular file", src="/dev/zero")
    add("/dev/null", "non-regular file", src="/dev/null")
    add("a directory", "non-regular file", os.mkdir)
    add("a unix socket", "non-regular file", unix_socket)
    add("a symlink to a FIFO", "non-regular file", fifo_link)

    # ---- destinations that cannot be written
    for ext in (".pdparams", ".pth", ".safetensors"):
        add(f"full disk writing {ext}", "destination: full filesystem", src=valid["pth"], ext=ext,
            fsize_limit=1 << 20, note="RLIMIT_FSIZE 1 MiB: writes fail with EFBIG, as on a full disk")
    add("read-only destination folder", "destination: read-only filesystem", src=valid["pth"],
        dst=os.path.join(out_root, "read-only", "converted.pdparams"),
        note="a read-only tmpfs (root), or a mode 0555 folder")
    return cases


def remove_source(case: Case) -> None:
    """Delete what `case.make()` wrote (file, FIFO, socket, folder, link)."""
    for p in (case.src, case.src + ".fifo"):
        if os.path.isdir(p) and not os.path.islink(p):
            os.rmdir(p)
        elif os.path.lexists(p):
            os.unlink(p)


def prepare_destinations(cases: List[Case]) -> List[str]:
    """Create every destination folder; make the read-only one unwritable
    (a read-only tmpfs when we may mount, else mode 0555, which binds only
    non-root users). Returns the folders to release afterwards."""
    import subprocess

    held = []
    for c in cases:
        folder = os.path.dirname(c.dst)
        os.makedirs(folder, exist_ok=True)
        if c.klass == "destination: read-only filesystem":
            if os.geteuid() == 0:
                r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", folder],
                                   capture_output=True)
                if r.returncode != 0:
                    c.note = "skipped: running as root without permission to mount a read-only tmpfs"
                    continue
            else:
                os.chmod(folder, stat.S_IRUSR | stat.S_IXUSR)
            held.append(folder)
    return held


def release_destinations(held: List[str]) -> None:
    import subprocess

    for folder in held:
        if os.geteuid() == 0:
            subprocess.run(["umount", folder], capture_output=True)
        else:
            os.chmod(folder, 0o755)
