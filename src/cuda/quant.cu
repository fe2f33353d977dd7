/* Quantization kernels (quant.h): one reduction pass over K and V, one quantize pass over Q, K
 * and V, plus the smooth-Q bias. Launch order on the stream:
 *   1. reduce   grid (chunks, Hkv, B): per 256-token chunk, column sums of K and V, min/max of V
 *   2. finalize grid (Hkv, B):        k_mean, v_scale, v_mean from the partials, in chunk order
 *   3. quantize grid (Q tiles + KV tiles): Q8/q_scale (+ q_mean), K8/k_scale, V8 transposed
 *   4. qk_bias  (smooth Q only)
 * Every sum has a fixed order (no float atomics): two runs give the same bytes. */
#include "cuda_common.h"
#include "quant.h"
#include "quant_device.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace sage {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr float kFp8Max = 448.0f;

struct QuantParams {
    const void *q, *k, *v;
    int64_t qsb, qsh, qsn, ksb, ksh, ksn, vsb, vsh, vsn; /* element strides */
    int64_t B, Hq, Hkv, Nq, Nk;
    int D, d_pad;
    int64_t nq_pad, nk_pad, n_q_groups, n_k_groups;
    int q_tiles, k_tiles, n_chunks;
    sage_geometry g;
    sage_qk_groups gran;
    bool smooth_k, smooth_q, smooth_v, fp8;
    bool q_vec, k_vec, v_vec;
    int8_t *q8, *k8;
    uint8_t *v8;
    float *q_scale, *k_scale, *k_mean, *v_scale, *v_mean, *q_mean, *qk_bias, *partial;
    float *v_inv; /* [B, Hkv, d_pad] 448 / amax (0 when amax == 0), after the partials in scratch */
};

/* Lane layout shared by all passes: a row of d_pad values is covered by d_pad/8 lanes holding 8
 * consecutive channels each; a warp covers 32/(d_pad/8) rows per step. */
struct RowLanes {
    int lpr, rows_per_step, sub, d0;
    __device__ RowLanes(int d_pad, int lane) {
        lpr = d_pad / 8;
        rows_per_step = 32 / lpr;
        sub = lane / lpr;
        d0 = (lane % lpr) * 8;
    }
};

__device__ __forceinline__ float seg_max(float v, int lpr) {
    for (int off = lpr / 2; off >= 1; off /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}

/* ---- 1. reduction pass ---------------------------------------------------------------------- */
/* partial layout: [B, Hkv, chunks, 4, d_pad] = k sum, v sum, v max, v min. */
template <typename T>
__global__ void __launch_bounds__(kThreads) reduce_kernel(QuantParams P) {
    __shared__ float red[kThreads * 8];
    const int chunk = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int lpr = P.d_pad / 8, rows = kThreads / lpr;
    const int cv = threadIdx.x % lpr, r = threadIdx.x / lpr, d0 = cv * 8;
    const int64_t t_begin = (int64_t)chunk * SAGE_CUDA_REDUCE_CHUNK;
    const int64_t t_end = min(t_begin + SAGE_CUDA_REDUCE_CHUNK, P.Nk);
    const T *kb = static_cast<const T *>(P.k) + b * P.ksb + h * P.ksh;
    const T *vb = static_cast<const T *>(P.v) + b * P.vsb + h * P.vsh;
    float ks[8], vs[8], vmax[8], vmin[8];
#pragma unroll
    for (int i = 0; i < 8; i++) { ks[i] = 0.f; vs[i] = 0.f; vmax[i] = -INFINITY; vmin[i] = INFINITY; }
    for (int64_t t = t_begin + r; t < t_end; t += rows) {
        float x[8];
        if (P.smooth_k) {
            load8(kb + t * P.ksn, d0, P.D, P.k_vec, x);
#pragma unroll
            for (int i = 0; i < 8; i++) ks[i] = __fadd_rn(ks[i], x[i]);
        }
        if (P.fp8) {
            load8(vb + t * P.vsn, d0, P.D, P.v_vec, x);
#pragma unroll
            for (int i = 0; i < 8; i++) {
                vs[i] = __fadd_rn(vs[i], x[i]);
                vmax[i] = fmaxf(vmax[i], x[i]);
                vmin[i] = fminf(vmin[i], x[i]);
            }
        }
    }
    float *out = P.partial + (((int64_t)b * P.Hkv + h) * P.n_chunks + chunk) * 4 * P.d_pad;
#pragma unroll
    for (int a = 0; a < 4; a++) {
#pragma unroll
        for (int i = 0; i < 8; i++)
            red[r * P.d_pad + d0 + i] = a == 0 ? ks[i] : a == 1 ? vs[i] : a == 2 ? vmax[i] : vmin[i];
        __syncthreads();
        for (int d = threadIdx.x; d < P.d_pad; d += kThreads) {
            float acc = red[d];
            for (int j = 1; j < rows; j++) {
                float y = red[j * P.d_pad + d];
                acc = a < 2 ? __fadd_rn(acc, y) : a == 2 ? fmaxf(acc, y) : fminf(acc, y);
            }
            out[a * P.d_pad + d] = acc;
        }
        __syncthreads();
    }
}

/* ---- 2. finalize: one thread per channel ----------------------------------------------------- */
__global__ void finalize_kernel(QuantParams P) {
    const int h = blockIdx.x, b = blockIdx.y;
    const int64_t bh = (int64_t)b * P.Hkv + h;
    for (int d = threadIdx.x; d < P.d_pad; d += blockDim.x) {
        float km = 0.f, vmean = 0.f, vscale = 1.f, vinv = 0.f;
        if (d < P.D) {
            float ks = 0.f, vs = 0.f, vmax = -INFINITY, vmin = INFINITY;
            for (int c = 0; c < P.n_chunks; c++) {
                const float *pc = P.partial + (bh * P.n_chunks + c) * 4 * P.d_pad;
                ks = __fadd_rn(ks, pc[d]);
                vs = __fadd_rn(vs, pc[P.d_pad + d]);
                vmax = fmaxf(vmax, pc[2 * P.d_pad + d]);
                vmin = fminf(vmin, pc[3 * P.d_pad + d]);
            }
            const float n = (float)P.Nk;
            if (P.smooth_k) km = __fdiv_rn(ks, n);
            if (P.fp8) {
                float amax;
                if (P.smooth_v) {
                    vmean = __fdiv_rn(vs, n);
                    /* max |fl(v - mean)| = max(fl(vmax - mean), fl(mean - vmin)): rounding is monotonic. */
                    amax = fmaxf(__fsub_rn(vmax, vmean), __fsub_rn(vmean, vmin));
                } else {
                    amax = fmaxf(fabsf(vmax), fabsf(vmin));
                }
                vscale = amax > 0.f ? __fdiv_rn(amax, kFp8Max) : 1.f;
                vinv = amax > 0.f ? __fdiv_rn(kFp8Max, amax) : 0.f;
            }
        }
        P.k_mean[bh * P.d_pad + d] = km;
        if (P.fp8) {
            P.v_scale[bh * P.d_pad + d] = vscale;
            P.v_mean[bh * P.d_pad + d] = vmean;
            P.v_inv[bh * P.d_pad + d] = vinv;
        }
    }
}

/* ---- 3. quantize ------------------------------------------------------------------------------ */
struct TileSmem {
    int row_group[256];    /* per row of the tile (cta <= 256): its local scale group */
    int gmax[256];         /* per local group: max |x| as int bits (x >= 0 orders like int) */
    float inv[256];        /* per local group: 127 / amax (0 when amax == 0) */
    float mean[256];       /* per channel: the subtracted mean (km or qm) */
};

/* The passes re-read the tile from global memory (the second read hits L2): holding it in
 * registers instead measured slower (190 registers -> one CTA per SM: 0.95 ms vs 0.51 ms for
 * B4 H32 N4K D128 on an H100). */

/* Per-row max |x - mean| over the tile's valid rows into the group maxima (s.gmax). */
template <typename T>
__device__ void tile_row_amax(const T *base, int64_t stride_n, int64_t row0, int rows_valid, int cta, int D,
                              int d_pad, bool vec, bool smooth, TileSmem &s) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    RowLanes L(d_pad, lane);
    for (int rb = warp * L.rows_per_step; rb < cta; rb += kWarps * L.rows_per_step) {
        const int r = rb + L.sub;
        float m = 0.f;
        if (r < rows_valid) {
            float x[8];
            load8(base + (row0 + r) * stride_n, L.d0, D, vec, x);
#pragma unroll
            for (int i = 0; i < 8; i++) {
                float y = smooth ? __fsub_rn(x[i], s.mean[L.d0 + i]) : x[i];
                if (L.d0 + i < D) m = fmaxf(m, fabsf(y));
            }
        }
        m = seg_max(m, L.lpr);
        /* x >= 0 orders like its int bits */
        if (r < rows_valid && L.d0 == 0) atomicMax(&s.gmax[s.row_group[r]], __float_as_int(m));
    }
}

/* Each row's local group (geometry.h map, evaluated once per row) and zeroed group maxima.
 * The caller synchronises before tile_row_amax. */
template <typename GroupOf>
__device__ void tile_groups_init(int cta, int n_groups, GroupOf group_of, TileSmem &s) {
    for (int r = threadIdx.x; r < cta; r += kThreads) s.row_group[r] = group_of(r);
    for (int g = threadIdx.x; g < n_groups; g += kThreads) s.gmax[g] = 0;
}

/* Group amax -> stored scale and the inverse used to quantize. */
__device__ void tile_group_scales(int n_groups, float *scale_out, TileSmem &s) {
    for (int grp = threadIdx.x; grp < n_groups; grp += kThreads) {
        const float amax = __int_as_float(s.gmax[grp]);
        /* The pinned recipe: amax == 0 -> scale 1 and every x8 = 0. */
        s.inv[grp] = amax > 0.f ? __fdiv_rn(127.0f, amax) : 0.f;
        scale_out[grp] = amax > 0.f ? __fdiv_rn(amax, 127.0f) : 1.f;
    }
}

/* Quantize the tile's rows into out (rows of d_pad bytes), zero rows past rows_valid and zero
 * channels past D. */
template <typename T>
__device__ void tile_quantize(const T *base, int64_t stride_n, int64_t row0, int rows_valid, int cta, int D,
                              int d_pad, bool vec, bool smooth, int8_t *out, const TileSmem &s) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    RowLanes L(d_pad, lane);
    for (int rb = warp * L.rows_per_step; rb < cta; rb += kWarps * L.rows_per_step) {
        const int r = rb + L.sub;
        if (r >= cta) continue;
        uint32_t lo = 0, hi = 0;
        if (r < rows_valid) {
            float x[8];
            load8(base + (row0 + r) * stride_n, L.d0, D, vec, x);
            const float inv = s.inv[s.row_group[r]];
            int q[8];
#pragma unroll
            for (int i = 0; i < 8; i++) {
                float y = smooth ? __fsub_rn(x[i], s.mean[L.d0 + i]) : x[i];
                q[i] = L.d0 + i < D ? quant_s8(y, inv) : 0;
            }
            lo = (q[0] & 0xff) | (q[1] & 0xff) << 8 | (q[2] & 0xff) << 16 | (uint32_t)(q[3] & 0xff) << 24;
            hi = (q[4] & 0xff) | (q[5] & 0xff) << 8 | (q[6] & 0xff) << 16 | (uint32_t)(q[7] & 0xff) << 24;
        }
        *reinterpret_cast<uint2 *>(out + (int64_t)r * d_pad + L.d0) = make_uint2(lo, hi);
    }
}

template <typename T>
__device__ void quantize_q_tile(const QuantParams &P, int64_t tile_id, TileSmem &s) {
    const int qt = (int)(tile_id % P.q_tiles);
    const int64_t bh = tile_id / P.q_tiles, b = bh / P.Hq, h = bh % P.Hq;
    const int cta = P.g.cta_q;
    const int64_t row0 = (int64_t)qt * cta;
    const int rows_valid = (int)min((int64_t)cta, P.Nq - row0);
    const T *base = static_cast<const T *>(P.q) + b * P.qsb + h * P.qsh;

    if (P.smooth_q) {
        /* Block mean over the valid rows, summed in row order (one thread per channel). */
        float *qm_out = P.q_mean + (bh * (P.nq_pad / cta) + qt) * P.d_pad;
        for (int d = threadIdx.x; d < P.d_pad; d += kThreads) {
            float acc = 0.f;
            if (d < P.D) {
                for (int r = 0; r < rows_valid; r++) acc = __fadd_rn(acc, to_float(base[(row0 + r) * P.qsn + d]));
                acc = __fdiv_rn(acc, (float)rows_valid);
            }
            s.mean[d] = acc;
            qm_out[d] = acc;
        }
        __syncthreads();
    }
    const int64_t gpt = sage_q_group_count(P.g, P.gran, cta); /* groups per tile */
    tile_groups_init(cta, (int)gpt, [&](int r) { return (int)(sage_q_group(P.g, P.gran, row0 + r) - qt * gpt); }, s);
    __syncthreads();
    tile_row_amax(base, P.qsn, row0, rows_valid, cta, P.D, P.d_pad, P.q_vec, P.smooth_q, s);
    __syncthreads();
    tile_group_scales((int)gpt, P.q_scale + bh * P.n_q_groups + qt * gpt, s);
    __syncthreads();
    tile_quantize(base, P.qsn, row0, rows_valid, cta, P.D, P.d_pad, P.q_vec, P.smooth_q, P.q8 + (bh * P.nq_pad + row0) * P.d_pad, s);
}

template <typename T>
__device__ void quantize_kv_tile(const QuantParams &P, int64_t tile_id, TileSmem &s, uint8_t *vt) {
    const int kt = (int)(tile_id % P.k_tiles);
    const int64_t bh = tile_id / P.k_tiles, b = bh / P.Hkv, h = bh % P.Hkv;
    const int cta = P.g.cta_k;
    const int64_t t0 = (int64_t)kt * cta;
    const int rows_valid = (int)min((int64_t)cta, P.Nk - t0);
    const T *kbase = static_cast<const T *>(P.k) + b * P.ksb + h * P.ksh;

    const int64_t gpt = sage_k_group_count(P.g, P.gran, cta);
    for (int d = threadIdx.x; d < P.d_pad; d += kThreads) s.mean[d] = P.k_mean[bh * P.d_pad + d];
    tile_groups_init(cta, (int)gpt, [&](int r) { return (int)(sage_k_group(P.g, P.gran, t0 + r) - kt * gpt); }, s);
    __syncthreads();
    tile_row_amax(kbase, P.ksn, t0, rows_valid, cta, P.D, P.d_pad, P.k_vec, P.smooth_k, s);
    __syncthreads();
    /* With k_block < cta_k the last tile's groups can run past n_k_groups (blocks wholly in the
     * padding): those have no slot. */
    tile_group_scales((int)min(gpt, P.n_k_groups - kt * gpt), P.k_scale + bh * P.n_k_groups + kt * gpt, s);
    __syncthreads();
    tile_quantize(kbase, P.ksn, t0, rows_valid, cta, P.D, P.d_pad, P.k_vec, P.smooth_k, P.k8 + (bh * P.nk_pad + t0) * P.d_pad, s);
    if (!P.fp8) return;

    /* V: e4m3((v - vm) * (448 / amax)) written transposed and permuted into vt[d][position], then stored as
     * rows of cta bytes. Padding tokens and channels are 0. */
    const T *vbase = static_cast<const T *>(P.v) + b * P.vsb + h * P.vsh;
    const float *vinv = P.v_inv + bh * P.d_pad, *vmn = P.v_mean + bh * P.d_pad;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    /* Row stride cta + 4 bytes: lanes 8 channels apart land 8 * (cta + 4) bytes apart, which
     * spreads their byte stores over 4 banks more than a stride of cta (all in one bank). */
    const int vstride = cta + 4;
    RowLanes L(P.d_pad, lane);
    for (int rb = warp * L.rows_per_step; rb < cta; rb += kWarps * L.rows_per_step) {
        const int r = rb + L.sub;
        if (r >= cta) continue;
        float x[8];
        if (r < rows_valid) {
            load8(vbase + (t0 + r) * P.vsn, L.d0, P.D, P.v_vec, x);
#pragma unroll
            for (int i = 0; i < 8; i++) {
                const int d = L.d0 + i;
                /* as the spec: vm is 0 when smooth V is off, and x - 0 = x exactly */
                x[i] = d < P.D && vinv[d] > 0.f ? __fmul_rn(__fsub_rn(x[i], vmn[d]), vinv[d]) : 0.f;
            }
        } else {
#pragma unroll
            for (int i = 0; i < 8; i++) x[i] = 0.f;
        }
        const int pos = (r & ~15) + sage_vt_position(r & 15);
#pragma unroll
        for (int i = 0; i < 8; i += 2) {
            uint32_t pr = e4m3x2(x[i + 1], x[i]);
            vt[(L.d0 + i) * vstride + pos] = (uint8_t)(pr & 0xff);
            vt[(L.d0 + i + 1) * vstride + pos] = (uint8_t)(pr >> 8);
        }
    }
    __syncthreads();
    uint8_t *vout = P.v8 + bh * P.d_pad * P.nk_pad + t0;
    const int words = cta / 4;
    for (int i = threadIdx.x; i < P.d_pad * words; i += kThreads) {
        const int d = i / words, c = i % words;
        *reinterpret_cast<uint32_t *>(vout + d * P.nk_pad + c * 4) =
            *reinterpret_cast<const uint32_t *>(vt + d * vstride + c * 4);
    }
}

template <typename T>
__global__ void __launch_bounds__(kThreads, 1) quantize_kernel(QuantParams P) {
    __shared__ TileSmem s;
    extern __shared__ __align__(16) uint8_t vt[]; /* d_pad x (cta_k + 4) bytes, FP8 PV only */
    const int64_t n_q = (int64_t)P.B * P.Hq * P.q_tiles;
    const int64_t id = blockIdx.x;
    if (id < n_q) quantize_q_tile<T>(P, id, s);
    else quantize_kv_tile<T>(P, id - n_q, s, vt);
}

/* ---- 4. smooth-Q bias: qk_bias[b,h,qb,t] = sum_d qm[d] * (k[t][d] - km[d]); one warp per key ---- */
template <typename T>
__global__ void __launch_bounds__(kThreads) qk_bias_kernel(QuantParams P) {
    const int qb = blockIdx.y;
    const int64_t bh = blockIdx.z, b = bh / P.Hq, h = bh % P.Hq;
    const int64_t hkv = h / (P.Hq / P.Hkv);
    const int n_qb = (int)(P.nq_pad / P.g.cta_q);
    const float *qm = P.q_mean + (bh * n_qb + qb) * P.d_pad;
    const float *km = P.k_mean + (b * P.Hkv + hkv) * P.d_pad;
    const T *kb = static_cast<const T *>(P.k) + b * P.ksb + hkv * P.ksh;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t t = (int64_t)blockIdx.x * kWarps + warp;
    if (t >= P.nk_pad) return;
    float acc = 0.f;
    if (t < P.Nk)
        for (int d = lane; d < P.D; d += 32)
            acc = __fadd_rn(acc, __fmul_rn(qm[d], __fsub_rn(to_float(kb[t * P.ksn + d]), km[d])));
    for (int off = 16; off >= 1; off /= 2) acc = __fadd_rn(acc, __shfl_xor_sync(0xffffffffu, acc, off));
    if (lane == 0) P.qk_bias[(bh * n_qb + qb) * P.nk_pad + t] = acc;
}

bool vec_ok(const void *ptr, int64_t sb, int64_t sh, int64_t sn) {
    /* 16-byte loads need a 16-B aligned base and every stride a multiple of 8 (2-byte) elements. */
    return ((uintptr_t)ptr % 16) == 0 && sb % 8 == 0 && sh % 8 == 0 && sn % 8 == 0;
}

template <typename T>
sage_status launch_all(const QuantParams &P, cudaStream_t st, sage_msg msg) {
    if (P.smooth_k || P.fp8) {
        reduce_kernel<T><<<dim3(P.n_chunks, (unsigned)P.Hkv, (unsigned)P.B), kThreads, 0, st>>>(P);
        if (sage_status s = sage_cuda_check_launch("sage quant reduce", msg)) return s;
    }
    finalize_kernel<<<dim3((unsigned)P.Hkv, (unsigned)P.B), P.d_pad, 0, st>>>(P);
    if (sage_status s = sage_cuda_check_launch("sage quant finalize", msg)) return s;
    const int64_t blocks = P.B * P.Hq * P.q_tiles + P.B * P.Hkv * P.k_tiles;
    const size_t vt_bytes = P.fp8 ? (size_t)P.d_pad * (P.g.cta_k + 4) : 0;
    if (vt_bytes > 48 * 1024)
        SAGE_CUDA_TRY(cudaFuncSetAttribute(quantize_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           (int)vt_bytes),
                      "cudaFuncSetAttribute(quantize)", msg);
    quantize_kernel<T><<<(unsigned)blocks, kThreads, vt_bytes, st>>>(P);
    if (sage_status s = sage_cuda_check_launch("sage quantize", msg)) return s;
    if (P.smooth_q) {
        dim3 grid((unsigned)((P.nk_pad + kWarps - 1) / kWarps), (unsigned)(P.nq_pad / P.g.cta_q),
                  (unsigned)(P.B * P.Hq));
        qk_bias_kernel<T><<<grid, kThreads, 0, st>>>(P);
        if (sage_status s = sage_cuda_check_launch("sage quant qk_bias", msg)) return s;
    }
    return SAGE_OK;
}

} // namespace
} // namespace sage

static size_t take(size_t *cursor, size_t bytes) {
    size_t off = *cursor;
    *cursor = sage_align_ws(off + bytes);
    return off;
}

extern "C" void sage_cuda_quant_layout_init(const sage_problem *p, sage_geometry g, int64_t d_pad,
                                            sage_cuda_quant_layout *L) {
    const sage_args *a = &p->a;
    const int64_t B = a->batch, Hq = a->heads_q, Hkv = a->heads_kv;
    L->nq_pad = sage_round_up(a->seqlen_q, g.cta_q);
    L->nk_pad = sage_round_up(a->seqlen_kv, g.cta_k);
    L->d_pad = d_pad;
    L->n_q_groups = sage_q_group_count(g, p->qk_groups, a->seqlen_q);
    L->n_k_groups = sage_k_group_count(g, p->qk_groups, a->seqlen_kv);
    const bool fp8 = p->pv == SAGE_PV_FP8;
    const int64_t n_qb = L->nq_pad / g.cta_q;
    const int64_t chunks = (a->seqlen_kv + SAGE_CUDA_REDUCE_CHUNK - 1) / SAGE_CUDA_REDUCE_CHUNK;
    size_t c = 0;
    L->off_q8 = take(&c, (size_t)(B * Hq * L->nq_pad * d_pad));
    L->off_q_scale = take(&c, sizeof(float) * (size_t)(B * Hq * L->n_q_groups));
    L->off_k8 = take(&c, (size_t)(B * Hkv * L->nk_pad * d_pad));
    L->off_k_scale = take(&c, sizeof(float) * (size_t)(B * Hkv * L->n_k_groups));
    L->off_k_mean = take(&c, sizeof(float) * (size_t)(B * Hkv * d_pad));
    L->off_v8 = take(&c, fp8 ? (size_t)(B * Hkv * d_pad * L->nk_pad) : 0);
    L->off_v_scale = take(&c, fp8 ? sizeof(float) * (size_t)(B * Hkv * d_pad) : 0);
    L->off_v_mean = take(&c, fp8 ? sizeof(float) * (size_t)(B * Hkv * d_pad) : 0);
    L->off_q_mean = take(&c, p->smooth_q ? sizeof(float) * (size_t)(B * Hq * n_qb * d_pad) : 0);
    L->off_qk_bias = take(&c, p->smooth_q ? sizeof(float) * (size_t)(B * Hq * n_qb * L->nk_pad) : 0);
    L->off_scratch = take(&c, sizeof(float) * (size_t)(B * Hkv * (chunks * 4 + 1) * d_pad));
    L->total = c;
}

extern "C" sage_status sage_cuda_quantize(const sage_problem *p, sage_geometry g, const sage_cuda_quant_layout *L,
                                          void *ws, void *stream, sage_msg msg) {
    using namespace sage;
    const sage_args *a = &p->a;
    if (L->d_pad % 64 != 0 || L->d_pad > 256 || L->d_pad < a->head_dim || g.cta_q > 256 || g.cta_k > 256 ||
        g.cta_k % 16 != 0)
        return sage_fail(msg, SAGE_ERR_UNSUPPORTED, "quantization: unsupported geometry (d_pad %lld, tiles %d x %d)",
                         (long long)L->d_pad, g.cta_q, g.cta_k);
    if (a->dtype != SAGE_DTYPE_FP16 && a->dtype != SAGE_DTYPE_BF16)
        return sage_fail(msg, SAGE_ERR_UNSUPPORTED, "CUDA path: inputs must be fp16 or bf16");
    uint8_t *w = static_cast<uint8_t *>(ws);
    QuantParams P{};
    P.q = a->q; P.k = a->k; P.v = a->v;
    P.qsb = a->q_stride_b; P.qsh = a->q_stride_h; P.qsn = a->q_stride_n;
    P.ksb = a->k_stride_b; P.ksh = a->k_stride_h; P.ksn = a->k_stride_n;
    P.vsb = a->v_stride_b; P.vsh = a->v_stride_h; P.vsn = a->v_stride_n;
    P.B = a->batch; P.Hq = a->heads_q; P.Hkv = a->heads_kv; P.Nq = a->seqlen_q; P.Nk = a->seqlen_kv;
    P.D = (int)a->head_dim; P.d_pad = (int)L->d_pad;
    P.nq_pad = L->nq_pad; P.nk_pad = L->nk_pad; P.n_q_groups = L->n_q_groups; P.n_k_groups = L->n_k_groups;
    P.q_tiles = (int)(L->nq_pad / g.cta_q);
    P.k_tiles = (int)(L->nk_pad / g.cta_k);
    P.n_chunks = (int)((a->seqlen_kv + SAGE_CUDA_REDUCE_CHUNK - 1) / SAGE_CUDA_REDUCE_CHUNK);
    P.g = g; P.gran = p->qk_groups;
    P.smooth_k = p->smooth_k; P.smooth_q = p->smooth_q; P.fp8 = p->pv == SAGE_PV_FP8;
    P.smooth_v = P.fp8 && p->smooth_v;
    P.q_vec = vec_ok(a->q, a->q_stride_b, a->q_stride_h, a->q_stride_n);
    P.k_vec = vec_ok(a->k, a->k_stride_b, a->k_stride_h, a->k_stride_n);
    P.v_vec = vec_ok(a->v, a->v_stride_b, a->v_stride_h, a->v_stride_n);
    P.q8 = reinterpret_cast<int8_t *>(w + L->off_q8);
    P.k8 = reinterpret_cast<int8_t *>(w + L->off_k8);
    P.v8 = w + L->off_v8;
    P.q_scale = reinterpret_cast<float *>(w + L->off_q_scale);
    P.k_scale = reinterpret_cast<float *>(w + L->off_k_scale);
    P.k_mean = reinterpret_cast<float *>(w + L->off_k_mean);
    P.v_scale = reinterpret_cast<float *>(w + L->off_v_scale);
    P.v_mean = reinterpret_cast<float *>(w + L->off_v_mean);
    P.q_mean = reinterpret_cast<float *>(w + L->off_q_mean);
    P.qk_bias = reinterpret_cast<float *>(w + L->off_qk_bias);
    P.partial = reinterpret_cast<float *>(w + L->off_scratch);
    P.v_inv = P.partial + (size_t)P.B * P.Hkv * P.n_chunks * 4 * P.d_pad;
    cudaStream_t st = static_cast<cudaStream_t>(stream);
    return a->dtype == SAGE_DTYPE_FP16 ? launch_all<__half>(P, st, msg) : launch_all<__nv_bfloat16>(P, st, msg);
}
