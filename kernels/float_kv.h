/* Float vectors of KV lanes along K for the CPU loops of fgemm.cl and fconv2d.cl: every row
 * of activations and weights is contiguous along K, so a work-item's dot products run on
 * vectors (one vector FMA per pair per step), each summed across its lanes at the end.
 * KV = 1: no vectors (the scalar or local-memory loops). */
#ifndef ESPRESSO_FLOAT_KV_H
#define ESPRESSO_FLOAT_KV_H

#ifndef KV
#define KV 1
#endif

#if KV > 1
#if USE_LOCAL
#error "KV > 1 is the global-memory (CPU) loop: use it with USE_LOCAL 0"
#endif
#if KV == 4
typedef float4 fkv_vec;
#elif KV == 8
typedef float8 fkv_vec;
#else
#error "KV must be 1, 4 or 8"
#endif
#if defined(__clang__)
/* The same vector at 4-byte alignment: rows of K % KV != 0 floats start anywhere, and clang
 * turns this load into one unaligned vector load where vloadn would be a call on PoCL. */
typedef fkv_vec fkv_uvec __attribute__((aligned(4)));
#define FKV_LOAD(p) (*(const __global fkv_uvec *)(p))
#elif KV == 4
#define FKV_LOAD(p) vload4(0, p)
#else
#define FKV_LOAD(p) vload8(0, p)
#endif

static inline float fkv_hsum(const fkv_vec v)
{
#if KV == 8
    const float4 q = v.lo + v.hi;
#else
    const float4 q = v;
#endif
    const float2 h = q.lo + q.hi;
    return h.x + h.y;
}
#endif

#endif
