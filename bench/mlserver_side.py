"""The MLServer side of the comparison, run by MLServer's own venv's Python (bench/.cache/venv-mlserver):
writes V2 `ModelInferRequest` messages with the dataplane stubs MLServer ships (`mlserver.grpc`),
and reads `ModelInferResponse` messages back. Imports nothing of fraudscore.

    python bench/mlserver_side.py encode --rows ROWS.npy --model NAME --out REQUESTS.bin
    python bench/mlserver_side.py decode --in RESPONSES.bin

`encode`: one request per row of a float matrix (one FP32 tensor "input-0" of shape [1, features]),
each as a 4-byte little-endian length and the serialised message. `decode` prints the first output
of each response (length-prefixed the same way) as JSON [request id, value] pairs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from framing import read_framed, write_framed  # bench/, this script's directory
from mlserver.grpc import dataplane_pb2 as pb


def encode(rows: np.ndarray, model: str) -> list[bytes]:
    out = []
    for i, row in enumerate(rows.astype(np.float32)):
        request = pb.ModelInferRequest(model_name=model, id=f"r{i}")
        tensor = request.inputs.add(name="input-0", datatype="FP32", shape=[1, row.shape[0]])
        tensor.contents.fp32_contents.extend(row.tolist())
        out.append(request.SerializeToString())
    return out


def decode(responses: list[bytes]) -> list[tuple[str, float]]:
    """(request id, first value of the first output) of each response."""
    values = []
    for data in responses:
        response = pb.ModelInferResponse.FromString(data)
        output = response.outputs[0]
        if response.raw_output_contents:
            kind = {"FP64": "<f8", "FP32": "<f4"}[output.datatype]
            value = float(np.frombuffer(response.raw_output_contents[0], dtype=kind)[0])
        else:
            contents = output.contents
            value = float((list(contents.fp64_contents) or list(contents.fp32_contents))[0])
        values.append((response.id, value))
    return values


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("encode")
    p.add_argument("--rows", type=Path, required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("decode")
    p.add_argument("--in", dest="path", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "encode":
        write_framed(encode(np.load(args.rows), args.model), args.out)
    else:
        json.dump(decode(read_framed(args.path)), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
