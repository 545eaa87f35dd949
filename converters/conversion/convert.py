"""`converters.conversion.convert.convert(src, dst)`: one checkpoint in, one verified checkpoint out.

Steps: read the source safely and identify it (`converters.files.load`); relayout
it strictly through the mapping table (or fold BN, `converters.table.fuse`); write
to a temporary file beside the destination; read that file back with the safe
reader and compare both models (`converters.conversion.verify`); only then rename it into
place, with its provenance record (`converters.files.provenance`). Any failure on
the way leaves no destination file and an existing one untouched.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np

from converters.table import fuse
from converters.table.errors import CheckpointError, VerificationError
from converters.files.atomic import AtomicFile, commit_together
from converters.files.pdparams import write_pdparams
from converters.files.safetensors_format import write_safetensors
from converters.files.torch_format import write_torch
from converters.files.load import LoadedWeights, check_finite, load_weights, to_layout
from converters.files.paths import same_file
from converters.files.provenance import provenance_path
from converters.files.tensor_check import STEP_COUNTER
from converters.table.mapping import TRANSPOSE, mapping_table
from converters.conversion.verify import framework_of
from parity.core.frameworks import import_paddle

# Destination format by extension, and the layouts each can hold (first: default).
FORMATS = {".pdparams": "pdparams", ".pth": "torch", ".pt": "torch", ".safetensors": "safetensors"}
DST_LAYOUTS = {"pdparams": ("paddle",), "torch": ("official", "timm"), "safetensors": ("official", "timm")}
FUSED_OF = {"paddle": "paddle_fused", "official": "fused"}


@dataclass
class ConvertResult:
    status: str  # ok | verification_failed
    src: str
    dst: str
    provenance: Optional[str]
    arch: str
    num_classes: int  # the head's size, read from the source
    state_dict: dict  # which state dict of the source was converted (converters.files.state_dicts)
    src_format: str
    src_layout: str
    src_sha256: str
    dst_format: str
    dst_layout: str
    mapping_table_version: str
    summary: Dict[str, object]
    notes: List[str]
    verification: Optional[dict]
    seconds: float
    timings: Dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _unwritable(path: str, e: OSError) -> CheckpointError:
    return CheckpointError(path, f"could not be written ({e.strerror or e}); nothing was written and any "
                                 f"existing file is untouched")


def _dst_format(dst: str) -> str:
    ext = os.path.splitext(dst)[1].lower()
    if ext not in FORMATS:
        raise CheckpointError(dst, f"unknown destination extension {ext or '(none)'!r}; use .pdparams (Paddle), "
                                   f".pth/.pt (PyTorch, official layout) or .safetensors")
    return FORMATS[ext]


def _resolve_dst(src: str, dst: str) -> str:
    """A folder as destination means `<folder>/<source stem>.pdparams`."""
    if os.path.isdir(dst):
        stem = os.path.splitext(os.path.basename(src))[0]
        return os.path.join(dst, stem + ".pdparams")
    return dst


def _check_paths(src: str, dst: str, force: bool, provenance: bool) -> None:
    # Neither the destination nor its provenance record may be the source, by
    # any name (a link, a hard link, `./x`), with --force or without.
    if same_file(src, dst):
        raise CheckpointError(dst, f"is the source file itself ({src}); choose another destination")
    record = provenance_path(dst)
    if provenance and same_file(src, record):
        raise CheckpointError(record, f"(the provenance record of {dst}) is the source file itself ({src}); "
                                      f"it would be overwritten: choose another destination")
    folder = os.path.dirname(os.path.abspath(dst))
    if not os.path.isdir(folder):
        raise CheckpointError(dst, f"destination folder {folder} does not exist")
    for path in [dst] + ([record] if provenance else []):
        if os.path.lexists(path) and not force:
            raise CheckpointError(path, "already exists; pass --force (force=True) to replace it")
        if os.path.isdir(path):
            raise CheckpointError(path, "is a directory; refusing to replace it")


def _dst_layout(source: LoadedWeights, fmt: str, dst_layout: Optional[str], fuse_bn: bool) -> str:
    allowed = DST_LAYOUTS[fmt]
    base = dst_layout or allowed[0]
    if base in FUSED_OF.values():  # asked for a fused layout by name
        base, fuse_bn = {v: k for k, v in FUSED_OF.items()}[base], True
    if base not in allowed:
        raise CheckpointError(None, f"a {fmt} destination holds the {' or '.join(allowed)} layout, not {base}")
    if fuse_bn or source.fused:
        if base not in FUSED_OF:
            raise CheckpointError(None, f"BN-fused weights exist in the official and Paddle layouts only, not {base}")
        return FUSED_OF[base]
    return base


def _summary(source: LoadedWeights, dst_layout: str, tensors: Dict[str, np.ndarray]) -> dict:
    """What the conversion did, counted from the mapping table's rules."""
    table = mapping_table(source.arch, source.num_classes)
    s = {"source_tensors": len(source.tensors), "written_tensors": len(tensors), "renamed": 0, "transposed": 0,
         "dropped": 0, "drop_reasons": {}, "recreated": 0, "recreate_reason": "", "bn_folded": 0}
    if (source.framework == "paddle") != (dst_layout in ("paddle", "paddle_fused")):
        s["transposed"] = sum(1 for r in table.rows if r.action == TRANSPOSE)
    if not source.fused and dst_layout in fuse.FUSED_LAYOUTS:
        # Every conv/BN pair becomes one conv with bias; the step counters go with their BN.
        s["bn_folded"] = len(fuse.conv_bn_pairs(source.arch))
        nbt = sum(1 for k in source.tensors if k.endswith(".num_batches_tracked"))
        if nbt:
            s["dropped"] = nbt
            s["drop_reasons"] = {"num_batches_tracked: its BN is folded into the conv, and eval never reads it": nbt}
        return s
    if source.fused:
        return s  # fused -> fused: only the classifier's storage may differ
    for r in table.rows:
        a, b = r.key(source.layout), r.key(dst_layout)
        if a and b and a != b:
            s["renamed"] += 1
        elif a and not b:
            s["dropped"] += 1
            s["drop_reasons"][r.reason] = s["drop_reasons"].get(r.reason, 0) + 1
        elif b and not a:
            s["recreated"] += 1
    if s["recreated"]:
        s["recreate_reason"] = "num_batches_tracked has no Paddle counterpart; written as int64 0"
    return s


def _cast_dtypes(source: LoadedWeights, tensors: Dict[str, np.ndarray], keep_dtype: bool, fmt: str, notes):
    """float16/bfloat16 become float32 unless keep_dtype; returns the keys to
    store as bfloat16."""
    # BN step counters are metadata, read as int64 whatever their dtype in the file.
    float_dtypes = sorted({d for k, d in source.dtypes.items() if d in ("float16", "bfloat16", "float32", "float64")
                           and k.rsplit(".", 1)[-1] != STEP_COUNTER})
    if not keep_dtype:
        narrow = [d for d in float_dtypes if d in ("float16", "bfloat16")]
        if narrow:
            for k, v in tensors.items():
                if v.dtype == np.float16:
                    tensors[k] = v.astype(np.float32)
            notes.append(f"{'/'.join(narrow)} weights written as float32 (exact; --keep-dtype keeps them)")
        return frozenset()
    if len(float_dtypes) > 1:
        raise CheckpointError(source.path, f"--keep-dtype needs one float dtype, the file mixes "
                                           f"{', '.join(float_dtypes)}")
    target = float_dtypes[0] if float_dtypes else "float32"
    if target == "bfloat16":
        if fmt == "pdparams":
            raise CheckpointError(source.path, "--keep-dtype: bfloat16 cannot be stored in a .pdparams here "
                                               "(numpy has no bfloat16); drop --keep-dtype to write float32")
        notes.append("kept bfloat16 (--keep-dtype)")
        return frozenset(k for k, v in tensors.items() if v.dtype.kind == "f")
    for k, v in tensors.items():
        if v.dtype.kind == "f" and v.dtype != np.dtype(target):
            tensors[k] = v.astype(target)
    if target != "float32":
        notes.append(f"kept {target} (--keep-dtype)")
    return frozenset()


def _write(tensors, path: str, fmt: str, layout: str, bf16_keys, metadata: dict) -> None:
    if fmt == "pdparams":
        write_pdparams(tensors, path)
    elif fmt == "torch":
        # The official code loads checkpoint['state_dict']; timm saves bare state dicts.
        write_torch(tensors, path, wrap=layout != "timm", bf16_keys=bf16_keys)
    else:
        write_safetensors(tensors, path, metadata=metadata, bf16_keys=bf16_keys)


def convert(src, dst, *, arch: Optional[str] = None, src_layout: Optional[str] = None,
            dst_layout: Optional[str] = None, fuse_bn: bool = False, keep_dtype: bool = False,
            verify: bool = True, force: bool = False, trust_pickle: bool = False, provenance: bool = True,
            batch_size: int = 1, progress: Optional[Callable[[str], None]] = None,
            weights_key: Optional[str] = None) -> ConvertResult:
    """Convert the checkpoint `src` into `dst` (format by extension), with
    the head it holds (any number of classes). `weights_key`: which state
    dict of a training checkpoint (converters.files.state_dicts; the choice
    is recorded either way).

    Raises CheckpointError for bad input or paths (nothing written) and
    VerificationError (nothing written; `.result` holds the numbers) when the
    destination model disagrees with the source model beyond tolerance.
    """
    say = progress or (lambda _msg: None)
    start = time.perf_counter()
    timings: Dict[str, float] = {}
    src, dst = str(src), _resolve_dst(str(src), str(dst))
    fmt = _dst_format(dst)
    if not os.path.exists(src):
        raise CheckpointError(src, "no such file")
    _check_paths(src, dst, force, provenance)

    say(f"reading {src}")
    source = load_weights(src, arch=arch, layout=src_layout, trust_pickle=trust_pickle, weights_key=weights_key)
    timings["read"] = time.perf_counter() - start
    layout = _dst_layout(source, fmt, dst_layout, fuse_bn)
    say(f"GENet_{source.arch} ({source.num_classes}-class head): {source.layout} -> {layout}")
    if source.state_dict.note:
        say(source.state_dict.note)
    t = time.perf_counter()
    tensors = to_layout(source, layout)
    notes = list(source.notes)
    if layout in fuse.FUSED_LAYOUTS and not source.fused:
        check_finite(tensors, f"{src} (after folding BN)")
    bf16_keys = _cast_dtypes(source, tensors, keep_dtype, fmt, notes)
    summary = _summary(source, layout, tensors)
    summary["bytes_in"] = source.size_bytes
    table_version = mapping_table(source.arch, source.num_classes).version
    timings["convert"] = time.perf_counter() - t

    if verify and "paddle" in (source.framework, framework_of(layout)):
        # Paddle's import replaces the SIGTERM handler for a moment (see
        # converters.files.atomic.reclaim_signal_handlers): done before any temporary
        # exists, a `kill` in that moment leaves nothing behind.
        import_paddle()
    try:
        out_file = AtomicFile(dst)
    except OSError as e:  # read-only filesystem, permissions
        raise _unwritable(dst, e) from None
    with out_file as out:
        t = time.perf_counter()
        say(f"writing {dst}")
        try:
            _write(tensors, out.tmp, fmt, layout, bf16_keys,
                   {"format": "pt", "arch": f"GENet_{source.arch}", "layout": layout,
                    "num_classes": source.num_classes, "source_sha256": source.sha256,
                    "mapping_table": table_version})
        except OSError as e:  # full disk, permissions, quota
            raise _unwritable(dst, e) from None
        summary["bytes_out"] = os.path.getsize(out.tmp)
        timings["write"] = time.perf_counter() - t
        verification = None
        if verify:
            from converters.conversion.verify import verify as run_verification

            t = time.perf_counter()
            say("verifying: reading the output back, running both models")
            read_back = load_weights(out.tmp, arch=source.arch, layout=layout)
            timings["read_back"] = time.perf_counter() - t
            t = time.perf_counter()
            verification = run_verification(source, tensors, read_back, bf16_keys, batch_size).to_dict()
            timings["verify"] = time.perf_counter() - t
        result = ConvertResult(
            status="ok" if verification is None or verification["passed"] else "verification_failed",
            src=os.path.abspath(src), dst=os.path.abspath(dst),
            provenance=os.path.abspath(provenance_path(dst)) if provenance else None, arch=f"GENet_{source.arch}",
            num_classes=source.num_classes, state_dict=source.state_dict.to_dict(), src_format=source.format,
            src_layout=source.layout, src_sha256=source.sha256, dst_format=fmt,
            dst_layout=layout, mapping_table_version=table_version, summary=summary, notes=notes,
            verification=verification, seconds=0.0, timings=timings)
        if result.status != "ok":
            from converters.conversion.verify import summary_of as run_verification_summary

            result.seconds = time.perf_counter() - start
            err = VerificationError(
                f"{dst}: not written. GENet_{source.arch} {source.layout} -> {layout}: "
                f"{run_verification_summary(verification)}.")
            err.result = result
            raise err
        record = None
        if provenance:
            from converters.files.provenance import record as make_record
            from converters.files.provenance import write_record

            t = time.perf_counter()
            try:
                record = write_record(make_record(
                    source=source, dst=dst, dst_format=fmt, dst_layout=layout, tensors=tensors,
                    bf16_keys=bf16_keys, table_version=table_version,
                    options={"fuse_bn": fuse_bn, "keep_dtype": keep_dtype, "verify": verify,
                             "trust_pickle": trust_pickle, "weights_key": weights_key},
                    summary=summary, verification=verification), provenance_path(dst))
            except OSError as e:
                raise _unwritable(provenance_path(dst), e) from None
            timings["provenance"] = time.perf_counter() - t
        try:
            files = [out] + ([record] if record is not None else [])
            try:  # a full disk can still show when the data reaches it
                for f in files:
                    f.sync()
            except OSError as e:
                raise _unwritable(dst, e) from None
            commit_together(files)
        finally:
            if record is not None:
                record.discard()
    result.seconds = time.perf_counter() - start
    return result
