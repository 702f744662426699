"""Bounds-checked reads over a FlatBuffer, enough to walk a TFLite model.

Why our own reader and not TensorFlow's generated schema module: ``firmware_sim`` must import on a
device with numpy alone, and the generated code is neither small nor stable across TF releases. A
FlatBuffer is simple (tables point at vtables, vectors carry a length prefix), so this walks the
TFLite schema (tensorflow/lite/schema/schema.fbs) by field number. Every read is checked against
the buffer: a truncated or corrupted file gives a one-line ``KitError`` naming the file, never an
IndexError, a struct.error or a silently wrong graph.
"""

from __future__ import annotations

import struct

import numpy as np

from deploy.runtime.errors import KitError


class FlatReader:
    """Read tables, scalars, strings and vectors of one FlatBuffer (little-endian)."""

    def __init__(self, data: bytes, name: str) -> None:
        self.data = bytes(data)
        self.name = name

    def fail(self, what: str) -> KitError:
        return KitError(f"{self.name}: not a valid TFLite model ({what}; truncated or corrupted)")

    def unpack(self, fmt: str, pos: int) -> int | float:
        size = struct.calcsize(fmt)
        if pos < 0 or pos + size > len(self.data):
            raise self.fail(f"offset {pos} outside the {len(self.data)}-byte file")
        return struct.unpack_from(fmt, self.data, pos)[0]

    def root(self) -> int:
        return int(self.unpack("<I", 0))

    def _slot(self, table: int, field: int) -> int | None:
        """Absolute position of ``field`` of the table at ``table`` (None when absent)."""
        vtable = table - int(self.unpack("<i", table))
        vtable_size = int(self.unpack("<H", vtable))
        slot = 4 + 2 * field
        if slot + 2 > vtable_size:
            return None
        offset = int(self.unpack("<H", vtable + slot))
        return table + offset if offset else None

    def scalar(self, table: int, field: int, fmt: str, default: float = 0) -> int | float:
        pos = self._slot(table, field)
        return default if pos is None else self.unpack("<" + fmt, pos)

    def table(self, table: int, field: int) -> int | None:
        pos = self._slot(table, field)
        return None if pos is None else pos + int(self.unpack("<I", pos))

    def _vector(self, table: int, field: int, item_size: int) -> tuple[int, int] | None:
        pos = self._slot(table, field)
        if pos is None:
            return None
        vec = pos + int(self.unpack("<I", pos))
        length = int(self.unpack("<I", vec))
        if vec + 4 + length * item_size > len(self.data):
            raise self.fail("a vector runs past the end of the file")
        return vec + 4, length

    def array(self, table: int, field: int, dtype: str) -> np.ndarray | None:
        """A scalar vector as a numpy array (a copy), None when absent."""
        dt = np.dtype(dtype).newbyteorder("<")
        found = self._vector(table, field, dt.itemsize)
        if found is None:
            return None
        start, length = found
        return np.frombuffer(self.data, dtype=dt, count=length, offset=start).astype(dt.newbyteorder("="))

    def tables(self, table: int, field: int) -> list[int]:
        """Positions of the tables of a vector of tables ([] when absent)."""
        found = self._vector(table, field, 4)
        if found is None:
            return []
        start, length = found
        return [start + 4 * i + int(self.unpack("<I", start + 4 * i)) for i in range(length)]

    def string(self, table: int, field: int) -> str:
        found = self._vector(table, field, 1)
        if found is None:
            return ""
        start, length = found
        return self.data[start : start + length].decode("utf-8", "replace")

    def blob(self, table: int, field: int) -> bytes:
        found = self._vector(table, field, 1)
        if found is None:
            return b""
        start, length = found
        return self.data[start : start + length]
