"""Seeded fuzzing of the model file reader (issue 12): hundreds of damaged copies of the shipped
CNN, each loaded by a worker process under a time and memory limit. Every load must give a model
or a ModelFileError naming the file (an OSError only where the path itself cannot be opened),
never another exception, a hang, a crash or an allocation bomb.

``python -m tests.test_model_file_fuzz`` runs the same variants and prints the outcomes by
exception class (as the test does under ``pytest -s``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import queue
import random
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import warnings
import zipfile
from collections import Counter
from io import BytesIO
from pathlib import Path

import numpy as np

from espresso_cl import io

SEED = 12
MIN_VARIANTS = 500
SECONDS_PER_LOAD = 20
WORKER_MEMORY = 4 << 30  # address space: an allocation bomb fails instead of swapping
REPO = Path(__file__).resolve().parent.parent

# Loads each path read from stdin, one a line, and answers one JSON line per path. Loading
# builds no device objects (Sequential compiles lazily), so the worker never touches OpenCL.
WORKER = r"""
import json, sys
from espresso_cl import io
for line in sys.stdin:
    path = line.rstrip("\n")
    try:
        io.load(path)
        result = {"outcome": "loaded"}
    except Exception as exc:
        result = {"outcome": type(exc).__name__, "library": isinstance(exc, io.ModelFileError),
                  "os": isinstance(exc, OSError), "message": str(exc)[:400]}
    print("RESULT " + json.dumps(result), flush=True)
"""


class Worker:
    """A worker process; :meth:`load` answers for one path, or says it timed out or crashed
    (the worker is then replaced for the next path)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.process = None

    def _start(self):
        self.stderr = tempfile.TemporaryFile(dir=self.folder)
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-c", WORKER], cwd=REPO, env=env, text=True, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self.stderr,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY, WORKER_MEMORY)))
        self.lines = queue.Queue()
        threading.Thread(target=self._read, args=(self.process.stdout, self.lines), daemon=True).start()

    @staticmethod
    def _read(stream, lines):
        for line in stream:
            if line.startswith("RESULT "):
                lines.put(json.loads(line[len("RESULT "):]))
        lines.put(None)  # the worker ended

    def load(self, path: Path) -> dict:
        if self.process is None:
            self._start()
        try:
            self.process.stdin.write(f"{path}\n")
            self.process.stdin.flush()
            result = self.lines.get(timeout=SECONDS_PER_LOAD)
        except queue.Empty:
            self.close()
            return {"outcome": "timeout", "message": f"no answer in {SECONDS_PER_LOAD} s"}
        except BrokenPipeError:
            result = None
        if result is None:
            code = self.process.wait()
            self.stderr.seek(0)
            tail = self.stderr.read()[-600:].decode(errors="replace")
            self.close()
            return {"outcome": "crash", "message": f"worker exit status {code}: {tail}"}
        return result

    def close(self):
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process.stdin.close()
            self.process.stdout.close()
            self.stderr.close()
            self.process = None


# -- the shipped model, taken apart ------------------------------------------------------------

def npy(array: np.ndarray, **kwargs) -> bytes:
    out = BytesIO()
    np.lib.format.write_array(out, array, **kwargs)
    return out.getvalue()


def npz(members, compression=zipfile.ZIP_STORED) -> bytes:
    """A zip of ``members``: zip name -> bytes (or a list of pairs, to repeat a name)."""
    out = BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names, on purpose
        with zipfile.ZipFile(out, "w", compression) as archive:
            for name, data in members.items() if isinstance(members, dict) else members:
                archive.writestr(name, data)
    return out.getvalue()


def npy_members(entries: dict) -> dict:
    """np.savez's members for ``entries`` (name -> array)."""
    return {f"{key}.npy": npy(value) for key, value in entries.items()}


def with_header(text, members: dict) -> bytes:
    """``members`` with header ``text`` and its correct checksum (so that the text reaches the
    checks behind the checksum)."""
    raw = text.encode() if isinstance(text, str) else text
    digest = hashlib.sha256(raw).hexdigest().encode()
    return npz({**members, **npy_members({io.HEADER: np.frombuffer(raw, np.uint8),
                                          io.HEADER_SHA256: np.frombuffer(digest, np.uint8)})})


class Raw(str):
    """A value written into the header's JSON text as it is (NaN, a 5000-digit integer...)."""


def header_text(header: dict) -> str:
    """``header`` as JSON text, its :class:`Raw` values written as they are."""
    raws = {}

    def mark(value):
        if isinstance(value, Raw):
            raws[f"@raw{len(raws)}@"] = value
            return f"@raw{len(raws) - 1}@"
        if isinstance(value, dict):
            return {key: mark(item) for key, item in value.items()}
        if isinstance(value, list):
            return [mark(item) for item in value]
        return value

    text = json.dumps(mark(header), sort_keys=True)
    for marker, value in raws.items():
        text = text.replace(json.dumps(marker), value)
    return text


DELETE = object()


def edited(header: dict, keys: tuple, value) -> dict:
    header = copy.deepcopy(header)
    place = header
    for key in keys[:-1]:
        place = place[key]
    if value is DELETE:
        del place[keys[-1]]
    else:
        place[keys[-1]] = value
    return header


def zip_regions(data: bytes) -> dict:
    """category -> [(what, start, end)]: where the zip's structures, the .npy headers, the JSON
    and the tensor data lie in ``data`` (a zip without comment, as np.savez writes)."""
    end_record = len(data) - 22
    count, _, directory = struct.unpack_from("<HII", data, end_record + 10)
    regions = {"local header": [], "central record": [], "end record": [("end record", end_record, len(data))],
               "npy header": [], "JSON": [], "tensor data": []}
    at = directory
    for _ in range(count):
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", data, at + 28)
        name = data[at + 46:at + 46 + name_len].decode()
        size, = struct.unpack_from("<I", data, at + 20)
        local, = struct.unpack_from("<I", data, at + 42)
        start = local + 30 + sum(struct.unpack_from("<HH", data, local + 26))
        npy_end = start + 10 + struct.unpack_from("<H", data, start + 8)[0]
        regions["local header"].append((name, local, start))
        regions["central record"].append((name, at, at + 46 + name_len + extra_len + comment_len))
        regions["npy header"].append((name, start, npy_end))
        regions["JSON" if name == "header.npy" else "tensor data"].append((name, npy_end, start + size))
        at = regions["central record"][-1][2]
    return regions


def with_central_record(data: bytes, index: int, change) -> bytes:
    """``data`` with its central directory record ``index`` replaced by ``change(record)``, and
    the end record's directory size following."""
    end_record = len(data) - 22
    count, _, directory = struct.unpack_from("<HII", data, end_record + 10)
    records, at = [], directory
    for i in range(count):
        size = 46 + sum(struct.unpack_from("<HHH", data, at + 28))
        records.append(change(bytearray(data[at:at + size])) if i == index else data[at:at + size])
        at += size
    records = b"".join(records)
    return (data[:directory] + records + data[end_record:end_record + 12] + struct.pack("<I", len(records))
            + data[end_record + 16:])


def zip64_extra(**values):
    """A central record change: the named fields (size, compressed_size, offset) set to
    0xFFFFFFFF and given in a zip64 extra field instead, in zip's order."""
    def change(record):
        name_len, extra_len = struct.unpack_from("<HH", record, 28)
        extra = b""
        for field, at in (("size", 24), ("compressed_size", 20), ("offset", 42)):
            if field in values:
                struct.pack_into("<I", record, at, 0xFFFFFFFF)
                extra += struct.pack("<Q", values[field])
        extra = struct.pack("<HH", 1, len(extra)) + extra
        struct.pack_into("<H", record, 30, len(extra))
        return bytes(record[:46 + name_len]) + extra + bytes(record[46 + name_len + extra_len:])
    return change


def utf8_flagged_name_with(byte: int):
    def change(record):
        record[9] |= 0x08  # flag 0x800: the name is UTF-8
        record[46 + 2] = byte
        return bytes(record)
    return change


# Fields (offset, bytes) of a central directory record, a local file header and the end record.
CENTRAL_FIELDS = {"version made by": (4, 2), "version needed": (6, 2), "flags": (8, 2), "method": (10, 2),
                  "crc": (16, 4), "compressed size": (20, 4), "size": (24, 4), "name length": (28, 2),
                  "extra length": (30, 2), "comment length": (32, 2), "disk": (34, 2),
                  "local header offset": (42, 4)}
LOCAL_FIELDS = {"version needed": (4, 2), "flags": (6, 2), "method": (8, 2), "crc": (14, 4),
                "compressed size": (18, 4), "size": (22, 4), "name length": (26, 2), "extra length": (28, 2)}
END_FIELDS = {"disk": (4, 2), "directory disk": (6, 2), "entries here": (8, 2), "entries": (10, 2),
              "directory size": (12, 4), "directory offset": (16, 4), "comment length": (20, 2)}

WRONG_VALUES = [None, True, False, 0, -1, 1.5, "x", "", [], {}, [1], {"a": 1}, 10**30, -10**30,
                Raw("NaN"), Raw("Infinity"), Raw("-Infinity"), Raw("1e400"), Raw("1" + "0" * 5000),
                Raw("[" * 50_000 + "]" * 50_000)]


class Shipped:
    """The shipped CNN's model file, taken apart."""

    def __init__(self):
        path = io.shipped_model("mnist_cnn")
        self.data = path.read_bytes()
        with np.load(path, allow_pickle=False) as archive:
            self.entries = {key: archive[key] for key in archive.files}
        self.members = npy_members(self.entries)
        self.header = json.loads(self.entries[io.HEADER].tobytes())
        self.regions = zip_regions(self.data)

    def with_header(self, header) -> bytes:
        """The file with ``header`` (a dict, or JSON text) and its correct checksum."""
        return with_header(header if isinstance(header, (str, bytes)) else header_text(header), self.members)

    def with_member(self, key: str, data: bytes) -> bytes:
        return npz({**self.members, f"{key}.npy": data})


def byte_flips(model: Shipped, rng: random.Random):
    for _ in range(170):
        category = rng.choice(sorted(model.regions))
        what, start, end = rng.choice(model.regions[category])
        data = bytearray(model.data)
        changes = []
        for _ in range(rng.choice([1, 1, 2, 4])):
            at = rng.randrange(start, end)
            data[at] = rng.choice([0x00, 0xFF, data[at] ^ (1 << rng.randrange(8)), rng.randrange(256)])
            changes.append(f"{at}={data[at]:#04x}")
        yield f"byte flip in {category} of {what}: {', '.join(changes)}", bytes(data)


def truncations(model: Shipped, rng: random.Random):
    size = len(model.data)
    for cut in sorted(rng.sample(range(size), 50)) + [0, 1, 3, 4, 30, size - 22, size - 1]:
        yield f"truncated to {cut} bytes", model.data[:cut]


def zip_field_edits(model: Shipped, rng: random.Random):
    fields = {"central record": CENTRAL_FIELDS, "local header": LOCAL_FIELDS, "end record": END_FIELDS}
    special = {"method": [8, 12, 14, 93, 95, 98, 99], "flags": [1, 8, 0x20, 0x40, 0x800, 0x2000]}
    for _ in range(150):
        category = rng.choice(sorted(fields))
        field = rng.choice(sorted(fields[category]))
        offset, width = fields[category][field]
        what, start, _ = rng.choice(model.regions[category])
        data = bytearray(model.data)
        old = int.from_bytes(data[start + offset:start + offset + width], "little")
        top = (1 << 8 * width) - 1
        value = rng.choice([0, 1, top, top - 1, (old + 1) & top, (old - 1) & top, rng.randrange(top + 1),
                            old ^ (1 << rng.randrange(8 * width))] + special.get(field, []))
        data[start + offset:start + offset + width] = value.to_bytes(width, "little")
        yield f"{category} of {what}: {field} {old} -> {value}", bytes(data)
    for index in (0, 5):  # fields moved to a zip64 extra field, and a name that is not UTF-8
        what = model.regions["central record"][index][0]
        for label, change in [("offset 2**64 - 1", zip64_extra(offset=2**64 - 1)),
                              ("offset 2**63 - 1", zip64_extra(offset=2**63 - 1)),
                              ("offset 10**12", zip64_extra(offset=10**12)),
                              ("sizes 2**62", zip64_extra(size=2**62, compressed_size=2**62)),
                              ("sizes 2**64 - 1", zip64_extra(size=2**64 - 1, compressed_size=2**64 - 1)),
                              ("a name flagged UTF-8 with byte 0xff", utf8_flagged_name_with(0xFF))]:
            yield f"central record of {what}: {label}", with_central_record(model.data, index, change)


def header_edits(model: Shipped, rng: random.Random):
    """The header's JSON changed, with a correct checksum."""
    header = model.header
    for field in sorted(header):
        yield f"header without {field!r}", model.with_header(edited(header, (field,), DELETE))
        for value in WRONG_VALUES:
            yield f"header {field!r} = {str(value)[:40]}", model.with_header(edited(header, (field,), value))
    for index, layer in enumerate(header["layers"]):
        for key in rng.sample(sorted(layer), min(3, len(layer))):
            value = rng.choice(WRONG_VALUES + [str(layer[key]), -5, 10**12, [3, 10**12], [3], [3, 3, 3], 2**63])
            yield (f"layer {index} {key!r} = {str(value)[:40]}",
                   model.with_header(edited(header, ("layers", index, key), value)))
        if rng.random() < 0.5:
            key = rng.choice(sorted(layer))
            yield f"layer {index} without {key!r}", model.with_header(edited(header, ("layers", index, key), DELETE))
    layers = header["layers"]
    for label, changed in [("no layers", []), ("a layer twice", layers + [layers[-1]]),
                           ("layers reversed", layers[::-1]), ("a layer dropped", layers[:5] + layers[6:]),
                           ("an unknown layer type", layers[:-1] + [{**layers[-1], "type": "lstm"}]),
                           ("an unknown layer argument", layers[:-1] + [{**layers[-1], "bogus": 1}])]:
        yield f"header: {label}", model.with_header(edited(header, ("layers",), changed))
    for name in rng.sample(sorted(header["tensors"]), 8):
        for key, value in [("shape", [10**10]), ("shape", [10**6, 10**6]), ("shape", [2**62, 4]),
                           ("shape", [-1]), ("shape", [2.0]), ("dtype", "float64"), ("dtype", "uint8"),
                           ("sha256", "0" * 64), ("sha256", "A" * 64),
                           (rng.choice(["shape", "dtype", "sha256"]), DELETE)]:
            yield (f"tensor {name!r} {key} = {'deleted' if value is DELETE else value}",
                   model.with_header(edited(header, ("tensors", name, key), value)))
    ghost = {"dtype": "float32", "shape": [4], "sha256": "0" * 64}
    yield "header lists a tensor the archive lacks", model.with_header(edited(header, ("tensors", "ghost.weight"), ghost))
    yield ("archive holds a tensor the header does not list",
           model.with_header(edited(header, ("tensors", "15_dense.bias"), DELETE)))
    text = header_text(header)
    shape, metadata = '"input_shape": [28, 28, 1]', '"metadata": {'
    for label, raw in [
        ("NaN in metadata", text.replace(metadata, metadata + '"x": NaN, ')),
        ("Infinity in input_shape", text.replace(shape, '"input_shape": [Infinity]')),
        ("-Infinity as eps", text.replace('"eps": 1e-05', '"eps": -Infinity', 1)),
        ("1e400 as eps", text.replace('"eps": 1e-05', '"eps": 1e400', 1)),
        ("5000-digit integer", text.replace(metadata, metadata + '"x": 1' + "0" * 5000 + ", ")),
        ("4000-digit integer as units", text.replace('"units": 256', '"units": 1' + "0" * 4000)),
        ("nesting 100,000 deep", text.replace(metadata, metadata + '"x": ' + "[" * 100_000 + "]" * 100_000 + ", ")),
        ("nesting 500 deep", text.replace(metadata, metadata + '"x": ' + "[" * 500 + "]" * 500 + ", ")),
        ("a 3 MB string", text.replace(metadata, metadata + '"x": "' + "y" * 3_000_000 + '", ')),
        ("an input_shape of 1,000,000 ones", text.replace(shape, '"input_shape": [28, 28' + ", 1" * 1_000_000 + "]")),
        ("an input_shape of 100,000 large sizes",
         text.replace(shape, '"input_shape": [' + ", ".join(["2147483647"] * 100_000) + "]")),
        ("duplicate keys", text.replace('"version": 1', '"version": 1, "version": 2')),
        ("trailing garbage", text + "}"), ("an array", "[" + text + "]"), ("a string", json.dumps(text)),
        ("empty", ""), ("null", "null"), ("a byte-order mark", "\ufeff" + text),
        ("invalid UTF-8", text.encode().replace(b'"metadata"', b'"meta\xffdata"')),
        ("over the size cap", text + " " * io.MAX_HEADER_BYTES),
    ]:
        assert raw != text, label  # the replacement found its target
        yield f"header JSON: {label}", model.with_header(raw)


def member_edits(model: Shipped):
    """Entries that are not what they claim to be."""
    entries, members = model.entries, model.members
    weight = "param/12_binary_dense.weight"
    stored = entries[weight]
    pickled = np.empty(2, dtype=object)
    pickled[:] = [{"a": 1}, [2]]
    huge = BytesIO()
    np.lib.format.write_array_header_1_0(huge, {"descr": "<u4", "fortran_order": False, "shape": (10**10,)})
    declared = edited(model.header, ("tensors", weight[len(io.PARAM_PREFIX):], "shape"), [10**10])
    raw_header = bytes(entries[io.HEADER])
    other_digest = np.frombuffer(hashlib.sha256(raw_header + b" ").hexdigest().encode(), np.uint8)
    for label, content in [
        ("a pickled object array as the header", model.with_member(io.HEADER, npy(pickled, allow_pickle=True))),
        ("a pickled object array as a tensor", model.with_member(weight, npy(pickled, allow_pickle=True))),
        ("the header stored as raw bytes, not .npy", model.with_member(io.HEADER, raw_header)),
        ("a tensor stored as raw bytes, not .npy", model.with_member(weight, stored.tobytes())),
        ("a .npy of 1e10 elements, declared so in the header",
         with_header(header_text(declared), {**members, f"{weight}.npy": huge.getvalue() + stored.tobytes()})),
        ("a .npy version 3.0 tensor", model.with_member(weight, npy(stored, version=(3, 0)))),
        ("a .npy whose header claims 4 GB", model.with_member(weight, b"\x93NUMPY\x02\x00\xf0\xff\xff\xff{}")),
        ("a Fortran-order tensor", model.with_member(weight, npy(np.asfortranarray(stored)))),
        ("a big-endian tensor", model.with_member(weight, npy(stored.astype(">u4")))),
        ("a tensor of float64", model.with_member(weight, npy(stored.astype(np.float64)))),
        ("a header of uint16", model.with_member(io.HEADER, npy(entries[io.HEADER].astype(np.uint16)))),
        ("a short header checksum", model.with_member(io.HEADER_SHA256, npy(entries[io.HEADER_SHA256][:10]))),
        ("a header checksum of another header", model.with_member(io.HEADER_SHA256, npy(other_digest))),
        ("np.savez_compressed", npz(members, zipfile.ZIP_DEFLATED)),
        ("an extra member that is not .npy", npz({**members, "readme.txt": b"hello"})),
        ("members without .npy names", npz({name[:-len(".npy")]: data for name, data in members.items()})),
        ("a member twice", npz(list(members.items()) + [(f"{weight}.npy", npy(stored[:1]))])),
        ("an empty zip", npz({})),
        ("only the header", npz({name: members[name] for name in ("header.npy", "header_sha256.npy")})),
        ("garbage before the zip", b"#!/bin/sh\n" + model.data),
        ("garbage after the zip", model.data + b"garbage"),
        ("a valid header, no zip around it", raw_header + bytes(entries[io.HEADER_SHA256])),
    ]:
        yield f"members: {label}", content
    rows, words = stored.shape
    for text in ["-" * 9000 + "1", "+" * 3000 + "1", "{[1]: 2}", "{{1}}", "'''", "(" * 300 + ")" * 300,
                 f"{{'descr': 'O', 'fortran_order': False, 'shape': ({rows}, {words})}}",
                 f"{{'descr': [('a', 'O')], 'fortran_order': False, 'shape': ({rows}, {words})}}",
                 f"{{'descr': '<u4', 'fortran_order': False, 'shape': ({rows}, {words}), 'shape': (2,)}}",
                 f"{{'descr': '<u4', 'fortran_order': False, 'shape': ({rows}, -{words})}}",
                 f"{{'descr': '<u4', 'fortran_order': False, 'shape': (True, {words})}}",
                 "{'descr': '<u4', 'fortran_order': False, 'shape': (1" + "0" * 5000 + ",)}",
                 "{'descr': [('a', '<u4', (2147483647, 2147483647))], 'fortran_order': False, 'shape': (1,)}",
                 f"{{'descr': 'u4,u4', 'fortran_order': False, 'shape': ({rows}, {words // 2})}}", "\x00", ""]:
        raw = text.encode("latin1")
        data = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(raw)) + raw + stored.tobytes()
        yield f"members: a .npy header {text[:60]!r}", model.with_member(weight, data)


def special_paths(model: Shipped, folder: Path):
    """``(label, path, whether an OSError is the right answer)`` for paths that are not plain
    model files."""
    os.mkfifo(folder / "fifo.npz")
    (folder / "directory.npz").mkdir()
    (folder / "empty.npz").write_bytes(b"")
    (folder / "loop.npz").symlink_to(folder / "loop.npz")
    (folder / "good.npz").write_bytes(model.data)
    (folder / "link.npz").symlink_to(folder / "good.npz")
    yield "a FIFO", folder / "fifo.npz", False
    yield "a directory", folder / "directory.npz", False
    yield "an empty file", folder / "empty.npz", False
    yield "a symlink loop", folder / "loop.npz", True
    yield "a missing path", folder / "missing.npz", True
    yield "a symlink to the shipped model", folder / "link.npz", False
    for device in ("/dev/zero", "/dev/null", "/dev/urandom"):
        if os.path.exists(device):
            yield device, Path(device), False


def variants(folder: Path):
    """Yield ``(label, content, os_error_allowed)``, content the bytes of a file to load or a
    path to load as it is; the same seed gives the same variants."""
    rng = random.Random(SEED)
    model = Shipped()
    yield "the shipped model, unchanged", model.data, False
    for kind in (byte_flips(model, rng), truncations(model, rng), zip_field_edits(model, rng),
                 header_edits(model, rng), member_edits(model)):
        for label, content in kind:
            yield label, content, False
    yield from special_paths(model, folder)


def fuzz(folder: Path) -> list:
    """``(label, result, problem)`` for every variant; ``problem`` is None where the outcome is
    one the reader may give."""
    worker = Worker(folder)
    results = []
    try:
        for index, (label, content, os_error_allowed) in enumerate(variants(folder)):
            path = content if isinstance(content, Path) else folder / f"variant-{index:03d}.npz"
            if not isinstance(content, Path):
                path.write_bytes(content)
            result = worker.load(path)
            outcome, problem = result["outcome"], None
            if outcome in ("timeout", "crash"):
                problem = outcome
            elif outcome != "loaded" and result["library"]:
                problem = None if str(path) in result["message"] else "the message does not name the file"
            elif outcome != "loaded" and not (result["os"] and os_error_allowed):
                problem = "not a ModelFileError"
            if problem is None and not isinstance(content, Path):
                path.unlink()  # the failing ones stay, to be looked at
            results.append((f"{label} [{path}]", result, problem))
    finally:
        worker.close()
    return results


def problems(results: list) -> list:
    return [f"{label}: {problem}: {result['outcome']} {result.get('message', '')}"
            for label, result, problem in results if problem]


def summary(results: list) -> str:
    counts = Counter(result["outcome"] for _, result, _ in results)
    width = max(map(len, counts))
    lines = [f"{len(results)} variants of mnist_cnn.npz (seed {SEED}):"]
    lines += [f"  {outcome:<{width}}  {count:4d}" for outcome, count in counts.most_common()]
    return "\n".join(lines)


def test_fuzzed_model_files_give_a_model_or_a_model_file_error(tmp_path):
    results = fuzz(tmp_path)
    print("\n" + summary(results))
    assert len(results) >= MIN_VARIANTS
    found = problems(results)
    assert not found, f"{len(found)} of {len(results)} variants:\n" + "\n".join(found)


if __name__ == "__main__":
    folder = Path(tempfile.mkdtemp(prefix="model-file-fuzz-"))
    results = fuzz(folder)
    print(summary(results))
    found = problems(results)
    print("\n".join(found) if found else "no problems")
    if not found:
        shutil.rmtree(folder)  # else the failing variants stay there, to be looked at
    sys.exit(1 if found else 0)
