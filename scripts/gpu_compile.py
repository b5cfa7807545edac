"""Compile every kernel for NVIDIA GPUs without one: OpenCL C 1.2 -> PTX -> SASS.

Each ``kernels/*.cl`` file, with a tuning profile's defines (default ``gpu``), is compiled to
PTX by clang 16 (``--target=nvptx64-nvidia-nvcl``, libclc's ``nvptx64--nvidiacl.bc`` linked
in) and assembled by NVIDIA's ``ptxas`` for sm_80 and sm_90. One table row per kernel:
registers, spill stores/loads, stack frame, shared memory and the theoretical occupancy on
an A100 (sm_80) and an H100 (sm_90). The exit status is 1 on any compile error or spill.

NVIDIA's OpenCL driver compiles the OpenCL C source itself, so this proves the PTX path
(language level, resource use), not the driver's own compiler; see docs/gpu.md.

    python scripts/gpu_compile.py [--profile gpu] [--json out.json] [--markdown out.md]
                                  [--keep DIR] [--sass]

Tools are found on PATH or in their Debian / CUDA locations, or named by the environment
variables CLANG, LIBCLC, PTXAS and NVDISASM; :func:`find_tools` says what is missing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "kernels"
# espresso_cl.registry and .tuning are plain data: no pyopencl or numpy needed (any python3 runs this).
sys.path.insert(0, str(ROOT))
from espresso_cl import registry  # noqa: E402
from espresso_cl.tuning import PROFILES  # noqa: E402
ARCHS = ("sm_80", "sm_90")


@dataclass(frozen=True)
class SM:
    """Per-SM limits that bound occupancy (CUDA C Programming Guide, compute capabilities table)."""

    gpu: str
    shared: int                # bytes per SM with the largest shared-memory carveout
    shared_per_block: int      # bytes one block may use
    registers: int = 65536
    threads: int = 2048
    blocks: int = 32


LIMITS = {
    "sm_80": SM("A100", shared=164 * 1024, shared_per_block=163 * 1024),
    "sm_90": SM("H100", shared=228 * 1024, shared_per_block=227 * 1024),
}
# Registers are allocated per warp in units of 256; shared memory per block in units of 128
# bytes, plus 1 KB the CUDA runtime reserves per block on compute capability 8.0 and later.
REG_UNIT = 256
SMEM_UNIT = 128
SMEM_RESERVED = 1024
# Kernels without reqd_work_group_size are launched with no local size: NVIDIA's driver picks
# one. Their occupancy is shown for this size, the profile's usual work-group.
ASSUMED_WG = 256


def _which(env: str, names: tuple[str, ...], paths: tuple[str, ...]) -> str | None:
    if os.environ.get(env):
        return os.environ[env] if Path(os.environ[env]).is_file() else None
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return next((p for p in paths if Path(p).is_file()), None)


def _nvdisasm() -> str | None:
    """nvdisasm from the CUDA toolkit or from the ``nvidia-cuda-nvdisasm`` wheel."""
    found = _which("NVDISASM", ("nvdisasm",), ("/usr/local/cuda/bin/nvdisasm",))
    if found or importlib.util.find_spec("nvidia") is None:
        return found
    import nvidia

    for base in nvidia.__path__:
        for candidate in sorted(Path(base).glob("*/bin/nvdisasm")):
            return str(candidate)
    return None


def find_tools() -> tuple[dict, list[str]]:
    """The tool paths found, and one line per required tool that is missing."""
    tools = {
        "clang": _which("CLANG", ("clang-16",), ("/usr/lib/llvm-16/bin/clang",)),
        "libclc": _which("LIBCLC", (), ("/usr/lib/clc/nvptx64--nvidiacl.bc",
                                        "/usr/lib/llvm-16/lib/clc/nvptx64--nvidiacl.bc",
                                        "/usr/share/clc/nvptx64--nvidiacl.bc")),
        "ptxas": _which("PTXAS", ("ptxas",), ("/usr/local/cuda/bin/ptxas",)),
        "nvdisasm": _nvdisasm(),
    }
    hints = {"clang": "clang-16 (apt-get install clang-16)",
             "libclc": "libclc's nvptx64--nvidiacl.bc (apt-get install libclc-16)",
             "ptxas": "ptxas (CUDA toolkit, /usr/local/cuda/bin)"}
    missing = [hint for name, hint in hints.items() if not tools[name]]
    return tools, missing


@dataclass
class Resources:
    """What ptxas reports for one kernel on one architecture, and the occupancy that follows."""

    registers: int = 0
    spill_stores: int = 0
    spill_loads: int = 0
    stack: int = 0
    shared: int = 0
    barriers: int = 0
    occupancy: float = 0.0
    blocks_per_sm: int = 0
    limiter: str = ""


@dataclass
class Row:
    file: str
    kernel: str
    work_group: list = field(default_factory=list)
    wg_from: str = "reqd_work_group_size"
    arch: dict = field(default_factory=dict)  # arch -> Resources
    sass_loops: dict = field(default_factory=dict)  # arch -> innermost loops' opcode counts
    # Main kernels of tensor-core variants: arch -> count of tensor-core opcodes in the SASS
    # (empty when nvdisasm is missing).
    expects_tensor_cores: bool = False
    tensor_ops: dict = field(default_factory=dict)


def occupancy(res: Resources, threads: int, sm: SM) -> None:
    """Fill in res's theoretical occupancy for blocks of ``threads`` on an SM with ``sm``'s limits."""
    warps = -(-threads // 32)
    regs_per_warp = -(-res.registers * 32 // REG_UNIT) * REG_UNIT
    smem = -(-res.shared // SMEM_UNIT) * SMEM_UNIT + SMEM_RESERVED
    bounds = {
        "blocks": sm.blocks,
        "threads": sm.threads // (warps * 32),
        "registers": (sm.registers // regs_per_warp) // warps if regs_per_warp else sm.blocks,
        "shared": sm.shared // smem if res.shared <= sm.shared_per_block else 0,
    }
    res.limiter = min(bounds, key=bounds.get)
    res.blocks_per_sm = bounds[res.limiter]
    res.occupancy = res.blocks_per_sm * warps * 32 / sm.threads


_PTXAS_ENTRY = re.compile(r"Compiling entry function '(\w+)' for '(\w+)'")
_PTXAS_FIELDS = {
    "stack": re.compile(r"(\d+) bytes stack frame"),
    "spill_stores": re.compile(r"(\d+) bytes spill stores"),
    "spill_loads": re.compile(r"(\d+) bytes spill loads"),
    "registers": re.compile(r"Used (\d+) registers"),
    "barriers": re.compile(r"used (\d+) barriers"),
    "shared": re.compile(r"(\d+) bytes smem"),
}


def parse_ptxas(log: str) -> dict[str, Resources]:
    """Kernel name -> Resources from ``ptxas -v`` output (absent fields are 0)."""
    found: dict[str, Resources] = {}
    current = None
    for line in log.splitlines():
        entry = _PTXAS_ENTRY.search(line)
        if entry:
            current = found.setdefault(entry.group(1), Resources())
            continue
        if current is None:
            continue
        for name, pattern in _PTXAS_FIELDS.items():
            match = pattern.search(line)
            if match:
                setattr(current, name, int(match.group(1)))
    return found


def reqd_work_groups(llvm_ir: str) -> dict[str, list[int] | None]:
    """Kernel name -> reqd_work_group_size (or None) from clang's LLVM IR of a .cl file."""
    nodes = dict(re.findall(r"^(![0-9]+) = !\{(.*)\}$", llvm_ir, re.MULTILINE))
    sizes = {}
    for match in re.finditer(r"^define .*spir_kernel void @(\w+)\(.*$", llvm_ir, re.MULTILINE):
        node = re.search(r"!reqd_work_group_size (![0-9]+)", match.group(0))
        sizes[match.group(1)] = ([int(v) for v in re.findall(r"i32 (\d+)", nodes[node.group(1)])]
                                 if node else None)
    return sizes


_SASS = re.compile(r"^\s*/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)([^;]*);", re.MULTILINE)
_LABEL = re.compile(r"^(\.L_x_\d+):", re.MULTILINE)


def sass_loops(sass: str) -> dict[str, list[dict]]:
    """Function name -> its innermost loops, each an opcode histogram of the loop body.

    A loop is a backward BRA; innermost means no other loop lies strictly inside it.
    """
    result = {}
    for section in re.split(r"^\s*\.section\s+\.text\.", sass, flags=re.MULTILINE)[1:]:
        name = section.split(",", 1)[0].strip()
        labels = {}
        for label in _LABEL.finditer(section):
            after = _SASS.search(section, label.end())
            if after:
                labels[label.group(1)] = int(after.group(1), 16)
        instrs = [(int(a, 16), op, rest) for a, op, rest in _SASS.findall(section)]
        loops = []
        for address, op, rest in instrs:
            target = re.search(r"`\((\.L_x_\d+)\)", rest)
            if op == "BRA" and target and labels.get(target.group(1), address + 1) <= address:
                loops.append((labels[target.group(1)], address))
        # A branch to itself is the trap ptxas appends after EXIT, not a loop.
        loops = [(s, e) for s, e in loops if s < e]
        inner = [(s, e) for s, e in loops
                 if not any((s, e) != (s2, e2) and s <= s2 and e2 <= e for s2, e2 in loops)]
        hists = []
        for start, end in inner:
            hist: dict[str, int] = {}
            for address, op, _ in instrs:
                if start <= address <= end:
                    hist[op] = hist.get(op, 0) + 1
            hists.append({"start": f"{start:04x}", "end": f"{end:04x}", "opcodes": hist})
        result[name] = hists
    return result


TENSOR_OPCODES = re.compile(r"^[BI]MMA")


def sass_opcodes(sass: str) -> dict[str, dict[str, int]]:
    """Function name -> opcode histogram of its whole SASS (opcodes with their modifiers)."""
    result = {}
    for section in re.split(r"^\s*\.section\s+\.text\.", sass, flags=re.MULTILINE)[1:]:
        name = section.split(",", 1)[0].strip()
        hist: dict[str, int] = {}
        for _, op, rest in _SASS.findall(section):
            full = op + re.match(r"(\.[A-Z0-9_.]+)?", rest).group(0)
            hist[full] = hist.get(full, 0) + 1
        result[name] = hist
    return result


def _tensor_core_kernels(filename: str) -> set[str]:
    """The main kernels of the tensor-core variants in kernels/<filename>."""
    return {v.kernel for v in registry.VARIANTS if v.file == filename and v.tensor_cores}


def _portable_sources() -> list[Path]:
    """The kernel files that are not x86 machine code (espresso_cl.registry)."""
    return sorted({KERNELS / v.file for v in registry.VARIANTS if not v.x86_machine_code})


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True)


def compile_file(path: Path, defines: dict, tools: dict, workdir: Path,
                 sass: bool) -> tuple[list[Row], list[str], list[str]]:
    """Rows for every kernel in ``path``, and its compilation's errors and warnings."""
    base = [tools["clang"], "-x", "cl", "-cl-std=CL1.2", "--target=nvptx64-nvidia-nvcl", "-O3",
            f"-I{KERNELS}", "-Xclang", "-finclude-default-header",
            "-Xclang", "-mlink-builtin-bitcode", "-Xclang", tools["libclc"],
            # libclc's bitcode names the same target nvptx64-unknown-nvidiacl; clang warns on
            # every link about the differing spelling, which is noise.
            "-Wno-linker-warnings"]
    base += [f"-D{name}={value}" for name, value in sorted(defines.items())]
    errors, warnings = [], []
    ir = workdir / f"{path.stem}.ll"
    proc = _run(base + ["-S", "-emit-llvm", str(path), "-o", str(ir)])
    if proc.returncode:
        return [], [f"{path.name}: clang failed:\n{proc.stderr}"], []
    if proc.stderr.strip():
        warnings.append(f"{path.name}: clang warnings:\n{proc.stderr}")
    rows = {}
    tensor_kernels = _tensor_core_kernels(path.name)
    for kernel, wg in reqd_work_groups(ir.read_text()).items():
        rows[kernel] = Row(path.name, kernel, wg or [ASSUMED_WG, 1, 1],
                           "reqd_work_group_size" if wg else "driver (assumed)",
                           expects_tensor_cores=kernel in tensor_kernels)
    for arch in ARCHS:
        ptx = workdir / f"{path.stem}.{arch}.ptx"
        cubin = workdir / f"{path.stem}.{arch}.cubin"
        # clang's default PTX target is sm_30; naming the architecture lets it use newer PTX.
        proc = _run(base + ["-Xclang", "-target-cpu", "-Xclang", arch, "-S", str(path), "-o", str(ptx)])
        if proc.returncode:
            errors.append(f"{path.name} ({arch}): clang failed:\n{proc.stderr}")
            continue
        proc = _run([tools["ptxas"], f"-arch={arch}", "-v", str(ptx), "-o", str(cubin)])
        if proc.returncode:
            errors.append(f"{path.name} ({arch}): ptxas failed:\n{proc.stderr}")
            continue
        found = parse_ptxas(proc.stdout + proc.stderr)
        loops, opcodes = {}, {}
        if (sass or tensor_kernels) and tools.get("nvdisasm"):
            dis = _run([tools["nvdisasm"], "-c", str(cubin)])
            (workdir / f"{path.stem}.{arch}.sass").write_text(dis.stdout)
            loops, opcodes = sass_loops(dis.stdout), sass_opcodes(dis.stdout)
        for kernel, row in rows.items():
            if kernel not in found:
                errors.append(f"{path.name} ({arch}): ptxas reported nothing for {kernel}")
                continue
            res = found[kernel]
            occupancy(res, row.work_group[0] * row.work_group[1] * row.work_group[2], LIMITS[arch])
            row.arch[arch] = res
            if kernel in loops and sass:
                row.sass_loops[arch] = loops[kernel]
            if row.expects_tensor_cores and kernel in opcodes:
                row.tensor_ops[arch] = {op: n for op, n in opcodes[kernel].items() if TENSOR_OPCODES.match(op)}
    return list(rows.values()), errors, warnings


def problems(rows: list[Row]) -> list[str]:
    """Why the build is unacceptable: spills, or a kernel that cannot launch at all."""
    out = []
    for row in rows:
        for arch, res in row.arch.items():
            if res.spill_stores or res.spill_loads:
                out.append(f"{row.file}:{row.kernel} ({arch}) spills {res.spill_stores} bytes "
                           f"stored / {res.spill_loads} loaded")
            if res.blocks_per_sm == 0:
                out.append(f"{row.file}:{row.kernel} ({arch}) cannot launch: {res.limiter} exceeded")
            if row.expects_tensor_cores and arch in row.tensor_ops and not row.tensor_ops[arch]:
                out.append(f"{row.file}:{row.kernel} ({arch}) has no tensor-core instruction (BMMA/IMMA) in its SASS")
    return out


def markdown(rows: list[Row], profile: str) -> str:
    head = ["kernel", "work-group"]
    for arch in ARCHS:
        gpu = LIMITS[arch].gpu
        head += [f"{arch} regs", f"{arch} spill st/ld", f"{arch} stack", f"{arch} smem",
                 f"{gpu} occupancy"]
    lines = [f"Profile `{profile}`. Occupancy is theoretical (limiter in brackets); "
             f"work-groups marked * are the driver's choice, shown as {ASSUMED_WG}.", "",
             "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row in rows:
        wg = "x".join(str(v) for v in row.work_group[:2]) + ("*" if row.wg_from != "reqd_work_group_size" else "")
        cells = [f"{row.file}:{row.kernel}", wg]
        for arch in ARCHS:
            res = row.arch.get(arch)
            if res is None:
                cells += ["failed"] + [""] * 4
                continue
            cells += [str(res.registers), f"{res.spill_stores}/{res.spill_loads}", str(res.stack),
                      str(res.shared), f"{res.occupancy:.0%} ({res.limiter})"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _plain(rows: list[Row], profile: str) -> str:
    """The markdown table with its pipes aligned, for a terminal."""
    text = markdown(rows, profile).splitlines()
    table = [[c.strip() for c in line.strip("|").split("|")] for line in text[2:] if line.startswith("|")]
    del table[1]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    return "\n".join([text[0], ""] + ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
                                      for r in table]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="gpu", help="tuning profile of espresso_cl.tuning (default gpu)")
    parser.add_argument("--json", type=Path, help="write the table as JSON here")
    parser.add_argument("--markdown", type=Path, help="write the table as markdown here")
    parser.add_argument("--keep", type=Path, help="keep the .ll, .ptx, .cubin (and .sass) files in this folder")
    parser.add_argument("--sass", action="store_true",
                        help="disassemble with nvdisasm -c and print each kernel's innermost loops' opcodes")
    args = parser.parse_args(argv)

    tools, missing = find_tools()
    if missing:
        print("missing: " + "; ".join(missing), file=sys.stderr)
        return 2
    if args.sass and not tools["nvdisasm"]:
        print("missing: nvdisasm (pip install nvidia-cuda-nvdisasm)", file=sys.stderr)
        return 2
    if args.profile not in PROFILES:
        print(f"--profile {args.profile!r}: choose one of {sorted(PROFILES)}", file=sys.stderr)
        return 2
    profile = PROFILES[args.profile]
    sources = _portable_sources()

    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 4) as pool:
            results = list(pool.map(
                lambda p: compile_file(p, registry.file_defines(p.name, profile, inline_ptx=True), tools, workdir,
                                       args.sass),
                sources))

    rows = [row for file_rows, _, _ in results for row in file_rows]
    errors = [m for _, file_errors, _ in results for m in file_errors]
    for message in errors + [m for _, _, file_warnings in results for m in file_warnings]:
        print(message, file=sys.stderr)
    print(_plain(rows, args.profile))
    for row in rows:
        if row.expects_tensor_cores:
            found = "; ".join(f"{arch} " + (", ".join(f"{op} {n}" for op, n in ops.items()) or "none")
                              for arch, ops in row.tensor_ops.items())
            print(f"{row.file}:{row.kernel} tensor-core instructions: "
                  + (found or "not checked (no nvdisasm: pip install nvidia-cuda-nvdisasm)"))
    if args.sass:
        for row in rows:
            for arch, loops in row.sass_loops.items():
                for loop in loops:
                    ops = ", ".join(f"{op} {n}" for op, n in sorted(loop["opcodes"].items(), key=lambda kv: -kv[1]))
                    print(f"{row.file}:{row.kernel} {arch} loop {loop['start']}-{loop['end']}: {ops}")
    if args.json:
        args.json.write_text(json.dumps({
            "profile": args.profile, "limits": {a: asdict(s) for a, s in LIMITS.items()},
            "kernels": [dict(asdict(r), defines=registry.file_defines(r.file, profile, inline_ptx=True))
                        for r in rows],
        }, indent=1) + "\n")
    if args.markdown:
        args.markdown.write_text(markdown(rows, args.profile))

    for row in rows:
        stacks = {arch: res.stack for arch, res in row.arch.items() if res.stack}
        if stacks:
            # Not a failure: a private array ptxas could not keep in registers lives in local
            # memory, which costs only where the kernel touches it (see docs/gpu.md).
            print(f"note: {row.file}:{row.kernel} has a stack frame "
                  + ", ".join(f"{arch} {n} bytes" for arch, n in stacks.items()), file=sys.stderr)
    bad = problems(rows)
    for line in bad:
        print(f"FAIL: {line}", file=sys.stderr)
    if errors or bad:
        return 1
    print(f"{len(rows)} kernels in {len(sources)} files: compiled for {', '.join(ARCHS)} with no spill")
    return 0


if __name__ == "__main__":
    sys.exit(main())
