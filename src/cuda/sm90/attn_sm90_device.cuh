/* Device code shared by the two sm90a attention kernels (attn_qk_int8_pv_fp8_sm90.cu: two
 * consumer warpgroups and a producer; attn_qk_int8_pv_fp8_sm90_q64.cu: one warpgroup, no
 * producer): tile geometry, wgmma issue, the softmax of a tile, the two-level fold, the Q
 * prologue and the epilogue. The numerics are documented at the top of attn_qk_int8_pv_fp8_sm90.cu.
 * Included by those two files only (nvcc, sm_90a). */
#ifndef SAGE_SM90_ATTN_SM90_DEVICE_CUH
#define SAGE_SM90_ATTN_SM90_DEVICE_CUH

#include "../quant_device.cuh"
#include "attn_sm90.h"
#include "ptx_sync.cuh"
#include "ptx_tma.cuh"
#include "ptx_wgmma.cuh"

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <limits.h>
#include <math.h>

namespace sage_sm90 {

constexpr int KT = SAGE_SM90_CTA_K;      /* keys per KV tile */
constexpr int WG_Q = 64;                 /* query rows per consumer warpgroup (one m64 tile) */
constexpr float SHIFT = 8.807354922057604f; /* log2(448): P~ spans the e4m3 range [0, 448] */
constexpr float LOG2E = 1.4426950408889634f;
constexpr float LN2 = 0.6931471805599453f;
static_assert(KT == 128, "S is m64n128: 64 registers per thread");

/* Experiment variants (template parameter XP). The library instantiates XP = SAGE_SM90_XP, 0
 * unless an experiment build sets it (-DSAGE_SM90_XP=4: both kernels without their softmax, the
 * design's ceiling; docs/perf-log.md, session 10); the dev/sm90 probe picks others at run time
 * (SAGE_SM90_EXPERIMENTS). Bits 1-8 compute wrong results on purpose: each removes one part of
 * the work to show what bounds the time. */
#ifndef SAGE_SM90_XP
#define SAGE_SM90_XP 0
#endif
constexpr int XP_NO_PINGPONG = 1;   /* consumer warpgroups issue without taking turns */
constexpr int XP_NO_MUFU = 2;       /* exp2 replaced by an FFMA */
constexpr int XP_NO_SOFTMAX = 4;    /* no max / exp: P = S * scale */
constexpr int XP_NO_PV = 8;         /* the PV wgmma is not issued */
/* Measured slower (docs/perf-log.md, issue 6): */
constexpr int XP_POLY_QUARTER = 16; /* exp2 of 1 in 4 scores by a polynomial on the FMA pipe */
constexpr int XP_POLY_HALF = 32;    /* exp2 of 1 in 2 scores by the polynomial */

/* The tiles of a CTA with NC consumer warpgroups (64 query rows each) in shared memory, and the
 * accumulator sizes that follow from D. */
template <int D, int NC> struct Tile {
    static_assert(D == 64 || D == 128 || D == 256, "D must be 64, 128 or 256");
    static_assert(NC == 1 || NC == 2, "one or two consumer warpgroups");
    static constexpr int CTA_Q = WG_Q * NC;                 /* query rows per CTA */
    static constexpr int CONSUMERS = 128 * NC;              /* consumer threads */
    static constexpr sage_geometry geometry() { return {CTA_Q, KT, 4 * NC, 0}; }
    /* Q and K rows are D bytes; a swizzled TMA box spans at most 128 bytes (D4), so D = 256 tiles
     * are stored as two column sub-tiles of 128-byte rows. D = 64: 64B swizzle (B3). */
    static constexpr int QK_SWZ = D == 64 ? 64 : 128;
    static constexpr int SUBS = D / QK_SWZ;
    static constexpr uint32_t Q_SUB_BYTES = CTA_Q * QK_SWZ; /* one Q sub-tile */
    static constexpr uint32_t K_SUB_BYTES = KT * QK_SWZ;    /* one K sub-tile */
    static constexpr uint32_t Q_BYTES = CTA_Q * D;          /* Q tile [CTA_Q][D] int8 */
    static constexpr uint32_t K_BYTES = KT * D;             /* K tile [KT][D] int8 */
    static constexpr uint32_t V_BYTES = D * KT;             /* V^T tile [D][KT] e4m3 */
    static constexpr int V_SWZ = 128;                       /* V^T rows are KT = 128 bytes */
    /* T registers: one PV MMA of N = D for D <= 128; D = 256 runs two of N = 128. */
    static constexpr int NT = (D == 256 ? 128 : D) / 2;
};

/* Shared-memory matrix descriptor (B1), K-major, swizzle span `swz` bytes (128 or 64): LBO
 * unused (16), SBO = 8 rows x swz bytes between 8-row groups. */
__device__ __forceinline__ uint64_t make_desc(uint32_t saddr, int swz) {
    uint64_t d = (uint64_t)((saddr & 0x3FFFF) >> 4);
    d |= (uint64_t)1 << 16;
    d |= (uint64_t)((8 * swz) >> 4) << 32;
    d |= (uint64_t)(swz == 128 ? 1 : 2) << 62;
    return d;
}

/* Global loads of the K / V scales and means, pinned in place (asm volatile keeps their order
 * against the other volatile asm: fences, barriers, wgmma), for loads issued well ahead of their
 * use. Weak and coherent, not the non-coherent (.nc) path: with the concurrent quantization these
 * values are written by another grid while this one runs, ordered by the acquire of kv_ready. */
__device__ __forceinline__ float ld_f32(const float *ptr) {
    float v;
    asm volatile("ld.global.f32 %0, [%1];\n" : "=f"(v) : "l"(ptr));
    return v;
}
__device__ __forceinline__ float2 ld_f32x2(const float *ptr) {
    float2 v;
    asm volatile("ld.global.v2.f32 {%0, %1}, [%2];\n" : "=f"(v.x), "=f"(v.y) : "l"(ptr));
    return v;
}

/* Concurrent quantization (p.kv_ready, one thread of the CTA): wait until the counter at flag
 * reaches target, i.e. all of the head's K8, V8, scales and means are written. The acquire (gpu
 * scope) orders this thread's later loads after those writes (the CTA barrier that follows extends
 * it to the others), and the proxy fence the TMA loads of K8 / V8 issued after it. */
__device__ __forceinline__ void wait_kv_ready(const int *flag, int target) {
    for (;;) {
        int v;
        asm volatile("ld.acquire.gpu.global.b32 %0, [%1];\n" : "=r"(v) : "l"(flag) : "memory");
        if (v >= target) break;
        __nanosleep(128);
    }
    asm volatile("fence.proxy.async.global;\n" ::: "memory");
}

__device__ __forceinline__ float ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

/* exp2 on the FMA pipe: x = n + f, n = rint(x) (the 1.5 * 2^23 magic add leaves n in the low
 * mantissa bits of t), f in [-0.5, 0.5], 2^f by a degree-3 polynomial (relative error 7.5e-5,
 * fitted for this file; below P's e4m3 step of 6 % and inside the brief's budgets), then n added to
 * the exponent field (t << 23 == n << 23: the magic's own bits shift out). x is clamped at -125 so
 * the exponent never underflows; below -125 (and for masked -inf) the result is 0. ~9 FMA/ALU
 * instructions instead of one MUFU.EX2 (16/clk/SM). */
__device__ __forceinline__ float exp2_poly(float x_in) {
    const float x = fmaxf(x_in, -125.f);
    const float t = __fadd_rn(x, 12582912.f);
    const float n = __fsub_rn(t, 12582912.f);
    const float f = __fsub_rn(x, n);
    const float p = fmaf(fmaf(fmaf(0.055170539766550064f, f, 0.24260833859443665f), f, 0.693260908126831f), f,
                         0.9999282360076904f);
    const float r = __int_as_float(__float_as_int(p) + (int)((uint32_t)__float_as_int(t) << 23));
    return x_in < -125.f ? 0.f : r;   /* masked scores (-inf) give exactly 0, as ex2 does */
}

/* Four int32 -> four int8 bytes, v[0] in the lowest byte, saturated to [-128, 127]
 * (cvt.pack puts a above b and c's low half above both). The Q prologue's values are the pinned
 * recipe's rne(x * inv): |x| <= amax keeps them in [-127, 127] for finite x, and a NaN x gives
 * a large positive int there, 127 here as in the recipe's clamp. */
__device__ __forceinline__ uint32_t pack_s8x4_sat(const int (&v)[4]) {
    uint32_t hi, r;
    asm("cvt.pack.sat.s8.s32.b32 %0, %1, %2, 0;\n" : "=r"(hi) : "r"(v[3]), "r"(v[2]));
    asm("cvt.pack.sat.s8.s32.b32 %0, %1, %2, %3;\n" : "=r"(r) : "r"(v[1]), "r"(v[0]), "r"(hi));
    return r;
}

/* Four floats -> four e4m3 bytes, x0 in the lowest byte (G1: cvt puts its first source in the
 * high byte). RN, satfinite. */
__device__ __forceinline__ uint32_t pack_e4m3x4(float x0, float x1, float x2, float x3) {
    uint32_t r;
    asm("{\n.reg .b16 lo, hi;\n"
        "cvt.rn.satfinite.e4m3x2.f32 lo, %2, %1;\n"
        "cvt.rn.satfinite.e4m3x2.f32 hi, %4, %3;\n"
        "mov.b32 %0, {lo, hi};\n}\n"
        : "=r"(r)
        : "f"(x0), "f"(x1), "f"(x2), "f"(x3));
    return r;
}

/* The 16-bit element type of q and o (fp16 or bf16): pairs for the Q prologue's max |x|,
 * conversions for the epilogue's stores and the lse term's loads. */
template <typename T> struct Elem16;
template <> struct Elem16<__half> {
    using Pair = __half2;
    static __device__ __forceinline__ Pair zero2() { return __float2half2_rn(0.f); }
    static __device__ __forceinline__ uint32_t pack2(float a, float b) {
        __half2 h = __floats2half2_rn(a, b);
        return *reinterpret_cast<uint32_t *>(&h);
    }
    static __device__ __forceinline__ __half one(float a) { return __float2half_rn(a); }
    static __device__ __forceinline__ float load(const void *p, int64_t i) {
        return __half2float(reinterpret_cast<const __half *>(p)[i]);
    }
};
template <> struct Elem16<__nv_bfloat16> {
    using Pair = __nv_bfloat162;
    static __device__ __forceinline__ Pair zero2() { return __float2bfloat162_rn(0.f); }
    static __device__ __forceinline__ uint32_t pack2(float a, float b) {
        __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
        return *reinterpret_cast<uint32_t *>(&h);
    }
    static __device__ __forceinline__ __nv_bfloat16 one(float a) { return __float2bfloat16_rn(a); }
    static __device__ __forceinline__ float load(const void *p, int64_t i) {
        return __bfloat162float(reinterpret_cast<const __nv_bfloat16 *>(p)[i]);
    }
};

/* The PV A fragment (A7): register pr of P holds the e4m3 of scores p_score(pr, 0..3), byte t
 * from p_score(pr, t): registers 4c .. 4c + 3 take the 16 scores 16c .. 16c + 15 as
 * {0, 1, 4, 5}, {2, 3, 6, 7}, {8, 9, 12, 13}, {10, 11, 14, 15}. */
__host__ __device__ constexpr int p_score(int pr, int t) {
    return 16 * (pr / 4) + ((pr & 2) ? 8 : 0) + ((pr & 1) ? 2 : 0) + (t & 1) + ((t & 2) ? 4 : 0);
}

/* P~ floats -> register pr of the PV wgmma's A fragment; pack_p: all NS/4 of them (NS/16 k32
 * chunks x 4 registers), A7. */
template <int NS> __device__ __forceinline__ uint32_t pack_p_reg(const float (&Pf)[NS], int pr) {
    return pack_e4m3x4(Pf[p_score(pr, 0)], Pf[p_score(pr, 1)], Pf[p_score(pr, 2)], Pf[p_score(pr, 3)]);
}
template <int NS>
__device__ __forceinline__ void pack_p(const float (&Pf)[NS], uint32_t (&P)[NS / 4]) {
#pragma unroll
    for (int pr = 0; pr < NS / 4; ++pr) P[pr] = pack_p_reg(Pf, pr);
}

/* Score i of a thread's tile (A4 order) is in row score_row(i) (0: g, 1: g + 8) and, of that
 * row's np partial maxima / sums, adds to score_part(i, np). */
__host__ __device__ constexpr int score_row(int i) { return (i >> 1) & 1; }
__host__ __device__ constexpr int score_part(int i, int np) { return (2 * (i >> 2) + (i & 1)) % np; }

/* Bit pi: the pi-th score visited (in P-register order when PACK) is the first of its partial
 * sum. A constant, so each test folds away in the unrolled loop. */
template <int NS, int NP, bool PACK> __host__ __device__ constexpr uint64_t first_in_partial_sum_mask() {
    static_assert(NS <= 64, "one bit per score");
    uint64_t mask = 0, seen = 0;
    for (int v = 0; v < NS; ++v) {
        const int i = PACK ? p_score(v / 4, v % 4) : v;
        const uint64_t bit = 1ull << (2 * score_part(i, NP) + score_row(i));
        if (!(seen & bit)) mask |= 1ull << v;
        seen |= bit;
    }
    return mask;
}

/* Softmax of one KV tile: S (int32 accumulators of QK^T) -> Pf (P~ as floats).
 * Updates the running max m[2] (rows g, g+8; base-2 units, unshifted) and the thread's partial
 * row sums l[2]; returns the rescale factors alpha[2] = exp2(m_old - m_new) of O.
 * MASK: mask columns >= nk and, if causal, columns > row + off (natural order, A4 coordinates).
 * Per score: IMNMX (row max on the raw int32 sums), I2F, one FFMA (the exp argument
 * fma(float(s), sc, -(m - SHIFT)), the spec's formula), MUFU.EX2, FADD (row sum), 1/2 F2FP.
 * The row max of the scaled scores is max_int * sc (sc > 0 and rounding is monotonic), taken
 * per lane with the lane's own sc (per-thread K groups: each lane of a quad has its own ks)
 * before the quad shuffles. Masked scores are -inf (fma(-inf, sc, x) = -inf, ex2(-inf) = 0). */
template <int NS, bool MASK, bool CAUSAL, int XP, int NP, bool PACK = false>
__device__ __forceinline__ void softmax_tile(const uint32_t (&S)[NS], float (&Pf)[NS], float sc, float (&m)[2],
                                             float (&l)[2], float (&alpha)[2], int kv0, int nk, int row0,
                                             int causal_off, int qd, uint32_t *P = nullptr) {
    if (XP & XP_NO_SOFTMAX) {   /* experiment: scale only, no max / exp / sum */
#pragma unroll
        for (int i = 0; i < NS; ++i) Pf[i] = (float)(int)S[i] * sc;
        if (PACK)
#pragma unroll
            for (int pr = 0; pr < NS / 4; ++pr) P[pr] = pack_p_reg(Pf, pr);
        alpha[0] = alpha[1] = 1.f;
        l[0] += Pf[0];
        l[1] += Pf[2];
        return;
    }
    /* Row max as a tree: NP independent partial maxima per row (ILP). Unmasked tiles: IMNMX on
     * the raw int32 sums; masked tiles: FMNMX on the converted sums with -inf in the dead ones
     * (one array live instead of two). Both give max_s exactly (|S| < 2^22). */
    /* NP partial maxima / sums per row (Cfg::NP), 2 maxima on the masked path, where all of Pf
     * is live (registers). */
    constexpr int NPM = MASK ? 2 : NP;
    float mx[2];
    if (MASK) {
        float pm[2][NPM];
#pragma unroll
        for (int k = 0; k < NPM; ++k) pm[0][k] = pm[1][k] = -INFINITY;
        /* Score i sits at column kv0 + 2 qd + c(i), c(i) = 8 (i >> 2) + (i & 1) (A4), of row
         * row0 + 8 r. It is dead past the last key (column >= nk) or, causal, past the row's last
         * visible key (column > row + off): c(i) > lim[r], one compare with an immediate each. */
        int lim[2];
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            lim[r] = nk - 1 - kv0 - 2 * qd;
            if (CAUSAL) lim[r] = min(lim[r], row0 + 8 * r + causal_off - kv0 - 2 * qd);
        }
#pragma unroll
        for (int i = 0; i < NS; ++i) {
            const bool dead = 8 * (i >> 2) + (i & 1) > lim[score_row(i)];
            Pf[i] = dead ? -INFINITY : (float)(int)S[i];
            const int r = score_row(i), k = score_part(i, NPM);
            pm[r][k] = fmaxf(pm[r][k], Pf[i]);
        }
#pragma unroll
        for (int r = 0; r < 2; ++r) {
#pragma unroll
            for (int w = 1; w < NPM; w *= 2)
#pragma unroll
                for (int k = 0; k + w < NPM; k += 2 * w) pm[r][k] = fmaxf(pm[r][k], pm[r][k + w]);
            mx[r] = __fmul_rn(pm[r][0], sc);   /* -inf stays -inf */
        }
    } else {
        int pm[2][NP];
#pragma unroll
        for (int k = 0; k < NP; ++k) pm[0][k] = pm[1][k] = INT_MIN;
#pragma unroll
        for (int i = 0; i < NS; ++i) {
            const int r = score_row(i), k = score_part(i, NP);
            pm[r][k] = max(pm[r][k], (int)S[i]);
        }
#pragma unroll
        for (int r = 0; r < 2; ++r) {
#pragma unroll
            for (int w = 1; w < NP; w *= 2)
#pragma unroll
                for (int k = 0; k + w < NP; k += 2 * w) pm[r][k] = max(pm[r][k], pm[r][k + w]);
            /* this lane's max of fl(s * sc) over its columns of row r (sc > 0: monotonic) */
            mx[r] = __fmul_rn((float)pm[r][0], sc);
        }
#pragma unroll
        for (int i = 0; i < NS; ++i) Pf[i] = (float)(int)S[i];   /* exact: |S| < 2^22 */
    }
    float m_sh[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        /* the 4 lanes of a quad hold the same two rows (A7 "row statistics") */
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
        const float m_new = fmaxf(m[r], mx[r]);
        const float m_use = m_new == -INFINITY ? 0.f : m_new;  /* fully masked so far: P = 0 */
        alpha[r] = ex2(m[r] - m_use);                           /* m = -inf -> 0 */
        m[r] = m_new;
        m_sh[r] = -__fsub_rn(m_use, SHIFT);                     /* -(m - SHIFT) */
    }
    /* |m - SHIFT| >= 2^20 (huge scores): the fused product may exceed the rounded max by half an
     * ulp of m (P~ could overflow), so such rows use the rounded score fl(s * sc) with scale 1,
     * fl(fl(s * sc) - (m - SHIFT)), as the spec does. Warp-uniform; never taken for ordinary
     * inputs. */
    float scr[2] = {sc, sc};
    {
        const bool big0 = fabsf(m_sh[0]) >= 0x1p20f, big1 = fabsf(m_sh[1]) >= 0x1p20f;
        if (__any_sync(0xffffffffu, big0 || big1)) {
#pragma unroll
            for (int i = 0; i < NS; ++i)
                if (score_row(i) ? big1 : big0) Pf[i] = __fmul_rn(Pf[i], sc);
            if (big0) scr[0] = 1.f;
            if (big1) scr[1] = 1.f;
        }
    }
    /* Row sums likewise in NP partial sums per row; each starts as its first score (0 + p = p
     * for every exp result, which is never -0: the same bits as a sum started at 0). */
    float ps[2][NP];
    constexpr uint64_t FIRST = first_in_partial_sum_mask<NS, NP, PACK>();
    /* PACK: the scores in the order of the PV A-fragment registers (p_score), each register packed
     * right after its four exps, so the e4m3 conversions can issue inside the exp stream. Each
     * partial sum still adds its scores in increasing i: the same bits as the plain order. */
#pragma unroll
    for (int pi = 0; pi < NS; ++pi) {
        const int pr = pi / 4, t = pi % 4;
        const int i = PACK ? p_score(pr, t) : pi;
        const int r = score_row(i), k = score_part(i, NP);
        const float x = __fmaf_rn(Pf[i], scr[r], m_sh[r]);   /* the spec: fmaf(s, sc, -(m - SHIFT)) */
        constexpr int poly_mask = (XP & XP_POLY_HALF) ? 1 : (XP & XP_POLY_QUARTER) ? 3 : -1;
        float p;
        if (XP & XP_NO_MUFU) p = fmaf(x, 1.0e-3f, 0.5f);              /* experiment: FMA, not MUFU */
        else if (poly_mask >= 0 && (i & poly_mask) == poly_mask) p = exp2_poly(x);
        else p = ex2(x);
        Pf[i] = p;
        ps[r][k] = (FIRST >> pi) & 1 ? p : ps[r][k] + p;
        if (PACK && t == 3)
            P[pr] = pack_p_reg(Pf, pr);
    }
    float rs[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
#pragma unroll
        for (int w = 1; w < NP; w *= 2)
#pragma unroll
            for (int k = 0; k + w < NP; k += 2 * w) ps[r][k] = ps[r][k] + ps[r][k + w];
        rs[r] = ps[r][0];
    }
    l[0] = l[0] * alpha[0] + rs[0];
    l[1] = l[1] * alpha[1] + rs[1];
}

/* Issue S = Q . K^T for one KV tile: D/32 k-steps of 32 bytes along each row (B3); k-steps 4..7
 * of D = 256 read the second column sub-tile of Q and of K. */
template <int D, int NC>
__device__ __forceinline__ void issue_qk(uint32_t (&S)[KT / 2], uint64_t qdesc, uint64_t kdesc) {
    using C = Tile<D, NC>;
    /* The k-step descriptors of Q are loop-invariant; hoisted, they hold D/32 - 1 register pairs
     * through the main loop (a spill at D = 128). Laundering qdesc (asm volatile) recomputes them
     * per tile: a few integer adds. */
    asm volatile("" : "+l"(qdesc));
    wgmma_s8_ss_n128_first(S, qdesc, kdesc);
#pragma unroll
    for (int ks = 1; ks < D / 32; ++ks) {
        const int qoff = (ks / 4) * (int)(C::Q_SUB_BYTES >> 4) + 2 * (ks % 4);
        const int koff = (ks / 4) * (int)(C::K_SUB_BYTES >> 4) + 2 * (ks % 4);
        wgmma_s8_ss_n128_acc(S, qdesc + qoff, kdesc + koff);
    }
}

/* Issue T = P . V for one KV tile: KT/32 k32 chunks of tokens over the N V^T rows at vdesc; the
 * V^T tile has KT-byte rows, chunk c starts 32c bytes into each row (+2 in the descriptor's
 * 16-byte address field). */
template <int N>
__device__ __forceinline__ void issue_pv(float (&T)[N / 2], const uint32_t (&P)[KT / 8], uint64_t vdesc) {
#pragma unroll
    for (int c = 0; c < KT / 32; ++c) {
        const uint32_t a[4] = {P[4 * c], P[4 * c + 1], P[4 * c + 2], P[4 * c + 3]};
        if (c == 0) wgmma_pv<N>::first(T, a, vdesc);
        else wgmma_pv<N>::acc(T, a, vdesc + 2 * c);
    }
}

/* Level two of the two-level accumulation: O[o0 + i] = O[o0 + i] * alpha(row) + T[i]. */
template <int NO, int N>
__device__ __forceinline__ void fold(float (&O)[NO], const float (&T)[N], int o0, const float (&alpha)[2]) {
#pragma unroll
    for (int i = 0; i < N; ++i) O[o0 + i] = fmaf(O[o0 + i], alpha[(i >> 1) & 1], T[i]);
}

/* Q prologue of a consumer thread, in two steps (quantize_q_rows does both): load_q_rows loads its
 * two rows (tile rows rt, rt + 8) of the raw q, a quarter of the channels each (the 4 lanes of a
 * quad own the same two rows, A4); quantize_loaded_q_rows INT8-quantizes them into the CTA's
 * swizzled Q tile and returns the scale qs. The recipe and the groups are the quantizer's (brief
 * §1.2, geometry.h), so Q8 and q_scale are bit-exact with the spec. The rows of a per-thread group
 * are exactly the thread's two, so the group amax is a quad max (per-warp: a warp max; per-block:
 * the 4 NC consumer warps meet in shared memory). Rows >= nq and channels >= p.d are 0. The scale is
 * also written to p.q_scale (the workspace keeps every quantization scale). Ends with the
 * async-proxy fence and a barrier of the consumer warpgroups (C3): after it the tile may be read by
 * wgmma. */
template <int D, typename InT>
__device__ __forceinline__ void load_q_rows(const sage_sm90_params &p, int q0, int rt, int lane, uint4 (&raw)[2][D / 32]) {
    constexpr int CH = D / 4, NV = CH / 8;   /* channels of a row per lane, 8-channel vectors */
    const int qd = lane % 4, h = blockIdx.y, b = blockIdx.z;
    /* whole aligned rows (the common case): 16-byte loads only; else the quantizer's loader.
     * (Measured: in the 128-row kernel, the loads issued before the barrier set-up and the register
     * reallocation gained nothing at D = 128 and cost 10 % at D = 64 through the KV loop's code
     * generation; one branch around all 16-byte loads cost 4-6 % at D = 64 the same way. The 64-row
     * kernel issues them first: +0.5..1.3 % at N <= 2K.) */
    const bool fast = p.q_vec && p.d == D;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int row = q0 + rt + 8 * r;
        const InT *src = static_cast<const InT *>(p.q) + (int64_t)b * p.q_sb + (int64_t)h * p.q_sh +
                         (int64_t)row * p.q_sn + qd * CH;
#pragma unroll
        for (int v = 0; v < NV; ++v)
            raw[r][v] = row >= p.nq ? make_uint4(0, 0, 0, 0)
                        : fast      ? __ldg(reinterpret_cast<const uint4 *>(src + 8 * v))
                                    : sage::load8_raw(src - qd * CH, qd * CH + 8 * v, p.d, p.q_vec != 0);
    }
}

template <int D, int NC, typename InT>
__device__ __forceinline__ float quantize_loaded_q_rows(const sage_sm90_params &p, const uint4 (&raw)[2][D / 32],
                                                        uint32_t s_q, uint32_t s_red, int q0, int rt, int warp,
                                                        int lane) {
    using C = Tile<D, NC>;
    constexpr int CH = D / 4, NV = CH / 8;
    const int qd = lane % 4, h = blockIdx.y, b = blockIdx.z;
    const sage_qk_groups gran = (sage_qk_groups)p.qk_gran;
    /* max |x| on element pairs in the input type (exact: max and the widening commute) */
    using Pair = typename Elem16<InT>::Pair;
    Pair m2 = Elem16<InT>::zero2();
#pragma unroll
    for (int r = 0; r < 2; ++r)
#pragma unroll
        for (int v = 0; v < NV; ++v) {
            const uint32_t w[4] = {raw[r][v].x, raw[r][v].y, raw[r][v].z, raw[r][v].w};
#pragma unroll
            for (int k = 0; k < 4; ++k) m2 = __hmax2(m2, __habs2(*reinterpret_cast<const Pair *>(&w[k])));
        }
    float amax = fmaxf(__low2float(m2), __high2float(m2));
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 1));
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 2));
    if (gran != SAGE_QK_PER_THREAD) {
#pragma unroll
        for (int off = 4; off < 32; off *= 2) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
        if (gran == SAGE_QK_PER_BLOCK) {
            if (lane == 0) asm volatile("st.shared.f32 [%0], %1;\n" ::"r"(s_red + 4 * warp), "f"(amax) : "memory");
            named_sync<3, C::CONSUMERS>();
#pragma unroll
            for (int i = 0; i < 4 * NC; ++i) {
                float x;
                asm volatile("ld.shared.f32 %0, [%1];\n" : "=f"(x) : "r"(s_red + 4 * i) : "memory");
                amax = fmaxf(amax, x);
            }
        }
    }
    const float inv = sage::int8_inv(amax), qs = sage::int8_scale(amax);
    const bool writer = gran == SAGE_QK_PER_THREAD ? qd == 0 : gran == SAGE_QK_PER_WARP ? lane == 0 : lane + warp == 0;
    if (writer) {
        const int64_t bh = (int64_t)b * p.heads_q + h;
        p.q_scale[bh * p.n_q_groups + sage_q_group(C::geometry(), gran, q0 + rt)] = qs;
    }
    /* 16 channels = one 16-byte chunk of a swizzled row: byte offset o of the unswizzled sub-tile
     * goes to o ^ (((o >> 7) & (span / 16 - 1)) << 4) (B2). */
#pragma unroll
    for (int r = 0; r < 2; ++r)
#pragma unroll
        for (int u = 0; u < NV / 2; ++u) {
            uint32_t w4[4];
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                const uint4 &x = raw[r][2 * u + k / 2];
                int v[4];
#pragma unroll
                for (int j = 0; j < 4; ++j) v[j] = sage::rne_int(__fmul_rn(sage::raw_elem<InT>(x, 4 * (k % 2) + j), inv));
                w4[k] = pack_s8x4_sat(v);
            }
            const int col = qd * CH + 16 * u;   /* < D */
            const uint32_t o = (uint32_t)((rt + 8 * r) * C::QK_SWZ + col % C::QK_SWZ);
            const uint32_t addr = s_q + (uint32_t)(col / C::QK_SWZ) * C::Q_SUB_BYTES + (o ^ (((o >> 7) & (C::QK_SWZ / 16 - 1)) << 4));
            asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(w4[0]), "r"(w4[1]), "r"(w4[2]),
                         "r"(w4[3])
                         : "memory");
        }
    fence_proxy_async();
    named_sync<3, C::CONSUMERS>();
    return qs;
}
template <int D, int NC, typename InT>
__device__ __forceinline__ float quantize_q_rows(const sage_sm90_params &p, uint32_t s_q, uint32_t s_red, int q0,
                                                 int rt, int warp, int lane) {
    uint4 raw[2][D / 32];
    load_q_rows<D, InT>(p, q0, rt, lane, raw);
    return quantize_loaded_q_rows<D, NC, InT>(p, raw, s_q, s_red, q0, rt, warp, lane);
}

/* A special register read the compiler cannot merge with an earlier read (asm volatile): the
 * epilogue recomputes its coordinates instead of keeping them live across the main loop, where
 * every register is taken. */
__device__ __forceinline__ int sreg_tid() {
    int r;
    asm volatile("mov.u32 %0, %%tid.x;\n" : "=r"(r));
    return r;
}
__device__ __forceinline__ int3 sreg_ctaid() {
    int3 r;
    asm volatile("mov.u32 %0, %%ctaid.x;\nmov.u32 %1, %%ctaid.y;\nmov.u32 %2, %%ctaid.z;\n"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z));
    return r;
}

/* KV tiles a CTA whose rows start at q0 visits: causal stops after the tile holding the last
 * visible key of its last valid row. */
template <bool CAUSAL>
__device__ __forceinline__ int kv_tiles(const sage_sm90_params &p, int q0, int cta_q, int causal_off) {
    const int n = (p.nk + KT - 1) / KT;
    if (!CAUSAL) return n;
    const int kmax = min(q0 + cta_q - 1, p.nq - 1) + causal_off;
    return kmax < 0 ? 0 : min(n, kmax / KT + 1);
}

/* Epilogue of a consumer thread: o = O / l * vs (+ v_mean) for its rows g, g + 8 and its
 * columns below p.d; lse. l: the lane's share of the row sums (all of it on the quad's lane 0).
 * s_stage (one warpgroup per CTA only): 64 x 2D bytes of shared memory no longer read (a K stage
 * after the last tile). With it, and o rows 16-byte aligned at p.d = D, the warpgroup's o tile goes
 * through shared memory and leaves as whole rows of 16-byte stores: the fragment layout's 4-byte
 * stores (8 rows of 16 bytes per warp instruction) took ~3600 cycles per CTA at D = 128 (phase
 * probe, docs/perf-log.md session 8). Same values either way. */
template <int D, int NC, typename OutT, int FIRST_WG = 1>
__device__ __forceinline__ void epilogue(const sage_sm90_params &p, const float (&O)[D / 2], float (&l)[2],
                                         const float (&m)[2], uint32_t s_stage = 0) {
    const int tid = sreg_tid();
    const int3 cta = sreg_ctaid();
    const int wg = tid / 128, t = tid - 128 * wg, lane = t % 32, qd = lane % 4;
    const int h = cta.y, b = cta.z, hk = h / p.group;
    const int row0 = ((int)gridDim.x - 1 - cta.x) * Tile<D, NC>::CTA_Q + WG_Q * (wg - FIRST_WG) + 16 * (t / 32) + lane / 4;
    const int64_t bh = (int64_t)b * p.heads_q + h, bhk = (int64_t)b * p.heads_kv + hk;
    /* l of rows g and g + 8: the sum of the quad's partial sums */
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    }
    const float inv[2] = {l[0] > 0.f ? 1.f / l[0] : 0.f, l[1] > 0.f ? 1.f / l[1] : 0.f};
    /* Every global load of the epilogue is issued before its first store: a store to o may alias
     * v_scale / q for the compiler, which then kept each load behind the previous store — one L1/L2
     * round trip per 8 columns, ~30 % of the kernel's time at N = 1K (ncu: L1TEX scoreboard stalls
     * 2.0 of 6.2 cycles per instruction). */
    if (p.lse) {
        /* q . k_mean of the raw (unquantized) row: each lane of the quad sums a quarter of the
         * channels. */
        float qk[2] = {0.f, 0.f};
        if (p.k_mean) {
            const float *km = p.k_mean + bhk * D;
            const int d_end = min((qd + 1) * (D / 4), p.d);
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                const int row = min(row0 + 8 * r, p.nq - 1);
                const int64_t base = (int64_t)b * p.q_sb + (int64_t)h * p.q_sh + (int64_t)row * p.q_sn;
                float acc = 0.f;
                for (int d = qd * (D / 4); d < d_end; ++d)
                    acc = fmaf(Elem16<OutT>::load(p.q, base + d), km[d], acc);
                acc += __shfl_xor_sync(0xffffffffu, acc, 1);
                acc += __shfl_xor_sync(0xffffffffu, acc, 2);
                qk[r] = acc;
            }
        }
        if (qd == 0) {
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                const int row = row0 + 8 * r;
                if (row >= p.nq) continue;
                p.lse[bh * p.nq + row] =
                    l[r] > 0.f ? LN2 * (m[r] + log2f(l[r]) - SHIFT) + p.sm_scale * qk[r] : -INFINITY;
            }
        }
    }
    const float *vs = p.v_scale + bhk * D;   /* d_pad entries: in bounds for every column */
    const float *vm = p.v_mean ? p.v_mean + bhk * D : nullptr;
    OutT *o_head = reinterpret_cast<OutT *>(p.o) + (int64_t)b * p.o_sb + (int64_t)h * p.o_sh;
    /* Columns in chunks of blocks of 8: 16 blocks (64 registers of scales and means) beside O at
     * D <= 128, 8 beside D = 256's 128 registers of O. */
    constexpr int NJ = D / 8, CH = D == 256 ? 8 : NJ;
    /* o at columns 2 x (O[i], O[i + 1]) of row half r, given the column pair's scales and means */
    auto o_pair = [&](int i, int r, float2 sc, float2 mn, float add) {
        return make_float2(fmaf(mn.x, add, O[i] * inv[r] * sc.x), fmaf(mn.y, add, O[i + 1] * inv[r] * sc.y));
    };
    if (NC == 1 && s_stage && p.o_vec && p.d == D) {
        /* rows of 2D bytes, 16-byte chunk c of row r at chunk c ^ (r & 7): the fragment writes (8
         * rows, one chunk) and the row reads (8 chunks of a row) are both free of bank conflicts */
        const int rt = 16 * (t / 32) + lane / 4;   /* the thread's first row in the tile */
        /* plain loads from one base (immediate offsets: no 64-bit address per load, which spilled
         * at D = 256); all of a chunk's loads precede its first shared store */
        const float2 *vs2 = reinterpret_cast<const float2 *>(vs + 2 * qd);
        const float2 *vm2 = vm ? reinterpret_cast<const float2 *>(vm + 2 * qd) : nullptr;
#pragma unroll
        for (int j0 = 0; j0 < NJ; j0 += CH) {
            float2 sc[CH], mn[CH];
#pragma unroll
            for (int jb = 0; jb < CH; ++jb) {
                sc[jb] = vs2[4 * (j0 + jb)];
                mn[jb] = vm2 ? vm2[4 * (j0 + jb)] : make_float2(0.f, 0.f);
            }
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                const int rr = rt + 8 * r;
                const float add = l[r] > 0.f ? 1.f : 0.f;
#pragma unroll
                for (int jb = 0; jb < CH; ++jb) {
                    const float2 v = o_pair(4 * (j0 + jb) + 2 * r, r, sc[jb], mn[jb], add);
                    const uint32_t addr = s_stage + (uint32_t)(rr * 2 * D + (((j0 + jb) ^ (rr & 7)) << 4) + 4 * qd);
                    asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(addr), "r"(Elem16<OutT>::pack2(v.x, v.y)) : "memory");
                }
            }
        }
        named_sync<3, 128>();
        constexpr int CPR = 2 * D / 16;   /* 16-byte chunks per row */
        const int tile_row0 = row0 - rt;
#pragma unroll 4
        for (int idx = t; idx < WG_Q * CPR; idx += 128) {
            const int rr = idx / CPR, c = idx % CPR, row = tile_row0 + rr;
            if (row >= p.nq) break;   /* idx grows with the row */
            uint4 v;
            asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];\n"
                         : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                         : "r"(s_stage + (uint32_t)(rr * 2 * D + ((c ^ (rr & 7)) << 4)))
                         : "memory");
            *reinterpret_cast<uint4 *>(o_head + (int64_t)row * p.o_sn + 8 * c) = v;
        }
        return;
    }
#pragma unroll
    for (int j0 = 0; j0 < NJ; j0 += CH) {
        float2 sc[CH], mn[CH];
#pragma unroll
        for (int jb = 0; jb < CH; ++jb) {
            const int d = 8 * (j0 + jb) + 2 * qd;
            sc[jb] = ld_f32x2(vs + d);
            mn[jb] = vm ? ld_f32x2(vm + d) : make_float2(0.f, 0.f);
        }
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const int row = row0 + 8 * r;
            if (row >= p.nq) continue;
            OutT *orow = o_head + (int64_t)row * p.o_sn;
            const float add = l[r] > 0.f ? 1.f : 0.f;   /* v_mean only on rows that see a key */
#pragma unroll
            for (int jb = 0; jb < CH; ++jb) {
                const int d = 8 * (j0 + jb) + 2 * qd;
                if (d >= p.d) break;     /* padded channels (p.d < D) are not stored */
                const float2 v = o_pair(4 * (j0 + jb) + 2 * r, r, sc[jb], mn[jb], add);
                if (p.o_pairs && d + 1 < p.d) {
                    *reinterpret_cast<uint32_t *>(orow + d) = Elem16<OutT>::pack2(v.x, v.y);
                } else {
                    orow[d] = Elem16<OutT>::one(v.x);
                    if (d + 1 < p.d) orow[d + 1] = Elem16<OutT>::one(v.y);
                }
            }
        }
    }
}

/* Host: launch one kernel instance with its dynamic shared memory opted in; errors as a status
 * and a message. */
template <typename Kernel>
static sage_status launch_instance(Kernel kern, dim3 grid, int threads, uint32_t smem, cudaStream_t stream,
                                   const sage_sm90_params *p, const CUtensorMap &tk, const CUtensorMap &tv,
                                   sage_msg msg) {
    cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e != cudaSuccess)
        return sage_fail(msg, SAGE_ERR_CUDA, "sm90: cudaFuncSetAttribute: %s", cudaGetErrorString(e));
    /* With the concurrent quantization (p->kv_ready) the grid starts while the K/V grid before it
     * runs (programmatic dependent launch) and waits on its per-head counters. */
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = dim3((unsigned)threads);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    cfg.attrs = attr;
    cfg.numAttrs = p->kv_ready ? 1 : 0;
    e = cudaLaunchKernelEx(&cfg, kern, tk, tv, *p);
    if (e == cudaSuccess) e = cudaPeekAtLastError();
    if (e != cudaSuccess)
        return sage_fail(msg, SAGE_ERR_CUDA, "sm90 kernel launch: %s", cudaGetErrorString(e));
    return SAGE_OK;
}

/* Host: Kernel::run<D, CAUSAL, OutT>(p, tk, tv, stream, msg) for the run's padded head dim, masking
 * and dtype (the 12 instances each kernel file builds). */
template <typename Kernel, int D>
static sage_status launch_for_d(const sage_sm90_params *p, bool bf16, const CUtensorMap &tk, const CUtensorMap &tv,
                                cudaStream_t stream, sage_msg msg) {
    const bool causal = p->causal != SAGE_CAUSAL_NONE;
    if (bf16) {
        if (causal) return Kernel::template run<D, true, __nv_bfloat16>(p, tk, tv, stream, msg);
        return Kernel::template run<D, false, __nv_bfloat16>(p, tk, tv, stream, msg);
    }
    if (causal) return Kernel::template run<D, true, __half>(p, tk, tv, stream, msg);
    return Kernel::template run<D, false, __half>(p, tk, tv, stream, msg);
}
template <typename Kernel>
static sage_status launch_for(const sage_sm90_params *p, int d_pad, int bf16, const CUtensorMap *tk,
                              const CUtensorMap *tv, cudaStream_t stream, sage_msg msg) {
    if (d_pad == 64) return launch_for_d<Kernel, 64>(p, bf16, *tk, *tv, stream, msg);
    if (d_pad == 128) return launch_for_d<Kernel, 128>(p, bf16, *tk, *tv, stream, msg);
    return launch_for_d<Kernel, 256>(p, bf16, *tk, *tv, stream, msg);
}

}  // namespace sage_sm90

#endif
