/* The portable attention kernel: FlashAttention-2 structure with 8-bit QK^T on mma.sync.
 *
 * CTA = 16 W query rows x one (head, batch); W warps (4: "cuda_sm80_mma", 8: "_q128"), warp w owns
 * rows 16w..16w+15, so each thread holds rows g and g+8 (g = lane / 4) and, in every n8 column
 * block, columns 2q, 2q+1 (q = lane % 4).
 * Per KV tile of 64 keys:
 *   S = Q8 K8^T       4 (D=128) k32 steps x 8 n8 blocks of mma.m16n8k32.s32.s8.s8, Q in registers
 *   S *= qs * ks * sm_scale * log2 e   (one qs . ks per thread: per-thread groups, HOPPER-NOTES A8)
 *   online softmax in base 2; FP8: P~ = 2^(S - m + log2 448) in [0, 448]
 *   O += P V          FP8: the S registers packed as they are form the A operand, V^T is stored
 *                     with the 16-token permutation (geometry.h); a fresh accumulator per tile,
 *                     added into the fp32 O (two-level accumulation). 16-bit: m16n8k16 in the input type.
 * K and V tiles are double-buffered with cp.async; shared tiles are XOR-swizzled in 16-B chunks so
 * every ldmatrix phase hits 8 different bank groups. */
#include "attn_mma.h"
#include "cuda_common.h"
#include "mma_ptx.cuh"
#include "quant_device.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>

namespace sage {
namespace {

constexpr int CTA_K = SAGE_MMA_CTA_K;
constexpr float kShift = 8.807354922057604f; /* log2(448): P~ of the row max is 448, e4m3's largest */
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

struct AttnParams {
    const int8_t *q8, *k8;
    const uint8_t *v8;
    const float *q_scale, *k_scale, *k_mean, *v_scale, *v_mean, *qk_bias;
    const void *q, *v;
    int64_t qsb, qsh, qsn, vsb, vsh, vsn;
    void *o;
    int64_t osb, osh, osn;
    float *lse;
    int64_t Hq, Hkv, Nq, Nk, group, nq_pad, nk_pad, n_q_groups, n_k_groups;
    int D, q_tiles;
    float scale_log2, sm_scale;
    int causal;          /* 0 none, else keys j <= i + causal_off are visible */
    int64_t causal_off;
    sage_geometry geo;
    sage_qk_groups gran;
    bool smooth_k, smooth_q, smooth_v, v_vec, o_vec;
};

/* Byte offset of 16-byte chunk `c` of row `r` in a tile with CH chunks per row. The XOR keeps
 * the 8 rows one ldmatrix phase reads in 8 different 16-B bank groups. */
template <int CH>
__device__ __forceinline__ uint32_t swz(int r, int c) {
    const int x = CH >= 8 ? (r & 7) : ((r >> 1) & 3);
    return (uint32_t)(r * CH * 16 + ((c ^ x) * 16));
}

__device__ __forceinline__ uint32_t pack_e4m3x4(float x0, float x1, float x2, float x3) {
    return e4m3x2(x1, x0) | (e4m3x2(x3, x2) << 16);
}
template <typename T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <>
__device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi) {
    __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&h);
}
template <>
__device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&h);
}

template <int D_PAD, bool FP8, typename T, int CTA_Q>
struct Smem {
    static constexpr int Q_BYTES = CTA_Q * D_PAD;
    static constexpr int K_BYTES = CTA_K * D_PAD;
    static constexpr int V_BYTES = FP8 ? D_PAD * CTA_K : CTA_K * D_PAD * 2;
    static constexpr int TOTAL = Q_BYTES + 2 * K_BYTES + 2 * V_BYTES;
};

/* W warps, one 16-row slab each: W = 4 is the 64-row CTA of "cuda_sm80_mma" (two per SM),
 * W = 8 the 128-row CTA of "cuda_sm80_mma_q128". */
template <int D_PAD, bool FP8, typename T, int W>
__global__ void __launch_bounds__(W * 32, 8 / W) attn_mma_kernel(const AttnParams P) {
    constexpr int CTA_Q = 16 * W, THREADS = 32 * W;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 890
    if constexpr (FP8) { __trap(); return; } /* never launched: the dispatcher checks sage_has_fp8_mma */
#endif
    using S = Smem<D_PAD, FP8, T, CTA_Q>;
    constexpr int KC = D_PAD / 32;        /* k32 steps of QK^T */
    constexpr int CHQ = D_PAD / 16;       /* 16-B chunks per Q/K row */
    constexpr int NT = CTA_K / 8;         /* n8 column blocks of S */
    constexpr int DT = D_PAD / 8;         /* n8 column blocks of O */
    constexpr bool BF16 = std::is_same<T, __nv_bfloat16>::value;
    extern __shared__ __align__(128) uint8_t smem[];
    uint8_t *sQ = smem, *sK = smem + S::Q_BYTES, *sV = sK + 2 * S::K_BYTES;

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, q4 = lane % 4;
    const int qt = P.q_tiles - 1 - (int)blockIdx.x; /* heavy (late, causal) tiles first */
    const int64_t h = blockIdx.y, b = blockIdx.z, hkv = h / P.group;
    const int64_t bh = b * P.Hq + h, bhkv = b * P.Hkv + hkv;
    const int64_t row0 = (int64_t)qt * CTA_Q;

    /* Keys this CTA can see: all, or up to the causal limit of its last row. */
    int64_t kend = P.Nk;
    if (P.causal) kend = min(kend, min(row0 + CTA_Q, P.Nq) - 1 + P.causal_off + 1);
    const int n_tiles = kend > 0 ? (int)((kend + CTA_K - 1) / CTA_K) : 0;

    const int8_t *gQ = P.q8 + (bh * P.nq_pad + row0) * D_PAD;
    const int8_t *gK = P.k8 + bhkv * P.nk_pad * D_PAD;
    const uint8_t *gV8 = P.v8 + bhkv * D_PAD * P.nk_pad;
    const T *gV = static_cast<const T *>(P.v) + b * P.vsb + hkv * P.vsh;

    /* Per-thread copy slots of a KV tile, computed once: slot k of this thread is element
     * i = tid + k * THREADS of the tile's 16-B chunks. THREADS / chunks-per-row is a multiple of
     * 8 rows, so every slot has the same swizzle XOR and the offsets step linearly in k. */
    constexpr int CHV = D_PAD / 8;                 /* 16-B chunks per 16-bit V row (8 elements) */
    constexpr int K_SLOTS = CTA_K * CHQ / THREADS; /* K tile: CTA_K rows of D_PAD bytes */
    constexpr int V8_SLOTS = D_PAD * 4 / THREADS;  /* FP8 V^T tile: D_PAD rows of 64 bytes */
    constexpr int V16_SLOTS = CTA_K * CHV / THREADS;
    static_assert(K_SLOTS >= 1 && CTA_K * CHQ % THREADS == 0 && (THREADS / CHQ) % 8 == 0, "K slots");
    static_assert(V8_SLOTS >= 1 && D_PAD * 4 % THREADS == 0 && (THREADS / 4) % 8 == 0, "V8 slots");
    static_assert(V16_SLOTS >= 1 && CTA_K * CHV % THREADS == 0 && (THREADS / CHV) % 8 == 0, "V16 slots");
    const int k_r = tid / CHQ, k_c = tid % CHQ;
    const uint32_t k_sw = swz<CHQ>(k_r, k_c);
    const int k_src = k_r * D_PAD + k_c * 16;
    const int v8_d = tid / 4, v8_c = tid % 4;
    const uint32_t v8_sw = swz<4>(v8_d, v8_c);
    const int64_t v8_src = (int64_t)v8_d * P.nk_pad + v8_c * 16, v8_step = (int64_t)(THREADS / 4) * P.nk_pad;
    const int v_r = tid / CHV, v_c = tid % CHV;
    const uint32_t v_sw = swz<CHV>(v_r, v_c);

    auto load_kv = [&](int kt, int buf) {
        const int64_t t0 = (int64_t)kt * CTA_K;
        const uint32_t k_dst = smem_u32(sK + buf * S::K_BYTES) + k_sw;
        const int8_t *k_src_t = gK + t0 * D_PAD + k_src;
#pragma unroll
        for (int k = 0; k < K_SLOTS; k++) cp_async16(k_dst + k * THREADS * 16, k_src_t + k * THREADS * 16, 16);
        uint8_t *vbuf = sV + buf * S::V_BYTES;
        if constexpr (FP8) {
            const uint32_t v_dst = smem_u32(vbuf) + v8_sw;
            const uint8_t *v_src_t = gV8 + t0 + v8_src;
#pragma unroll
            for (int k = 0; k < V8_SLOTS; k++) cp_async16(v_dst + k * THREADS * 16, v_src_t + k * v8_step, 16);
        } else {
            if (P.v_vec) {
                const uint32_t v_dst = smem_u32(vbuf) + v_sw;
#pragma unroll
                for (int k = 0; k < V16_SLOTS; k++) {
                    const int64_t t = t0 + v_r + k * (THREADS / CHV);
                    const bool ok = t < P.Nk && v_c * 8 < P.D;
                    cp_async16(v_dst + k * THREADS * 16, ok ? (const void *)(gV + t * P.vsn + v_c * 8) : (const void *)gV,
                               ok ? 16 : 0);
                }
            } else {
                for (int i = tid; i < CTA_K * D_PAD; i += THREADS) {
                    const int r = i / D_PAD, d = i % D_PAD;
                    const int64_t t = t0 + r;
                    T x = t < P.Nk && d < P.D ? gV[t * P.vsn + d] : T(0.0f);
                    *reinterpret_cast<T *>(vbuf + swz<CHV>(r, d / 8) + (d % 8) * 2) = x;
                }
            }
        }
    };

    /* Q tile (one group), then the first KV tile (one group). */
    {
        const uint32_t q_dst = smem_u32(sQ);
        for (int i = tid; i < CTA_Q * CHQ; i += THREADS) {
            const int r = i / CHQ, c = i % CHQ;
            cp_async16(q_dst + swz<CHQ>(r, c), gQ + r * D_PAD + c * 16, 16);
        }
        cp_async_commit();
    }
    if (n_tiles > 0) load_kv(0, 0);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();

    uint32_t qf[KC][4];
#pragma unroll
    for (int kc = 0; kc < KC; kc++)
        ldmatrix_x4(qf[kc], smem_u32(sQ) + swz<CHQ>(warp * 16 + (lane & 15), 2 * kc + (lane >> 4)));

    /* This thread's rows and their Q scale (all granularities: rows g and g+8 share a group). */
    const int64_t r_lo = row0 + warp * 16 + g, r_hi = r_lo + 8;
    const float qs = P.q_scale[bh * P.n_q_groups + sage_q_group(P.geo, P.gran, r_lo)] * P.scale_log2;
    const float *bias = P.smooth_q ? P.qk_bias + (bh * (P.nq_pad / CTA_Q) + qt) * P.nk_pad : nullptr;

    float o[DT][4];
#pragma unroll
    for (int j = 0; j < DT; j++) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
    float m_lo = -INFINITY, m_hi = -INFINITY, l_lo = 0.f, l_hi = 0.f;

    for (int kt = 0; kt < n_tiles; kt++) {
        const int buf = kt & 1;
        if (kt + 1 < n_tiles) {
            load_kv(kt + 1, buf ^ 1);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();

        /* ---- S = Q8 K8^T --------------------------------------------------------------------- */
        int acc[NT][4];
        const uint32_t k_base = smem_u32(sK + buf * S::K_BYTES);
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0;
#pragma unroll
            for (int hh = 0; hh < KC / 2; hh++) {
                uint32_t kb[4];
                ldmatrix_x4(kb, k_base + swz<CHQ>(nt * 8 + (lane & 7), 4 * hh + (lane >> 3)));
                mma_s8(acc[nt], qf[2 * hh], kb[0], kb[1]);
                mma_s8(acc[nt], qf[2 * hh + 1], kb[2], kb[3]);
            }
        }

        /* ---- dequantize, mask ----------------------------------------------------------------- */
        const int64_t t0 = (int64_t)kt * CTA_K;
        const float f = qs * P.k_scale[bhkv * P.n_k_groups + sage_k_group(P.geo, P.gran, t0 + 2 * q4)];
        float s[NT][4];
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int i = 0; i < 4; i++) s[nt][i] = i2f_exact(acc[nt][i]);
        const bool edge = t0 + CTA_K > P.Nk || (P.causal && t0 + CTA_K - 1 > row0 + P.causal_off);
        /* Without smooth Q the raw sums are kept (masked ones become -inf): max(raw) * f is the
         * max of the scaled scores (f > 0), and the scale folds into the exponent's FFMA below
         * (fe = f), the spec's fmaf(float(s), f, -(m - SHIFT)). With smooth Q: S = s * f + bias. */
        const bool slow = bias;
        const float fe = slow ? 1.f : f;
        if (slow) {
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int i = 0; i < 4; i++) s[nt][i] *= f;
        }
        if (bias) {
#pragma unroll
            for (int nt = 0; nt < NT; nt++) {
                const float2 bb = *reinterpret_cast<const float2 *>(bias + t0 + nt * 8 + 2 * q4);
                s[nt][0] += bb.x * P.scale_log2; s[nt][1] += bb.y * P.scale_log2;
                s[nt][2] += bb.x * P.scale_log2; s[nt][3] += bb.y * P.scale_log2;
            }
        }
        if (edge) {
            /* Last visible column of each row, relative to the tile (int32: |value| <= CTA_K). */
            const int64_t last_k = P.Nk - 1 - t0;
            int64_t lim_lo = last_k, lim_hi = last_k;
            if (P.causal) {
                lim_lo = min(lim_lo, r_lo + P.causal_off - t0);
                lim_hi = min(lim_hi, r_hi + P.causal_off - t0);
            }
            const int l_lo32 = (int)max(lim_lo, (int64_t)-1), l_hi32 = (int)max(lim_hi, (int64_t)-1);
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    const int c = nt * 8 + 2 * q4 + (i & 1);
                    if (c > (i < 2 ? l_lo32 : l_hi32)) s[nt][i] = -INFINITY;
                }
        }

        /* ---- online softmax (base 2) ------------------------------------------------------------ */
        float mx_lo = -INFINITY, mx_hi = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            mx_lo = fmaxf(mx_lo, fmaxf(s[nt][0], s[nt][1]));
            mx_hi = fmaxf(mx_hi, fmaxf(s[nt][2], s[nt][3]));
        }
        mx_lo *= fe; /* before the quad reduction: fe (the K scale) differs between the 4 lanes */
        mx_hi *= fe;
#pragma unroll
        for (int off = 1; off <= 2; off *= 2) {
            mx_lo = fmaxf(mx_lo, __shfl_xor_sync(0xffffffffu, mx_lo, off));
            mx_hi = fmaxf(mx_hi, __shfl_xor_sync(0xffffffffu, mx_hi, off));
        }
        const float mn_lo = fmaxf(m_lo, mx_lo), mn_hi = fmaxf(m_hi, mx_hi);
        /* A row with nothing visible yet keeps m = -inf: subtract 0 instead (exp2(-inf) = 0). */
        const float mu_lo = mn_lo == -INFINITY ? 0.f : mn_lo, mu_hi = mn_hi == -INFINITY ? 0.f : mn_hi;
        const float alpha_lo = ex2(m_lo - mu_lo), alpha_hi = ex2(m_hi - mu_hi);
        m_lo = mn_lo;
        m_hi = mn_hi;
        const float sub_lo = FP8 ? mu_lo - kShift : mu_lo, sub_hi = FP8 ? mu_hi - kShift : mu_hi;
        /* |m - SHIFT| >= 2^20 (huge scores): the fused exact product may exceed the rounded max by
         * half an ulp of m; the spec then uses the rounded score fl(s * f) - (m - SHIFT). */
        float fe_lo = fe, fe_hi = fe;
        if (fe != 1.f && fabsf(sub_lo) >= 0x1p20f) {
#pragma unroll
            for (int nt = 0; nt < NT; nt++) { s[nt][0] = __fmul_rn(s[nt][0], fe); s[nt][1] = __fmul_rn(s[nt][1], fe); }
            fe_lo = 1.f;
        }
        if (fe != 1.f && fabsf(sub_hi) >= 0x1p20f) {
#pragma unroll
            for (int nt = 0; nt < NT; nt++) { s[nt][2] = __fmul_rn(s[nt][2], fe); s[nt][3] = __fmul_rn(s[nt][3], fe); }
            fe_hi = 1.f;
        }
        float rs_lo = 0.f, rs_hi = 0.f;
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            s[nt][0] = ex2(fmaf(s[nt][0], fe_lo, -sub_lo));
            s[nt][1] = ex2(fmaf(s[nt][1], fe_lo, -sub_lo));
            s[nt][2] = ex2(fmaf(s[nt][2], fe_hi, -sub_hi));
            s[nt][3] = ex2(fmaf(s[nt][3], fe_hi, -sub_hi));
            rs_lo += s[nt][0] + s[nt][1];
            rs_hi += s[nt][2] + s[nt][3];
        }
        l_lo = l_lo * alpha_lo + rs_lo;
        l_hi = l_hi * alpha_hi + rs_hi;
        /* Skip the O rescale when no row max of the warp moved (measured on sm_90). Below sm_90
         * the vote's live range makes ptxas spill the FP8 D = 128 instance: rescale always. */
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
        const bool rescale = __any_sync(0xffffffffu, alpha_lo != 1.f || alpha_hi != 1.f);
#else
        const bool rescale = true;
#endif
        if (rescale) {
#pragma unroll
            for (int j = 0; j < DT; j++) {
                o[j][0] *= alpha_lo; o[j][1] *= alpha_lo;
                o[j][2] *= alpha_hi; o[j][3] *= alpha_hi;
            }
        }

        /* ---- O += P V -------------------------------------------------------------------------- */
        const uint32_t v_base = smem_u32(sV + buf * S::V_BYTES);
        if constexpr (FP8) {
            uint32_t pa[2][4];
#pragma unroll
            for (int c = 0; c < 2; c++) {
                const int n = 4 * c;
                pa[c][0] = pack_e4m3x4(s[n][0], s[n][1], s[n + 1][0], s[n + 1][1]);
                pa[c][1] = pack_e4m3x4(s[n][2], s[n][3], s[n + 1][2], s[n + 1][3]);
                pa[c][2] = pack_e4m3x4(s[n + 2][0], s[n + 2][1], s[n + 3][0], s[n + 3][1]);
                pa[c][3] = pack_e4m3x4(s[n + 2][2], s[n + 2][3], s[n + 3][2], s[n + 3][3]);
            }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && __CUDA_ARCH__ < 1000
            /* sm_90 has no e4m3 mma.sync unit (ptxas would emulate it): the same products on the
             * f16 MMA. e4m3 values are exact in f16, and the f16 MMA accumulates in true fp32, so
             * O accumulates directly (no FP22 accumulator to work around). Register pa[c][i]
             * holds, per its two halves, the m16n8k16 A registers of k16 step (c, i / 2); the
             * permuted V^T bytes 4q..4q+3 of 16-group m are the B pair of k16 step m. */
            uint32_t ah[2][4][2];
#pragma unroll
            for (int c = 0; c < 2; c++)
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    e4m3x4_to_f16x2x2(pa[c][i], ah[c][i][0], ah[c][i][1]);
                }
#pragma unroll
            for (int j = 0; j < DT; j++) {
                uint32_t vb[4];
                ldmatrix_x4(vb, v_base + swz<4>(j * 8 + (lane & 7), lane >> 3));
#pragma unroll
                for (int m = 0; m < 4; m++) {
                    const int c = m / 2, i = 2 * (m % 2);
                    const uint32_t a[4] = {ah[c][i][0], ah[c][i + 1][0], ah[c][i][1], ah[c][i + 1][1]};
                    uint32_t b0, b1;
                    e4m3x4_to_f16x2x2(vb[m], b0, b1);
                    mma_16<false>(o[j], a, b0, b1);
                }
            }
#else
#pragma unroll
            for (int j = 0; j < DT; j++) {
                uint32_t vb[4];
                ldmatrix_x4(vb, v_base + swz<4>(j * 8 + (lane & 7), lane >> 3));
                const float zero[4] = {0.f, 0.f, 0.f, 0.f};
                float t[4];
                mma_e4m3(t, pa[0], vb[0], vb[1], zero); /* fresh accumulator per tile ... */
                mma_e4m3(t, pa[1], vb[2], vb[3], t);
                o[j][0] += t[0]; o[j][1] += t[1]; o[j][2] += t[2]; o[j][3] += t[3]; /* ... added in fp32 */
            }
#endif
        } else {
            constexpr int CHV = D_PAD / 8;
#pragma unroll
            for (int kk = 0; kk < CTA_K / 16; kk++) {
                uint32_t pa[4];
                pa[0] = pack2<T>(s[2 * kk][0], s[2 * kk][1]);
                pa[1] = pack2<T>(s[2 * kk][2], s[2 * kk][3]);
                pa[2] = pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]);
                pa[3] = pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
                for (int j = 0; j < DT; j += 2) {
                    uint32_t vb[4];
                    const int mi = lane >> 3;
                    ldmatrix_x4_trans(vb, v_base + swz<CHV>(kk * 16 + (lane & 7) + 8 * (mi & 1), j + (mi >> 1)));
                    mma_16<BF16>(o[j], pa, vb[0], vb[1]);
                    mma_16<BF16>(o[j + 1], pa, vb[2], vb[3]);
                }
            }
        }
        __syncthreads(); /* this buffer is refilled by the next iteration's prefetch */
    }

    /* ---- epilogue ---------------------------------------------------------------------------- */
#pragma unroll
    for (int off = 1; off <= 2; off *= 2) {
        l_lo += __shfl_xor_sync(0xffffffffu, l_lo, off);
        l_hi += __shfl_xor_sync(0xffffffffu, l_hi, off);
    }
    const float inv_lo = l_lo > 0.f ? 1.f / l_lo : 0.f, inv_hi = l_hi > 0.f ? 1.f / l_hi : 0.f;
    const float *vsc = FP8 ? P.v_scale + bhkv * D_PAD : nullptr;
    const float *vmn = FP8 && P.smooth_v ? P.v_mean + bhkv * D_PAD : nullptr;
    T *gO = static_cast<T *>(P.o) + b * P.osb + h * P.osh;
#pragma unroll
    for (int hr = 0; hr < 2; hr++) {
        const int64_t r = hr ? r_hi : r_lo;
        const float inv = hr ? inv_hi : inv_lo;
        if (r >= P.Nq) continue;
        T *orow = gO + r * P.osn;
#pragma unroll
        for (int j = 0; j < DT; j++) {
            const int d = j * 8 + 2 * q4;
            float y0 = o[j][2 * hr] * inv, y1 = o[j][2 * hr + 1] * inv;
            if constexpr (FP8) {
                y0 *= vsc[d];
                y1 *= vsc[d + 1];
                if (vmn && inv > 0.f) { y0 += vmn[d]; y1 += vmn[d + 1]; }
            }
            if (P.o_vec && d + 1 < P.D) {
                *reinterpret_cast<uint32_t *>(orow + d) = pack2<T>(y0, y1);
            } else {
                if (d < P.D) orow[d] = T(y0);
                if (d + 1 < P.D) orow[d + 1] = T(y1);
            }
        }
    }
    if (P.lse) {
        /* lse = ln2 (m + log2 l [- SHIFT]) + sm_scale q.km: the scores were of k - km. */
        const T *gq = static_cast<const T *>(P.q) + b * P.qsb + h * P.qsh;
        const float *km = P.k_mean + bhkv * D_PAD;
#pragma unroll
        for (int hr = 0; hr < 2; hr++) {
            const int64_t r = hr ? r_hi : r_lo;
            float qk = 0.f;
            if (P.smooth_k && r < P.Nq)
                for (int d = q4; d < P.D; d += 4) qk += to_float(gq[r * P.qsn + d]) * km[d];
            qk += __shfl_xor_sync(0xffffffffu, qk, 1);
            qk += __shfl_xor_sync(0xffffffffu, qk, 2);
            const float l = hr ? l_hi : l_lo, m = hr ? m_hi : m_lo;
            if (q4 == 0 && r < P.Nq)
                P.lse[bh * P.Nq + r] =
                    l > 0.f ? kLn2 * (m + log2f(l) - (FP8 ? kShift : 0.f)) + P.sm_scale * qk : -INFINITY;
        }
    }
}

template <int D_PAD, bool FP8, typename T, int W>
sage_status launch(const AttnParams &P, int64_t B, cudaStream_t st, sage_msg msg) {
    constexpr int bytes = Smem<D_PAD, FP8, T, 16 * W>::TOTAL, THREADS = 32 * W;
    auto *kern = attn_mma_kernel<D_PAD, FP8, T, W>;
    if (bytes > 48 * 1024)
        SAGE_CUDA_TRY(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes),
                      "cudaFuncSetAttribute(attn_mma)", msg);
    kern<<<dim3((unsigned)P.q_tiles, (unsigned)P.Hq, (unsigned)B), THREADS, bytes, st>>>(P);
    return sage_cuda_check_launch("sage attn_mma kernel", msg);
}

template <int D_PAD, int W>
sage_status dispatch(const AttnParams &P, int64_t B, bool fp8, bool bf16, cudaStream_t st, sage_msg msg) {
    if (fp8)
        return bf16 ? launch<D_PAD, true, __nv_bfloat16, W>(P, B, st, msg) : launch<D_PAD, true, __half, W>(P, B, st, msg);
    return bf16 ? launch<D_PAD, false, __nv_bfloat16, W>(P, B, st, msg) : launch<D_PAD, false, __half, W>(P, B, st, msg);
}

} // namespace
} // namespace sage

extern "C" sage_status sage_mma_attention(const sage_problem *p, sage_geometry g, const sage_cuda_quant_layout *L,
                                          void *ws, void *stream, sage_msg msg) {
    using namespace sage;
    const sage_args *a = &p->a;
    const uint8_t *w = static_cast<const uint8_t *>(ws);
    AttnParams P{};
    P.q8 = reinterpret_cast<const int8_t *>(w + L->off_q8);
    P.k8 = reinterpret_cast<const int8_t *>(w + L->off_k8);
    P.v8 = w + L->off_v8;
    P.q_scale = reinterpret_cast<const float *>(w + L->off_q_scale);
    P.k_scale = reinterpret_cast<const float *>(w + L->off_k_scale);
    P.k_mean = reinterpret_cast<const float *>(w + L->off_k_mean);
    P.v_scale = reinterpret_cast<const float *>(w + L->off_v_scale);
    P.v_mean = reinterpret_cast<const float *>(w + L->off_v_mean);
    P.qk_bias = reinterpret_cast<const float *>(w + L->off_qk_bias);
    P.q = a->q; P.qsb = a->q_stride_b; P.qsh = a->q_stride_h; P.qsn = a->q_stride_n;
    P.v = a->v; P.vsb = a->v_stride_b; P.vsh = a->v_stride_h; P.vsn = a->v_stride_n;
    P.o = a->o; P.osb = a->o_stride_b; P.osh = a->o_stride_h; P.osn = a->o_stride_n;
    P.lse = a->lse;
    P.Hq = a->heads_q; P.Hkv = a->heads_kv; P.Nq = a->seqlen_q; P.Nk = a->seqlen_kv;
    P.group = p->group_size;
    P.nq_pad = L->nq_pad; P.nk_pad = L->nk_pad; P.n_q_groups = L->n_q_groups; P.n_k_groups = L->n_k_groups;
    P.D = (int)a->head_dim;
    P.q_tiles = (int)(L->nq_pad / g.cta_q);
    P.sm_scale = a->sm_scale;
    P.scale_log2 = a->sm_scale * kLog2e;
    P.causal = a->causal != SAGE_CAUSAL_NONE;
    P.causal_off = a->causal == SAGE_CAUSAL_BOTTOM_RIGHT ? a->seqlen_kv - a->seqlen_q : 0;
    P.geo = g;
    P.gran = p->qk_groups;
    P.smooth_k = p->smooth_k; P.smooth_q = p->smooth_q; P.smooth_v = p->smooth_v && p->pv == SAGE_PV_FP8;
    P.v_vec = sage_rows_aligned(a->v, a->v_stride_b, a->v_stride_h, a->v_stride_n, 8) && a->head_dim % 8 == 0;
    P.o_vec = sage_rows_aligned(a->o, a->o_stride_b, a->o_stride_h, a->o_stride_n, 2);
    const bool fp8 = p->pv == SAGE_PV_FP8, bf16 = a->dtype == SAGE_DTYPE_BF16;
    cudaStream_t st = static_cast<cudaStream_t>(stream);
    if (g.cta_q != 16 * g.warps_q || (g.warps_q != 8 && g.warps_q != 4) || g.cta_k != CTA_K)
        return sage_fail(msg, SAGE_ERR_UNSUPPORTED, "portable kernel: no build for tiles %d x %d", g.cta_q, g.cta_k);
    if (L->d_pad == 64)
        return g.warps_q == 8 ? dispatch<64, 8>(P, a->batch, fp8, bf16, st, msg) : dispatch<64, 4>(P, a->batch, fp8, bf16, st, msg);
    if (L->d_pad == 128)
        return g.warps_q == 8 ? dispatch<128, 8>(P, a->batch, fp8, bf16, st, msg)
                              : dispatch<128, 4>(P, a->batch, fp8, bf16, st, msg);
    return sage_fail(msg, SAGE_ERR_UNSUPPORTED, "portable kernel: head_dim %lld > 128", (long long)a->head_dim);
}
