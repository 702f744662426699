"""Read the named metadata entries of a ``.tflite`` file with the standard library alone.

Why a hand-written reader: the kit's metadata (classes, front-end, normaliser, output order,
quantisation) travels inside the ``.tflite`` flatbuffer as a ``Model.metadata`` entry, so a
deployed model stays one file (and a bundle can hold it as bytes). Neither ai-edge-litert's nor
the old tflite-runtime's ``Interpreter`` exposes that entry, and the flatbuffer schema module is
not present on devices, so this module walks the few tables it needs (``Model.metadata`` ->
``Metadata{name, buffer}`` -> ``Model.buffers[i].data``) following the TFLite schema
(tensorflow/lite/schema/schema.fbs). Every offset is bounds-checked: a truncated or corrupted
file gives a one-line ``KitError`` instead of an IndexError or a wrong answer.
"""

from __future__ import annotations

import struct

from .errors import KitError

#: flatbuffer file identifier of TFLite models (bytes 4..8)
TFLITE_IDENTIFIER = b"TFL3"
#: name of the metadata entry written by ``deploy.export_tflite``
KIT_METADATA_NAME = "kit_metadata"

# Field numbers from schema.fbs (table Model / Metadata / Buffer).
_MODEL_BUFFERS, _MODEL_METADATA = 4, 6
_METADATA_NAME, _METADATA_BUFFER = 0, 1
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 0, 1, 2


class _Reader:
    """Bounds-checked little-endian reads over one flatbuffer."""

    def __init__(self, data: bytes, name: str) -> None:
        self.data = memoryview(data)
        self.name = name

    def _unpack(self, fmt: str, pos: int) -> int:
        size = struct.calcsize(fmt)
        if pos < 0 or pos + size > len(self.data):
            raise KitError(
                f"{self.name}: not a valid TFLite model (flatbuffer offset {pos} outside the file; "
                "truncated or corrupted)"
            )
        return struct.unpack_from(fmt, self.data, pos)[0]

    def u16(self, pos: int) -> int:
        return self._unpack("<H", pos)

    def u32(self, pos: int) -> int:
        return self._unpack("<I", pos)

    def u64(self, pos: int) -> int:
        return self._unpack("<Q", pos)

    def field(self, table: int, index: int) -> int | None:
        """Absolute position of field ``index`` of the table at ``table``, None when absent."""
        vtable = table - self._unpack("<i", table)
        vtable_size = self.u16(vtable)
        slot = 4 + 2 * index
        if slot + 2 > vtable_size:
            return None
        offset = self.u16(vtable + slot)
        return table + offset if offset else None

    def indirect(self, pos: int) -> int:
        return pos + self.u32(pos)

    def vector(self, pos: int) -> tuple[int, int]:
        """(start of elements, length) of the vector referenced at ``pos``."""
        vec = self.indirect(pos)
        length = self.u32(vec)
        if vec + 4 + length > len(self.data):
            raise KitError(f"{self.name}: not a valid TFLite model (vector runs past the end of the file)")
        return vec + 4, length

    def table_at(self, start: int, i: int) -> int:
        return self.indirect(start + 4 * i)

    def bytes_at(self, pos: int) -> bytes:
        start, length = self.vector(pos)
        return bytes(self.data[start : start + length])


def is_tflite(data: bytes) -> bool:
    """True when ``data`` carries the TFLite flatbuffer identifier."""
    return len(data) >= 8 and bytes(data[4:8]) == TFLITE_IDENTIFIER


def read_metadata(data: bytes, name: str = "<tflite>") -> dict[str, bytes]:
    """All ``Model.metadata`` entries of a TFLite flatbuffer as {entry name: buffer bytes}.

    ``name`` is used in error messages (the file the bytes came from).
    """
    if not is_tflite(data):
        raise KitError(f"{name}: not a TFLite model (no 'TFL3' flatbuffer identifier)")
    reader = _Reader(data, name)
    model = reader.indirect(0)
    meta_field = reader.field(model, _MODEL_METADATA)
    buffers_field = reader.field(model, _MODEL_BUFFERS)
    if meta_field is None:
        return {}
    if buffers_field is None:
        raise KitError(f"{name}: not a valid TFLite model (metadata without buffers)")
    meta_start, n_meta = reader.vector(meta_field)
    buf_start, n_buffers = reader.vector(buffers_field)
    entries: dict[str, bytes] = {}
    for i in range(n_meta):
        entry = reader.table_at(meta_start, i)
        name_field = reader.field(entry, _METADATA_NAME)
        buffer_field = reader.field(entry, _METADATA_BUFFER)
        key = reader.bytes_at(name_field).decode("utf-8", "replace") if name_field is not None else ""
        index = reader.u32(buffer_field) if buffer_field is not None else 0
        if index >= n_buffers:
            raise KitError(
                f"{name}: not a valid TFLite model (metadata '{key}' points at buffer {index} of {n_buffers})"
            )
        buffer = reader.table_at(buf_start, index)
        data_field = reader.field(buffer, _BUFFER_DATA)
        if data_field is not None:
            entries[key] = reader.bytes_at(data_field)
            continue
        # Models over 2 GB keep buffer contents after the flatbuffer: (offset, size) from file start.
        offset_field, size_field = reader.field(buffer, _BUFFER_OFFSET), reader.field(buffer, _BUFFER_SIZE)
        offset = reader.u64(offset_field) if offset_field is not None else 0
        size = reader.u64(size_field) if size_field is not None else 0
        if offset > 1 and offset + size <= len(data):
            entries[key] = bytes(data[offset : offset + size])
        else:
            entries[key] = b""
    return entries
