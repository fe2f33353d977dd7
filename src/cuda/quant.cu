/* Quantization kernels (quant.h): one reduction pass over K and V, one quantize pass over Q, K
 * and V, plus the smooth-Q bias. Launch order on the stream:
 *   1. reduce   grid (chunks, Hkv, B): per 256-token chunk, column sums of K and V, min/max of V
 *   2. finalize grid (Hkv, B):        k_mean, v_scale, v_mean from the partials, in chunk order
 *   3. quantize grid (Q tiles + K tiles + V blocks): Q8/q_scale (+ q_mean), K8/k_scale, V8 transposed;
 *      no Q tiles when the layout has no Q8 (L->q8 = 0: the Hopper kernel quantizes Q itself)
 *   4. qk_bias  (smooth Q only)
 * On sm_90+ launches 2 and 3 use programmatic dependent launch: they start while their predecessor
 * drains, Q tiles (which need nothing of 1-2) run at once, finalize and the K/V blocks wait in the
 * kernel (griddepcontrol.wait). Every sum has a fixed order (no float atomics): two runs give the
 * same bytes. Timings and the versions tried: docs/perf-log.md, "Quantization". */
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
    int64_t v_blocks_per_head, n_v_blocks, n_k_blocks, n_q_blocks; /* quantize launch: Q tiles, then K tiles and
                                                                      V blocks head by head */
    bool pdl; /* sm_90+: finalize and quantize launched with programmatic stream serialization */
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

__device__ __forceinline__ float seg_max(float v, int lpr) {
    for (int off = lpr / 2; off >= 1; off /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
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
__global__ void finalize_kernel(QuantParams P) {
    griddep_wait();              /* the partials of reduce_kernel */
    griddep_launch_dependents(); /* the quantize grid's Q tiles need nothing of this one */
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

/* INT8-quantize the cta rows of a tile (rows >= rows_valid and channels >= D written as 0) into
 * out (rows of d_pad bytes), scales of the first n_scales local groups into scale_out.
 * Thread t owns channels d0 .. d0+7 (d0 = 8 (t % lpr)) of rows t / lpr + i R (R = kThreads / lpr).
 * The tile is staged once in shared memory (cp.async, 16 bytes a thread, all in flight at once; tile
 * = cta x d_pad elements): the group maxima and the quantization read it there, so a block holds
 * few registers and 6 fit on an SM. Needs s.row_group, zeroed s.gmax and s.mean (when smooth),
 * synchronised. */
template <typename T>
__device__ void rows_tile(const T *base, int64_t stride_n, int64_t row0, int rows_valid, int cta, int D, int d_pad,
                          bool vec, bool smooth, int n_scales, float *scale_out, int8_t *out, TileSmem &s, T *tile) {
    const int lpr = d_pad / 8, R = kThreads / lpr;
    const int rsub = threadIdx.x / lpr, d0 = (threadIdx.x % lpr) * 8;
    const int per_thread = (cta + R - 1) / R;
    {
        const T *src = base + (row0 + rsub) * stride_n;
        const int64_t step = (int64_t)R * stride_n;
#pragma unroll 1
        for (int i = 0; i < per_thread; i++, src += step) {
            const int r = rsub + i * R;
            if (r >= rows_valid) break;
            T *dst = tile + r * d_pad + d0;
            if (vec && d0 + 8 <= D) cp_async16(dst, src + d0);
            else *reinterpret_cast<uint4 *>(dst) = load8_raw(src, d0, D, vec);
        }
        cp_async_wait_all();
    }
    __syncthreads();
    float mean[8];
#pragma unroll
    for (int j = 0; j < 8; j++) mean[j] = smooth ? s.mean[d0 + j] : 0.f;
#pragma unroll 1
    for (int i = 0; i < per_thread; i++) {
        const int r = rsub + i * R;
        float m = 0.f;
        if (r < rows_valid) {
            const uint4 raw = *reinterpret_cast<const uint4 *>(tile + r * d_pad + d0);
#pragma unroll
            for (int j = 0; j < 8; j++) {
                const float x = raw_elem<T>(raw, j);
                const float y = smooth ? __fsub_rn(x, mean[j]) : x;
                if (d0 + j < D) m = fmaxf(m, fabsf(y));
            }
        }
        m = seg_max(m, lpr);
        /* x >= 0 orders like its int bits */
        if (r < rows_valid && d0 == 0) atomicMax(&s.gmax[s.row_group[r]], __float_as_int(m));
    }
    __syncthreads();
    tile_group_scales(n_scales, scale_out, s);
    __syncthreads();
    int8_t *dst = out + (int64_t)rsub * d_pad + d0;
#pragma unroll 1
    for (int i = 0; i < per_thread; i++, dst += R * d_pad) {
        const int r = rsub + i * R;
        if (r >= cta) break;
        uint32_t lo = 0, hi = 0;
        if (r < rows_valid) {
            const uint4 raw = *reinterpret_cast<const uint4 *>(tile + r * d_pad + d0);
            const float inv = s.inv[s.row_group[r]];
            int q[8];
#pragma unroll
            for (int j = 0; j < 8; j++) {
                const float x = raw_elem<T>(raw, j);
                const float y = smooth ? __fsub_rn(x, mean[j]) : x;
                q[j] = d0 + j < D ? quant_s8(y, inv) : 0;
            }
            lo = (q[0] & 0xff) | (q[1] & 0xff) << 8 | (q[2] & 0xff) << 16 | (uint32_t)(q[3] & 0xff) << 24;
            hi = (q[4] & 0xff) | (q[5] & 0xff) << 8 | (q[6] & 0xff) << 16 | (uint32_t)(q[7] & 0xff) << 24;
        }
        *reinterpret_cast<uint2 *>(dst) = make_uint2(lo, hi);
    }
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

template <typename T>
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
    rows_tile<T>(base, P.qsn, row0, rows_valid, cta, P.D, P.d_pad, P.q_vec, P.smooth_q, (int)gpt,
                 P.q_scale + bh * P.n_q_groups + qt * gpt, P.q8 + (bh * P.nq_pad + row0) * P.d_pad, s, tile);
}

template <typename T>
__device__ void quantize_k_tile(const QuantParams &P, int64_t tile_id, TileSmem &s, T *tile) {
    const TileCoord tc = tile_coord(tile_id, P.k_tiles, P.Hkv);
    const int kt = tc.tile;
    const int64_t bh = tc.bh, b = tc.b, h = tc.h;
    const int cta = P.g.cta_k;
    const int64_t t0 = (int64_t)kt * cta;
    const int rows_valid = (int)min((int64_t)cta, P.Nk - t0);
    const T *kbase = static_cast<const T *>(P.k) + b * P.ksb + h * P.ksh;

    const int64_t gpt = sage_k_group_count(P.g, P.gran, cta);
    for (int d = threadIdx.x; d < P.d_pad; d += kThreads) s.mean[d] = P.k_mean[bh * P.d_pad + d];
    tile_groups_init(cta, (int)gpt, P.k_row_group, s);
    __syncthreads();
    /* With k_block < cta_k the last tile's groups can run past n_k_groups (blocks wholly in the
     * padding): those have no slot. */
    rows_tile<T>(kbase, P.ksn, t0, rows_valid, cta, P.D, P.d_pad, P.k_vec, P.smooth_k,
                 (int)min(gpt, P.n_k_groups - kt * gpt), P.k_scale + bh * P.n_k_groups + kt * gpt,
                 P.k8 + (bh * P.nk_pad + t0) * P.d_pad, s, tile);
}

/* V: e4m3((v - vm) * (448 / amax)) into V8[d][position] (geometry.h sage_vt_offset). A V block
 * covers kVTokens tokens of one head, staged in shared memory as [token][d_pad] (cp.async, coalesced).
 * Thread (g, c) then takes tokens 16g .. 16g+15 of the block, channels 2c, 2c+1 (2-byte reads, a
 * warp reading consecutive words of a row). Positions 4j .. 4j+3 of a 16-token group hold tokens 2j,
 * 2j+1, 2j+8, 2j+9, so word j of a channel row is e4m3x2 of tokens (2j, 2j+1) | e4m3x2 of tokens
 * (2j+8, 2j+9) << 16: one 16-byte store per channel row. Padding tokens and channels are 0. */
template <typename T>
__device__ void quantize_v_block(const QuantParams &P, int64_t vid, T *tile) {
    const TileCoord tc = tile_coord(vid, P.v_blocks_per_head, P.Hkv);
    const int vb = tc.tile;
    const int64_t bh = tc.bh, b = tc.b, h = tc.h;
    const int dp = P.d_pad, ntok = kThreads * 32 / dp; /* 16 KB of 16-bit values per block */
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
    const int nvalid = (int)min((int64_t)16, P.Nk - t0); /* may be <= 0 in the padding */
    const uint16_t *col = reinterpret_cast<const uint16_t *>(tile) + 16 * g * dp + d0;
    const float *vinv = P.v_inv + bh * dp + d0, *vmn = P.v_mean + bh * dp + d0;
    uint8_t *vout = P.v8 + bh * dp * P.nk_pad + t0;
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const float inv = vinv[i], mn = vmn[i];
        /* as the spec: vm is 0 when smooth V is off, and x - 0 = x exactly */
        const bool live = d0 + i < P.D && inv > 0.f;
        float y[16];
#pragma unroll
        for (int k = 0; k < 16; k++)
            y[k] = live && k < nvalid ? __fmul_rn(__fsub_rn(bits_to_float(col[k * dp + i], (const T *)nullptr), mn), inv)
                                      : 0.f;
        uint32_t w[4];
#pragma unroll
        for (int j = 0; j < 4; j++)
            w[j] = e4m3x2(y[2 * j + 1], y[2 * j]) | e4m3x2(y[2 * j + 9], y[2 * j + 8]) << 16;
        *reinterpret_cast<uint4 *>(vout + (int64_t)(d0 + i) * P.nk_pad) = make_uint4(w[0], w[1], w[2], w[3]);
    }
}

/* Six CTAs per SM (<= 40 registers; 5 on sm_89): every block stages its inputs in shared memory. */
constexpr int kVTileBytes = kThreads * 32 * 2; /* a V block: kThreads * 32 / d_pad tokens x d_pad 16-bit values */

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ == 890
constexpr int kQuantMinCtas = 5; /* sm_89's code needs 48 registers */
#else
constexpr int kQuantMinCtas = 6;
#endif

template <typename T>
__global__ void __launch_bounds__(kThreads, kQuantMinCtas) quantize_kernel(QuantParams P) {
    __shared__ TileSmem s;
    extern __shared__ __align__(16) uint8_t tile_bytes[]; /* Q/K tile (max(cta_q, cta_k) x d_pad) or V tile */
    T *tile = reinterpret_cast<T *>(tile_bytes);
    int64_t id = blockIdx.x;
    if (id < P.n_q_blocks) { quantize_q_tile<T>(P, id, s, tile); return; }
    id -= P.n_q_blocks;
    /* K and V blocks head by head, the last (b, h) first: the reduction pass read the heads in
     * (b, h) order, so the last ones' K and V are still in L2. */
    const int per_head = P.k_tiles + (P.n_v_blocks ? (int)P.v_blocks_per_head : 0);
    const int64_t bh = P.B * P.Hkv - 1 - id / per_head;
    const int j = (int)(id % per_head);
    if (j < P.k_tiles) {
        griddep_wait(); /* k_mean of finalize_kernel (this grid may start before it ends) */
        quantize_k_tile<T>(P, bh * P.k_tiles + j, s, tile);
    } else {
        quantize_v_block<T>(P, bh * P.v_blocks_per_head + (j - P.k_tiles), tile);
    }
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

template <typename T>
sage_status launch_all(const QuantParams &P, cudaStream_t st, sage_msg msg) {
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
    const int64_t blocks = P.n_q_blocks + P.n_k_blocks + P.n_v_blocks;
    const size_t tile_bytes = max((size_t)max(P.g.cta_q, P.g.cta_k) * P.d_pad * sizeof(T), P.fp8 ? (size_t)kVTileBytes : 0);
    if (tile_bytes > 48 * 1024)
        SAGE_CUDA_TRY(cudaFuncSetAttribute(quantize_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           (int)tile_bytes),
                      "cudaFuncSetAttribute(quantize)", msg);
    /* All of the unified L1 as shared memory: 6 staged tiles per SM (the loads do not reuse L1). */
    SAGE_CUDA_TRY(cudaFuncSetAttribute(quantize_kernel<T>, cudaFuncAttributePreferredSharedMemoryCarveout,
                                       (int)cudaSharedmemCarveoutMaxShared),
                  "cudaFuncSetAttribute(quantize carveout)", msg);
    cfg.gridDim = dim3((unsigned)blocks);
    cfg.blockDim = dim3(kThreads);
    cfg.dynamicSmemBytes = tile_bytes;
    SAGE_CUDA_TRY(cudaLaunchKernelEx(&cfg, quantize_kernel<T>, P), "sage quantize", msg);
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
    return a->dtype == SAGE_DTYPE_FP16 ? launch_all<__half>(P, st, msg) : launch_all<__nv_bfloat16>(P, st, msg);
}
