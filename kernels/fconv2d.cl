/* float32 direct 2-D convolution of the same structure as bconv2d.cl.
 *
 * x: N x H x W x C, w: OC x KH x KW x C, out: N x OH x OW x OC. Taps outside the image read
 * 0.0, or 1.0 when one_pad (the float twin of bconv2d's 'one' padding), so the float mode of
 * a binary network computes what the binary kernels do.
 *
 * Launch: global (ceil(OC / BOC) * WG_OC, ceil(NP / BP) * WG_P), local (WG_OC, WG_P),
 * NP = N * OH * OW; work-item (tx, ty) owns pixels bp + ty + i * WG_P, channels boc + tx + j * WG_OC.
 */
#ifndef TP
#define TP 4
#endif
#ifndef TOC
#define TOC 4
#endif
#ifndef WG_P
#define WG_P 8
#endif
#ifndef WG_OC
#define WG_OC 8
#endif
#ifndef USE_LOCAL
#define USE_LOCAL 0
#endif
#ifndef TK
#define TK 16
#endif

#define BP (WG_P * TP)
#define BOC (WG_OC * TOC)
#define TK_PAD (TK + 1)

__kernel __attribute__((reqd_work_group_size(WG_OC, WG_P, 1)))
void fconv2d(const int N, const int H, const int W, const int C,
             const int OC, const int KH, const int KW, const int OH, const int OW,
             const int stride, const int pad_top, const int pad_left,
             const int one_pad,
             __global const float *restrict x,
             __global const float *restrict w,
             __global float *restrict out)
{
    const int tx = get_local_id(0), ty = get_local_id(1);
    const int boc = get_group_id(0) * BOC, bp = get_group_id(1) * BP;
    const int NP = N * OH * OW, KQ = KH * KW * C;
    const float pad = one_pad ? 1.0f : 0.0f;

    int iy0[TP], ix0[TP], row0[TP];
    for (int i = 0; i < TP; ++i) {
        const int p = min(bp + ty + i * WG_P, NP - 1);
        const int n = p / (OH * OW), r = p - n * (OH * OW), oy = r / OW, ox = r - oy * OW;
        iy0[i] = oy * stride - pad_top;
        ix0[i] = ox * stride - pad_left;
        row0[i] = n * H;
    }

    float acc[TP][TOC];
    for (int i = 0; i < TP; ++i)
        for (int j = 0; j < TOC; ++j)
            acc[i][j] = 0.0f;

#if USE_LOCAL
    __local float As[BP][TK_PAD];
    __local float Bs[BOC][TK_PAD];
    __local int ly0[BP], lx0[BP], lrow0[BP];
    if (tx == 0)
        for (int i = 0; i < TP; ++i) {
            ly0[ty + i * WG_P] = iy0[i];
            lx0[ty + i * WG_P] = ix0[i];
            lrow0[ty + i * WG_P] = row0[i];
        }
    barrier(CLK_LOCAL_MEM_FENCE);
    const int lid = ty * WG_OC + tx;
    for (int q0 = 0; q0 < KQ; q0 += TK) {
        for (int idx = lid; idx < BP * TK; idx += WG_P * WG_OC) {
            const int r = idx / TK, q = q0 + idx % TK;
            float v = 0.0f;
            if (q < KQ) {
                const int tap = q / C, k = q - tap * C, ky = tap / KW, kx = tap - ky * KW;
                const int iy = ly0[r] + ky, ix = lx0[r] + kx;
                v = ((uint)iy < (uint)H && (uint)ix < (uint)W)
                    ? x[((size_t)(lrow0[r] + iy) * W + ix) * C + k] : pad;
            }
            As[r][idx % TK] = v;
        }
        for (int idx = lid; idx < BOC * TK; idx += WG_P * WG_OC) {
            const int r = idx / TK, q = q0 + idx % TK, oc = boc + r;
            Bs[r][idx % TK] = (oc < OC && q < KQ) ? w[(size_t)oc * KQ + q] : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int kk = 0; kk < TK; ++kk) {
            float a[TP], b[TOC];
            for (int i = 0; i < TP; ++i) a[i] = As[ty + i * WG_P][kk];
            for (int j = 0; j < TOC; ++j) b[j] = Bs[tx + j * WG_OC][kk];
            for (int i = 0; i < TP; ++i)
                for (int j = 0; j < TOC; ++j)
                    acc[i][j] += a[i] * b[j];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
#else
    const __global float *wrow[TOC];
    for (int j = 0; j < TOC; ++j)
        wrow[j] = w + (size_t)min(boc + tx + j * WG_OC, OC - 1) * KQ;
    for (int ky = 0; ky < KH; ++ky) {
        for (int kx = 0; kx < KW; ++kx) {
            /* A padded tap reads channel k of pixel 0 (in bounds) and replaces it. */
            int inside[TP];
            const __global float *xp[TP];
            for (int i = 0; i < TP; ++i) {
                const int iy = iy0[i] + ky, ix = ix0[i] + kx;
                inside[i] = (uint)iy < (uint)H && (uint)ix < (uint)W;
                xp[i] = x + (inside[i] ? ((size_t)(row0[i] + iy) * W + ix) * C : 0);
            }
            const int wq = (ky * KW + kx) * C;
            for (int k = 0; k < C; ++k) {
                float a[TP], b[TOC];
                for (int i = 0; i < TP; ++i) a[i] = inside[i] ? xp[i][k] : pad;
                for (int j = 0; j < TOC; ++j) b[j] = wrow[j][wq + k];
                for (int i = 0; i < TP; ++i)
                    for (int j = 0; j < TOC; ++j)
                        acc[i][j] += a[i] * b[j];
            }
        }
    }
#endif

    for (int i = 0; i < TP; ++i) {
        const int p = bp + ty + i * WG_P;
        for (int j = 0; j < TOC; ++j) {
            const int oc = boc + tx + j * WG_OC;
            if (p < NP && oc < OC)
                out[(size_t)p * OC + oc] = acc[i][j];
        }
    }
}
