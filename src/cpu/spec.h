/* Private: the CPU specification of sageattn — the exact reference and the quantized algorithm
 * step by step (docs/algorithm.md). Every GPU kernel is tested against these functions; the
 * CPU device of the public API runs them.
 *
 * Arithmetic: fp32 on inputs converted to fp32, IEEE round-to-nearest, no contraction
 * (-ffp-contract=off), so results are reproducible bit for bit on any IEEE machine. */
#ifndef SAGE_CPU_SPEC_H
#define SAGE_CPU_SPEC_H

#include "../internal.h"
#include "numerics.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The SHIFT of FP8 PV: P~ = exp2(S - m + SAGE_FP8_SHIFT) spans [0, 448], the e4m3 range. */
#define SAGE_FP8_SHIFT 8.807354922057604f /* log2(448) */
#define SAGE_LOG2E 1.4426950408889634f
#define SAGE_LN2 0.6931471805599453f

/* Token -> scale group maps and the tile steps the quantized algorithm follows. Built from a
 * kernel's geometry by sage_spec_maps_fill, or by hand in tests. */
typedef struct sage_spec_maps {
    const int32_t *q_group;  /* [Nq]: Q scale group of each query row, in [0, n_q_groups) */
    int64_t n_q_groups;
    const int32_t *k_group;  /* [Nk]: K scale group of each key token, in [0, n_k_groups) */
    int64_t n_k_groups;
    int64_t q_block;         /* rows of one smooth-Q block (block b = rows [b*q_block, ...)) */
    int64_t kv_tile;         /* keys per online-softmax step */
} sage_spec_maps;

/* Fill q_group [Nq] and k_group [Nk] from a geometry (geometry.h maps) and set the counts. */
void sage_spec_maps_fill(sage_spec_maps *m, sage_geometry g, sage_qk_groups gran, int64_t nq,
                         int64_t nk, int32_t *q_group, int32_t *k_group);

/* The quantized tensors of one call in their logical layouts (dense, no padding). */
typedef struct sage_spec_quant {
    int8_t *q8;        /* [B, Hq, Nq, D] */
    float *q_scale;    /* [B, Hq, n_q_groups] */
    float *q_mean;     /* smooth Q: [B, Hq, ceil(Nq / q_block), D]; may be NULL when off */
    int8_t *k8;        /* [B, Hkv, Nk, D] */
    float *k_scale;    /* [B, Hkv, n_k_groups] */
    float *k_mean;     /* [B, Hkv, D]; all zero when smooth K is off */
    uint8_t *v8;       /* FP8 PV: e4m3 V8[d][t], [B, Hkv, D, Nk]; may be NULL for 16-bit PV */
    float *v_scale;    /* FP8 PV: [B, Hkv, D] */
    float *v_mean;     /* FP8 PV: [B, Hkv, D]; all zero when smooth V is off */
} sage_spec_quant;

/* The tiles of the CPU kernels (src/cpu/backend.c): what sage_forward on the CPU follows. */
sage_geometry sage_cpu_geometry(void);

/* Mean of K over tokens per (batch, kv head), [B, Hkv, D]. */
void sage_spec_k_mean(const sage_problem *p, float *k_mean);

/* Quantize Q, K (and V for FP8 PV) into out, following the pinned recipe of the brief §1.2/§1.5.
 * k_mean: the K mean to subtract (e.g. the GPU's, so both round identically); NULL = compute
 * it with sage_spec_k_mean (into out->k_mean). Ignored when smooth K is off. */
void sage_spec_quantize(const sage_problem *p, const sage_spec_maps *m, const float *k_mean,
                        sage_spec_quant *out);

/* sage_spec_quantize with every mean given: q_mean [B, Hq, ceil(Nq / q_block), D] (smooth Q)
 * and v_mean [B, Hkv, D] (smooth V, FP8 PV) may be NULL = computed here (docs/algorithm.md:
 * double sum in token order, divided by the count, rounded once to fp32). Lets a GPU test feed
 * the GPU's means so that Q8 / V8 can be compared bit for bit with smoothing on. */
void sage_spec_quantize_ex(const sage_problem *p, const sage_spec_maps *m, const float *k_mean,
                           const float *q_mean, const float *v_mean, sage_spec_quant *out);

/* The quantized attention from quantized tensors (V itself is read from p->a.v for 16-bit PV).
 * Writes o (p->a.o with its strides, in p->a.dtype) and lse (if p->a.lse).
 * Uses p->a.cpu_threads workers and allocates their scratch (if that fails it runs on one
 * worker; if even that fails nothing is written). */
void sage_spec_attention(const sage_problem *p, const sage_spec_maps *m, const sage_spec_quant *qt);

/* Work items of sage_spec_attention (a worker count above it is wasted). */
int64_t sage_spec_attention_items(const sage_problem *p, const sage_spec_maps *m);
/* Bytes of scratch one worker of sage_spec_attention needs (a multiple of 64). */
size_t sage_spec_attention_scratch_bytes(const sage_problem *p, const sage_spec_maps *m);
/* sage_spec_attention on n_workers threads with caller-owned scratch: n_workers times
 * sage_spec_attention_scratch_bytes, 64-byte aligned. Allocates nothing. */
void sage_spec_attention_ws(const sage_problem *p, const sage_spec_maps *m, const sage_spec_quant *qt,
                            void *scratch, int n_workers);

/* Exact attention: fp32 inputs, double accumulation; o and lse as above. */
void sage_spec_reference(const sage_problem *p);

/* The floor of FP8 PV: exact scores, only P and V rounded to e4m3 (per-channel V scale).
 * Writes o and lse as above. */
void sage_spec_pv_floor(const sage_problem *p, const sage_spec_maps *m);

#ifdef __cplusplus
}
#endif
#endif
