/* XNOR GEMM on NVIDIA's 1-bit tensor cores: C[m][n] = K - 2 * sum_k popcount(A[m][k] ^ B[n][k]),
 * with the launch arguments of bgemm.cl plus the rows' popcounts (bgemm_row_popcounts below).
 * A: M rows of KW 32-bit words, B: N rows of KW words (one row per output unit), C: M x N int32.
 * Words are 32-bit whatever WORD_BITS says (the tensor cores' b1 registers; common.h: either
 * width reads the same buffer), and KW counts 32-bit words.
 *
 * The tensor-core instruction counts AND, not XOR (mma ... .b1 ... .xor.popc is gone on sm_90):
 *   popcount(a ^ b) = popcount(a) + popcount(b) - 2 popcount(a & b),
 * so C = K - 2 (PA[m] + PB[n] - 2 acc) with acc the AND-popcount sum of the tensor cores and
 * PA, PB the rows' popcounts, counted once per row by bgemm_row_popcounts. Pad bits are 0 in A
 * and B (common.h), so they count in none of the three.
 *
 * ESPRESSO_MMA_PTX = 1 (the host sets it only for NVIDIA's OpenCL, espresso_cl/device.py:
 * Quirks.inline_ptx) issues the PTX instruction
 *   mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.and.popc  (sm_80 and later)
 * as inline assembly. Without it, MMA_B1 is the same warp-collective operation written in
 * OpenCL C through local memory, fragment for fragment: PoCL and Oclgrind run everything but
 * the one instruction (staging, fragment loads, ragged edges, epilogue), and no other compiler
 * ever sees the assembly.
 *
 * Fragments of m16n8k256 (PTX ISA, "Matrix Fragments for mma.m16n8k256"), for lane l of a warp,
 * g = l / 4 (groupID) and t = l % 4 (threadID_in_group); a register holds 32 one-bit elements:
 *   A (16 x 256, row-major): a0: row g,     k in [32t, 32t + 32)      a1: row g + 8, same k
 *                            a2: row g,     k in [128 + 32t, +32)     a3: row g + 8, same k
 *   B (256 x 8, column-major): b0: column g, k in [32t, 32t + 32)     b1: column g, [128 + 32t, +32)
 *   C, D (16 x 8 int32):     c0: (g, 2t)  c1: (g, 2t + 1)  c2: (g + 8, 2t)  c3: (g + 8, 2t + 1)
 * The AND-popcount of a row and a column is the same for any order of K as long as A and B
 * use the same one, so the words of K may go to k positions in any order both share. A stage
 * holds 16 words of K (two m16n8k256 steps); lane t takes the words 4t .. 4t + 3 of every row
 * it needs: step 0 uses words 4t (a0, a1, b0) and 4t + 1 (a2, a3, b1), step 1 words 4t + 2 and
 * 4t + 3. B's tile holds rows of 16 words, so one 128-bit local load gives a lane b0, b1 of
 * both steps in consecutive registers, as the instruction takes them. A's tile is stored in
 * the fragment's own order, so that one 128-bit load is a0 .. a3 of one step (no register
 * moves before the instruction): unit (s, f, g, t) = (row g, row g + 8 of fragment row f)'s
 * words 4t + 2s and 4t + 2s + 1, interleaved, at [s][f][g][t]. Consecutive lanes read
 * consecutive 16-byte units (A) or rows 64 bytes apart (B), so the 8 lanes of a quarter-warp
 * read 128 distinct bytes: no bank conflict.
 *
 * Tiles (the host passes them, espresso_cl/tuning.py: MmaTiles): a work-group is MMA_WARPS_M x
 * MMA_WARPS_N warps (NVIDIA's warps are 32 consecutive work-items of the flattened group; the
 * group is one-dimensional); warp (wm, wn) computes MMA_MF x MMA_NF fragments of 16 x 8, so
 * the group a block of MMA_BM x MMA_BN outputs. Launch: global (ceil(N / MMA_BN) * MMA_WG,
 * ceil(M / MMA_BM)), local (MMA_WG, 1). Rows past M or N and words past KW are staged as 0
 * and their outputs are not stored. MMA_VEC_LOADS = 1 (KW a multiple of 4) reads global
 * memory 128 bits at a time.
 */
#include "common.h"

#ifndef MMA_WARPS_M
#define MMA_WARPS_M 2
#endif
#ifndef MMA_WARPS_N
#define MMA_WARPS_N 4
#endif
#ifndef MMA_MF
#define MMA_MF 4
#endif
#ifndef MMA_NF
#define MMA_NF 4
#endif
/* The host always passes it; the default is the large GEMMs' case (for a compile on its own). */
#ifndef MMA_VEC_LOADS
#define MMA_VEC_LOADS 1
#endif
#ifndef ESPRESSO_MMA_PTX
#define ESPRESSO_MMA_PTX 0
#endif

#define MMA_WG (32 * MMA_WARPS_M * MMA_WARPS_N)
#define MMA_BM (16 * MMA_MF * MMA_WARPS_M)
#define MMA_BN (8 * MMA_NF * MMA_WARPS_N)
/* Words of K per stage, and 128-bit quarters of a staged row. */
#define MMA_KW 16
#define MMA_QUARTERS (MMA_KW / 4)
/* A's tile: 128-bit units per step, and pairs of rows (g, g + 8) x quarters per work-item and
 * stage; B's: 128-bit global loads per work-item and stage. */
#define MMA_A_UNITS (MMA_BM / 16 * 8 * MMA_QUARTERS)
#define MMA_A_PAIRS (MMA_A_UNITS / MMA_WG)
#define MMA_B_LOADS (MMA_BN * MMA_QUARTERS / MMA_WG)
#if MMA_A_PAIRS * MMA_WG != MMA_A_UNITS || MMA_B_LOADS * MMA_WG != MMA_BN * MMA_QUARTERS
#error "the work-group must load whole tiles: MMA_BM * 2 and MMA_BN * 4 multiples of MMA_WG"
#endif

#if ESPRESSO_MMA_PTX
/* clang spells GNU inline assembly __asm__ in OpenCL C; NVIDIA's documented spelling is asm. */
#if defined(__clang__)
#define MMA_ASM __asm__
#else
#define MMA_ASM asm
#endif
/* D = A x B + C on one warp's fragments (accumulating in place). */
#define MMA_B1(c0, c1, c2, c3, a0, a1, a2, a3, b0, b1)                                        \
    MMA_ASM("mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.and.popc "                       \
            "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"                  \
            : "+r"(c0), "+r"(c1), "+r"(c2), "+r"(c3)                                           \
            : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1))
#else
/* The same operation by its definition: every lane publishes its fragments in the warp's
 * 32 x 6 words of xchg_, then gathers rows g, g + 8 of A (from lanes 4g .. 4g + 3) and
 * columns 2t, 2t + 1 of B (from lanes 8t .. 8t + 3 and 8t + 4 .. 8t + 7). Work-group barriers
 * stand in for the warp's lockstep; every work-item reaches them (no MMA_B1 is conditional). */
#define MMA_B1(c0, c1, c2, c3, a0, a1, a2, a3, b0, b1)                                        \
    {                                                                                         \
        __local uint *mine_ = xchg_ + lane * 6;                                               \
        mine_[0] = (a0); mine_[1] = (a1); mine_[2] = (a2); mine_[3] = (a3);                   \
        mine_[4] = (b0); mine_[5] = (b1);                                                     \
        barrier(CLK_LOCAL_MEM_FENCE);                                                         \
        for (int q_ = 0; q_ < 4; ++q_) {                                                      \
            const __local uint *fa_ = xchg_ + (g * 4 + q_) * 6;                               \
            const __local uint *fb0_ = xchg_ + ((2 * t) * 4 + q_) * 6 + 4;                    \
            const __local uint *fb1_ = xchg_ + ((2 * t + 1) * 4 + q_) * 6 + 4;                \
            c0 += POPC(fa_[0] & fb0_[0]) + POPC(fa_[2] & fb0_[1]);                            \
            c1 += POPC(fa_[0] & fb1_[0]) + POPC(fa_[2] & fb1_[1]);                            \
            c2 += POPC(fa_[1] & fb0_[0]) + POPC(fa_[3] & fb0_[1]);                            \
            c3 += POPC(fa_[1] & fb1_[0]) + POPC(fa_[3] & fb1_[1]);                            \
        }                                                                                     \
        barrier(CLK_LOCAL_MEM_FENCE);                                                         \
    }
#endif

/* Words k .. k + 3 of row r of an n-row matrix X of KW words a row; 0 past its edges. KW is
 * even (common.h: rows are whole 64-bit words), so with MMA_VEC_LOADS a quarter is all in or
 * all out, and 16-byte aligned. */
uint4 mma_quarter(__global const uint *restrict X, const int n, const int KW, const int r, const int k)
{
    if (r >= n)
        return (uint4)(0);
    const __global uint *row = X + (size_t)r * KW;
#if MMA_VEC_LOADS
    return k < KW ? ((const __global uint4 *)row)[k / 4] : (uint4)(0);
#else
    return (uint4)(k < KW ? row[k] : 0u, k + 1 < KW ? row[k + 1] : 0u,
                   k + 2 < KW ? row[k + 2] : 0u, k + 3 < KW ? row[k + 3] : 0u);
#endif
}

/* Loader slot s of work-item lid, from the k0-th word on: B's quarter, or A's quarters of a pair
 * of rows (g, g + 8). Consecutive work-items read consecutive 16 bytes of a row (64 contiguous
 * bytes per row and stage). */
#define MMA_SLOT(s) (lid + (s) * MMA_WG)
#define MMA_LOAD(X, n, row0, k0, s)                                                           \
    mma_quarter(X, n, KW, (row0) + MMA_SLOT(s) / MMA_QUARTERS, (k0) + 4 * (MMA_SLOT(s) % MMA_QUARTERS))
/* Pair p = [f][g][t]: rows 16 f + g (+ 8), quarter t. */
#define MMA_PAIR_ROW(s) (MMA_SLOT(s) / 32 * 16 + MMA_SLOT(s) / 4 % 8)
#define MMA_LOAD_PAIR(k0, s, half)                                                            \
    mma_quarter(A, M, KW, bm + MMA_PAIR_ROW(s) + 8 * (half), (k0) + 4 * (MMA_SLOT(s) % 4))

__kernel __attribute__((reqd_work_group_size(MMA_WG, 1, 1)))
void bgemm_mma(const int M, const int N, const int KW, const int K,
               __global const uint *restrict A,
               __global const uint *restrict B,
               __global const int *restrict PA,
               __global const int *restrict PB,
               __global int *restrict C)
{
    /* A: unit (s, f, g, t) at [s * MMA_A_UNITS + (f * 8 + g) * 4 + t]; B: row r's quarter q at
     * [r * MMA_QUARTERS + q]. */
    __local uint4 As[2 * MMA_A_UNITS];
    __local uint4 Bs[MMA_BN * MMA_QUARTERS];
    const int lid = get_local_id(0);
    const int warp = lid / 32, lane = lid % 32, g = lane / 4, t = lane % 4;
    const int wrow = (warp / MMA_WARPS_N) * 16 * MMA_MF, wcol = (warp % MMA_WARPS_N) * 8 * MMA_NF;
    const int bm = get_group_id(1) * MMA_BM, bn = get_group_id(0) * MMA_BN;
#if !ESPRESSO_MMA_PTX
    __local uint xchg[MMA_WG * 6];
    __local uint *xchg_ = xchg + warp * 32 * 6;
#endif

    int acc[MMA_MF][MMA_NF][4];
    _Pragma("unroll")
    for (int i = 0; i < MMA_MF; ++i)
        _Pragma("unroll")
        for (int j = 0; j < MMA_NF; ++j)
            acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0;

    /* The next stage's words wait in registers while the tensor cores work on this one. */
    uint4 na[MMA_A_PAIRS][2], nb[MMA_B_LOADS];
    _Pragma("unroll")
    for (int s = 0; s < MMA_A_PAIRS; ++s) {
        na[s][0] = MMA_LOAD_PAIR(0, s, 0);
        na[s][1] = MMA_LOAD_PAIR(0, s, 1);
    }
    _Pragma("unroll")
    for (int s = 0; s < MMA_B_LOADS; ++s) nb[s] = MMA_LOAD(B, N, bn, 0, s);

    for (int k0 = 0; k0 < KW; k0 += MMA_KW) {
        _Pragma("unroll")
        for (int s = 0; s < MMA_A_PAIRS; ++s) {
            const uint4 lo = na[s][0], hi = na[s][1];
            As[MMA_SLOT(s)] = (uint4)(lo.x, hi.x, lo.y, hi.y);
            As[MMA_A_UNITS + MMA_SLOT(s)] = (uint4)(lo.z, hi.z, lo.w, hi.w);
        }
        _Pragma("unroll")
        for (int s = 0; s < MMA_B_LOADS; ++s) Bs[MMA_SLOT(s)] = nb[s];
        barrier(CLK_LOCAL_MEM_FENCE);
        if (k0 + MMA_KW < KW) {
            _Pragma("unroll")
            for (int s = 0; s < MMA_A_PAIRS; ++s) {
                na[s][0] = MMA_LOAD_PAIR(k0 + MMA_KW, s, 0);
                na[s][1] = MMA_LOAD_PAIR(k0 + MMA_KW, s, 1);
            }
            _Pragma("unroll")
            for (int s = 0; s < MMA_B_LOADS; ++s) nb[s] = MMA_LOAD(B, N, bn, k0 + MMA_KW, s);
        }
        uint4 fb[MMA_NF];
        _Pragma("unroll")
        for (int j = 0; j < MMA_NF; ++j) fb[j] = Bs[(wcol + j * 8 + g) * MMA_QUARTERS + t];
        _Pragma("unroll")
        for (int i = 0; i < MMA_MF; ++i) {
            const int unit = ((wrow / 16 + i) * 8 + g) * 4 + t;
            const uint4 fa0 = As[unit], fa1 = As[MMA_A_UNITS + unit];
            _Pragma("unroll")
            for (int j = 0; j < MMA_NF; ++j) {
                MMA_B1(acc[i][j][0], acc[i][j][1], acc[i][j][2], acc[i][j][3],
                       fa0.x, fa0.y, fa0.z, fa0.w, fb[j].x, fb[j].y);
                MMA_B1(acc[i][j][0], acc[i][j][1], acc[i][j][2], acc[i][j][3],
                       fa1.x, fa1.y, fa1.z, fa1.w, fb[j].z, fb[j].w);
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }

    /* c0 .. c3 of fragment (i, j) are outputs (g, 2t), (g, 2t + 1), (g + 8, 2t), (g + 8, 2t + 1). */
    _Pragma("unroll")
    for (int i = 0; i < MMA_MF; ++i) {
        _Pragma("unroll")
        for (int h = 0; h < 2; ++h) {
            const int r = bm + wrow + i * 16 + g + 8 * h;
            if (r >= M)
                continue;
            const int pa = PA[r];
            _Pragma("unroll")
            for (int j = 0; j < MMA_NF; ++j) {
                _Pragma("unroll")
                for (int e = 0; e < 2; ++e) {
                    const int c = bn + wcol + j * 8 + 2 * t + e;
                    if (c < N)
                        C[(size_t)r * N + c] = K - 2 * (pa + PB[c] - 2 * acc[i][j][2 * h + e]);
                }
            }
        }
    }
}

/* P[r] = popcount of row r of X (rows of KW words): the rows' counts bgemm_mma's epilogue
 * needs, once per row rather than once per tile. One work-item a row. */
__kernel void bgemm_row_popcounts(const int rows, const int KW,
                                  __global const uint *restrict X,
                                  __global int *restrict P)
{
    const int r = get_global_id(0);
    if (r >= rows)
        return;
    const __global uint *row = X + (size_t)r * KW;
    int count = 0;
    for (int k = 0; k < KW; ++k)
        count += POPC(row[k]);
    P[r] = count;
}
