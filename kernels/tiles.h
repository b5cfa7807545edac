/* Tile parameters shared by the GEMM and convolution kernels; the host passes them
 * (espresso_cl/tuning.py: Tiles). A work-item computes a register block of TM rows x TN
 * columns (for convolutions: output pixels x output channels), a work-group is WG_N x WG_M
 * work-items, and with USE_LOCAL = 1 tiles of TK words along K are staged in local memory.
 * The defaults only serve tools that compile a file alone (scripts/gpu_compile.py). */
#ifndef ESPRESSO_TILES_H
#define ESPRESSO_TILES_H

#ifndef TM
#define TM 4
#endif
#ifndef TN
#define TN 4
#endif
#ifndef WG_M
#define WG_M 8
#endif
#ifndef WG_N
#define WG_N 8
#endif
#ifndef USE_LOCAL
#define USE_LOCAL 0
#endif
#ifndef TK
#define TK 16
#endif

#define BM (WG_M * TM)
#define BN (WG_N * TN)
/* One spare column keeps the rows of a local tile on different banks. */
#define TK_PAD (TK + 1)

#endif
