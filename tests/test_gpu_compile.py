"""Every kernel compiles for NVIDIA sm_80 and sm_90 with the GPU profile and no spill.

The compile test needs clang-16, libclc-16 and ptxas (scripts/ci_gpu_compile.sh installs the
first two) and skips, saying which is missing, without them. The table's arithmetic
(occupancy, ptxas and SASS parsing) is tested everywhere.
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from espresso_cl import registry

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_compile.py"


def _load():
    spec = importlib.util.spec_from_file_location("gpu_compile", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve the module by name
    spec.loader.exec_module(module)
    return module


gpu_compile = _load()


def test_every_kernel_compiles_for_sm80_and_sm90_without_spill(tmp_path):
    _, missing = gpu_compile.find_tools()
    if missing:
        pytest.skip("missing: " + "; ".join(missing))
    table = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--json", str(table)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    kernels = json.loads(table.read_text())["kernels"]
    files = {row["file"] for row in kernels}
    # Every file but those that hold x86 AVX-512 machine code only (no kernel on NVIDIA).
    assert files == {v.file for v in registry.VARIANTS if not v.x86_machine_code}
    for row in kernels:
        assert set(row["arch"]) == set(gpu_compile.ARCHS), row["kernel"]
        for res in row["arch"].values():
            assert res["spill_stores"] == res["spill_loads"] == 0
            assert res["occupancy"] > 0
    bgemm = next(row for row in kernels if row["kernel"] == "bgemm")
    defines = bgemm["defines"]
    assert bgemm["work_group"] == [defines["WG_N"], defines["WG_M"], 1]
    # The tensor-core GEMM, compiled with its inline PTX: BMMA in the SASS where nvdisasm is found.
    mma = next(row for row in kernels if row["kernel"] == "bgemm_mma")
    assert mma["expects_tensor_cores"] and mma["defines"][registry.INLINE_PTX] == 1
    if gpu_compile.find_tools()[0]["nvdisasm"]:
        for arch in gpu_compile.ARCHS:
            assert any(op.startswith("BMMA") for op in mma["tensor_ops"][arch]), mma["tensor_ops"]


@pytest.mark.parametrize("regs, threads, smem, blocks, limiter", [
    (39, 256, 8704, 6, "registers"),    # 40 allocated x 256 = 10,240 per block
    (32, 256, 0, 8, "threads"),
    (64, 256, 0, 4, "registers"),
    (16, 32, 0, 32, "blocks"),
    (32, 128, 100 * 1024, 2, "shared"),  # 101 KB with the 1 KB reserve
    (255, 1024, 0, 0, "registers"),      # cannot launch
])
def test_h100_occupancy(regs, threads, smem, blocks, limiter):
    res = gpu_compile.Resources(registers=regs, shared=smem)
    gpu_compile.occupancy(res, threads, gpu_compile.LIMITS["sm_90"])
    assert (res.blocks_per_sm, res.limiter) == (blocks, limiter)
    assert res.occupancy == blocks * threads / 2048


def test_parse_ptxas_log():
    log = """ptxas info    : Compiling entry function 'k1' for 'sm_90'
ptxas info    : Function properties for k1
    96 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads
ptxas info    : Used 40 registers, used 1 barriers, 9472 bytes smem
ptxas info    : Compiling entry function 'k2' for 'sm_90'
ptxas info    : Function properties for k2
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 10 registers, used 0 barriers
"""
    found = gpu_compile.parse_ptxas(log)
    assert (found["k1"].registers, found["k1"].stack, found["k1"].spill_stores,
            found["k1"].spill_loads, found["k1"].shared, found["k1"].barriers) == (40, 96, 8, 4, 9472, 1)
    assert (found["k2"].registers, found["k2"].shared) == (10, 0)
    assert gpu_compile.problems([gpu_compile.Row("f.cl", "k1", [1, 1, 1], arch={"sm_90": found["k1"]})])


def test_reqd_work_group_from_llvm_ir():
    ir = """define dso_local spir_kernel void @a(i32 %0) #0 !reqd_work_group_size !7 {
define dso_local spir_kernel void @b(i32 %0) #0 !kernel_arg_type !4 {
!7 = !{i32 16, i32 8, i32 1}
"""
    assert gpu_compile.reqd_work_groups(ir) == {"a": [16, 8, 1], "b": None}


def test_sass_innermost_loops():
    sass = """        .section        .text.k,"ax",@progbits
.L_x_0:
        /*0000*/                   LDS R1, [R2] ;
.L_x_1:
        /*0010*/                   POPC R3, R1 ;
        /*0020*/               @P0 BRA `(.L_x_1) ;
        /*0030*/                   BRA `(.L_x_0) ;
.L_x_2:
        /*0040*/                   BRA `(.L_x_2);
"""
    loops = gpu_compile.sass_loops(sass)["k"]
    assert loops == [{"start": "0010", "end": "0020", "opcodes": {"POPC": 1, "BRA": 1}}]


def test_sass_opcodes_and_a_tensor_core_kernel_without_bmma():
    sass = """        .section        .text.k,"ax",@progbits
        /*0000*/                   LDS.128 R4, [R2] ;
        /*0010*/                   BMMA.168256.AND.POPC R8, R4, R12, R8 ;
        /*0020*/                   BMMA.168256.AND.POPC R8, R4, R14, R8 ;
        /*0030*/               @P0 BRA `(.L_x_1) ;
"""
    assert gpu_compile.sass_opcodes(sass) == {"k": {"LDS.128": 1, "BMMA.168256.AND.POPC": 2, "BRA": 1}}
    res = gpu_compile.Resources(registers=128, blocks_per_sm=1)
    row = gpu_compile.Row("f.cl", "k", [256, 1, 1], arch={"sm_90": res}, expects_tensor_cores=True,
                          tensor_ops={"sm_90": {}})
    assert gpu_compile.problems([row]) == ["f.cl:k (sm_90) has no tensor-core instruction (BMMA/IMMA) in its SASS"]
    row.tensor_ops = {"sm_90": {"BMMA.168256.AND.POPC": 2}}
    assert gpu_compile.problems([row]) == []
