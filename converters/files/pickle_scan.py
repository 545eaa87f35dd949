"""Bound a pickle's work before any unpickler runs it.

A pickle is a program, and a few bytes of it can demand unbounded work from
the unpickler that runs it (ours for `.pdparams`, torch's weights-only one for
`.pth`): memo references repeat an object without repeating its bytes, so a
tuple doubled 64 times through the memo has 2**64 leaves that hashing it as a
dict key visits one by one; a string memoised once and passed to
`_codecs.encode` a thousand times is a thousand copies; a million nested
one-byte tuples overflow the C stack when hashed.

`scan_pickle` walks the opcodes without building anything. It tracks, for
every value on the pickle's stack and memo, how large the value is with every
reference expanded (nodes plus payload bytes) and how deep it nests, and
refuses the stream at the first opcode where

- the work the stream asks for (every value it creates plus, for every memo
  reference, the full size of what it references again) exceeds
  `WORK_FACTOR` x the stream's length + `WORK_FLOOR`,
- a value nests deeper than `MAX_DEPTH`,
- the stream has more than `MAX_OPCODES` opcodes,
- or it uses an opcode that no checkpoint writer emits (extension registry,
  out-of-band buffers) or mutates an object after referencing it again (the
  only way to grow an already-counted value).

Without memo references a pickle's objects can never outweigh its own bytes;
real checkpoints reference again only small things (class names, 'cpu'), so
their work stays at or below their length (measured on GENet checkpoints:
1.00 x for `.pdparams`, whose tensor bytes are in the pickle, 0.65-0.7 x for
torch pickles, whose bytes are not) and the factor 2 leaves room while capping
a hostile stream at twice its size. Payloads are skipped, never read, so
scanning a 300 MB `.pdparams` reads only its opcodes (GENet_small: 25 ms).

The scan also returns the persistent ids a torch pickle declares (storage
type, key, element count), which `converters.files.torch_file` checks against the file
before torch allocates anything for them.
"""
from __future__ import annotations

import struct
from typing import BinaryIO, List, Optional

WORK_FACTOR = 2
WORK_FLOOR = 1 << 20
MAX_DEPTH = 100
MAX_OPCODES = 1_000_000
MAX_LINE = 1 << 16
_CONST_STR = 1024  # strings up to this length keep their value (names, persistent ids)


class PickleRefused(Exception):
    """The stream asks for more than its size allows, or for what no
    checkpoint holds. `str()` says what and where."""


_NO_CONST = object()


class Global:
    """A global named in a pickle, as it appears inside a persistent id."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self):
        return self.name


class _Value:
    __slots__ = ("size", "depth", "shared", "open", "const", "name")

    def __init__(self, size=1, depth=1, const=_NO_CONST, name=None, open_=False):
        self.size = size  # nodes + payload bytes with every reference expanded
        self.depth = depth
        self.shared = False  # referenced again (GET/DUP): its size is counted where it is used
        self.open = open_  # a container or object still being filled
        self.const = const  # small constants and tuples of them, for persistent ids
        self.name = name  # 'module.name' of a global


def _const_tuple(items):
    values = tuple(v.const for v in items)
    return _NO_CONST if any(c is _NO_CONST for c in values) else values


class _Scan:
    def __init__(self, f: BinaryIO, end: int, label: str):
        self.f, self.end, self.label = f, end, label
        self.start = f.tell()
        self.limit = WORK_FACTOR * (end - self.start) + WORK_FLOOR
        self.work = 0
        self.stack: List[_Value] = []
        self.marks: List[List[_Value]] = []
        self.memo = {}
        self.persistent_ids: List[tuple] = []
        self.opcodes = 0

    # ---- helpers
    def refuse(self, what: str):
        raise PickleRefused(f"{self.label} {what}, at byte {self.f.tell() - self.start}; refused before "
                            f"unpickling: nothing from it was built")

    def read(self, n: int) -> bytes:
        data = self.f.read(n)
        if len(data) < n:
            self.refuse("ends early: the pickle stream is truncated")
        return data

    def skip(self, n: int) -> None:
        """Pass over an n-byte payload without reading it."""
        if self.f.tell() + n > self.end:
            self.refuse(f"declares a {n}-byte item beyond the end of the file (truncated or damaged)")
        self.f.seek(n, 1)

    def line(self) -> bytes:
        data = self.f.readline(MAX_LINE)
        if not data.endswith(b"\n"):
            self.refuse("has an unterminated or over-long text argument")
        return data[:-1]

    def memo_index(self) -> int:
        """The index of a text memo opcode (GET, PUT): ASCII digits, else refused."""
        text = self.line()
        if not (text.isascii() and text.isdigit()):
            self.refuse(f"has a memo opcode with the index {text[:20]!r}, not a whole number (damaged or forged)")
        return int(text)

    def charge(self, amount: int) -> None:
        self.work += amount
        if self.work > self.limit:
            self.refuse(f"expands to more than {WORK_FACTOR} x its {(self.limit - WORK_FLOOR) // WORK_FACTOR} "
                        f"bytes of objects (memo references or allocations repeat what the file stores once: "
                        f"a memo bomb)")

    def push(self, v: _Value) -> None:
        if v.depth > MAX_DEPTH:
            self.refuse(f"nests objects more than {MAX_DEPTH} deep")
        self.stack.append(v)

    def pop(self) -> _Value:
        if not self.stack:
            self.refuse("pops from an empty stack (damaged)")
        return self.stack.pop()

    def pop_mark(self) -> List[_Value]:
        if not self.marks:
            self.refuse("closes a mark it never opened (damaged)")
        items, self.stack = self.stack, self.marks.pop()
        return items

    def top(self) -> _Value:
        if not self.stack:
            self.refuse("refers to an empty stack (damaged)")
        return self.stack[-1]

    def const(self, payload: int, value=_NO_CONST) -> None:
        self.charge(1 + payload)
        self.push(_Value(size=1 + payload, const=value))

    def data(self, n: int, text: bool) -> None:
        if n <= _CONST_STR:
            raw = self.read(n)
            value = raw.decode("utf-8", "surrogatepass") if text else raw
            self.const(n, value)
        else:
            self.skip(n)
            self.const(n)

    def combine(self, items: List[_Value], const=_NO_CONST, open_=False) -> _Value:
        self.charge(1)
        return _Value(size=1 + sum(v.size for v in items), depth=1 + max((v.depth for v in items), default=0),
                      const=const, open_=open_)

    def grow(self, target: _Value, items: List[_Value]) -> None:
        if not target.open:
            self.refuse("adds items to a value that cannot hold them (damaged)")
        if target.shared:
            self.refuse("adds to an object it already referenced elsewhere (no checkpoint writer does this)")
        target.size += sum(v.size for v in items)
        target.depth = max([target.depth] + [1 + v.depth for v in items])
        if target.depth > MAX_DEPTH:
            self.refuse(f"nests objects more than {MAX_DEPTH} deep")
        target.const = _NO_CONST

    def call(self, func: _Value, args: List[_Value]) -> _Value:
        v = self.combine([func] + args, open_=True)
        if func.name in ("builtins.bytearray", "builtins.bytes"):  # bytearray(n) allocates n bytes
            n = sum(a for a in (args[0].const if args and isinstance(args[0].const, tuple) else ())
                    if isinstance(a, int))
            self.charge(n)
            v.size += n
        return v

    def reference(self, v: _Value) -> None:
        v.shared = True
        self.charge(v.size)
        self.push(v)

    # ---- the opcodes
    def run(self) -> _Value:
        read, unpack = self.read, struct.unpack
        while True:
            self.opcodes += 1
            if self.opcodes > MAX_OPCODES:
                self.refuse(f"has more than {MAX_OPCODES} opcodes (a GENet checkpoint's pickle has a few thousand)")
            op = self.f.read(1)
            if not op:
                self.refuse("ends early: the pickle stream is truncated")
            c = op[0]
            if c == 0x2E:  # STOP
                if len(self.stack) != 1 or self.marks:
                    self.refuse("stops with a damaged stack")
                # Until now the bound was the rest of the file (a legacy .pth has data after its
                # pickles); now the stream's own length is known. The scan itself never expands anything.
                self.limit = WORK_FACTOR * (self.f.tell() - self.start) + WORK_FLOOR
                self.charge(0)
                return self.stack[0]
            elif c == 0x80:  # PROTO
                read(1)
            elif c == 0x95:  # FRAME
                read(8)
            elif c == 0x28:  # MARK
                self.marks.append(self.stack)
                self.stack = []
            elif c == 0x30:  # POP
                self.pop() if self.stack else self.pop_mark()
            elif c == 0x31:  # POP_MARK
                self.pop_mark()
            elif c == 0x32:  # DUP
                self.reference(self.top())
            elif c in (0x4E, 0x88, 0x89):  # NONE NEWTRUE NEWFALSE
                self.const(0, {0x4E: None, 0x88: True, 0x89: False}[c])
            elif c == 0x4B:  # BININT1
                self.const(1, read(1)[0])
            elif c == 0x4D:  # BININT2
                self.const(2, unpack("<H", read(2))[0])
            elif c == 0x4A:  # BININT
                self.const(4, unpack("<i", read(4))[0])
            elif c in (0x49, 0x4C):  # INT LONG (text)
                text = self.line()
                try:
                    value = int(text.rstrip(b"L")) if text not in (b"00", b"01") else text == b"01"
                except ValueError:
                    self.refuse("has a malformed integer")
                self.const(len(text), value)
            elif c == 0x8A:  # LONG1
                n = read(1)[0]
                self.const(n, int.from_bytes(read(n), "little", signed=True))
            elif c == 0x8B:  # LONG4
                n = unpack("<i", read(4))[0]
                if n < 0 or n > _CONST_STR:
                    self.refuse(f"has a {n}-byte integer")
                self.const(n, int.from_bytes(read(n), "little", signed=True))
            elif c == 0x46:  # FLOAT
                self.const(len(self.line()))
            elif c == 0x47:  # BINFLOAT
                read(8)
                self.const(8)
            elif c in (0x53, 0x56):  # STRING UNICODE (text)
                text = self.line()
                self.const(len(text), text.decode("latin1") if len(text) <= _CONST_STR else _NO_CONST)
            elif c == 0x58:  # BINUNICODE
                self.data(unpack("<I", read(4))[0], True)
            elif c == 0x8C:  # SHORT_BINUNICODE
                self.data(read(1)[0], True)
            elif c == 0x8D:  # BINUNICODE8
                self.data(unpack("<Q", read(8))[0], True)
            elif c == 0x54:  # BINSTRING
                n = unpack("<i", read(4))[0]
                if n < 0:
                    self.refuse("has a negative string length")
                self.data(n, False)
            elif c in (0x55, 0x43):  # SHORT_BINSTRING SHORT_BINBYTES
                self.data(read(1)[0], False)
            elif c == 0x42:  # BINBYTES
                self.data(unpack("<I", read(4))[0], False)
            elif c in (0x8E, 0x96):  # BINBYTES8 BYTEARRAY8
                self.data(unpack("<Q", read(8))[0], False)
            elif c in (0x5D, 0x7D, 0x8F):  # EMPTY_LIST EMPTY_DICT EMPTY_SET
                self.push(self.combine([], open_=True))
            elif c == 0x29:  # EMPTY_TUPLE
                self.push(self.combine([], const=()))
            elif c in (0x6C, 0x64):  # LIST DICT
                self.push(self.combine(self.pop_mark(), open_=True))
            elif c in (0x74, 0x91):  # TUPLE FROZENSET
                items = self.pop_mark()
                self.push(self.combine(items, const=_const_tuple(items) if c == 0x74 else _NO_CONST))
            elif c in (0x85, 0x86, 0x87):  # TUPLE1 TUPLE2 TUPLE3
                items = [self.pop() for _ in range(c - 0x84)][::-1]
                self.push(self.combine(items, const=_const_tuple(items)))
            elif c == 0x61:  # APPEND
                item = self.pop()
                self.grow(self.top(), [item])
            elif c == 0x73:  # SETITEM
                value, key = self.pop(), self.pop()
                self.grow(self.top(), [key, value])
            elif c in (0x65, 0x75, 0x90):  # APPENDS SETITEMS ADDITEMS
                items = self.pop_mark()
                self.grow(self.top(), items)
            elif c == 0x63:  # GLOBAL
                module, name = self.line(), self.line()
                full = f"{module.decode('utf-8', 'replace')}.{name.decode('utf-8', 'replace')}"
                self.charge(1)
                self.push(_Value(name=full, const=Global(full)))
            elif c == 0x93:  # STACK_GLOBAL
                name, module = self.pop(), self.pop()
                if not (isinstance(module.const, str) and isinstance(name.const, str)):
                    self.refuse("names a global with values that are not strings")
                self.charge(1)
                self.push(_Value(name=f"{module.const}.{name.const}", const=Global(f"{module.const}.{name.const}")))
            elif c == 0x52:  # REDUCE
                args = self.pop()
                func = self.pop()
                self.push(self.call(func, [args]))
            elif c == 0x81:  # NEWOBJ
                args = self.pop()
                cls = self.pop()
                self.push(self.call(cls, [args]))
            elif c == 0x92:  # NEWOBJ_EX
                kwargs, args = self.pop(), self.pop()
                cls = self.pop()
                self.push(self.call(cls, [args, kwargs]))
            elif c == 0x69:  # INST
                self.line(), self.line()
                self.push(self.call(_Value(), self.pop_mark()))
            elif c == 0x6F:  # OBJ
                items = self.pop_mark()
                if not items:
                    self.refuse("builds an object from nothing (damaged)")
                self.push(self.call(items[0], items[1:]))
            elif c == 0x62:  # BUILD
                state = self.pop()
                self.grow(self.top(), [state])
                self.top().open = True  # torch fills a state dict after its BUILD
            elif c == 0x51:  # BINPERSID
                pid = self.pop()
                self.persistent_ids.append(pid.const if isinstance(pid.const, tuple) else None)
                self.charge(1)
                self.push(_Value(size=1 + pid.size, depth=1 + pid.depth))
            elif c == 0x50:  # PERSID
                self.persistent_ids.append(None)
                self.const(len(self.line()))
            elif c in (0x67, 0x68, 0x6A):  # GET BINGET LONG_BINGET
                idx = (self.memo_index() if c == 0x67 else read(1)[0] if c == 0x68 else unpack("<I", read(4))[0])
                if idx not in self.memo:
                    self.refuse(f"refers to memo entry {idx}, which it never stored (damaged)")
                self.reference(self.memo[idx])
            elif c in (0x70, 0x71, 0x72):  # PUT BINPUT LONG_BINPUT
                idx = (self.memo_index() if c == 0x70 else read(1)[0] if c == 0x71 else unpack("<I", read(4))[0])
                self.memo[idx] = self.top()
            elif c == 0x94:  # MEMOIZE
                self.memo[len(self.memo)] = self.top()
            else:
                names = {0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4", 0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER"}
                self.refuse(f"uses the pickle opcode {names.get(c, hex(c))}, which no checkpoint writer emits")


def scan_pickle(f: BinaryIO, end: int, label: str) -> List[Optional[tuple]]:
    """Walk one pickle from `f`'s position (it may not extend past byte
    `end`), leaving `f` just after its STOP. Returns the persistent ids it
    declares (as tuples of constants; None where not constant). Raises
    PickleRefused."""
    scan = _Scan(f, end, label)
    scan.run()
    return scan.persistent_ids


__all__ = ["Global", "MAX_DEPTH", "MAX_OPCODES", "PickleRefused", "WORK_FACTOR", "WORK_FLOOR", "scan_pickle"]
