/* Private: the portable attention kernel (mma.sync, sm_80+) and its launch parameters.
 * A CTA owns 16 * W query rows (W warps, one 16-row slab each) and walks the keys in tiles of 64
 * (the online-softmax step); per-thread scale groups follow geometry.h. Two CTA heights are
 * built: 64 rows (W = 4, two CTAs per SM: "cuda_sm80_mma", the default) and 128 rows (W = 8,
 * one CTA per SM: "cuda_sm80_mma_q128"). On an H100 the 64-row CTA measured 11% faster
 * (docs/perf-log.md, "Portable kernel"). */
#ifndef SAGE_CUDA_ATTN_MMA_H
#define SAGE_CUDA_ATTN_MMA_H

#include "../internal.h"
#include "quant.h"

#define SAGE_MMA_CTA_K 64

#ifdef __cplusplus
extern "C" {
#endif

/* Geometry of the W-warp CTA (W = 4 or 8). */
static inline sage_geometry sage_mma_geometry(int warps) {
    sage_geometry g = {16 * warps, SAGE_MMA_CTA_K, warps, 0};
    return g;
}

/* Head dim padded for the kernel: 64 or 128 (D <= 128). */
static inline int64_t sage_mma_d_pad(int64_t d) { return d <= 64 ? 64 : 128; }

/* Attention over the quantized tensors in ws (layout L, written by sage_cuda_quantize on the
 * same stream) with the kernel of geometry g. The caller has made p's device current. */
sage_status sage_mma_attention(const sage_problem *p, sage_geometry g, const sage_cuda_quant_layout *L, void *ws,
                               void *stream, sage_msg msg);

#ifdef __cplusplus
}
#endif
#endif
