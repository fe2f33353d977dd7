/* Quantization kernels (quant.h): one reduction pass over K and V, one quantize pass over Q, K
 * and V, plus the smooth-Q bias. Launch order on the stream (the split path):
 *   1. reduce   grid (chunks, Hkv, B): per 256-token chunk, column sums of K and V, min/max of V
 *   2. finalize grid (Hkv, B):        k_mean, v_scale, v_mean from the partials, in chunk order
 *   3. quantize grid (Q tiles + K tiles + V blocks): Q8/q_scale (+ q_mean), K8/k_scale, V8 transposed;
 *      no Q tiles when the layout has no Q8 (L->q8 = 0: the Hopper kernel quantizes Q itself)
 *   4. qk_bias  (smooth Q only)
 * Heads short enough for one thread block cluster (L->kv_cluster > 0, sm_90+) take the one-pass
 * path instead: 1-3 for K and V as one grid of clusters (kv_one_pass_kernel: every input byte read
 * once), the Q tiles, if any, as a quantize grid of Q tiles only; then 4. In its concurrent mode
 * (the Hopper 64-row kernel) the attention grid starts beside it and waits per head (quant.h).
 * On sm_90+ launches 2 and 3 use programmatic dependent launch: they start while their predecessor
 * drains, Q tiles (which need nothing of 1-2) run at once, finalize and the K/V blocks wait in the
 * kernel (griddepcontrol.wait). Every sum has a fixed order (no float atomics): two runs give the
 * same bytes. Timings and the versions tried: docs/perf-log.md, "Quantization". */
#include "cuda_common.h"
#include "mma_ptx.cuh"
#include "quant.h"
#include "quant_device.cuh"

#include <cfloat>
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
    int64_t v_blocks_per_head, n_v_blocks, n_k_blocks, n_q_blocks; /* quantize launch: Q tiles, then K tiles and
                                                                      V blocks head by head */
    bool pdl; /* sm_90+: finalize and quantize launched with programmatic stream serialization */
    int kv_cluster, kv_chunk; /* one-pass path (kv_cluster > 0): CTAs per head and tokens per CTA */
    int *kv_ready;            /* one-pass concurrent mode: per-head counters; else nullptr */
    /* Local scale group of each row of a Q tile / K tile (geometry.h maps, evaluated on the host: the maps
     * repeat from tile to tile, group(tile * cta + r) = tile * groups_per_tile + group(r)). */
    uint8_t q_row_group[256], k_row_group[256];
    sage_geometry g;
    sage_qk_groups gran;
    bool smooth_k, smooth_q, smooth_v, fp8;
    bool q_vec, k_vec, v_vec;
    int8_t *q8, *k8;
    uint8_t *v8;
    float *q_scale, *k_scale, *k_mean, *v_scale, *v_mean, *q_mean, *qk_bias, *partial;
    float *v_inv; /* [B, Hkv, d_pad] 448 / amax (0 when amax == 0), after the partials in scratch */
};

/* max over the aligned segments of LPR lanes (a power of two <= 32) */
template <int LPR> __device__ __forceinline__ float seg_max(float v) {
#pragma unroll
    for (int off = LPR / 2; off >= 1; off /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}

/* ---- 1. reduction pass ---------------------------------------------------------------------- */
/* partial layout: [B, Hkv, chunks, 4, d_pad] = k sum, v sum, v max, v min.
 * Each thread owns 8 channels of every (kThreads / lpr)-th token and sums its tokens in token
 * order; kReduceUnroll tokens' loads are issued before the first is used (memory parallelism). The
 * per-thread partials then meet in shared memory (one barrier) and are combined in row order. */
constexpr int kReduceUnroll = 4;

template <typename T>
__global__ void __launch_bounds__(kThreads, 2) reduce_kernel(QuantParams P) {
    __shared__ float red[4][kThreads * 8]; /* [quantity][row * d_pad + channel]: rows * d_pad = kThreads * 8 */
    griddep_launch_dependents(); /* finalize may be scheduled now; it waits for this grid's end */
    const int chunk = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int lpr = P.d_pad / 8, rows = kThreads / lpr;
    const int cv = threadIdx.x % lpr, r = threadIdx.x / lpr, d0 = cv * 8;
    const int64_t t_begin = (int64_t)chunk * SAGE_CUDA_REDUCE_CHUNK;
    const int64_t t_end = min(t_begin + SAGE_CUDA_REDUCE_CHUNK, P.Nk);
    const T *kb = static_cast<const T *>(P.k) + b * P.ksb + h * P.ksh;
    const T *vb = static_cast<const T *>(P.v) + b * P.vsb + h * P.vsh;
    const bool do_k = P.smooth_k, do_v = P.fp8;
    float ks[8], vs[8], vmax[8], vmin[8];
#pragma unroll
    for (int i = 0; i < 8; i++) { ks[i] = 0.f; vs[i] = 0.f; vmax[i] = -INFINITY; vmin[i] = INFINITY; }
    for (int64_t tb = t_begin + r; tb < t_end; tb += kReduceUnroll * rows) {
        uint4 kr[kReduceUnroll], vr[kReduceUnroll];
#pragma unroll
        for (int u = 0; u < kReduceUnroll; u++) {
            const int64_t t = tb + (int64_t)u * rows;
            kr[u] = vr[u] = make_uint4(0, 0, 0, 0);
            if (t < t_end) {
                if (do_k) kr[u] = load8_raw(kb + t * P.ksn, d0, P.D, P.k_vec);
                if (do_v) vr[u] = load8_raw(vb + t * P.vsn, d0, P.D, P.v_vec);
            }
        }
#pragma unroll
        for (int u = 0; u < kReduceUnroll; u++) {
            if (tb + (int64_t)u * rows >= t_end) break;
            if (do_k) {
#pragma unroll
                for (int i = 0; i < 8; i++) ks[i] = __fadd_rn(ks[i], raw_elem<T>(kr[u], i));
            }
            if (do_v) {
#pragma unroll
                for (int i = 0; i < 8; i++) {
                    const float x = raw_elem<T>(vr[u], i);
                    vs[i] = __fadd_rn(vs[i], x);
                    vmax[i] = fmaxf(vmax[i], x);
                    vmin[i] = fminf(vmin[i], x);
                }
            }
        }
    }
    float *out = P.partial + (((int64_t)b * P.Hkv + h) * P.n_chunks + chunk) * 4 * P.d_pad;
#pragma unroll
    for (int i = 0; i < 8; i++) {
        const int o = r * P.d_pad + d0 + i;
        red[0][o] = ks[i]; red[1][o] = vs[i]; red[2][o] = vmax[i]; red[3][o] = vmin[i];
    }
    __syncthreads();
    for (int o = threadIdx.x; o < 4 * P.d_pad; o += kThreads) {
        const int a = o / P.d_pad, d = o % P.d_pad;
        const float *col = &red[a][d];
        float acc = col[0];
        for (int j = 1; j < rows; j++) {
            const float y = col[j * P.d_pad];
            acc = a < 2 ? __fadd_rn(acc, y) : a == 2 ? fmaxf(acc, y) : fminf(acc, y);
        }
        out[o] = acc;
    }
}

/* ---- 2. finalize: one thread per channel ----------------------------------------------------- */
/* A channel's statistics from its column sums of K and V and the extrema of V over the Nk tokens
 * (channels d >= D keep the defaults: mean 0, V scale 1, V multiplier 0). */
struct ChannelStats {
    float km = 0.f, vmean = 0.f, vscale = 1.f, vinv = 0.f;
};
__device__ __forceinline__ ChannelStats channel_stats(const QuantParams &P, int d, float ks, float vs, float vmax,
                                                      float vmin) {
    ChannelStats r;
    if (d >= P.D) return r;
    const float n = (float)P.Nk;
    if (P.smooth_k) r.km = __fdiv_rn(ks, n);
    if (P.fp8) {
        float amax;
        if (P.smooth_v) {
            r.vmean = __fdiv_rn(vs, n);
            /* max |fl(v - mean)| = max(fl(vmax - mean), fl(mean - vmin)): rounding is monotonic. */
            amax = fmaxf(__fsub_rn(vmax, r.vmean), __fsub_rn(r.vmean, vmin));
        } else {
            amax = fmaxf(fabsf(vmax), fabsf(vmin));
        }
        r.vscale = amax > 0.f ? __fdiv_rn(amax, kFp8Max) : 1.f;
        r.vinv = amax > 0.f ? __fdiv_rn(kFp8Max, amax) : 0.f;
    }
    return r;
}

__global__ void finalize_kernel(QuantParams P) {
    griddep_wait();              /* the partials of reduce_kernel */
    griddep_launch_dependents(); /* the quantize grid's Q tiles need nothing of this one */
    const int h = blockIdx.x, b = blockIdx.y;
    const int64_t bh = (int64_t)b * P.Hkv + h;
    for (int d = threadIdx.x; d < P.d_pad; d += blockDim.x) {
        float ks = 0.f, vs = 0.f, vmax = -INFINITY, vmin = INFINITY;
        for (int c = 0; c < P.n_chunks; c++) {
            const float *pc = P.partial + (bh * P.n_chunks + c) * 4 * P.d_pad;
            ks = __fadd_rn(ks, pc[d]);
            vs = __fadd_rn(vs, pc[P.d_pad + d]);
            vmax = fmaxf(vmax, pc[2 * P.d_pad + d]);
            vmin = fminf(vmin, pc[3 * P.d_pad + d]);
        }
        const ChannelStats st = channel_stats(P, d, ks, vs, vmax, vmin);
        P.k_mean[bh * P.d_pad + d] = st.km;
        if (P.fp8) {
            P.v_scale[bh * P.d_pad + d] = st.vscale;
            P.v_mean[bh * P.d_pad + d] = st.vmean;
            P.v_inv[bh * P.d_pad + d] = st.vinv;
        }
    }
}

/* ---- 3. quantize ------------------------------------------------------------------------------ */
/* One launch, three kinds of block: Q tiles, then per head its K tiles (cta rows each) and its V
 * blocks (kThreads * 32 / d_pad tokens). Every block stages its input once in shared memory
 * (cp.async, no registers held while the loads are in flight, so 6 blocks fit on an SM); a Q or K
 * tile takes its group maxima there and is quantized from there: one global read. A V block's
 * threads each take 16 tokens x 2 channels and write 2 channel rows of 16 permuted e4m3 bytes
 * (one 16-byte store each). */
struct TileSmem {
    int row_group[256];    /* per row of the tile (cta <= 256): its local scale group */
    int gmax[256];         /* per local group: max |x| as int bits (x >= 0 orders like int) */
    float inv[256];        /* per local group: 127 / amax (0 when amax == 0) */
    float mean[256];       /* per channel: the subtracted mean (km or qm) */
};

/* Each row's local group (from the host's table) and zeroed group maxima.
 * The caller synchronises before rows_tile. */
__device__ void tile_groups_init(int cta, int n_groups, const uint8_t *row_group, TileSmem &s) {
    for (int r = threadIdx.x; r < cta; r += kThreads) s.row_group[r] = row_group[r];
    for (int g = threadIdx.x; g < n_groups; g += kThreads) s.gmax[g] = 0;
}

/* Group amax -> stored scale and the inverse used to quantize. */
__device__ void tile_group_scales(int n_groups, float *scale_out, TileSmem &s) {
    for (int grp = threadIdx.x; grp < n_groups; grp += kThreads) {
        const float amax = __int_as_float(s.gmax[grp]);
        s.inv[grp] = int8_inv(amax);
        scale_out[grp] = int8_scale(amax);
    }
}

/* Stage rows row0 .. row0 + rows_valid - 1 (rows_valid <= n_rows) of a slice with row stride stride_n
 * in shared memory: tile[r][d] for d < DP (the padded head dim), channels >= D as 0 (the quantizers
 * below rely on it: a zero channel with a zero mean quantizes to 0 with no test). cp.async, 16 bytes a thread, all in
 * flight at once; thread t stages channels d0 .. d0+7 (d0 = 8 (t % lpr)) of rows t / lpr + i R
 * (R = kThreads / lpr). Only issues the copies: the caller waits for them (cp.async.wait_all or a
 * commit group) and synchronises the block. */
template <typename T, int DP>
__device__ __forceinline__ void stage_rows(const T *base, int64_t stride_n, int64_t row0, int rows_valid, int n_rows,
                                           int D, bool vec, T *tile) {
    constexpr int lpr = DP / 8, R = kThreads / lpr;
    const int rsub = threadIdx.x / lpr, d0 = (threadIdx.x % lpr) * 8;
    const int per_thread = (n_rows + R - 1) / R;
    const T *src = base + (row0 + rsub) * stride_n;
    const int64_t step = (int64_t)R * stride_n;
    T *dst = tile + rsub * DP + d0;
#pragma unroll 1
    for (int i = 0; i < per_thread; i++, src += step, dst += R * DP) {
        if (rsub + i * R >= rows_valid) break;
        if (vec && d0 + 8 <= D) cp_async16(dst, src + d0);
        else *reinterpret_cast<uint4 *>(dst) = load8_raw(src, d0, D, vec);
    }
}

/* INT8-quantize the cta rows of a staged tile (rows >= rows_valid written as 0; channels >= D are
 * staged as 0 with mean 0, so they quantize to 0) into out (rows of DP bytes), scales of the first
 * n_scales local groups into scale_out. Thread t owns channels d0 .. d0+7 (d0 = 8 (t % lpr)) of rows
 * t / lpr + i R (R = kThreads / lpr). The group maxima and the quantization both read the tile in
 * shared memory, so a block holds few registers. Needs the staged tile, s.row_group, zeroed s.gmax and
 * s.mean (when smooth), synchronised.
 * The pinned recipe x8 = clamp(rne(y * inv), -127, 127) without its clamp: |fl(y * fl(127 / amax))|
 * <= 127 (1 + 2^-24)^2 < 127.5 for |y| <= amax, so rne never leaves [-127, 127]; the low byte of
 * rne_bits is then the int8 of q: three byte permutes pack four. */
template <typename T, int DP>
__device__ __forceinline__ void quantize_staged_rows(const T *tile, int rows_valid, int cta, bool smooth, int n_scales,
                                                     float *scale_out, int8_t *out, TileSmem &s) {
    constexpr int lpr = DP / 8, R = kThreads / lpr;
    const int rsub = threadIdx.x / lpr, d0 = (threadIdx.x % lpr) * 8;
    const int per_thread = (cta + R - 1) / R;
    float mean[8]; /* as the spec: 0 when not smoothing, and x - 0 = x exactly */
#pragma unroll
    for (int j = 0; j < 8; j++) mean[j] = smooth ? s.mean[d0 + j] : 0.f;
    const T *row = tile + rsub * DP + d0;
#pragma unroll 1
    for (int i = 0; i < per_thread; i++, row += R * DP) {
        const int r = rsub + i * R;
        float m = 0.f;
        if (r < rows_valid) {
            const uint4 raw = *reinterpret_cast<const uint4 *>(row);
#pragma unroll
            for (int j = 0; j < 8; j++) m = fmaxf(m, fabsf(__fsub_rn(raw_elem<T>(raw, j), mean[j])));
        }
        m = seg_max<lpr>(m);
        /* x >= 0 orders like its int bits */
        if (r < rows_valid && d0 == 0) atomicMax(&s.gmax[s.row_group[r]], __float_as_int(m));
    }
    __syncthreads();
    tile_group_scales(n_scales, scale_out, s);
    __syncthreads();
    int8_t *dst = out + (int64_t)rsub * DP + d0;
    row = tile + rsub * DP + d0;
#pragma unroll 1
    for (int i = 0; i < per_thread; i++, dst += R * DP, row += R * DP) {
        const int r = rsub + i * R;
        if (r >= cta) break;
        uint32_t lo = 0, hi = 0;
        if (r < rows_valid) {
            const uint4 raw = *reinterpret_cast<const uint4 *>(row);
            const float inv = s.inv[s.row_group[r]];
            uint32_t b[8]; /* q in the low byte */
            if (inv <= FLT_MAX) {
#pragma unroll
                for (int j = 0; j < 8; j++) b[j] = rne_bits(__fmul_rn(__fsub_rn(raw_elem<T>(raw, j), mean[j]), inv));
            } else {
                /* amax < 127 / FLT_MAX (a group of tiny bf16 values): the products overflow; the
                 * recipe clamps +-Inf to +-127 and takes NaN (0 * Inf) as 0 */
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    const float x = __fmul_rn(__fsub_rn(raw_elem<T>(raw, j), mean[j]), inv);
                    b[j] = rne_bits(x != x ? 0.f : fminf(fmaxf(x, -127.f), 127.f));
                }
            }
            lo = __byte_perm(__byte_perm(b[0], b[1], 0x0040), __byte_perm(b[2], b[3], 0x0040), 0x5410);
            hi = __byte_perm(__byte_perm(b[4], b[5], 0x0040), __byte_perm(b[6], b[7], 0x0040), 0x5410);
        }
        *reinterpret_cast<uint2 *>(dst) = make_uint2(lo, hi);
    }
}

/* A Q or K tile of a quantize block: staged once (so 6 blocks fit on an SM), then quantized from
 * shared memory (tile = cta x DP elements). */
template <typename T, int DP>
__device__ void rows_tile(const T *base, int64_t stride_n, int64_t row0, int rows_valid, int cta, int D, bool vec,
                          bool smooth, int n_scales, float *scale_out, int8_t *out, TileSmem &s, T *tile) {
    stage_rows<T, DP>(base, stride_n, row0, rows_valid, cta, D, vec, tile);
    cp_async_wait_all();
    __syncthreads();
    quantize_staged_rows<T, DP>(tile, rows_valid, cta, smooth, n_scales, scale_out, out, s);
}

/* Which (batch, head) and which tile of it block `id` works on; ids < 2^31 (grid.x), so the
 * divisions are 32-bit. */
struct TileCoord {
    int64_t bh, b, h;
    int tile;
};
__device__ __forceinline__ TileCoord tile_coord(int64_t id, int tiles_per_head, int heads) {
    const uint32_t id32 = (uint32_t)id, bh32 = id32 / (uint32_t)tiles_per_head;
    return {(int64_t)bh32, (int64_t)(bh32 / (uint32_t)heads), (int64_t)(bh32 % (uint32_t)heads),
            (int)(id32 - bh32 * (uint32_t)tiles_per_head)};
}

template <typename T, int DP>
__device__ void quantize_q_tile(const QuantParams &P, int64_t tile_id, TileSmem &s, T *tile) {
    const TileCoord tc = tile_coord(tile_id, P.q_tiles, P.Hq);
    const int qt = tc.tile;
    const int64_t bh = tc.bh, b = tc.b, h = tc.h;
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
    }
    const int64_t gpt = sage_q_group_count(P.g, P.gran, cta); /* groups per tile */
    tile_groups_init(cta, (int)gpt, P.q_row_group, s);
    __syncthreads();
    rows_tile<T, DP>(base, P.qsn, row0, rows_valid, cta, P.D, P.q_vec, P.smooth_q, (int)gpt,
                     P.q_scale + bh * P.n_q_groups + qt * gpt, P.q8 + (bh * P.nq_pad + row0) * DP, s, tile);
}

/* K tile kt of head bh, staged in tile (cta_k x DP), into K8 and k_scale. Needs s.mean (the head's
 * k_mean) when smoothing, and the block synchronised after the staging. */
template <typename T, int DP>
__device__ __forceinline__ void quantize_staged_k_tile(const QuantParams &P, int64_t bh, int kt, const T *tile,
                                                       TileSmem &s) {
    const int cta = P.g.cta_k;
    const int64_t t0 = (int64_t)kt * cta;
    const int64_t gpt = sage_k_group_count(P.g, P.gran, cta);
    tile_groups_init(cta, (int)gpt, P.k_row_group, s);
    __syncthreads();
    /* With k_block < cta_k the last tile's groups can run past n_k_groups (blocks wholly in the
     * padding): those have no slot. */
    quantize_staged_rows<T, DP>(tile, (int)min((int64_t)cta, P.Nk - t0), cta, P.smooth_k,
                                (int)min(gpt, P.n_k_groups - kt * gpt), P.k_scale + bh * P.n_k_groups + kt * gpt,
                                P.k8 + (bh * P.nk_pad + t0) * DP, s);
}

template <typename T, int DP>
__device__ void quantize_k_tile(const QuantParams &P, int64_t tile_id, TileSmem &s, T *tile) {
    const TileCoord tc = tile_coord(tile_id, P.k_tiles, P.Hkv);
    const int cta = P.g.cta_k;
    const int64_t t0 = (int64_t)tc.tile * cta;
    stage_rows<T, DP>(static_cast<const T *>(P.k) + tc.b * P.ksb + tc.h * P.ksh, P.ksn, t0,
                      (int)min((int64_t)cta, P.Nk - t0), cta, P.D, P.k_vec, tile);
    griddep_wait(); /* k_mean of finalize_kernel (this grid may start before it ends): the loads overlap it */
    for (int d = threadIdx.x; d < DP; d += kThreads) s.mean[d] = P.k_mean[tc.bh * DP + d];
    cp_async_wait_all();
    quantize_staged_k_tile<T, DP>(P, tc.bh, tc.tile, tile, s);
}

/* V: e4m3((v - vm) * (448 / amax)) into V8[d][position] (geometry.h sage_vt_offset). Positions
 * 4j .. 4j+3 of a 16-token group hold tokens 2j, 2j+1, 2j+8, 2j+9, so word j of a channel row is
 * e4m3x2 of tokens (2j, 2j+1) | e4m3x2 of tokens (2j+8, 2j+9) << 16: one 16-byte store per channel row.
 * One thread, one 16-token group (the first nvalid tokens real, the rest padding, written as 0), two
 * channels d0, d0 + 1 (one 4-byte read per token): group points at the group's first token, channel
 * d0, in a [token][DP] staging buffer; vinv / vmean at the channels' multipliers (448 / amax) and means;
 * vout at V8[d0][group]. A channel with amax == 0 (or d >= D) is written as 0, as the spec. */
template <typename T, int DP, bool FULL>
__device__ __forceinline__ void quantize_v_group_as(const T *group, int d0, int D, int nvalid, const float *vinv,
                                                    const float *vmean, uint8_t *vout, int64_t nk_pad) {
    const uint32_t *w = reinterpret_cast<const uint32_t *>(group);
    uint32_t x[16]; /* token k's two channels */
#pragma unroll
    for (int k = 0; k < 16; k++) x[k] = FULL || k < nvalid ? w[k * (DP / 2)] : 0u;
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const float inv = vinv[i], mn = vmean[i];
        /* as the spec: vm is 0 when smooth V is off, and x - 0 = x exactly; padding tokens are 0 */
        const auto y = [&](int k) {
            const float v = bits_to_float((uint16_t)(i ? x[k] >> 16 : x[k] & 0xffffu), (const T *)nullptr);
            return FULL || k < nvalid ? __fmul_rn(__fsub_rn(v, mn), inv) : 0.f;
        };
        uint32_t o[4];
#pragma unroll
        for (int j = 0; j < 4; j++) o[j] = e4m3x2(y(2 * j + 1), y(2 * j)) | e4m3x2(y(2 * j + 9), y(2 * j + 8)) << 16;
        if (d0 + i >= D || !(inv > 0.f)) o[0] = o[1] = o[2] = o[3] = 0u;
        *reinterpret_cast<uint4 *>(vout + (int64_t)i * nk_pad) = make_uint4(o[0], o[1], o[2], o[3]);
    }
}
template <typename T, int DP>
__device__ __forceinline__ void quantize_v_group(const T *group, int d0, int D, int nvalid, const float *vinv,
                                                 const float *vmean, uint8_t *vout, int64_t nk_pad) {
    if (nvalid >= 16) quantize_v_group_as<T, DP, true>(group, d0, D, nvalid, vinv, vmean, vout, nk_pad);
    else quantize_v_group_as<T, DP, false>(group, d0, D, nvalid, vinv, vmean, vout, nk_pad);
}

/* A V block of the quantize grid: kThreads * 32 / DP tokens of one head, staged in shared memory as
 * [token][DP] (cp.async, coalesced). Thread (g, c) then takes tokens 16g .. 16g+15 of the block,
 * channels 2c, 2c+1 (a warp reading consecutive words of a row). The staging loop is not stage_rows:
 * that form costs this 40-register grid 8 bytes of spills on sm_90. */
template <typename T, int DP>
__device__ void quantize_v_block(const QuantParams &P, int64_t vid, T *tile) {
    const TileCoord tc = tile_coord(vid, P.v_blocks_per_head, P.Hkv);
    const int vb = tc.tile;
    const int64_t bh = tc.bh, b = tc.b, h = tc.h;
    constexpr int dp = DP, ntok = kThreads * 32 / DP; /* 16 KB of 16-bit values per block */
    const int64_t tb = (int64_t)vb * ntok;
    const int nvalid_blk = (int)max((int64_t)0, min((int64_t)ntok, P.Nk - tb));
    const T *vbase = static_cast<const T *>(P.v) + b * P.vsb + h * P.vsh;
    {
        const int lpr8 = dp / 8;
        for (int c = threadIdx.x; c < nvalid_blk * lpr8; c += kThreads) {
            const int r = c / lpr8, d0 = (c % lpr8) * 8;
            const T *src = vbase + (tb + r) * P.vsn;
            T *dst = tile + r * dp + d0;
            if (P.v_vec && d0 + 8 <= P.D) cp_async16(dst, src + d0);
            else *reinterpret_cast<uint4 *>(dst) = load8_raw(src, d0, P.D, P.v_vec);
        }
        cp_async_wait_all();
    }
    /* v_inv / v_mean of finalize_kernel (this grid may start before it ends) */
    griddep_wait();
    __syncthreads();
    const int lpr2 = dp / 2;
    const int g = threadIdx.x / lpr2, d0 = (threadIdx.x % lpr2) * 2;
    const int64_t t0 = tb + 16 * g;
    if (t0 >= P.nk_pad) return;
    quantize_v_group<T, DP>(tile + 16 * g * dp + d0, d0, P.D, (int)min((int64_t)16, P.Nk - t0), P.v_inv + bh * dp + d0,
                            P.v_mean + bh * dp + d0, P.v8 + (bh * dp + d0) * P.nk_pad + t0, P.nk_pad);
}

/* Six CTAs per SM (<= 40 registers; 5 on sm_89): every block stages its inputs in shared memory. */
constexpr int kVTileBytes = kThreads * 32 * 2; /* a V block: kThreads * 32 / d_pad tokens x d_pad 16-bit values */

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ == 890
constexpr int kQuantMinCtas = 5; /* sm_89's code needs 48 registers */
#else
constexpr int kQuantMinCtas = 6;
#endif

template <typename T, int DP>
__global__ void __launch_bounds__(kThreads, kQuantMinCtas) quantize_kernel(QuantParams P) {
    __shared__ TileSmem s;
    extern __shared__ __align__(16) uint8_t tile_bytes[]; /* Q/K tile (max(cta_q, cta_k) x d_pad) or V tile */
    T *tile = reinterpret_cast<T *>(tile_bytes);
    int64_t id = blockIdx.x;
    if (id < P.n_q_blocks) { quantize_q_tile<T, DP>(P, id, s, tile); return; }
    id -= P.n_q_blocks;
    /* K and V blocks head by head, the last (b, h) first: the reduction pass read the heads in
     * (b, h) order, so the last ones' K and V are still in L2. */
    const int per_head = P.k_tiles + (P.n_v_blocks ? (int)P.v_blocks_per_head : 0);
    const int64_t bh = P.B * P.Hkv - 1 - id / per_head;
    const int j = (int)(id % per_head);
    if (j < P.k_tiles) quantize_k_tile<T, DP>(P, bh * P.k_tiles + j, s, tile);
    else quantize_v_block<T, DP>(P, bh * P.v_blocks_per_head + (j - P.k_tiles), tile);
}

/* ---- 1-3 in one pass: a thread block cluster per (batch, kv head, K or V) (sm_90+) ---------------
 * An item is one head's K or V. Its tokens are cut in kv_cluster chunks of kv_chunk tokens (whole K
 * tiles, <= 64 KB), one per CTA of a cluster. A CTA stages its chunk in shared memory once and keeps it
 * there: it takes the chunk's column statistics (sums; V also extrema), exchanges them with the
 * cluster's other CTAs through distributed shared memory (every CTA combines every CTA's partials in
 * rank order, so all derive the same bits; rank 0 stores them in the workspace), and quantizes the
 * chunk. Each input byte is read from memory once; the split path reads K and V twice.
 * (A persistent grid whose CTAs double-buffer their chunk, two per SM, measured slower: docs/perf-log.md.) */

struct OnePassSmem {
    union {
        float comb[3][512]; /* per row group: [quantity][group * d_pad + channel], groups * d_pad = 512 */
        TileSmem s;         /* the K tiles' quantization, after the statistics */
    };
    float part[3][256];     /* this CTA's chunk: sum, max, min per channel; read by the whole cluster */
    float vinv[256], vmean[256];
};

/* fs.part[0][d] = sum, and with MINMAX part[1][d] / part[2][d] = max / min, of channel d over the
 * rows_valid rows staged in tile ([row][d_pad]). Thread (g, c) takes channels 2c, 2c+1 of rows g,
 * g + G, ... (G = kThreads / (d_pad / 2) row groups, one 4-byte read per row); thread d then combines
 * the G groups in order. Fixed order: every run gives the same bits. */
template <typename T, int DP, bool MINMAX>
__device__ void chunk_column_stats(const T *tile, int rows_valid, OnePassSmem &fs) {
    constexpr int d_pad = DP, lpr2 = DP / 2, G = kThreads / lpr2;
    const int g = threadIdx.x / lpr2, d0 = (threadIdx.x % lpr2) * 2;
    float sum[2] = {0.f, 0.f}, mx[2] = {-INFINITY, -INFINITY}, mn[2] = {INFINITY, INFINITY};
    const uint32_t *w = reinterpret_cast<const uint32_t *>(tile + g * d_pad + d0);
#pragma unroll 4
    for (int r = g; r < rows_valid; r += G, w += G * lpr2) {
        const uint32_t x = *w;
        const float v[2] = {bits_to_float((uint16_t)(x & 0xffffu), (const T *)nullptr),
                            bits_to_float((uint16_t)(x >> 16), (const T *)nullptr)};
#pragma unroll
        for (int i = 0; i < 2; i++) {
            sum[i] = __fadd_rn(sum[i], v[i]);
            if (MINMAX) { mx[i] = fmaxf(mx[i], v[i]); mn[i] = fminf(mn[i], v[i]); }
        }
    }
#pragma unroll
    for (int i = 0; i < 2; i++) {
        fs.comb[0][g * d_pad + d0 + i] = sum[i];
        if (MINMAX) { fs.comb[1][g * d_pad + d0 + i] = mx[i]; fs.comb[2][g * d_pad + d0 + i] = mn[i]; }
    }
    __syncthreads();
    for (int d = threadIdx.x; d < d_pad; d += kThreads) {
        float s = fs.comb[0][d];
        for (int j = 1; j < G; j++) s = __fadd_rn(s, fs.comb[0][j * d_pad + d]);
        fs.part[0][d] = s;
        if (MINMAX) {
            float hi = fs.comb[1][d], lo = fs.comb[2][d];
            for (int j = 1; j < G; j++) { hi = fmaxf(hi, fs.comb[1][j * d_pad + d]); lo = fminf(lo, fs.comb[2][j * d_pad + d]); }
            fs.part[1][d] = hi;
            fs.part[2][d] = lo;
        }
    }
}

/* The head's statistics of channel d from the partials of the cluster's C CTAs, in rank order:
 * quantity q (0 sum, 1 max, 2 min) of rank r is part[q][d] in CTA r's shared memory. The cluster
 * barrier before this orders the partials; the loads are issued 4 ranks at a time. */
__device__ __forceinline__ void cluster_column(const float (*part)[256], int d, uint32_t C, bool minmax, float &sum,
                                               float &hi, float &lo) {
    sum = 0.f; hi = -INFINITY; lo = INFINITY;
    for (uint32_t r0 = 0; r0 < C; r0 += 4) {
        float s[4], h[4], l[4];
#pragma unroll
        for (uint32_t r = 0; r < 4; r++)
            if (r0 + r < C) {
                s[r] = ld_cluster_f32(&part[0][d], r0 + r);
                if (minmax) { h[r] = ld_cluster_f32(&part[1][d], r0 + r); l[r] = ld_cluster_f32(&part[2][d], r0 + r); }
            }
#pragma unroll
        for (uint32_t r = 0; r < 4; r++)
            if (r0 + r < C) {
                sum = __fadd_rn(sum, s[r]);
                if (minmax) { hi = fmaxf(hi, h[r]); lo = fminf(lo, l[r]); }
            }
    }
}

/* Items: head (b, h)'s K, then (FP8 PV) its V, head after head; one per cluster. Grid: whole
 * clusters of kv_cluster CTAs along x (a CTA's rank in its cluster is blockIdx.x % kv_cluster).
 * Dynamic shared memory: the chunk, kv_chunk x DP elements. */
template <typename T, int DP>
__global__ void __launch_bounds__(kThreads, 3) kv_one_pass_kernel(QuantParams P) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 /* clusters; launched only on sm_90+ */
    __shared__ OnePassSmem fs;
    extern __shared__ __align__(16) uint8_t chunk_bytes[];
    T *const tile = reinterpret_cast<T *>(chunk_bytes);
    /* The attention grid, launched with programmatic stream serialization in the concurrent mode,
     * may start once every CTA of this grid has: it waits on kv_ready, head by head. */
    griddep_launch_dependents();
    constexpr int dp = DP;
    const uint32_t C = (uint32_t)P.kv_cluster, item = blockIdx.x / C, rank = blockIdx.x % C;
    const uint32_t per_head = P.fp8 ? 2u : 1u;
    const uint32_t bh32 = item / per_head, b = bh32 / (uint32_t)P.Hkv, h = bh32 % (uint32_t)P.Hkv;
    const bool is_v = per_head == 2 && (item & 1u);
    const int64_t bh = bh32;
    const int chunk = P.kv_chunk;
    const int64_t t0 = (int64_t)rank * chunk;
    const int rows_valid = (int)max((int64_t)0, min((int64_t)chunk, P.Nk - t0));
    if (is_v)
        stage_rows<T, DP>(static_cast<const T *>(P.v) + b * P.vsb + h * P.vsh, P.vsn, t0, rows_valid, chunk, P.D,
                          P.v_vec, tile);
    else
        stage_rows<T, DP>(static_cast<const T *>(P.k) + b * P.ksb + h * P.ksh, P.ksn, t0, rows_valid, chunk, P.D,
                          P.k_vec, tile);
    cp_async_wait_all();
    __syncthreads();
    const bool stats = is_v || P.smooth_k;
    if (stats) {
        if (is_v) chunk_column_stats<T, DP, true>(tile, rows_valid, fs);
        else chunk_column_stats<T, DP, false>(tile, rows_valid, fs);
        cluster_arrive(); /* this CTA's partials (and its reads of comb) before the others' reads */
        cluster_wait();
    }
    for (int d = threadIdx.x; d < dp; d += kThreads) {
        float sum = 0.f, hi = -INFINITY, lo = INFINITY;
        if (stats) cluster_column(fs.part, d, C, is_v, sum, hi, lo);
        if (is_v) {
            const ChannelStats st = channel_stats(P, d, 0.f, sum, hi, lo);
            fs.vinv[d] = st.vinv;
            fs.vmean[d] = st.vmean;
            if (rank == 0) { P.v_scale[bh * dp + d] = st.vscale; P.v_mean[bh * dp + d] = st.vmean; }
        } else {
            const ChannelStats st = channel_stats(P, d, sum, 0.f, 0.f, 0.f);
            fs.s.mean[d] = st.km;
            if (rank == 0) P.k_mean[bh * dp + d] = st.km;
        }
    }
    /* done with the others' partials (every value read has been used above); they wait for this
     * before leaving. Relaxed: a release here would also wait for the k_mean / v stores. */
    if (stats) cluster_arrive_relaxed();
    __syncthreads();
    if (is_v) {
        /* thread (g, c): 16-token groups g, g + G, ... of the chunk (G = kThreads / (DP / 2)),
         * channels 2c, 2c+1 */
        const int lpr2 = dp / 2, d0 = (threadIdx.x % lpr2) * 2;
        for (int g = threadIdx.x / lpr2; 16 * g < chunk && t0 + 16 * g < P.nk_pad; g += kThreads / lpr2) {
            const int64_t tg = t0 + 16 * g;
            quantize_v_group<T, DP>(tile + 16 * g * dp + d0, d0, P.D, (int)min((int64_t)16, P.Nk - tg), fs.vinv + d0,
                                    fs.vmean + d0, P.v8 + (bh * dp + d0) * P.nk_pad + tg, P.nk_pad);
        }
    } else {
        const int cta = P.g.cta_k;
        for (int i = 0; i < chunk / cta && t0 + (int64_t)i * cta < P.nk_pad; i++) {
            quantize_staged_k_tile<T, DP>(P, bh, (int)(t0 / cta) + i, tile + i * cta * dp, fs.s);
            __syncthreads(); /* fs.s is the next tile's */
        }
    }
    if (P.kv_ready) {
        /* this CTA's share of head bh is written (every thread's stores precede the barrier) */
        __syncthreads();
        if (threadIdx.x == 0) red_release_gpu_add(P.kv_ready + bh32, 1);
    }
    if (stats) cluster_wait();
#else
    (void)P;
#endif
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

/* Opt kern in to `bytes` of dynamic shared memory (always: the 48 KB a kernel gets by default counts
 * its static shared memory too) and to all of the unified L1 as shared memory (staged tiles; the
 * loads do not reuse L1). */
template <typename Kernel>
sage_status smem_attributes(Kernel kern, size_t bytes, const char *what, sage_msg msg) {
    SAGE_CUDA_TRY(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes), what, msg);
    SAGE_CUDA_TRY(cudaFuncSetAttribute(kern, cudaFuncAttributePreferredSharedMemoryCarveout,
                                       (int)cudaSharedmemCarveoutMaxShared),
                  what, msg);
    return SAGE_OK;
}

/* quantize_kernel over P's blocks (cfg: stream and attributes). */
template <typename T, int DP>
sage_status launch_quantize(const QuantParams &P, cudaLaunchConfig_t cfg, sage_msg msg) {
    const int64_t blocks = P.n_q_blocks + P.n_k_blocks + P.n_v_blocks;
    const size_t tile_bytes = max((size_t)max(P.g.cta_q, P.g.cta_k) * P.d_pad * sizeof(T), P.fp8 ? (size_t)kVTileBytes : 0);
    if (sage_status s = smem_attributes(quantize_kernel<T, DP>, tile_bytes, "cudaFuncSetAttribute(quantize)", msg))
        return s;
    cfg.gridDim = dim3((unsigned)blocks);
    cfg.blockDim = dim3(kThreads);
    cfg.dynamicSmemBytes = tile_bytes;
    SAGE_CUDA_TRY(cudaLaunchKernelEx(&cfg, quantize_kernel<T, DP>, P), "sage quantize", msg);
    return sage_cuda_check_launch("sage quantize", msg);
}

/* reduce, finalize and quantize as three grids (the last two by PDL on sm_90+). */
template <typename T, int DP>
sage_status launch_split(const QuantParams &P, cudaStream_t st, sage_msg msg) {
    if (P.smooth_k || P.fp8) {
        reduce_kernel<T><<<dim3(P.n_chunks, (unsigned)P.Hkv, (unsigned)P.B), kThreads, 0, st>>>(P);
        if (sage_status s = sage_cuda_check_launch("sage quant reduce", msg)) return s;
    }
    /* finalize and quantize start while their predecessor drains (PDL, sm_90+): Q tiles need nothing
     * of the reduction; finalize and the K/V blocks wait for it in the kernel (griddep_wait). */
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.stream = st;
    cfg.attrs = attr;
    cfg.numAttrs = P.pdl ? 1 : 0;
    cfg.gridDim = dim3((unsigned)P.Hkv, (unsigned)P.B);
    cfg.blockDim = dim3((unsigned)P.d_pad);
    SAGE_CUDA_TRY(cudaLaunchKernelEx(&cfg, finalize_kernel, P), "sage quant finalize", msg);
    if (sage_status s = sage_cuda_check_launch("sage quant finalize", msg)) return s;
    return launch_quantize<T, DP>(P, cfg, msg);
}

/* The one-pass path: Q tiles (if any) by a quantize grid of Q tiles only, then K and V by
 * kv_one_pass_kernel (the split path where its cluster does not fit the device). */
template <typename T, int DP>
sage_status launch_one_pass(const QuantParams &P, cudaStream_t st, bool *ran, sage_msg msg) {
    const int64_t items = P.B * P.Hkv * (P.fp8 ? 2 : 1);
    cudaLaunchConfig_t cfg = {};
    cfg.stream = st;
    const size_t chunk_bytes = (size_t)P.kv_chunk * P.d_pad * sizeof(T);
    if (sage_status s = smem_attributes(kv_one_pass_kernel<T, DP>, chunk_bytes, "cudaFuncSetAttribute(one-pass quantize)",
                                        msg))
        return s;
    if (P.kv_cluster > 8) /* beyond the portable size: H100 / H200 take 16 */
        SAGE_CUDA_TRY(cudaFuncSetAttribute(kv_one_pass_kernel<T, DP>, cudaFuncAttributeNonPortableClusterSizeAllowed, 1),
                      "cudaFuncSetAttribute(one-pass quantize cluster size)", msg);
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = (unsigned)P.kv_cluster;
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    cfg.blockDim = dim3(kThreads);
    cfg.dynamicSmemBytes = chunk_bytes;
    cfg.gridDim = dim3((unsigned)(items * P.kv_cluster));
    int fit = 0; /* clusters resident at once */
    SAGE_CUDA_TRY(cudaOccupancyMaxActiveClusters(&fit, kv_one_pass_kernel<T, DP>, &cfg), "cudaOccupancyMaxActiveClusters", msg);
    if (fit < 1) return launch_split<T, DP>(P, st, msg); /* no such cluster fits this device */
    *ran = true;
    if (P.n_q_blocks) {
        QuantParams Q = P;
        Q.n_k_blocks = Q.n_v_blocks = 0;
        cudaLaunchConfig_t qcfg = {};
        qcfg.stream = st;
        if (sage_status s = launch_quantize<T, DP>(Q, qcfg, msg)) return s;
    }
    if (P.kv_ready)
        SAGE_CUDA_TRY(cudaMemsetAsync(P.kv_ready, 0, sizeof(int) * (size_t)(P.B * P.Hkv), st), "cudaMemsetAsync(kv_ready)", msg);
    SAGE_CUDA_TRY(cudaLaunchKernelEx(&cfg, kv_one_pass_kernel<T, DP>, P), "sage one-pass quantize", msg);
    return sage_cuda_check_launch("sage one-pass quantize", msg);
}

template <typename T, int DP>
sage_status launch_all(const QuantParams &P, cudaStream_t st, bool *one_pass, sage_msg msg) {
    if (sage_status s = P.kv_cluster ? launch_one_pass<T, DP>(P, st, one_pass, msg) : launch_split<T, DP>(P, st, msg))
        return s;
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

extern "C" void sage_cuda_quant_layout_init(const sage_problem *p, sage_geometry g, int64_t d_pad, int q8,
                                            sage_cuda_quant_layout *L) {
    const sage_args *a = &p->a;
    const int64_t B = a->batch, Hq = a->heads_q, Hkv = a->heads_kv;
    L->q8 = q8 != 0;
    L->nq_pad = sage_round_up(a->seqlen_q, g.cta_q);
    L->nk_pad = sage_round_up(a->seqlen_kv, g.cta_k);
    L->d_pad = d_pad;
    L->n_q_groups = sage_q_group_count(g, p->qk_groups, a->seqlen_q);
    L->n_k_groups = sage_k_group_count(g, p->qk_groups, a->seqlen_kv);
    const bool fp8 = p->pv == SAGE_PV_FP8;
    const int64_t n_qb = L->nq_pad / g.cta_q;
    const int64_t chunks = (a->seqlen_kv + SAGE_CUDA_REDUCE_CHUNK - 1) / SAGE_CUDA_REDUCE_CHUNK;
    size_t c = 0;
    L->off_q8 = take(&c, q8 ? (size_t)(B * Hq * L->nq_pad * d_pad) : 0);
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
    L->off_kv_ready = c; /* sized below, once the path is known */
    /* The one-pass path (sm_90+, a reduction to do): chunks of whole K tiles, as large as 64 KB of 16-bit
     * values allows (3 CTAs per SM; staged bytes per SM are what the kernel's speed follows), spread
     * evenly over the fewest CTAs; at most SAGE_CUDA_MAX_KV_CLUSTER CTAs per head. */
    L->kv_cluster = L->kv_chunk = 0;
    const int64_t k_tiles = L->nk_pad / g.cta_k, m_max = 64 * 1024 / (g.cta_k * d_pad * 2);
    if (p->cuda_cc >= 90 && (p->smooth_k || fp8) && m_max >= 1 && k_tiles <= SAGE_CUDA_MAX_KV_CLUSTER * m_max &&
        B * Hkv * 2 * SAGE_CUDA_MAX_KV_CLUSTER <= INT32_MAX) {
        const int64_t n = (k_tiles + m_max - 1) / m_max, m = (k_tiles + n - 1) / n; /* n CTAs of m tiles */
        L->kv_cluster = (int)n;
        L->kv_chunk = (int)(m * g.cta_k);
    }
    L->total = sage_align_ws(L->off_kv_ready + (L->kv_cluster ? sizeof(int) * (size_t)(B * Hkv) : 0));
}

static sage_status quantize_impl(const sage_problem *p, sage_geometry g, const sage_cuda_quant_layout *L, void *ws,
                                 void *stream, int concurrent, bool *one_pass, sage_msg msg) {
    using namespace sage;
    const sage_args *a = &p->a;
    if ((L->d_pad != 64 && L->d_pad != 128 && L->d_pad != 256) || L->d_pad < a->head_dim || g.cta_q > 256 ||
        g.cta_k > 256 || g.cta_k % 16 != 0)
        return sage_fail(msg, SAGE_ERR_UNSUPPORTED, "quantization: unsupported geometry (d_pad %lld, tiles %d x %d)",
                         (long long)L->d_pad, g.cta_q, g.cta_k);
    if (a->dtype != SAGE_DTYPE_FP16 && a->dtype != SAGE_DTYPE_BF16)
        return sage_fail(msg, SAGE_ERR_UNSUPPORTED, "CUDA path: inputs must be fp16 or bf16");
    if (!L->q8 && p->smooth_q)
        return sage_fail(msg, SAGE_ERR_UNSUPPORTED, "quantization: smooth Q needs Q quantized in this pass");
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
    {
        const int64_t tokens_per_v_block = (int64_t)kThreads * 32 / L->d_pad;
        P.v_blocks_per_head = (L->nk_pad + tokens_per_v_block - 1) / tokens_per_v_block;
        P.n_v_blocks = p->pv == SAGE_PV_FP8 ? P.v_blocks_per_head * a->batch * a->heads_kv : 0;
        P.n_k_blocks = a->batch * a->heads_kv * P.k_tiles;
        P.n_q_blocks = L->q8 ? a->batch * a->heads_q * P.q_tiles : 0;
    }
    P.pdl = p->cuda_cc >= 90;
    P.kv_cluster = L->kv_cluster;
    P.kv_chunk = L->kv_chunk;
    P.kv_ready = concurrent && L->kv_cluster ? reinterpret_cast<int *>(w + L->off_kv_ready) : nullptr;
    {
        const int64_t gq = sage_q_group_count(g, p->qk_groups, g.cta_q), gk = sage_k_group_count(g, p->qk_groups, g.cta_k);
        for (int r = 0; r < g.cta_q; r++) {
            const int64_t grp = sage_q_group(g, p->qk_groups, r);
            /* the table holds groups < 256 and relies on the maps repeating per tile */
            if (grp < 0 || grp >= 256 || grp >= gq || sage_q_group(g, p->qk_groups, g.cta_q + r) != gq + grp)
                return sage_fail(msg, SAGE_ERR_UNSUPPORTED, "quantization: Q group map not periodic per tile");
            P.q_row_group[r] = (uint8_t)grp;
        }
        for (int r = 0; r < g.cta_k; r++) {
            const int64_t grp = sage_k_group(g, p->qk_groups, r);
            if (grp < 0 || grp >= 256 || grp >= gk || sage_k_group(g, p->qk_groups, g.cta_k + r) != gk + grp)
                return sage_fail(msg, SAGE_ERR_UNSUPPORTED, "quantization: K group map not periodic per tile");
            P.k_row_group[r] = (uint8_t)grp;
        }
    }
    P.smooth_k = p->smooth_k; P.smooth_q = p->smooth_q; P.fp8 = p->pv == SAGE_PV_FP8;
    P.smooth_v = P.fp8 && p->smooth_v;
    P.q_vec = sage_rows_aligned(a->q, a->q_stride_b, a->q_stride_h, a->q_stride_n, 8);
    P.k_vec = sage_rows_aligned(a->k, a->k_stride_b, a->k_stride_h, a->k_stride_n, 8);
    P.v_vec = sage_rows_aligned(a->v, a->v_stride_b, a->v_stride_h, a->v_stride_n, 8);
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
    const bool fp16 = a->dtype == SAGE_DTYPE_FP16;
    switch (P.d_pad) {
    case 64: return fp16 ? launch_all<__half, 64>(P, st, one_pass, msg) : launch_all<__nv_bfloat16, 64>(P, st, one_pass, msg);
    case 128:
        return fp16 ? launch_all<__half, 128>(P, st, one_pass, msg) : launch_all<__nv_bfloat16, 128>(P, st, one_pass, msg);
    default:
        return fp16 ? launch_all<__half, 256>(P, st, one_pass, msg) : launch_all<__nv_bfloat16, 256>(P, st, one_pass, msg);
    }
}

extern "C" sage_status sage_cuda_quantize(const sage_problem *p, sage_geometry g, const sage_cuda_quant_layout *L,
                                          void *ws, void *stream, int concurrent, int *one_pass, sage_msg msg) {
    bool ran = false;
    const sage_status s = quantize_impl(p, g, L, ws, stream, concurrent, &ran, msg);
    if (one_pass) *one_pass = s == SAGE_OK && ran;
    return s;
}
