/* The CPU backend: "cpu_quantized" runs the specification (sage_spec_quantize then
 * sage_spec_attention) with every buffer in the caller's workspace; "cpu_reference" runs the exact
 * reference and needs no workspace.
 *
 * Geometry: 128-row Q tiles of 8 warps (one 16-row slab each, so a per-thread Q group is the 2
 * rows of one fragment), 128-key KV tiles with 64-key K scale blocks (geometry.h). Measured at
 * D = 128 on randn and K-bias inputs, FP8 PV: 1.045..1.047 x the floor, inside the brief's 1.05;
 * 4-row Q groups with 128-key K blocks give 1.051..1.053 (docs/algorithm.md, "Accuracy"). */
#include "../internal.h"
#include "parallel.h"
#include "spec.h"

#include <stdint.h>
#include <string.h>

#define SAGE_CPU_GEOMETRY {128, 128, 8, 64}

sage_geometry sage_cpu_geometry(void) {
    const sage_geometry g = SAGE_CPU_GEOMETRY;
    return g;
}

/* Byte offsets of everything cpu_quantized keeps in the workspace. */
typedef struct cpu_ws_layout {
    size_t q_group, k_group;
    size_t q8, q_scale, q_mean;
    size_t k8, k_scale, k_mean;
    size_t v8, v_scale, v_mean;
    size_t scratch, scratch_per_worker;
    int workers;
    size_t total;
} cpu_ws_layout;

/* The maps' sizes only (no arrays): enough for the layout. */
static void cpu_maps_shape(const sage_kernel *k, const sage_problem *p, sage_spec_maps *m) {
    m->q_group = NULL;
    m->k_group = NULL;
    m->n_q_groups = sage_q_group_count(k->geometry, p->qk_groups, p->a.seqlen_q);
    m->n_k_groups = sage_k_group_count(k->geometry, p->qk_groups, p->a.seqlen_kv);
    m->q_block = k->geometry.cta_q;
    m->kv_tile = k->geometry.cta_k;
}

static size_t take(size_t *at, size_t bytes) {
    size_t off = *at;
    *at = sage_align_ws(off + bytes);
    return off;
}

static void cpu_layout(const sage_kernel *k, const sage_problem *p, cpu_ws_layout *L) {
    const sage_args *a = &p->a;
    const size_t B = (size_t)a->batch, Hq = (size_t)a->heads_q, Hk = (size_t)a->heads_kv;
    const size_t Nq = (size_t)a->seqlen_q, Nk = (size_t)a->seqlen_kv, D = (size_t)a->head_dim;
    const int fp8 = p->pv == SAGE_PV_FP8;
    sage_spec_maps m;
    size_t at = 0;
    int64_t items;
    cpu_maps_shape(k, p, &m);
    memset(L, 0, sizeof *L);
    L->q_group = take(&at, Nq * sizeof(int32_t));
    L->k_group = take(&at, Nk * sizeof(int32_t));
    L->q8 = take(&at, B * Hq * Nq * D);
    L->q_scale = take(&at, B * Hq * (size_t)m.n_q_groups * sizeof(float));
    L->q_mean = p->smooth_q ? take(&at, B * Hq * (size_t)((a->seqlen_q + m.q_block - 1) / m.q_block) * D * sizeof(float))
                            : SIZE_MAX;
    L->k8 = take(&at, B * Hk * Nk * D);
    L->k_scale = take(&at, B * Hk * (size_t)m.n_k_groups * sizeof(float));
    L->k_mean = take(&at, B * Hk * D * sizeof(float));
    if (fp8) {
        L->v8 = take(&at, B * Hk * D * Nk);
        L->v_scale = take(&at, B * Hk * D * sizeof(float));
        L->v_mean = take(&at, B * Hk * D * sizeof(float));
    } else {
        L->v8 = L->v_scale = L->v_mean = SIZE_MAX;
    }
    items = sage_spec_attention_items(p, &m);
    L->workers = sage_cpu_threads(a->cpu_threads);
    if ((int64_t)L->workers > items) L->workers = (int)items;
    L->scratch_per_worker = sage_spec_attention_scratch_bytes(p, &m);
    L->scratch = take(&at, L->scratch_per_worker * (size_t)L->workers);
    L->total = at;
}

static size_t cpu_quantized_ws(const sage_kernel *k, const sage_problem *p) {
    cpu_ws_layout L;
    cpu_layout(k, p, &L);
    return L.total;
}

static sage_status cpu_quantized_run(const sage_kernel *k, const sage_problem *p, void *ws, void *stream,
                                     sage_msg msg) {
    cpu_ws_layout L;
    sage_spec_maps m;
    sage_spec_quant qt;
    char *w = (char *)ws;
    (void)stream;
    (void)msg;
    cpu_layout(k, p, &L);
    sage_spec_maps_fill(&m, k->geometry, p->qk_groups, p->a.seqlen_q, p->a.seqlen_kv,
                        (int32_t *)(w + L.q_group), (int32_t *)(w + L.k_group));
    qt.q8 = (int8_t *)(w + L.q8);
    qt.q_scale = (float *)(w + L.q_scale);
    qt.q_mean = L.q_mean != SIZE_MAX ? (float *)(w + L.q_mean) : NULL;
    qt.k8 = (int8_t *)(w + L.k8);
    qt.k_scale = (float *)(w + L.k_scale);
    qt.k_mean = (float *)(w + L.k_mean);
    qt.v8 = L.v8 != SIZE_MAX ? (uint8_t *)(w + L.v8) : NULL;
    qt.v_scale = L.v_scale != SIZE_MAX ? (float *)(w + L.v_scale) : NULL;
    qt.v_mean = L.v_mean != SIZE_MAX ? (float *)(w + L.v_mean) : NULL;
    sage_spec_quantize(p, &m, NULL, &qt);
    sage_spec_attention_ws(p, &m, &qt, w + L.scratch, L.workers);
    return SAGE_OK;
}

static size_t cpu_reference_ws(const sage_kernel *k, const sage_problem *p) {
    (void)k;
    (void)p;
    return 0;
}

static sage_status cpu_reference_run(const sage_kernel *k, const sage_problem *p, void *ws, void *stream,
                                     sage_msg msg) {
    (void)k;
    (void)ws;
    (void)stream;
    (void)msg;
    sage_spec_reference(p);
    return SAGE_OK;
}

static const sage_kernel sage_cpu_quantized_kernel = {
    "cpu_quantized", SAGE_DEVICE_CPU, SAGE_CPU_GEOMETRY, cpu_quantized_ws, cpu_quantized_run};
static const sage_kernel sage_cpu_reference_kernel = {
    "cpu_reference", SAGE_DEVICE_CPU, SAGE_CPU_GEOMETRY, cpu_reference_ws, cpu_reference_run};

sage_status sage_cpu_select(sage_problem *p, const sage_kernel **kernel, sage_msg msg) {
    *kernel = NULL;
    if (p->a.head_dim < 1 || p->a.head_dim > SAGE_MAX_HEAD_DIM)
        return sage_fail(msg, SAGE_ERR_HEAD_DIM, "head_dim = %lld: the CPU path supports 1..%d",
                         (long long)p->a.head_dim, SAGE_MAX_HEAD_DIM);
    if (p->a.dtype != SAGE_DTYPE_FP16 && p->a.dtype != SAGE_DTYPE_BF16 && p->a.dtype != SAGE_DTYPE_FP32)
        return sage_fail(msg, SAGE_ERR_INVALID_ENUM, "dtype = %d is unknown", (int)p->a.dtype);
    /* CPU default: 16-bit PV (there is no FP8 arithmetic to gain from; FP8 PV stays available
     * as the specification of the GPU path). */
    if (p->pv == SAGE_PV_AUTO) p->pv = SAGE_PV_16BIT;
    if (p->qk_groups == SAGE_QK_AUTO) p->qk_groups = SAGE_QK_PER_THREAD;
    if (p->pv == SAGE_PV_16BIT) p->smooth_v = false; /* V is not scaled in 16-bit PV */
    switch (p->algorithm) {
    case SAGE_ALGO_QUANTIZED: *kernel = &sage_cpu_quantized_kernel; return SAGE_OK;
    case SAGE_ALGO_REFERENCE: *kernel = &sage_cpu_reference_kernel; return SAGE_OK;
    default:
        return sage_fail(msg, SAGE_ERR_INVALID_ENUM, "algorithm = %d is unknown", (int)p->algorithm);
    }
}
