"""The file format the two sides of the MLServer comparison exchange messages in (they run in
different venvs: `mlserver_bench.py` in fraudscore's, `mlserver_side.py` in MLServer's): each message
as a 4-byte little-endian length, then its bytes. Standard library only, so both can import it."""

from __future__ import annotations

import struct
from pathlib import Path


def write_framed(messages: list[bytes], path: Path) -> None:
    with path.open("wb") as fh:
        for data in messages:
            fh.write(struct.pack("<I", len(data)) + data)


def read_framed(path: Path) -> list[bytes]:
    data, out, at = path.read_bytes(), [], 0
    while at < len(data):
        (n,) = struct.unpack_from("<I", data, at)
        out.append(data[at + 4 : at + 4 + n])
        at += 4 + n
    return out
