/* Hopper (sm90a) attention: INT8 QK^T and FP8 PV on wgmma, tiles by TMA, warp-specialised.
 *
 * CTA = 1 + NC warpgroups (__launch_bounds__(128 (1 + NC), CTAS_PER_SM) so setmaxnreg works: F2):
 *   WG0  producer: one thread issues every TMA load (K and V tiles into a ring of STAGES buffers
 *        guarded by full/empty mbarriers, E5); setmaxnreg.dec 24.
 *   WG1..NC consumers: each owns 64 of the CTA's 64 NC query rows (one m64 wgmma tile). NC = 2
 *        (128 rows): setmaxnreg.inc 240 (24 + 2 x 240 = 504 = 3 x 168, F3). NC = 3 (192 rows,
 *        D = 64): 160 (24 + 3 x 160 = 504 <= 4 x 128): three warps per scheduler instead of two.
 *        NC = 1 (64 rows): 232 (24 + 232 = 256 = 2 x 128), two CTAs per SM, whose
 *        fixed work (prologue, pipeline fill, epilogue) overlaps. The consumers quantize their Q rows
 *        themselves (prologue: raw q -> INT8 in the swizzled smem tile, the pinned recipe), so Q
 *        needs no pass of its own before the kernel.
 * Head dims 64, 128, 256 (the template D; other D <= 256 run padded to the next of these: the
 * quantizer zero-fills the padded channels and only the first p.d columns of o are stored).
 * KV tiles of 128 keys. Per KV tile j a consumer warpgroup, for D <= 128:
 *   issues S(j) = Q8 . K8(j)^T        wgmma m64n128k32 s32.s8.s8, A and B from smem (K-major)
 *   issues T = P(j-1) . V8(j-1)       wgmma m64nDk32 f32.e4m3.e4m3, A = P from registers, fresh
 *                                     accumulator (scale-d = 0 on the first k-step): level one of
 *                                     the two-level accumulation
 *   softmax(j) on S(j) while T is computed (the PV of the previous tile overlaps the softmax)
 *   O = O * alpha(j-1) + T            level two, true fp32 in registers
 * At D = 64 with NC = 2 the two consumer warpgroups take turns issuing (named barriers 1 and 2, E6)
 * so one's softmax runs while the tensor cores work on the other's matrices; otherwise they run
 * freely (measured faster at D = 128, Cfg::PINGPONG). NC = 3 (D = 64) does not fit that schedule
 * in 160 registers, nor NC = 1 at D = 128 in 232: per tile they run softmax(j), issue
 * T = P(j) V(j) and then S(j+1), and fold T while S(j+1) is computed (NC = 3: non-causal only).
 * D = 256 does not fit either in 240 or 232 (O alone is 128): per tile it runs S(j), softmax(j),
 * then PV in two halves of 128 channels, each folded into O before the next is issued; the other
 * warpgroup (NC = 2) or CTA (NC = 1) fills the gaps.
 *
 * Scores: s = int32 sum, sc = (qs * ks) * (sm_scale * log2 e), base 2. Row max on the raw sums
 * (IMNMX), scaled per lane; exponent fma(float(s), sc, -(m - SHIFT)) in one FFMA, the CPU spec's
 * formula (rounded score fl(s * sc) - (m - SHIFT) only for |m - SHIFT| >= 2^20 and smooth Q).
 * One qs * ks per thread per tile: the per-thread groups of geometry.h match the accumulator
 * layout A4 (HOPPER-NOTES A8). P~ = exp2(S - m + SHIFT) in [0, 448], rounded to e4m3 and packed
 * from the accumulator registers as they are (A7); V^T is stored with the matching 16-token
 * permutation. Epilogue: o = O / l * vs (+ v_mean);
 * lse = ln2 * (m + log2 l - SHIFT) + sm_scale * q.k_mean, q.k_mean from the raw q rows. */
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
#include <type_traits>

namespace sage_sm90 {

constexpr int KT = SAGE_SM90_CTA_K;      /* keys per KV tile */
constexpr int WG_Q = 64;                 /* query rows per consumer warpgroup (one m64 tile) */
constexpr float SHIFT = 8.807354922057604f; /* log2(448): P~ spans the e4m3 range [0, 448] */
constexpr float LOG2E = 1.4426950408889634f;
constexpr float LN2 = 0.6931471805599453f;
static_assert(KT == 128, "S is m64n128: 64 registers per thread");

/* Experiment variants (template parameter XP; only built with SAGE_SM90_EXPERIMENTS, for the
 * dev/sm90 probe; the library instantiates XP = 0). Bits 1-8 compute wrong results on purpose:
 * each removes one part of the work to show what bounds the time. */
constexpr int XP_NO_PINGPONG = 1;   /* consumer warpgroups issue without taking turns */
constexpr int XP_NO_MUFU = 2;       /* exp2 replaced by an FFMA */
constexpr int XP_NO_SOFTMAX = 4;    /* no max / exp: P = S * scale */
constexpr int XP_NO_PV = 8;         /* the PV wgmma is not issued */
/* Measured slower (docs/perf-log.md, issue 6): */
constexpr int XP_POLY_QUARTER = 16; /* exp2 of 1 in 4 scores by a polynomial on the FMA pipe */
constexpr int XP_POLY_HALF = 32;    /* exp2 of 1 in 2 scores by the polynomial */

template <int D, int NC> struct Cfg {
    static_assert(D == 64 || D == 128 || D == 256, "D must be 64, 128 or 256");
    static_assert(NC == 2 || NC == 1 || (NC == 3 && D == 64),
                  "three consumer warpgroups only at D = 64 (registers)");
    static constexpr int CTA_Q = WG_Q * NC;                 /* query rows per CTA */
    static constexpr int CONSUMERS = 128 * NC;              /* consumer threads */
    static constexpr int NTHREADS = 128 + CONSUMERS;
    /* CTAs per SM: two of one consumer warpgroup (their fixed phases overlap), else one. */
    static constexpr int CTAS_PER_SM = NC == 1 ? 2 : 1;
    /* Registers per consumer thread after setmaxnreg: the launch pool is 65536 / (NTHREADS x
     * CTAS_PER_SM) per thread (168 or 128), the producer keeps 24 (F3). */
    static constexpr int CONSUMER_REGS = NC == 2 ? 240 : NC == 3 ? 160 : 232;
    static_assert((24 * 128 + CONSUMER_REGS * CONSUMERS) * CTAS_PER_SM <= 65536, "register pool");
    static constexpr sage_geometry geometry() { return {CTA_Q, KT, 4 * NC, 0}; }
    /* Stages of the K/V ring: 4 x 16 KB (D = 64), 3 x 32 KB (128), 2 x 64 KB (256). Registers
     * limit residency, and stages only add prefetch depth; except at D = 256 with two CTAs per SM
     * (NC = 1), where one stage is what fits twice in 227 KB (the other CTA covers the loads). */
    static constexpr int STAGES = D == 64 ? 4 : D == 128 ? 3 : NC == 1 ? 1 : 2;
    /* Q and K rows are D bytes; a swizzled TMA box spans at most 128 bytes (D4), so D = 256 tiles
     * are stored as two column sub-tiles of 128-byte rows. D = 64: 64B swizzle (B3). */
    static constexpr int QK_SWZ = D == 64 ? 64 : 128;
    static constexpr int SUBS = D / QK_SWZ;
    static constexpr uint32_t Q_SUB_BYTES = CTA_Q * QK_SWZ; /* one Q sub-tile */
    static constexpr uint32_t K_SUB_BYTES = KT * QK_SWZ;    /* one K sub-tile */
    static constexpr uint32_t Q_BYTES = CTA_Q * D;          /* Q tile [CTA_Q][D] int8 */
    static constexpr uint32_t K_BYTES = KT * D;             /* K tile [KT][D] int8 */
    static constexpr uint32_t V_BYTES = D * KT;             /* V^T tile [D][KT] e4m3 */
    static constexpr uint32_t OFF_Q = 0;
    static constexpr uint32_t OFF_K = OFF_Q + Q_BYTES;
    static constexpr uint32_t OFF_V = OFF_K + STAGES * K_BYTES;
    static constexpr uint32_t OFF_BAR = OFF_V + STAGES * V_BYTES;
    /* barriers: k_full[S], k_empty[S], v_full[S], v_empty[S] (8 B each) */
    static constexpr uint32_t BAR_BYTES = 8 * 4 * STAGES;
    /* per consumer warp: its Q amax (per-block Q groups span all consumer warps) */
    static constexpr uint32_t OFF_RED = OFF_BAR + BAR_BYTES;
    /* per consumer thread (NC = 3): the K scale of its next tile, copied by cp.async */
    static constexpr uint32_t OFF_KS = OFF_RED + 4 * (4 * NC);
    /* +1024: dynamic smem is only 16-B aligned; swizzled tiles need 1024-B alignment (D6). */
    static constexpr uint32_t SMEM = OFF_KS + (NC != 2 ? 4 * CONSUMERS : 0) + 1024;
    static constexpr int V_SWZ = 128;                       /* V^T rows are KT = 128 bytes */
    /* T registers: one PV MMA of N = D for D <= 128; D = 256 runs two of N = 128. */
    static constexpr int NT = (D == 256 ? 128 : D) / 2;
    /* The two consumer warpgroups take turns issuing (named barriers, E6) only at D = 64: measured
     * against free-running warpgroups in one call (session 3), turns gave +1..3 % at D = 64 up to
     * N = 4K (even at 16K) and cost 1..4 % at D = 128 (causal up to 8 %). D = 256 has none. */
    static constexpr bool PINGPONG = D == 64 && NC == 2;
    /* S(j) and T(j-1) in flight together (64 + NT registers beside O) fits 240 registers at
     * D <= 128 with NC = 2 and 232 at D = 64 with NC = 1; the others have schedules of their own
     * (see the top). */
    static constexpr bool PIPELINED = D <= 128 && (NC == 2 || (NC == 1 && D == 64));
    /* Partial maxima / sums per row in the softmax (ILP against register pressure). Measured per
     * instance against 8 (session 3, one call): 4 is 1-8 % faster everywhere except D = 64
     * causal, where 8 is 5-7 % faster from N = 4K (code generation, not arithmetic); NC = 3:
     * 8 is 0.4-0.9 % faster (session 5). */
    template <bool CAUSAL> static constexpr int np() { return D == 64 && (CAUSAL || NC == 3) ? 8 : 4; }
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

/* A global load pinned in place (asm volatile keeps its order against the other volatile asm:
 * fences, barriers, wgmma), for loads issued well ahead of their use. */
__device__ __forceinline__ float ld_nc_f32(const float *ptr) {
    float v;
    asm volatile("ld.global.nc.f32 %0, [%1];\n" : "=f"(v) : "l"(ptr));
    return v;
}

/* 4 bytes global -> shared, asynchronously (cp.async, L1-allocating); visible to this thread
 * after cp_async_wait_all. For a value needed a phase later without a register held meanwhile. */
__device__ __forceinline__ void cp_async_f32(uint32_t saddr, const float *gptr) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(saddr), "l"(gptr) : "memory");
}
__device__ __forceinline__ float cp_async_wait_read(uint32_t saddr) {
    float v;
    asm volatile("cp.async.wait_all;\nld.shared.f32 %0, [%1];\n" : "=f"(v) : "r"(saddr) : "memory");
    return v;
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

/* Softmax of one KV tile: S (int32 accumulators of QK^T) -> Pf (P~ as floats).
 * Updates the running max m[2] (rows g, g+8; base-2 units, unshifted) and the thread's partial
 * row sums l[2]; returns the rescale factors alpha[2] = exp2(m_old - m_new) of O.
 * MASK: mask columns >= nk and, if causal, columns > row + off (natural order, A4 coordinates).
 * Per score: IMNMX (row max on the raw int32 sums), I2F, one FFMA (the exp argument
 * fma(float(s), sc, -(m - SHIFT)), the spec's formula), MUFU.EX2, FADD (row sum), 1/2 F2FP.
 * The row max of the scaled scores is max_int * sc (sc > 0 and rounding is monotonic), taken
 * per lane with the lane's own sc (per-thread K groups: each lane of a quad has its own ks)
 * before the quad shuffles. Masked scores are -inf (fma(-inf, sc, x) = -inf, ex2(-inf) = 0). */
template <int NS, bool MASK, bool CAUSAL, int XP, int NP>
__device__ __forceinline__ void softmax_tile(const uint32_t (&S)[NS], float (&Pf)[NS], float sc, float (&m)[2],
                                             float (&l)[2], float (&alpha)[2], int kv0, int nk, int row0,
                                             int causal_off, int qd) {
    if (XP & XP_NO_SOFTMAX) {   /* experiment: scale only, no max / exp / sum */
#pragma unroll
        for (int i = 0; i < NS; ++i) Pf[i] = (float)(int)S[i] * sc;
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
#pragma unroll
        for (int i = 0; i < NS; ++i) {
            const int col = kv0 + 8 * (i >> 2) + 2 * qd + (i & 1);
            const int row = row0 + 8 * ((i >> 1) & 1);
            bool dead = col >= nk;
            if (CAUSAL) dead = dead || col > row + causal_off;
            Pf[i] = dead ? -INFINITY : (float)(int)S[i];
            const int r = (i >> 1) & 1, k = (((i >> 2) * 2) + (i & 1)) % NPM;
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
            const int r = (i >> 1) & 1, k = (((i >> 2) * 2) + (i & 1)) % NP;
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
                if (((i >> 1) & 1) ? big1 : big0) Pf[i] = __fmul_rn(Pf[i], sc);
            if (big0) scr[0] = 1.f;
            if (big1) scr[1] = 1.f;
        }
    }
    /* Row sums likewise in NP partial sums per row. */
    float ps[2][NP];
#pragma unroll
    for (int k = 0; k < NP; ++k) ps[0][k] = ps[1][k] = 0.f;
#pragma unroll
    for (int i = 0; i < NS; ++i) {
        const int r = (i >> 1) & 1, k = (((i >> 2) * 2) + (i & 1)) % NP;
        const float x = __fmaf_rn(Pf[i], scr[r], m_sh[r]);   /* the spec: fmaf(s, sc, -(m - SHIFT)) */
        constexpr int poly_mask = (XP & XP_POLY_HALF) ? 1 : (XP & XP_POLY_QUARTER) ? 3 : -1;
        float p;
        if (XP & XP_NO_MUFU) p = fmaf(x, 1.0e-3f, 0.5f);              /* experiment: FMA, not MUFU */
        else if (poly_mask >= 0 && (i & poly_mask) == poly_mask) p = exp2_poly(x);
        else p = ex2(x);
        Pf[i] = p;
        ps[r][k] += p;
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

/* P~ floats -> the A-fragment registers of the PV wgmma (NS/16 k32 chunks x 4 registers), A7. */
template <int NS>
__device__ __forceinline__ void pack_p(const float (&Pf)[NS], uint32_t (&P)[NS / 4]) {
#pragma unroll
    for (int c = 0; c < NS / 16; ++c) {
        const int b = 16 * c;
        P[4 * c + 0] = pack_e4m3x4(Pf[b + 0], Pf[b + 1], Pf[b + 4], Pf[b + 5]);
        P[4 * c + 1] = pack_e4m3x4(Pf[b + 2], Pf[b + 3], Pf[b + 6], Pf[b + 7]);
        P[4 * c + 2] = pack_e4m3x4(Pf[b + 8], Pf[b + 9], Pf[b + 12], Pf[b + 13]);
        P[4 * c + 3] = pack_e4m3x4(Pf[b + 10], Pf[b + 11], Pf[b + 14], Pf[b + 15]);
    }
}

/* Issue S = Q . K^T for one KV tile: D/32 k-steps of 32 bytes along each row (B3); k-steps 4..7
 * of D = 256 read the second column sub-tile of Q and of K. */
template <int D, int NC>
__device__ __forceinline__ void issue_qk(uint32_t (&S)[KT / 2], uint64_t qdesc, uint64_t kdesc) {
    using C = Cfg<D, NC>;
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

/* Ping-pong of the two consumer warpgroups (E6): WG c waits for its turn, issues, hands over. */
template <int XP> __device__ __forceinline__ void pp_wait(int c, bool first) {
    if (XP & XP_NO_PINGPONG) return;
    if (c == 0) {
        if (!first) named_sync<1, 256>();
    } else {
        named_sync<2, 256>();
    }
}
template <int XP> __device__ __forceinline__ void pp_signal(int c) {
    if (XP & XP_NO_PINGPONG) return;
    if (c == 0) named_arrive<2, 256>();
    else named_arrive<1, 256>();
}

/* Q prologue of a consumer thread: INT8-quantize its two rows (tile rows rt, rt + 8) straight from
 * the raw q into the CTA's swizzled Q tile and return its scale qs; the recipe and the groups are
 * the quantizer's (brief §1.2, geometry.h), so Q8 and q_scale are bit-exact with the spec.
 * The 4 lanes of a quad own the same two rows (A4), each a quarter of the channels; the rows of a
 * per-thread group are exactly those two, so the group amax is a quad max (per-warp: a warp max;
 * per-block: the 4 NC consumer warps meet in shared memory). Rows >= nq and channels >= p.d are 0.
 * The scale is also written to p.q_scale (the workspace keeps every quantization scale).
 * Ends with the async-proxy fence and a barrier of the consumer warpgroups (C3): after it the
 * tile may be read by wgmma. */
template <int D, int NC, typename InT>
__device__ __forceinline__ float quantize_q_rows(const sage_sm90_params &p, uint32_t s_q, uint32_t s_red, int q0,
                                                 int rt, int warp, int lane) {
    using C = Cfg<D, NC>;
    constexpr int CH = D / 4, NV = CH / 8;   /* channels of a row per lane, 8-channel vectors */
    const int qd = lane % 4, h = blockIdx.y, b = blockIdx.z;
    const sage_qk_groups gran = (sage_qk_groups)p.qk_gran;
    uint4 raw[2][NV];
    /* whole aligned rows (the common case): 16-byte loads only; else the quantizer's loader.
     * (Measured: the loads issued before the barrier set-up and the register reallocation gained
     * nothing at D = 128 and cost 10 % at D = 64 through the KV loop's code generation; one
     * branch around all 16-byte loads cost 4-6 % at D = 64 the same way.) */
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

/* A consumer warp is done with a ring stage: the warp's lanes converge, then one arrive (the
 * empty barriers count consumer warps, E5). */
__device__ __forceinline__ void warp_release(uint32_t bar, int lane) {
    __syncwarp();
    if (lane == 0) mbar_arrive(bar);
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
 * columns below p.d; lse. l: the lane's share of the row sums (all of it on the quad's lane 0). */
template <int D, int NC, typename OutT>
__device__ __forceinline__ void epilogue(const sage_sm90_params &p, const float (&O)[D / 2], float (&l)[2],
                                         const float (&m)[2]) {
    const int tid = sreg_tid();
    const int3 cta = sreg_ctaid();
    const int wg = tid / 128, t = tid - 128 * wg, lane = t % 32, qd = lane % 4;
    const int h = cta.y, b = cta.z, hk = h / p.group;
    const int row0 = ((int)gridDim.x - 1 - cta.x) * Cfg<D, NC>::CTA_Q + WG_Q * (wg - 1) + 16 * (t / 32) + lane / 4;
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
#pragma unroll
    for (int j0 = 0; j0 < NJ; j0 += CH) {
        float2 sc[CH], mn[CH];
#pragma unroll
        for (int jb = 0; jb < CH; ++jb) {
            const int d = 8 * (j0 + jb) + 2 * qd;
            sc[jb] = __ldg(reinterpret_cast<const float2 *>(vs + d));
            mn[jb] = vm ? __ldg(reinterpret_cast<const float2 *>(vm + d)) : make_float2(0.f, 0.f);
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
                const int i = 4 * (j0 + jb) + 2 * r;
                const float v0 = fmaf(mn[jb].x, add, O[i] * inv[r] * sc[jb].x);
                const float v1 = fmaf(mn[jb].y, add, O[i + 1] * inv[r] * sc[jb].y);
                if (p.o_pairs && d + 1 < p.d) {
                    *reinterpret_cast<uint32_t *>(orow + d) = Elem16<OutT>::pack2(v0, v1);
                } else {
                    orow[d] = Elem16<OutT>::one(v0);
                    if (d + 1 < p.d) orow[d + 1] = Elem16<OutT>::one(v1);
                }
            }
        }
    }
}

template <int D, int NC, bool CAUSAL, typename OutT, int XP>
__global__ void __launch_bounds__(Cfg<D, NC>::NTHREADS, Cfg<D, NC>::CTAS_PER_SM)
    attn_qk_int8_pv_fp8_sm90(const __grid_constant__ CUtensorMap tm_k, const __grid_constant__ CUtensorMap tm_v,
                             const __grid_constant__ sage_sm90_params p) {
    using C = Cfg<D, NC>;
    constexpr int CTA_Q = C::CTA_Q;
    constexpr int NS = KT / 2;         /* S registers per thread (m64 x KT tile, A4) */
    constexpr int XPP = XP | (C::PINGPONG ? 0 : XP_NO_PINGPONG);   /* ping-pong off where it loses */
    extern __shared__ uint8_t smem_raw[];
    const uint32_t sraw = smem_addr(smem_raw);
    const uint32_t sbase = (sraw + 1023u) & ~1023u;
    const uint32_t s_q = sbase + C::OFF_Q, s_k = sbase + C::OFF_K, s_v = sbase + C::OFF_V;
    const uint32_t bar_kf = sbase + C::OFF_BAR, bar_ke = bar_kf + 8 * C::STAGES;
    const uint32_t bar_vf = bar_ke + 8 * C::STAGES, bar_ve = bar_vf + 8 * C::STAGES;

    /* Heavier (causal: later) Q tiles first. */
    const int qtile = gridDim.x - 1 - blockIdx.x;
    const int h = blockIdx.y, b = blockIdx.z;
    const int hk = h / p.group;
    const int q0 = qtile * CTA_Q;
    const int causal_off = p.causal == SAGE_CAUSAL_BOTTOM_RIGHT ? p.nk - p.nq : 0;

    const int n_kv = kv_tiles<CAUSAL>(p, q0, CTA_Q, causal_off);

    const int tid = threadIdx.x;
    if (tid == 0) {
        for (int s = 0; s < C::STAGES; ++s) {
            mbar_init(bar_kf + 8 * s, 1);      /* the producer's arrive.expect_tx */
            mbar_init(bar_ke + 8 * s, 4 * NC); /* one arrive per consumer warp */
            mbar_init(bar_vf + 8 * s, 1);
            mbar_init(bar_ve + 8 * s, 4 * NC);
        }
        mbar_init_fence();
    }
    __syncthreads();

    const int wg = tid / 128;
    if (wg == 0) {
        /* ---------------- producer ---------------- */
        setmaxnreg_dec<24>();
        if (tid == 0 && n_kv > 0) {
            tma_prefetch_desc(&tm_k);
            tma_prefetch_desc(&tm_v);
            const int yk = (int)(((int64_t)b * p.heads_kv + hk) * p.nk_pad);
            const int yv = (int)(((int64_t)b * p.heads_kv + hk) * D);
            int st = 0;
            uint32_t ph = 0;
            for (int j = 0; j < n_kv; ++j) {
                mbar_wait(bar_ke + 8 * st, ph ^ 1u);
                mbar_arrive_expect_tx(bar_kf + 8 * st, C::K_BYTES);
#pragma unroll
                for (int u = 0; u < C::SUBS; ++u)
                    tma_load_2d(s_k + st * C::K_BYTES + u * C::K_SUB_BYTES, &tm_k, u * C::QK_SWZ, yk + j * KT,
                                bar_kf + 8 * st);
                mbar_wait(bar_ve + 8 * st, ph ^ 1u);
                mbar_arrive_expect_tx(bar_vf + 8 * st, C::V_BYTES);
                tma_load_2d(s_v + st * C::V_BYTES, &tm_v, j * KT, yv, bar_vf + 8 * st);
                if (++st == C::STAGES) { st = 0; ph ^= 1u; }
            }
        }
        return;
    }

    /* ---------------- consumers ---------------- */
    setmaxnreg_inc<C::CONSUMER_REGS>();
    const int c = wg - 1;              /* consumer warpgroup 0 .. NC-1: rows 64c .. 64c+63 */
    const int t = tid - 128 * wg;
    const int w = t / 32, lane = t % 32, g = lane / 4, qd = lane % 4;
    const int row0 = q0 + WG_Q * c + 16 * w + g; /* this thread's rows: row0, row0 + 8 */

    constexpr sage_geometry geo = C::geometry();
    const sage_qk_groups gran = (sage_qk_groups)p.qk_gran;
    const int64_t bhk = (int64_t)b * p.heads_kv + hk;
    const float qs = quantize_q_rows<D, NC, OutT>(p, s_q, sbase + C::OFF_RED, q0, row0 - q0, 4 * c + w, lane);
    const float cs = p.sm_scale * LOG2E;  /* scores in base-2 units; S scale = (qs * ks) * cs */
    /* K scale of tile j: k_scale[ks_off + j * ks_step] (geometry.h: per-thread groups are
     * (tile, q), 4 per tile; per-block and per-warp one per tile). */
    const int ks_step = gran == SAGE_QK_PER_THREAD ? 4 : 1;

    float O[D / 2];
#pragma unroll
    for (int i = 0; i < D / 2; ++i) O[i] = 0.f;
    float m[2] = {-INFINITY, -INFINITY};
    float l[2] = {0.f, 0.f};   /* this lane's partial row sums (its columns of rows g, g + 8) */

    const uint64_t qdesc = make_desc(s_q + c * (WG_Q * C::QK_SWZ), C::QK_SWZ);
    /* Tiles from j_mask on need the mask: the ragged last tile, and with causal every tile not
     * wholly visible to the CTA's first row. The same for both warpgroups (the second masks at
     * most one tile it would not need to), so the compiler keeps it in a uniform register: a
     * per-warpgroup bound spilled at D = 128 causal. */
    int j_mask = p.nk / KT;
    if (CAUSAL) {
        const int vis = q0 + causal_off + 1;   /* keys visible to the CTA's first row */
        j_mask = min(j_mask, vis < 0 ? 0 : vis / KT);
    }

    if (n_kv > 0) {
        uint32_t S[NS];
        float Pf[NS];
        uint32_t P[NS / 4];
        auto softmax = [&](int j, float sc, float (&alpha)[2]) {
            const int kv0 = j * KT;
            if (j >= j_mask)
                softmax_tile<NS, true, CAUSAL, XP, C::template np<CAUSAL>()>(S, Pf, sc, m, l, alpha, kv0, p.nk, row0, causal_off, qd);
            else
                softmax_tile<NS, false, CAUSAL, XP, C::template np<CAUSAL>()>(S, Pf, sc, m, l, alpha, kv0, p.nk, row0, causal_off, qd);
        };
        /* Address of tile j's K scale: a 32-bit offset from the parameter's base (one register
         * instead of a 64-bit pointer; bhk * n_k_groups < 2^31: the launcher bounds
         * B * Hkv * nk_pad). Measured +6-8 % at D = 64 (device call 8, docs/perf-log.md); at
         * D = 128 with the warpgroups free-running it is the register that avoids a spill. */
        const int ks_off = (int)(bhk * p.n_k_groups + sage_k_group(geo, gran, 2 * qd));
        auto ks_addr = [&](int j) -> const float * { return p.k_scale + (ks_off + j * ks_step); };
        /* K scale of the next tile, loaded one iteration ahead by a load the compiler cannot sink
         * to its use (a plain load landed right before the softmax: its L2 latency showed as
         * "long scoreboard" stalls). NC = 3 stages them in shared memory instead. */
        float ks = *ks_addr(0);
        float ks_next = !C::PIPELINED && D <= 128 ? 0.f : ld_nc_f32(ks_addr(min(1, n_kv - 1)));

        if constexpr (C::PIPELINED) {
            /* Pipelined: QK^T(j) and PV(j-1) issued together, softmax(j) overlaps PV(j-1); the
             * QK^T latency is exposed and covered by the other warpgroup (ping-pong). */
            float T[C::NT];
            float alpha_prev[2];
            /* slot 0: S(0) */
            pp_wait<XPP>(c, true);
            mbar_wait(bar_kf, 0);
            wgmma_fence();
            issue_qk<D, NC>(S, qdesc, make_desc(s_k, C::QK_SWZ));
            wgmma_commit();
            pp_signal<XPP>(c);
            wgmma_wait<0>();
            reg_fence_arr(S);
            warp_release(bar_ke, lane);
            softmax(0, (qs * ks) * cs, alpha_prev);
            pack_p<NS>(Pf, P);

            /* slots 1 .. n_kv-1: S(j) and T = P(j-1) V(j-1) in flight, softmax(j) meanwhile */
            for (int j = 1; j < n_kv; ++j) {
                const int st = j % C::STAGES, pst = (j - 1) % C::STAGES;
                const uint32_t ph = (uint32_t)(j / C::STAGES) & 1u, pph = (uint32_t)((j - 1) / C::STAGES) & 1u;
                ks = ks_next;
                ks_next = ld_nc_f32(ks_addr(min(j + 1, n_kv - 1)));
                pp_wait<XPP>(c, false);
                mbar_wait(bar_kf + 8 * st, ph);
                reg_fence_arr(P);
                wgmma_fence();
                issue_qk<D, NC>(S, qdesc, make_desc(s_k + st * C::K_BYTES, C::QK_SWZ));
                wgmma_commit();
                mbar_wait(bar_vf + 8 * pst, pph);
                if (!(XP & XP_NO_PV)) issue_pv<D>(T, P, make_desc(s_v + pst * C::V_BYTES, C::V_SWZ));
                wgmma_commit();
                pp_signal<XPP>(c);

                wgmma_wait<1>();          /* S(j) ready */
                reg_fence_arr(S);
                warp_release(bar_ke + 8 * st, lane);
                float alpha[2];
                softmax(j, (qs * ks) * cs, alpha);

                wgmma_wait<0>();          /* T ready */
                reg_fence_arr(T);
                reg_fence_arr(P);
                warp_release(bar_ve + 8 * pst, lane);
                fold(O, T, 0, alpha_prev);
                alpha_prev[0] = alpha[0];
                alpha_prev[1] = alpha[1];
                pack_p<NS>(Pf, P);
            }

            /* last slot: T = P(n-1) V(n-1) */
            {
                const int pst = (n_kv - 1) % C::STAGES;
                const uint32_t pph = (uint32_t)((n_kv - 1) / C::STAGES) & 1u;
                pp_wait<XPP>(c, false);
                mbar_wait(bar_vf + 8 * pst, pph);
                reg_fence_arr(P);
                wgmma_fence();
                issue_pv<D>(T, P, make_desc(s_v + pst * C::V_BYTES, C::V_SWZ));
                wgmma_commit();
                pp_signal<XPP>(c);
                wgmma_wait<0>();
                reg_fence_arr(T);
                warp_release(bar_ve + 8 * pst, lane);
                fold(O, T, 0, alpha_prev);
            }
            if (c == 0 && !(XPP & XP_NO_PINGPONG))
                named_sync<1, 256>();           /* consume WG2's last hand-over (E6) */
        } else if constexpr (D <= 128) {
            /* S(j+1) issued right after T = P(j) V(j): its latency runs under T's and the fold;
             * the last tile issues no S. Every register is taken while T and S(j+1) are in
             * flight: the K scale of tile j+1 waits in shared memory (cp.async issued with
             * S(j+1); a plain load before the softmax would expose its latency, a register held
             * across T spilled). */
            const uint32_t s_ks = sbase + C::OFF_KS + 4 * (tid - 128);
            auto tile = [&](int j, auto has_next) {
                const int st = j % C::STAGES;
                const uint32_t ph = (uint32_t)(j / C::STAGES) & 1u;
                wgmma_wait<0>();          /* S(j) ready */
                const float ks_j = cp_async_wait_read(s_ks);
                reg_fence_arr(S);
                warp_release(bar_ke + 8 * st, lane);
                float alpha[2];
                softmax(j, (qs * ks_j) * cs, alpha);
                pack_p<NS>(Pf, P);
                float T[C::NT];
                mbar_wait(bar_vf + 8 * st, ph);
                reg_fence_arr(P);
                wgmma_fence();
                issue_pv<D>(T, P, make_desc(s_v + st * C::V_BYTES, C::V_SWZ));
                wgmma_commit();
                if constexpr (decltype(has_next)::value) {
                    const int nst = (j + 1) % C::STAGES;
                    cp_async_f32(s_ks, ks_addr(j + 1));
                    mbar_wait(bar_kf + 8 * nst, (uint32_t)((j + 1) / C::STAGES) & 1u);
                    issue_qk<D, NC>(S, qdesc, make_desc(s_k + nst * C::K_BYTES, C::QK_SWZ));
                    wgmma_commit();
                    wgmma_wait<1>();      /* T ready */
                } else {
                    wgmma_wait<0>();
                }
                reg_fence_arr(T);
                reg_fence_arr(P);
                warp_release(bar_ve + 8 * st, lane);
                fold(O, T, 0, alpha);
            };
            cp_async_f32(s_ks, ks_addr(0));
            mbar_wait(bar_kf, 0);
            wgmma_fence();
            issue_qk<D, NC>(S, qdesc, make_desc(s_k, C::QK_SWZ));
            wgmma_commit();
            /* the bound recomputed from the parameters and the CTA index per tile (n_kv, kept
             * live, was spilled) */
            for (int j = 0; j + 1 < kv_tiles<CAUSAL>(p, (gridDim.x - 1 - sreg_ctaid().x) * CTA_Q, CTA_Q, causal_off); ++j)
                tile(j, std::true_type{});
            tile(n_kv - 1, std::false_type{});
        } else {
            /* D = 256, one step after another: S(j), softmax(j), PV(j) over channels 0..127 into
             * a fresh T, fold, then channels 128..255, fold. No ping-pong: each
             * warpgroup waits on its own MMAs and the other one fills the tensor cores. */
            for (int j = 0; j < n_kv; ++j) {
                const int st = j % C::STAGES;
                const uint32_t ph = (uint32_t)(j / C::STAGES) & 1u;
                if (j > 0) {
                    ks = ks_next;
                    ks_next = ld_nc_f32(ks_addr(min(j + 1, n_kv - 1)));
                }
                mbar_wait(bar_kf + 8 * st, ph);
                wgmma_fence();
                issue_qk<D, NC>(S, qdesc, make_desc(s_k + st * C::K_BYTES, C::QK_SWZ));
                wgmma_commit();
                wgmma_wait<0>();
                reg_fence_arr(S);
                warp_release(bar_ke + 8 * st, lane);
                float alpha[2];
                softmax(j, (qs * ks) * cs, alpha);
                pack_p<NS>(Pf, P);
                mbar_wait(bar_vf + 8 * st, ph);
                {
                    float T[C::NT];
                    reg_fence_arr(P);
                    wgmma_fence();
                    issue_pv<128>(T, P, make_desc(s_v + st * C::V_BYTES, C::V_SWZ));
                    wgmma_commit();
                    wgmma_wait<0>();
                    reg_fence_arr(T);
                    fold(O, T, 0, alpha);
                }
                {
                    float T[C::NT];
                    reg_fence_arr(P);
                    wgmma_fence();
                    issue_pv<128>(T, P, make_desc(s_v + st * C::V_BYTES + 128 * KT, C::V_SWZ));
                    wgmma_commit();
                    wgmma_wait<0>();
                    reg_fence_arr(T);
                    reg_fence_arr(P);
                    warp_release(bar_ve + 8 * st, lane);
                    fold(O, T, 64, alpha);
                }
            }
        }
    }

    epilogue<D, NC, OutT>(p, O, l, m);
}

/* ---------------- host side ---------------- */

typedef CUresult (*encode_tiled_fn)(CUtensorMap *, CUtensorMapDataType, cuuint32_t, void *, const cuuint64_t *,
                                    const cuuint64_t *, const cuuint32_t *, const cuuint32_t *, CUtensorMapInterleave,
                                    CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

/* cuTensorMapEncodeTiled through the runtime's driver entry point (D2): no link to libcuda.
 * A function-local static is initialised once, thread-safely (C++11). */
static encode_tiled_fn get_encode(void) {
    static encode_tiled_fn fn = []() -> encode_tiled_fn {
        void *f = nullptr;
        cudaDriverEntryPointQueryResult qr;
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &qr) !=
                cudaSuccess ||
            qr != cudaDriverEntryPointSuccess)
            return nullptr;
        return (encode_tiled_fn)f;
    }();
    return fn;
}

/* 2-D uint8 map: rows of `width` bytes (pitch = width), box {box_w, box_h}. */
static bool make_map(encode_tiled_fn enc, CUtensorMap *tm, const void *base, uint64_t width, uint64_t rows,
                     uint32_t box_w, uint32_t box_h, CUtensorMapSwizzle swz) {
    const cuuint64_t dims[2] = {width, rows};
    const cuuint64_t strides[1] = {width};
    const cuuint32_t box[2] = {box_w, box_h};
    const cuuint32_t estr[2] = {1, 1};
    return enc(tm, CU_TENSOR_MAP_DATA_TYPE_UINT8, 2, const_cast<void *>(base), dims, strides, box, estr,
               CU_TENSOR_MAP_INTERLEAVE_NONE, swz, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
               CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

template <int D, int NC, bool CAUSAL, typename OutT, int XP = 0>
static sage_status launch_t(const sage_sm90_params *p, const CUtensorMap &tk, const CUtensorMap &tv,
                            cudaStream_t stream, sage_msg msg) {
    using C = Cfg<D, NC>;
    auto kern = attn_qk_int8_pv_fp8_sm90<D, NC, CAUSAL, OutT, XP>;
    cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)C::SMEM);
    if (e != cudaSuccess)
        return sage_fail(msg, SAGE_ERR_CUDA, "sm90: cudaFuncSetAttribute: %s", cudaGetErrorString(e));
    dim3 grid((unsigned)(p->nq_pad / C::CTA_Q), (unsigned)p->heads_q, (unsigned)p->batch);
    kern<<<grid, C::NTHREADS, C::SMEM, stream>>>(tk, tv, *p);
    e = cudaPeekAtLastError();
    if (e != cudaSuccess)
        return sage_fail(msg, SAGE_ERR_CUDA, "sm90 kernel launch: %s", cudaGetErrorString(e));
    return SAGE_OK;
}

template <int D, int NC>
static sage_status launch_d(const sage_sm90_params *p, bool bf16, const CUtensorMap &tk, const CUtensorMap &tv,
                            cudaStream_t stream, sage_msg msg) {
    const bool causal = p->causal != SAGE_CAUSAL_NONE;
#ifdef SAGE_SM90_EXPERIMENTS
    if (D == 128 && p->flags && !causal && !bf16) {
        switch (p->flags) {
        case 1: return launch_t<D, NC, false, __half, 1>(p, tk, tv, stream, msg);
        case 2: return launch_t<D, NC, false, __half, 2>(p, tk, tv, stream, msg);
        case 4: return launch_t<D, NC, false, __half, 4>(p, tk, tv, stream, msg);
        case 8: return launch_t<D, NC, false, __half, 8>(p, tk, tv, stream, msg);
        case 16: return launch_t<D, NC, false, __half, 16>(p, tk, tv, stream, msg);
        case 32: return launch_t<D, NC, false, __half, 32>(p, tk, tv, stream, msg);
        default: break;
        }
    }
#endif
    if constexpr (NC == 3) {
        /* measured no faster than two warpgroups with causal masking (docs/perf-log.md) */
        if (causal) return sage_fail(msg, SAGE_ERR_UNSUPPORTED, "sm90: this CTA shape is non-causal only");
        if (bf16) return launch_t<D, NC, false, __nv_bfloat16>(p, tk, tv, stream, msg);
        return launch_t<D, NC, false, __half>(p, tk, tv, stream, msg);
    } else {
        if (bf16) {
            if (causal) return launch_t<D, NC, true, __nv_bfloat16>(p, tk, tv, stream, msg);
            return launch_t<D, NC, false, __nv_bfloat16>(p, tk, tv, stream, msg);
        }
        if (causal) return launch_t<D, NC, true, __half>(p, tk, tv, stream, msg);
        return launch_t<D, NC, false, __half>(p, tk, tv, stream, msg);
    }
}

}  // namespace sage_sm90

int sage_sm90_padded_head_dim(int64_t d) {
    if (d < 1 || d > 256) return 0;
    return d <= 64 ? 64 : d <= 128 ? 128 : 256;
}

sage_status sage_sm90_launch(const sage_sm90_params *p, int d_pad, int cta_q, int bf16, const void *k8,
                             const void *v8, cudaStream_t stream, sage_msg msg) {
    using namespace sage_sm90;
    if (d_pad != 64 && d_pad != 128 && d_pad != 256)
        return sage_fail(msg, SAGE_ERR_UNSUPPORTED, "sm90: padded head_dim %d not 64, 128 or 256", d_pad);
    /* the instances built: launch_d below */
    if (!(cta_q == 128 || (cta_q == 192 && d_pad == 64) || cta_q == 64))
        return sage_fail(msg, SAGE_ERR_UNSUPPORTED, "sm90: no %d-row CTA at padded head_dim %d", cta_q, d_pad);
    if (p->d < 1 || p->d > d_pad)
        return sage_fail(msg, SAGE_ERR_UNSUPPORTED, "sm90: head_dim %d outside 1..%d", p->d, d_pad);
    encode_tiled_fn enc = get_encode();
    if (!enc) return sage_fail(msg, SAGE_ERR_UNSUPPORTED, "sm90: cuTensorMapEncodeTiled unavailable");
    if (p->nq_pad % cta_q || p->nk_pad % KT)
        return sage_fail(msg, SAGE_ERR_UNSUPPORTED, "sm90: workspace not padded to the tiles");
    /* TMA coordinates are int32: rows of the 2-D views stay below 2^31 (and the Q rows, as the
     * selection bounds them). */
    const int64_t q_rows = (int64_t)p->batch * p->heads_q * p->nq_pad;
    const int64_t k_rows = (int64_t)p->batch * p->heads_kv * p->nk_pad;
    const int64_t v_rows = (int64_t)p->batch * p->heads_kv * d_pad;
    if (q_rows >= ((int64_t)1 << 31) || k_rows >= ((int64_t)1 << 31) || v_rows >= ((int64_t)1 << 31) ||
        p->nk_pad >= ((int64_t)1 << 31) ||
        p->heads_q > 65535 || p->batch > 65535)
        return sage_fail(msg, SAGE_ERR_UNSUPPORTED, "sm90: problem too large for this kernel's grid");
    /* K: boxes of (sub-tile) rows of 64 B (SW64, d_pad 64) or 128 B (SW128; d_pad 256 loads two
     * boxes per tile); V^T rows are KT = 128 bytes (SW128), d_pad rows per box. */
    const uint32_t qk_box = d_pad == 64 ? 64 : 128;
    const CUtensorMapSwizzle swz_qk = d_pad == 64 ? CU_TENSOR_MAP_SWIZZLE_64B : CU_TENSOR_MAP_SWIZZLE_128B;
    alignas(64) CUtensorMap tk, tv;
    if (!make_map(enc, &tk, k8, (uint64_t)d_pad, (uint64_t)k_rows, qk_box, (uint32_t)KT, swz_qk) ||
        !make_map(enc, &tv, v8, (uint64_t)p->nk_pad, (uint64_t)v_rows, (uint32_t)KT, (uint32_t)d_pad,
                  CU_TENSOR_MAP_SWIZZLE_128B))
        return sage_fail(msg, SAGE_ERR_CUDA, "sm90: cuTensorMapEncodeTiled failed");
    if (d_pad == 64) {
        if (cta_q == 192) return launch_d<64, 3>(p, bf16, tk, tv, stream, msg);
        if (cta_q == 64) return launch_d<64, 1>(p, bf16, tk, tv, stream, msg);
        return launch_d<64, 2>(p, bf16, tk, tv, stream, msg);
    }
    if (d_pad == 128) {
        if (cta_q == 64) return launch_d<128, 1>(p, bf16, tk, tv, stream, msg);
        return launch_d<128, 2>(p, bf16, tk, tv, stream, msg);
    }
    if (cta_q == 64) return launch_d<256, 1>(p, bf16, tk, tv, stream, msg);
    return launch_d<256, 2>(p, bf16, tk, tv, stream, msg);
}
