#!/usr/bin/env python3
"""The reference worker of btq's worker protocol (docs/worker-protocol.md), standard library only.

Port this to write a worker in another language. btq starts the program with requests on
descriptor 3 and responses on descriptor 4; stdout and stderr are logged by btq, never parsed.
Every frame is a 4-byte big-endian length N, then N bytes: a type byte and its payload.
Operations: echo (the body back), upper (ASCII uppercased), fail (an error, the worker goes on).
"""
import os
import struct
import sys

REQUESTS, RESPONSES = 3, 4
MAX_FRAME = 16 << 20  # btq's default limit on N (type byte + payload)


class ProtocolError(Exception):
    """btq broke the protocol: report on stderr and exit 2."""


def read_exactly(count, inside_frame):
    """count bytes from the requests; None if the input ends cleanly before the first one."""
    data = b""
    while len(data) < count:
        chunk = os.read(REQUESTS, count - len(data))  # blocking; retried on EINTR by Python
        if not chunk:
            if data or inside_frame:
                raise ProtocolError("end of input in the middle of a frame")
            return None
        data += chunk
    return data


def write_frame(kind, payload):
    """One whole frame; loops, because a pipe may take fewer bytes than offered."""
    view = memoryview(struct.pack(">I", 1 + len(payload)) + kind + payload)
    while view:
        view = view[os.write(RESPONSES, view):]


def fail(body):
    raise RuntimeError("asked to fail")


OPERATIONS = {"echo": lambda body: body, "upper": bytes.upper, "fail": fail}


def serve():
    write_frame(b"H", b"btq-worker 1")  # hello: always the first frame
    while True:
        header = read_exactly(4, inside_frame=False)
        if header is None:
            return 0  # btq closed the requests between frames: a clean end
        (length,) = struct.unpack(">I", header)
        if not 1 <= length <= MAX_FRAME:
            raise ProtocolError(f"frame length {length} outside 1..{MAX_FRAME}")
        frame = read_exactly(length, inside_frame=True)
        kind, payload = frame[:1], frame[1:]
        if kind != b"Q":
            raise ProtocolError(f"unexpected frame type 0x{frame[0]:02x}: a worker receives only 'Q'")
        if len(payload) < 2:
            raise ProtocolError("request shorter than its operation length")
        (name_length,) = struct.unpack(">H", payload[:2])
        if len(payload) < 2 + name_length:
            raise ProtocolError("request operation runs past the frame")
        operation = payload[2:2 + name_length].decode("utf-8", "replace")
        body = payload[2 + name_length:]
        handler = OPERATIONS.get(operation)
        if handler is None:  # one answer per request, always: 'R' or 'E'
            write_frame(b"E", f"unknown operation '{operation}'".encode())
            continue
        try:
            result = handler(body)
        except Exception as error:  # the task fails, the worker goes on
            write_frame(b"E", str(error).encode("utf-8", "replace"))
            continue
        write_frame(b"R", result)


def run_once(operation):
    """One-shot mode (process per request): the body on stdin, the result on stdout."""
    handler = OPERATIONS.get(operation)
    if handler is None:
        print(f"unknown operation '{operation}'", file=sys.stderr)
        return 1
    try:
        sys.stdout.buffer.write(handler(sys.stdin.buffer.read()))
    except Exception as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--once":
        sys.exit(run_once(sys.argv[2]))
    try:
        sys.exit(serve())
    except (ProtocolError, OSError) as error:  # OSError: btq is gone (EPIPE) or no fd 3/4
        print(f"btq worker: {error}", file=sys.stderr)
        sys.exit(2)
