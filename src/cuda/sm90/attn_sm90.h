/* Private interface of the sm90a attention kernels (attn_qk_int8_pv_fp8_sm90.cu: 128-row CTAs,
 * attn_qk_int8_pv_fp8_sm90_q64.cu: 64-row; attn_sm90_launch.cu): the launch parameters and the
 * host launchers. Used by sm90_select.cu (the sage_kernel descriptor) and by
 * the standalone probe dev/sm90/. C++ only (nvcc). */
#ifndef SAGE_SM90_ATTN_SM90_H
#define SAGE_SM90_ATTN_SM90_H

#include "../../internal.h"
#include "sm90.h"

#include <cuda.h>
#include <cuda_runtime.h>
#include <stdint.h>

/* The tile geometries of the kernels (geometry.h): a CTA owns 64 query rows per consumer
 * warpgroup (one m64 wgmma tile each), so its consumer warps own its 16-row slabs one each
 * (slab s -> warp s). SAGE_SM90_GEOMETRY: two consumer warpgroups, 128 rows, 8 warps;
 * SAGE_SM90_Q64_GEOMETRY: one, 64 rows, 4 warps. Both run every head dim. KV tiles and K scale
 * blocks of 128 keys in both. The geometry drives the quantizer's scale groups, so a kernel
 * descriptor has one. */
#define SAGE_SM90_CTA_K 128

typedef struct sage_sm90_params {
    int batch, heads_q, heads_kv, group;   /* group = heads_q / heads_kv */
    int nq, nk;                            /* real sequence lengths */
    int64_t nq_pad, nk_pad;                /* padded to the tiles (workspace layout) */
    int64_t n_q_groups, n_k_groups;        /* scale groups per head */
    int qk_gran;                           /* sage_qk_groups, resolved */
    float *q_scale;                        /* [B, Hq, n_q_groups]: written by the kernel */
    const float *k_scale;                  /* [B, Hkv, n_k_groups] */
    const float *k_mean;                   /* [B, Hkv, D]; NULL: no q.k_mean term in lse */
    const float *v_scale;                  /* [B, Hkv, D] */
    const float *v_mean;                   /* [B, Hkv, D]; NULL when smooth V is off */
    const void *q;                         /* raw q (quantized in the kernel); element strides */
    int64_t q_sb, q_sh, q_sn;
    int q_vec;                             /* 1: q rows allow 16-byte loads (aligned base and
                                              strides a multiple of 8 elements) */
    void *o;                               /* output, element strides, unit stride in D */
    int64_t o_sb, o_sh, o_sn;
    float *lse;                            /* [B, Hq, Nq] or NULL */
    float sm_scale;                        /* natural-log units */
    int causal;                            /* sage_causal */
    int o_pairs;                           /* 1: o rows allow 4-byte (2-element) stores */
    int o_vec;                             /* 1: o rows allow 16-byte stores (aligned base and
                                              strides a multiple of 8 elements) */
    int d;                                 /* the head dim of q and o (<= the padded d_pad) */
    int flags;                             /* experiments (dev/sm90 probe, built with
                                              SAGE_SM90_EXPERIMENTS): XP variant; library: 0 */
    const int *kv_ready;                   /* 64-row kernel only: the per-head counters of the
                                              concurrent quantization (quant.h), launched right
                                              after it with programmatic dependent launch; NULL:
                                              K/V were quantized before the launch */
    int kv_ready_target;                   /* the count that marks a head (b, hk) ready */
} sage_sm90_params;

/* Launch on `stream` the kernel of CTA height cta_q (128: two consumer warpgroups and a producer;
 * 64: one warpgroup, several CTAs per SM), d_pad 64, 128 or 256:
 * Q from p->q (quantized by the kernel, scales written to p->q_scale);
 * k8 [B*Hkv*nk_pad, d_pad] int8 rows; v8 e4m3 [B*Hkv*d_pad, nk_pad] (sage_vt_offset order),
 * channels from p->d on zero (the quantizer's padding). bf16: q and o dtype. No allocation, no
 * synchronisation. */
sage_status sage_sm90_launch(const sage_sm90_params *p, int d_pad, int cta_q, int bf16, const void *k8,
                             const void *v8, cudaStream_t stream, sage_msg msg);

/* The two kernels' own launchers, given the tensor maps of k8 and v8 (attn_sm90_launch.cu). */
sage_status sage_sm90_launch_wgmma(const sage_sm90_params *p, int d_pad, int bf16, const CUtensorMap *tk,
                                   const CUtensorMap *tv, cudaStream_t stream, sage_msg msg);
sage_status sage_sm90_launch_q64(const sage_sm90_params *p, int d_pad, int bf16, const CUtensorMap *tk,
                                 const CUtensorMap *tv, cudaStream_t stream, sage_msg msg);

#endif
