/* Private interface of the sm90a attention kernel (attn_qk_int8_pv_fp8_sm90.cu): the launch
 * parameters and the host launcher. Used by sm90_select.cu (the sage_kernel descriptor) and by
 * the standalone probe dev/sm90/. C++ only (nvcc). */
#ifndef SAGE_SM90_ATTN_SM90_H
#define SAGE_SM90_ATTN_SM90_H

#include "../../internal.h"

#include <cuda_runtime.h>
#include <stdint.h>

/* The tile geometry of the kernel: a CTA owns 128 query rows, two consumer warpgroups of 64 rows
 * each (one m64 wgmma tile per warpgroup), so the 8 consumer warps own the 8 16-row slabs:
 * warps_q = 8 (geometry.h: slab s -> warp s % 8). KV tiles of SAGE_SM90_CTA_K tokens:
 * 128 (the library). Two pipelines (attn_qk_int8_pv_fp8_sm90.cu):
 *   v1: QK^T(j) and PV(j-1) issued together, softmax(j) overlaps PV(j-1), the two warpgroups
 *       in ping-pong; D = 64 and 128;
 *   v2: QK^T(j+1) and PV(j-1) both in flight during softmax(j); 64-key tiles, D = 64 only
 *       (at D = 128, or with 128-key tiles, it needs more than 240 registers); not in the
 *       library's geometry yet (dev/sm90 probe measures it).
 * The geometry drives the quantizer's scale groups, so the library uses one value. */
#define SAGE_SM90_CTA_Q 128
#ifndef SAGE_SM90_CTA_K
#define SAGE_SM90_CTA_K 128
#endif
#define SAGE_SM90_WARPS_Q 8


typedef struct sage_sm90_params {
    int batch, heads_q, heads_kv, group;   /* group = heads_q / heads_kv */
    int nq, nk;                            /* real sequence lengths */
    int64_t nq_pad, nk_pad;                /* padded to the tiles (workspace layout) */
    int64_t n_q_groups, n_k_groups;        /* scale groups per head */
    int qk_gran;                           /* sage_qk_groups, resolved */
    const float *q_scale, *k_scale;        /* [B, Hq, n_q_groups], [B, Hkv, n_k_groups] */
    const float *k_mean;                   /* [B, Hkv, D]; NULL: no q.k_mean term in lse */
    const float *v_scale;                  /* [B, Hkv, D] */
    const float *v_mean;                   /* [B, Hkv, D]; NULL when smooth V is off */
    const void *q;                         /* raw q (for q.k_mean of lse); element strides */
    int64_t q_sb, q_sh, q_sn;
    void *o;                               /* output, element strides, unit stride in D */
    int64_t o_sb, o_sh, o_sn;
    float *lse;                            /* [B, Hq, Nq] or NULL */
    float sm_scale;                        /* natural-log units */
    int causal;                            /* sage_causal */
    int o_pairs;                           /* 1: o rows allow 4-byte (2-element) stores */
    int cta_k;                             /* KV tile = the geometry's cta_k: 64 or 128 */
    int pipe;                              /* 0: v1 for cta_k 128, v2 for 64; 1: v1; 2: v2 */
    int flags;                             /* experiments (dev/sm90 probe, built with
                                              SAGE_SM90_EXPERIMENTS): XP variant; library: 0 */
} sage_sm90_params;

/* Launch on `stream`: q8 [B*Hq*nq_pad, D], k8 [B*Hkv*nk_pad, D] int8 rows; v8 e4m3
 * [B*Hkv*D, nk_pad] (sage_vt_offset order). d: 64 or 128; bf16: output dtype; p->cta_k picks the
 * pipeline (and must be the geometry the quantizer used). No allocation,
 * no synchronisation. */
sage_status sage_sm90_launch(const sage_sm90_params *p, int d, int bf16, const void *q8, const void *k8,
                             const void *v8, cudaStream_t stream, sage_msg msg);

/* Dynamic shared memory bytes the kernel uses for head dim d and KV tile cta_k. */
size_t sage_sm90_smem_bytes(int d, int cta_k);

#endif
