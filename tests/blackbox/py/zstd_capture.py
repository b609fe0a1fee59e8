"""Compresses a capture (written by capture_spans.py) with libzstd, through the Python
`zstandard` bindings, in every layout the OpenTelemetry Collector's `file` exporter writes
with `compression: zstd`.

usage: zstd_capture.py DIR

Reads DIR/capture.jsonl and DIR/capture.pb; writes, in DIR:
  capture.rotating.jsonl.zst   native compression with rotation: one frame per write,
                               so each line and each newline is a frame of its own
  capture.flushed.jsonl.zst    native compression without rotation: one stream whose
                               frames end at each flush, wherever the bytes stand
  capture.pb.zst               native compression, `format: proto`: the length-prefixed
                               records in one frame
  capture.flushed.pb.zst       the same, frames ending mid-record
  capture.records.json.zst     the older layout (`format: json`): each request a zstd
                               frame of OTLP/JSON, preceded by its length
  capture.records.pb.zst       the older layout (`format: proto`): each request a zstd
                               frame of protobuf, preceded by its length
"""
import io
import os
import sys

import zstandard

directory = sys.argv[1]
with open(os.path.join(directory, "capture.jsonl"), "rb") as f:
    lines = f.read()
with open(os.path.join(directory, "capture.pb"), "rb") as f:
    framed = f.read()

# The Collector's encoder (klauspost/compress) writes a content checksum by default.
cctx = zstandard.ZstdCompressor(level=3, write_checksum=True)


def write(name, data):
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


def flushed(data, every):
    """One stream, a frame ended every `every` bytes (the exporter's flush_interval)."""
    out = io.BytesIO()
    writer = cctx.stream_writer(out, closefd=False)
    for start in range(0, len(data), every):
        writer.write(data[start : start + every])
        writer.flush(zstandard.FLUSH_FRAME)
    writer.close()
    return out.getvalue()


def records(payloads):
    out = bytearray()
    for payload in payloads:
        frame = cctx.compress(payload)
        out += len(frame).to_bytes(4, "big") + frame
    return bytes(out)


def length_prefixed(data):
    at = 0
    while at < len(data):
        size = int.from_bytes(data[at : at + 4], "big")
        yield data[at + 4 : at + 4 + size]
        at += 4 + size


json_lines = [line for line in lines.split(b"\n") if line]
write(
    "capture.rotating.jsonl.zst",
    b"".join(cctx.compress(line) + cctx.compress(b"\n") for line in json_lines),
)
write("capture.flushed.jsonl.zst", flushed(lines, 700))
write("capture.pb.zst", cctx.compress(framed))
write("capture.flushed.pb.zst", flushed(framed, 500))
write("capture.records.json.zst", records(json_lines))
write("capture.records.pb.zst", records(length_prefixed(framed)))

# What was written is real zstd: libzstd itself reads every frame back.
dctx = zstandard.ZstdDecompressor()
for name, plain in [
    ("capture.rotating.jsonl.zst", lines),
    ("capture.flushed.jsonl.zst", lines),
    ("capture.pb.zst", framed),
    ("capture.flushed.pb.zst", framed),
]:
    with open(os.path.join(directory, name), "rb") as f:
        reader = dctx.stream_reader(f, read_across_frames=True)
        assert reader.read() == plain, name
