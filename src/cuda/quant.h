/* Private: the quantized tensors in the CUDA workspace, and the kernels that write them.
 * Shared by the portable mma.sync kernel and the Hopper (sm90a) kernel.
 *
 * Workspace layout (every region 256-B aligned; every padding byte written, as zero, on every
 * call — e4m3 0x7F is NaN and 0 * NaN = NaN inside the MMA):
 *   Q8      int8 [B, Hq,  nq_pad, d_pad]      rows of d_pad bytes; only with q8 (below)
 *   q_scale f32  [B, Hq,  n_q_groups]
 *   K8      int8 [B, Hkv, nk_pad, d_pad]
 *   k_scale f32  [B, Hkv, n_k_groups]
 *   k_mean  f32  [B, Hkv, d_pad]              zero when smooth K is off, zero for d >= D
 *   V8      e4m3 [B, Hkv, d_pad, nk_pad]      FP8 PV only; V8[d][t] at sage_vt_offset(d, t, nk_pad)
 *   v_scale f32  [B, Hkv, d_pad]              FP8 PV only; 1 for d >= D
 *   v_mean  f32  [B, Hkv, d_pad]              FP8 PV only; zero when smooth V is off
 *   q_mean  f32  [B, Hq, nq_pad / cta_q, d_pad]   smooth Q only
 *   qk_bias f32  [B, Hq, nq_pad / cta_q, nk_pad]  smooth Q only: qm . (k - km), unscaled
 *   scratch      per-chunk partial sums of the reduction pass
 *   kv_ready i32 [B, Hkv]                     one-pass layouts only: per-head counters of the
 *                                             concurrent mode (sage_cuda_quantize)
 * Scores are S = (Q8 . K8) * q_scale * k_scale (* sm_scale * log2 e in the kernel) [+ qk_bias * sm_scale * log2 e].
 * For 16-bit PV the attention kernels read V directly from the input. */
#ifndef SAGE_CUDA_QUANT_H
#define SAGE_CUDA_QUANT_H

#include "../internal.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sage_cuda_quant_layout {
    int q8;                             /* 1: Q8 and q_scale are written by sage_cuda_quantize;
                                           0: no Q8 region, the attention kernel quantizes Q in its
                                           prologue and writes q_scale (Hopper) */
    int64_t nq_pad, nk_pad, d_pad;      /* nq_pad = round_up(Nq, cta_q), nk_pad = round_up(Nk, cta_k) */
    int64_t n_q_groups, n_k_groups;     /* per head (geometry.h counts) */
    size_t off_q8, off_q_scale, off_k8, off_k_scale, off_k_mean, off_v8, off_v_scale, off_v_mean,
        off_q_mean, off_qk_bias, off_scratch, off_kv_ready, total; /* 256-B aligned byte offsets;
                                                                      total = bytes */
    int kv_cluster, kv_chunk;           /* > 0 (sm_90+, heads of at most SAGE_CUDA_MAX_KV_CLUSTER chunks
                                           of <= 64 KB each): K and V quantized in one pass by
                                           clusters of kv_cluster CTAs of kv_chunk tokens each; 0: the
                                           split path (quant.cu). Tests may set both to 0 to run the
                                           split path. */
} sage_cuda_quant_layout;

/* The one-pass path's largest cluster: 16 CTAs, beyond the portable 8 (H100 / H200 allow it; where a
 * cluster does not fit, the split path runs). */
#define SAGE_CUDA_MAX_KV_CLUSTER 16

/* Tokens per CTA of the reduction pass (K mean, V min/max/mean); one partial per chunk. */
#define SAGE_CUDA_REDUCE_CHUNK 256

void sage_cuda_quant_layout_init(const sage_problem *p, sage_geometry g, int64_t d_pad, int q8,
                                 sage_cuda_quant_layout *L);

/* The layout CUDA kernel k (a quantized one) works in for p: its geometry, its padded head dim,
 * and whether Q8 is in the workspace. The workspace query, the run, the tests and the bench all
 * take it from here. */
void sage_cuda_kernel_quant_layout(const sage_kernel *k, const sage_problem *p, sage_cuda_quant_layout *L);

/* Quantize Q (if L->q8), K (and V for FP8 PV) of p into ws (layout L) on `stream` (a cudaStream_t).
 * The caller has made p's device current. Launch errors are returned; nothing is synchronised.
 * one_pass (may be NULL): set to 1 when the one-pass K/V grid ran; a one-pass layout falls back to
 * the split path (0) where the device cannot hold its cluster.
 * concurrent (one-pass layouts only, L->kv_cluster > 0; else ignored): the K/V pass zeroes the
 * kv_ready counters, lets the next grid on the stream start as soon as its own last CTAs have
 * started (programmatic dependent launch), and adds 1 to kv_ready[b * Hkv + h] (release, gpu
 * scope) per CTA that has written its share of head (b, h): sage_cuda_kv_ready_target() in all.
 * The caller launches the attention grid next with programmatic stream serialization; before
 * reading a head's K8 / V8 / scales / means it waits (acquire) until that head's counter reaches
 * the target; only when *one_pass came back 1 (the split path does not count). */
sage_status sage_cuda_quantize(const sage_problem *p, sage_geometry g, const sage_cuda_quant_layout *L,
                               void *ws, void *stream, int concurrent, int *one_pass, sage_msg msg);

/* The value a head's kv_ready counter reaches in the concurrent mode. */
static inline int sage_cuda_kv_ready_target(const sage_problem *p, const sage_cuda_quant_layout *L) {
    return L->kv_cluster * (p->pv == SAGE_PV_FP8 ? 2 : 1);
}

#ifdef __cplusplus
}
#endif
#endif
