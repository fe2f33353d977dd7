/* Private: the Hopper (sm90a) kernel of sageattn, as seen by the CUDA dispatch (src/cuda/select.cu).
 *
 * Contract with select.cu: SAGE_SM90_KERNEL_NAME names the kernel, sage_sm90_kernel is its
 * descriptor, and sage_sm90_select says whether it takes a problem (p validated, p->pv resolved);
 * when it does not, the message says why and the portable kernel runs instead.
 * Built only with SAGE_HAVE_SM90A (the sm_90a objects); its code runs only on sm_90. */
#ifndef SAGE_SM90_H
#define SAGE_SM90_H

#include "../../internal.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SAGE_SM90_KERNEL_NAME "cuda_sm90_wgmma"

/* INT8 QK^T + FP8 PV on wgmma, TMA, warp-specialised (attn_qk_int8_pv_fp8_sm90.cu).
 * Geometry SAGE_SM90_GEOMETRY (geometry.h): each of the two consumer warpgroups owns 64 rows,
 * 128-key tiles. Head dims 1..256, run as 64, 128 or 256 (zero-padded); selected for head dims
 * 65..128 above 16384 keys and 129..256 above 8192. */
extern const sage_kernel sage_sm90_kernel;

/* One warpgroup per CTA, no producer (attn_qk_int8_pv_fp8_sm90_q64.cu; SAGE_SM90_Q64_GEOMETRY:
 * 64-row CTAs, 2-4 per SM); head dims 1..256; selected for head dims <= 64, for 65..128 up to
 * 16384 keys and 129..256 up to 8192. */
extern const sage_kernel sage_sm90_q64_kernel;
#define SAGE_SM90_Q64_KERNEL_NAME "cuda_sm90_wgmma_q64"

/* SAGE_OK and *kernel = the Hopper kernel descriptor when it runs p; else
 * SAGE_ERR_UNSUPPORTED (or SAGE_ERR_HEAD_DIM) with the reason: 16-bit PV, head_dim above 256,
 * smooth Q, sizes beyond the kernel's 32-bit grid/TMA coordinates. */
sage_status sage_sm90_select(sage_problem *p, const sage_kernel **kernel, sage_msg msg);

/* The head dim the kernel runs for head dim d: 64, 128 or 256 (the quantized tensors' d_pad);
 * 0 when d is outside 1..256. */
int sage_sm90_padded_head_dim(int64_t d);

#ifdef __cplusplus
}
#endif
#endif
