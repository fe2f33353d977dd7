/* The CPU specification of sageattn (spec.h, docs/algorithm.md).
 *
 * Every function here is the definition the GPU kernels are tested against, so each step is
 * written the plain way, in the order docs/algorithm.md states it. Loops are arranged so that the
 * compiler can vectorize them without changing a single rounding: vector lanes only ever run
 * over independent channels d (axpy-like), and the one reduction that is vectorized is the int32
 * dot product, which is exact. */
#include "spec.h"
#include "parallel.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- addressing ------------------------------------------------------------------------- */

static inline int64_t off_q(const sage_args *a, int64_t b, int64_t h, int64_t n) {
    return b * a->q_stride_b + h * a->q_stride_h + n * a->q_stride_n;
}
static inline int64_t off_k(const sage_args *a, int64_t b, int64_t h, int64_t n) {
    return b * a->k_stride_b + h * a->k_stride_h + n * a->k_stride_n;
}
static inline int64_t off_v(const sage_args *a, int64_t b, int64_t h, int64_t n) {
    return b * a->v_stride_b + h * a->v_stride_h + n * a->v_stride_n;
}
static inline int64_t off_o(const sage_args *a, int64_t b, int64_t h, int64_t n) {
    return b * a->o_stride_b + h * a->o_stride_h + n * a->o_stride_n;
}

/* Last key row i may see (can be < 0: the row sees nothing). */
static inline int64_t last_key(const sage_args *a, int64_t i) {
    int64_t last = a->seqlen_kv - 1, lim;
    switch (a->causal) {
    case SAGE_CAUSAL_TOP_LEFT: lim = i; break;
    case SAGE_CAUSAL_BOTTOM_RIGHT: lim = i + (a->seqlen_kv - a->seqlen_q); break;
    default: return last;
    }
    return lim < last ? lim : last;
}

static inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Mean over rows [n0, n1) of a [N, D] slice at element offset base_off with row stride sn:
 * double sum in row order, divided by the count in double, rounded once to fp32. */
static void mean_rows(const void *base, sage_dtype dt, int64_t base_off, int64_t sn, int64_t n0,
                      int64_t n1, int64_t D, float *out) {
    double acc[SAGE_MAX_HEAD_DIM];
    float row[SAGE_MAX_HEAD_DIM];
    for (int64_t d = 0; d < D; d++) acc[d] = 0.0;
    for (int64_t n = n0; n < n1; n++) {
        sage_load_row(base, base_off + n * sn, D, dt, row);
        for (int64_t d = 0; d < D; d++) acc[d] += (double)row[d];
    }
    for (int64_t d = 0; d < D; d++) out[d] = (float)(acc[d] / (double)(n1 - n0));
}

/* ---- maps ---------------------------------------------------------------------------------- */

void sage_spec_maps_fill(sage_spec_maps *m, sage_geometry g, sage_qk_groups gran, int64_t nq,
                         int64_t nk, int32_t *q_group, int32_t *k_group) {
    if (gran == SAGE_QK_AUTO) gran = SAGE_QK_PER_THREAD;
    for (int64_t i = 0; i < nq; i++) q_group[i] = (int32_t)sage_q_group(g, gran, i);
    for (int64_t t = 0; t < nk; t++) k_group[t] = (int32_t)sage_k_group(g, gran, t);
    m->q_group = q_group;
    m->n_q_groups = sage_q_group_count(g, gran, nq);
    m->k_group = k_group;
    m->n_k_groups = sage_k_group_count(g, gran, nk);
    m->q_block = g.cta_q;
    m->kv_tile = g.cta_k;
}

/* ---- quantization --------------------------------------------------------------------------- */

void sage_spec_k_mean(const sage_problem *p, float *k_mean) {
    const sage_args *a = &p->a;
    for (int64_t b = 0; b < a->batch; b++)
        for (int64_t h = 0; h < a->heads_kv; h++)
            mean_rows(a->k, a->dtype, off_k(a, b, h, 0), a->k_stride_n, 0, a->seqlen_kv, a->head_dim,
                      k_mean + (b * a->heads_kv + h) * a->head_dim);
}

/* INT8 of the rows [0, N) of one head with per-group scales (the pinned recipe):
 * x = row - mean (mean may be per row block: mean_of_row(n)), amax per group, then
 * inv = 127 / amax, x8 = clamp(rne(x * inv)), scale = amax / 127 (amax == 0: scale 1, x8 = 0).
 * The scale array holds amax during the passes, so no scratch is needed. */
static void quant_int8_head(const void *src, sage_dtype dt, int64_t off0, int64_t sn, int64_t N,
                            int64_t D, const int32_t *group, int64_t n_groups, const float *mean,
                            int64_t mean_block, int8_t *x8, float *scale) {
    float row[SAGE_MAX_HEAD_DIM];
    for (int64_t g = 0; g < n_groups; g++) scale[g] = 0.0f;
    for (int64_t n = 0; n < N; n++) { /* pass 1: amax per group, after smoothing */
        const float *mu = mean ? mean + (n / mean_block) * D : NULL;
        float amax = scale[group[n]];
        sage_load_row(src, off0 + n * sn, D, dt, row);
        for (int64_t d = 0; d < D; d++) {
            float x = mu ? row[d] - mu[d] : row[d];
            float ax = fabsf(x);
            if (ax > amax) amax = ax;
        }
        scale[group[n]] = amax;
    }
    for (int64_t n = 0; n < N; n++) { /* pass 2: quantize */
        const float *mu = mean ? mean + (n / mean_block) * D : NULL;
        float amax = scale[group[n]];
        float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
        int8_t *dst = x8 + n * D;
        sage_load_row(src, off0 + n * sn, D, dt, row);
        for (int64_t d = 0; d < D; d++) {
            float x = mu ? row[d] - mu[d] : row[d];
            dst[d] = amax > 0.0f ? sage_int8_rne(x * inv) : 0;
        }
    }
    for (int64_t g = 0; g < n_groups; g++) scale[g] = scale[g] > 0.0f ? scale[g] / 127.0f : 1.0f;
}

/* FP8 V of one (batch, kv head): per channel d, x = v - vm, amax over all tokens,
 * inv = 448 / amax, V8[d][t] = e4m3(x * inv), vs = amax / 448 (amax == 0: vs 1, V8 = 0). */
static void quant_v_head(const sage_problem *p, int64_t b, int64_t h, const float *vm_in, uint8_t *v8,
                         float *vs, float *vm) {
    const sage_args *a = &p->a;
    const int64_t D = a->head_dim, N = a->seqlen_kv;
    const int64_t off0 = off_v(a, b, h, 0);
    float row[SAGE_MAX_HEAD_DIM], amax[SAGE_MAX_HEAD_DIM], inv[SAGE_MAX_HEAD_DIM];
    if (!p->smooth_v) {
        for (int64_t d = 0; d < D; d++) vm[d] = 0.0f;
    } else if (vm_in) {
        for (int64_t d = 0; d < D; d++) vm[d] = vm_in[d];
    } else {
        mean_rows(a->v, a->dtype, off0, a->v_stride_n, 0, N, D, vm);
    }
    for (int64_t d = 0; d < D; d++) amax[d] = 0.0f;
    for (int64_t t = 0; t < N; t++) {
        sage_load_row(a->v, off0 + t * a->v_stride_n, D, a->dtype, row);
        for (int64_t d = 0; d < D; d++) {
            float ax = fabsf(row[d] - vm[d]);
            if (ax > amax[d]) amax[d] = ax;
        }
    }
    for (int64_t d = 0; d < D; d++) {
        vs[d] = amax[d] > 0.0f ? amax[d] / 448.0f : 1.0f;
        inv[d] = amax[d] > 0.0f ? 448.0f / amax[d] : 0.0f;
    }
    for (int64_t t = 0; t < N; t++) {
        sage_load_row(a->v, off0 + t * a->v_stride_n, D, a->dtype, row);
        for (int64_t d = 0; d < D; d++)
            v8[d * N + t] = amax[d] > 0.0f ? sage_f32_to_e4m3((row[d] - vm[d]) * inv[d]) : 0;
    }
}

typedef struct quant_ctx {
    const sage_problem *p;
    const sage_spec_maps *m;
    const float *k_mean_in, *q_mean_in, *v_mean_in;
    sage_spec_quant *out;
    int64_t n_q_items, n_k_items;
} quant_ctx;

static void quant_item(void *vctx, int64_t item, int worker) {
    const quant_ctx *c = (const quant_ctx *)vctx;
    const sage_problem *p = c->p;
    const sage_args *a = &p->a;
    const sage_spec_maps *m = c->m;
    sage_spec_quant *out = c->out;
    const int64_t D = a->head_dim;
    (void)worker;
    if (item < c->n_q_items) { /* Q of (b, h) */
        const int64_t b = item / a->heads_q, h = item % a->heads_q;
        const int64_t nqb = ceil_div(a->seqlen_q, m->q_block);
        const int64_t bh = b * a->heads_q + h;
        const int64_t off0 = off_q(a, b, h, 0);
        float *qm = NULL;
        if (p->smooth_q) {
            qm = out->q_mean + bh * nqb * D;
            for (int64_t blk = 0; blk < nqb; blk++) {
                int64_t n0 = blk * m->q_block, n1 = n0 + m->q_block;
                if (n1 > a->seqlen_q) n1 = a->seqlen_q;
                if (c->q_mean_in)
                    memcpy(qm + blk * D, c->q_mean_in + (bh * nqb + blk) * D, (size_t)D * sizeof(float));
                else
                    mean_rows(a->q, a->dtype, off0, a->q_stride_n, n0, n1, D, qm + blk * D);
            }
        }
        quant_int8_head(a->q, a->dtype, off0, a->q_stride_n, a->seqlen_q, D, m->q_group, m->n_q_groups,
                        qm, m->q_block, out->q8 + bh * a->seqlen_q * D, out->q_scale + bh * m->n_q_groups);
        return;
    }
    item -= c->n_q_items;
    if (item < c->n_k_items) { /* K of (b, hkv) */
        const int64_t b = item / a->heads_kv, h = item % a->heads_kv;
        const int64_t bh = b * a->heads_kv + h;
        float *km = out->k_mean + bh * D;
        if (!p->smooth_k) {
            for (int64_t d = 0; d < D; d++) km[d] = 0.0f;
        } else if (c->k_mean_in) {
            for (int64_t d = 0; d < D; d++) km[d] = c->k_mean_in[bh * D + d];
        } else {
            mean_rows(a->k, a->dtype, off_k(a, b, h, 0), a->k_stride_n, 0, a->seqlen_kv, D, km);
        }
        quant_int8_head(a->k, a->dtype, off_k(a, b, h, 0), a->k_stride_n, a->seqlen_kv, D, m->k_group,
                        m->n_k_groups, p->smooth_k ? km : NULL, a->seqlen_kv,
                        out->k8 + bh * a->seqlen_kv * D, out->k_scale + bh * m->n_k_groups);
        return;
    }
    item -= c->n_k_items;
    { /* V of (b, hkv), FP8 PV */
        const int64_t b = item / a->heads_kv, h = item % a->heads_kv;
        const int64_t bh = b * a->heads_kv + h;
        quant_v_head(p, b, h, c->v_mean_in ? c->v_mean_in + bh * D : NULL, out->v8 + bh * D * a->seqlen_kv,
                     out->v_scale + bh * D, out->v_mean + bh * D);
    }
}

void sage_spec_quantize_ex(const sage_problem *p, const sage_spec_maps *m, const float *k_mean,
                           const float *q_mean, const float *v_mean, sage_spec_quant *out) {
    const sage_args *a = &p->a;
    quant_ctx c;
    c.p = p;
    c.m = m;
    c.k_mean_in = k_mean;
    c.q_mean_in = q_mean;
    c.v_mean_in = v_mean;
    c.out = out;
    c.n_q_items = a->batch * a->heads_q;
    c.n_k_items = a->batch * a->heads_kv;
    {
        int64_t n = c.n_q_items + c.n_k_items + (p->pv == SAGE_PV_FP8 ? c.n_k_items : 0);
        sage_parallel_for(sage_cpu_threads(a->cpu_threads), n, quant_item, &c);
    }
}

void sage_spec_quantize(const sage_problem *p, const sage_spec_maps *m, const float *k_mean,
                        sage_spec_quant *out) {
    sage_spec_quantize_ex(p, m, k_mean, NULL, NULL, out);
}

/* ---- quantized attention ---------------------------------------------------------------------- */

/* Rows per work item: a Q block is cut in chunks of at most this many rows. */
#define SAGE_ATT_ROWS 128

typedef struct att_ctx {
    const sage_problem *p;
    const sage_spec_maps *m;
    const sage_spec_quant *qt;
    int64_t rows;            /* rows per item */
    int64_t chunks;          /* items per Q block */
    int64_t n_qblocks;
    float *scratch;
    size_t scratch_floats;   /* per worker */
} att_ctx;

static int64_t att_rows(const sage_spec_maps *m) { return m->q_block < SAGE_ATT_ROWS ? m->q_block : SAGE_ATT_ROWS; }

int64_t sage_spec_attention_items(const sage_problem *p, const sage_spec_maps *m) {
    const sage_args *a = &p->a;
    return a->batch * a->heads_q * ceil_div(a->seqlen_q, m->q_block) * ceil_div(m->q_block, att_rows(m));
}

/* Scratch layout of one worker, in floats. */
static size_t att_scratch_floats(const sage_problem *p, const sage_spec_maps *m) {
    const size_t D = (size_t)p->a.head_dim, R = (size_t)att_rows(m), T = (size_t)m->kv_tile;
    size_t n = R * D      /* acc */
             + 2 * R      /* m, l */
             + 3 * T      /* s, pr, bias */
             + T * D      /* V tile as fp32 */
             + 2 * D      /* tile accumulator, one row of K */
             + 2 * T      /* indices of the non-zero P, int32 dots (int32) */
             + (R * D + T * D + 1) / 2; /* Q8 rows and the K8 tile as int16 */
    return (n + 15) / 16 * 16;
}

size_t sage_spec_attention_scratch_bytes(const sage_problem *p, const sage_spec_maps *m) {
    return att_scratch_floats(p, m) * sizeof(float);
}

/* int32 dot of two INT8 rows held as int16 (the widening is done once per tile, and int16
 * products map onto the pmaddwd-style instructions); exact (|sum| <= 127^2 * 256 < 2^22), so
 * any order gives the same. */
static inline int32_t dot_i16(const int16_t *restrict x, const int16_t *restrict y, int64_t n) {
    int32_t s = 0;
    for (int64_t i = 0; i < n; i++) s += (int32_t)x[i] * (int32_t)y[i];
    return s;
}

/* Four dot products of x with the rows y, y + n, y + 2n, y + 3n at once. */
static inline void dot4_i16(const int16_t *restrict x, const int16_t *restrict y, int64_t n, int32_t *out) {
    const int16_t *restrict y0 = y, *restrict y1 = y + n, *restrict y2 = y + 2 * n, *restrict y3 = y + 3 * n;
    int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (int64_t i = 0; i < n; i++) {
        const int32_t xi = x[i];
        s0 += xi * y0[i];
        s1 += xi * y1[i];
        s2 += xi * y2[i];
        s3 += xi * y3[i];
    }
    out[0] = s0, out[1] = s1, out[2] = s2, out[3] = s3;
}

static void att_item(void *vctx, int64_t item, int worker) {
    const att_ctx *c = (const att_ctx *)vctx;
    const sage_problem *p = c->p;
    const sage_args *a = &p->a;
    const sage_spec_maps *m = c->m;
    const sage_spec_quant *qt = c->qt;
    const int64_t D = a->head_dim, Nq = a->seqlen_q, Nk = a->seqlen_kv, T = m->kv_tile;
    const int fp8 = p->pv == SAGE_PV_FP8;
    const float shift = fp8 ? SAGE_FP8_SHIFT : 0.0f;
    const float cs = a->sm_scale * SAGE_LOG2E; /* scores in base-2 units */

    /* Items run Q blocks from the last to the first (with a causal mask the last blocks have the
     * most keys: largest first balances the workers), then (batch, head), then row chunks. */
    int64_t it = item;
    const int64_t chunk = it % c->chunks;
    it /= c->chunks;
    const int64_t bh_item = it % (a->batch * a->heads_q);
    const int64_t blk = c->n_qblocks - 1 - it / (a->batch * a->heads_q);
    const int64_t h = bh_item % a->heads_q, b = bh_item / a->heads_q;
    const int64_t hk = h / p->group_size;
    const int64_t bhq = b * a->heads_q + h, bhk = b * a->heads_kv + hk;

    int64_t r0 = blk * m->q_block + chunk * c->rows;
    int64_t r1 = r0 + c->rows, blk_end = (blk + 1) * m->q_block;
    if (r1 > blk_end) r1 = blk_end;
    if (r1 > Nq) r1 = Nq;
    if (r0 >= r1) return;
    const int64_t R = r1 - r0;

    float *sc = c->scratch + (size_t)worker * c->scratch_floats;
    float *acc = sc;
    float *mrow = acc + c->rows * D;
    float *lrow = mrow + c->rows;
    float *s = lrow + c->rows;
    float *pr = s + T;
    float *bias = pr + T;
    float *vt = bias + T;
    float *tacc = vt + T * D;
    float *krow = tacc + D;
    int32_t *nzj = (int32_t *)(krow + D);
    int32_t *idot = nzj + T;              /* the int32 dots of one row */
    int16_t *q16 = (int16_t *)(idot + T); /* [R][D] */
    int16_t *k16 = q16 + c->rows * D;    /* [T][D] */

    const int8_t *q8 = qt->q8 + bhq * Nq * D;
    const float *qs = qt->q_scale + bhq * m->n_q_groups;
    const int8_t *k8 = qt->k8 + bhk * Nk * D;
    const float *ks = qt->k_scale + bhk * m->n_k_groups;
    const float *km = qt->k_mean + bhk * D;
    const float *qm = p->smooth_q ? qt->q_mean + (bhq * ceil_div(Nq, m->q_block) + blk) * D : NULL;

    for (int64_t i = 0; i < R * D; i++) acc[i] = 0.0f;
    for (int64_t i = 0; i < R * D; i++) q16[i] = q8[r0 * D + i];
    for (int64_t i = 0; i < R; i++) {
        mrow[i] = -INFINITY;
        lrow[i] = 0.0f;
    }

    const int64_t kmax = last_key(a, r1 - 1); /* last key any row of the item sees */
    for (int64_t t0 = 0; t0 <= kmax; t0 += T) {
        int64_t nt = Nk - t0 < T ? Nk - t0 : T;
        if (kmax + 1 - t0 < nt) nt = kmax + 1 - t0; /* keys past kmax are never used */

        /* The V tile as fp32 [nt][D]: e4m3 decoded, or rounded to the 16-bit PV type. */
        if (fp8) {
            const uint8_t *v8 = qt->v8 + bhk * D * Nk;
            for (int64_t d = 0; d < D; d++)
                for (int64_t j = 0; j < nt; j++) vt[j * D + d] = sage_e4m3_to_f32(v8[d * Nk + t0 + j]);
        } else {
            for (int64_t j = 0; j < nt; j++) {
                float *dst = vt + j * D;
                sage_load_row(a->v, off_v(a, b, hk, t0 + j), D, a->dtype, dst);
                if (a->dtype == SAGE_DTYPE_FP32)
                    for (int64_t d = 0; d < D; d++) dst[d] = sage_round_bf16(dst[d]);
            }
        }
        for (int64_t i = 0; i < nt * D; i++) k16[i] = k8[t0 * D + i];
        /* Smooth Q: the correction qm . k'_j, k' = k - km in fp32 (unquantized), in base-2 units. */
        if (qm) {
            for (int64_t j = 0; j < nt; j++) {
                float dot = 0.0f;
                sage_load_row(a->k, off_k(a, b, hk, t0 + j), D, a->dtype, krow);
                for (int64_t d = 0; d < D; d++) dot += qm[d] * (krow[d] - km[d]);
                bias[j] = dot * cs;
            }
        }

        for (int64_t r = 0; r < R; r++) {
            const int64_t i = r0 + r;
            const int64_t lim = last_key(a, i);
            if (lim < t0) continue; /* nothing visible in this tile */
            const int64_t jn = lim - t0 + 1 < nt ? lim - t0 + 1 : nt;
            const int16_t *qrow = q16 + r * D;
            const float qsc = qs[m->q_group[i]];

            /* S = int32(Q8 . K8) * (qs * ks * sm_scale * log2 e) [+ smooth-Q correction] */
            float mt = -INFINITY;
            int64_t j4 = 0;
            for (; j4 + 4 <= jn; j4 += 4) /* four keys per pass over the Q row */
                dot4_i16(qrow, k16 + j4 * D, D, idot + j4);
            for (; j4 < jn; j4++) idot[j4] = dot_i16(qrow, k16 + j4 * D, D);
            for (int64_t j = 0; j < jn; j++) {
                const int64_t t = t0 + j;
                float sj = (float)idot[j] * ((qsc * ks[m->k_group[t]]) * cs);
                if (qm) sj = sj + bias[j];
                s[j] = sj;
                if (sj > mt) mt = sj;
            }
            const float m_old = mrow[r];
            const float m_new = mt > m_old ? mt : m_old;
            const float alpha = exp2f(m_old - m_new); /* 0 on the first visible tile */
            const float m_sh = m_new - shift;

            /* P~ = exp2(S - m_new + SHIFT); l sums it unrounded; PV uses it rounded. The exponent
             * is one correctly rounded fused multiply-add of the int32 sum, fmaf(float(s), scale,
             * -(m - SHIFT)), as the GPU kernels form it (one FFMA). Two exceptions use the rounded
             * score, S - (m - SHIFT): smooth Q (S carries the correction), and |m - SHIFT| >= 2^20,
             * where the fused exact product may exceed the rounded max m by half an ulp of m (>= 1/16)
             * and P~ would overflow for huge scores. */
            const int fused = !qm && fabsf(m_sh) < 0x1p20f;
            float lsum = 0.0f;
            for (int64_t j = 0; j < jn; j++) {
                float pt = fused ? exp2f(fmaf((float)idot[j], (qsc * ks[m->k_group[t0 + j]]) * cs, -m_sh))
                                 : exp2f(s[j] - m_sh);
                lsum += pt;
                pr[j] = fp8 ? sage_round_e4m3(pt) : sage_round_pv16(pt, a->dtype);
            }
            /* Two-level accumulation: this tile's P V in a fresh fp32 accumulator, then added to
             * the rescaled running one. (A zero P adds +-0 to a sum that starts at +0: skipping
             * it changes no bit.) */
            int64_t nz = 0;
            for (int64_t j = 0; j < jn; j++)
                if (pr[j] != 0.0f) {
                    s[nz] = pr[j]; /* s is free again: the non-zero P, compacted */
                    nzj[nz] = (int32_t)j;
                    nz++;
                }
            for (int64_t d = 0; d < D; d++) tacc[d] = 0.0f;
            int64_t u = 0;
            for (; u + 4 <= nz; u += 4) { /* four keys per pass; per lane still in key order */
                const float p0 = s[u], p1 = s[u + 1], p2 = s[u + 2], p3 = s[u + 3];
                const float *restrict v0 = vt + nzj[u] * D, *restrict v1 = vt + nzj[u + 1] * D;
                const float *restrict v2 = vt + nzj[u + 2] * D, *restrict v3 = vt + nzj[u + 3] * D;
                float *restrict ta = tacc;
                for (int64_t d = 0; d < D; d++) {
                    float t = ta[d];
                    t += p0 * v0[d];
                    t += p1 * v1[d];
                    t += p2 * v2[d];
                    t += p3 * v3[d];
                    ta[d] = t;
                }
            }
            for (; u < nz; u++) {
                const float pj = s[u];
                const float *restrict vj = vt + nzj[u] * D;
                float *restrict ta = tacc;
                for (int64_t d = 0; d < D; d++) ta[d] += pj * vj[d];
            }
            float *restrict ar = acc + r * D;
            for (int64_t d = 0; d < D; d++) ar[d] = ar[d] * alpha + tacc[d];
            lrow[r] = lrow[r] * alpha + lsum;
            mrow[r] = m_new;
        }
    }

    /* Epilogue: o = acc / l * vs + vm (FP8) or acc / l (16-bit); lse in natural units. */
    const float *vs = fp8 ? qt->v_scale + bhk * D : NULL;
    const float *vm = fp8 ? qt->v_mean + bhk * D : NULL;
    for (int64_t r = 0; r < R; r++) {
        const int64_t i = r0 + r;
        float *ar = acc + r * D;
        if (mrow[r] == -INFINITY) { /* sees no key */
            for (int64_t d = 0; d < D; d++) ar[d] = 0.0f;
            if (a->lse) a->lse[bhq * Nq + i] = -INFINITY;
        } else {
            const float l = lrow[r];
            if (fp8)
                for (int64_t d = 0; d < D; d++) ar[d] = (ar[d] / l) * vs[d] + vm[d];
            else
                for (int64_t d = 0; d < D; d++) ar[d] = ar[d] / l;
            if (a->lse) {
                float qkm = 0.0f; /* q . km with the unsmoothed q, fp32 */
                sage_load_row(a->q, off_q(a, b, h, i), D, a->dtype, krow);
                for (int64_t d = 0; d < D; d++) qkm += krow[d] * km[d];
                a->lse[bhq * Nq + i] = SAGE_LN2 * ((mrow[r] + log2f(l)) - shift) + a->sm_scale * qkm;
            }
        }
        sage_store_row(a->o, off_o(a, b, h, i), D, a->dtype, ar);
    }
}

void sage_spec_attention_ws(const sage_problem *p, const sage_spec_maps *m, const sage_spec_quant *qt,
                            void *scratch, int n_workers) {
    att_ctx c;
    c.p = p;
    c.m = m;
    c.qt = qt;
    c.rows = att_rows(m);
    c.chunks = ceil_div(m->q_block, c.rows);
    c.n_qblocks = ceil_div(p->a.seqlen_q, m->q_block);
    c.scratch = (float *)scratch;
    c.scratch_floats = att_scratch_floats(p, m);
    sage_parallel_for(n_workers, sage_spec_attention_items(p, m), att_item, &c);
}

void sage_spec_attention(const sage_problem *p, const sage_spec_maps *m, const sage_spec_quant *qt) {
    int64_t items = sage_spec_attention_items(p, m);
    int workers = sage_cpu_threads(p->a.cpu_threads);
    size_t per = sage_spec_attention_scratch_bytes(p, m);
    void *scratch;
    if ((int64_t)workers > items) workers = (int)items;
    scratch = aligned_alloc(64, per * (size_t)workers);
    if (!scratch && workers > 1) {
        workers = 1;
        scratch = aligned_alloc(64, per);
    }
    if (!scratch) return;
    sage_spec_attention_ws(p, m, qt, scratch, workers);
    free(scratch);
}

/* ---- exact reference -------------------------------------------------------------------------- */

/* Dot product of two fp32 rows in double. Every product is exact in double; four partial sums
 * (for speed) change only the order of the double additions. */
static inline double dot_f64(const float *x, const float *y, int64_t n) {
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += (double)x[i] * (double)y[i];
        s1 += (double)x[i + 1] * (double)y[i + 1];
        s2 += (double)x[i + 2] * (double)y[i + 2];
        s3 += (double)x[i + 3] * (double)y[i + 3];
    }
    for (; i < n; i++) s0 += (double)x[i] * (double)y[i];
    return (s0 + s1) + (s2 + s3);
}

/* Rows per work item of the reference and the floor (their state lives on the worker's stack). */
#define SAGE_REF_ROWS 16

/* Start R exact-softmax rows r0.. of (b, h): q rows in fp32, zero accumulators, empty max/sum. */
static void rows_begin(const sage_args *a, int64_t b, int64_t h, int64_t r0, int64_t R,
                       float qf[][SAGE_MAX_HEAD_DIM], double acc[][SAGE_MAX_HEAD_DIM], double *mx, double *l) {
    for (int64_t r = 0; r < R; r++) {
        sage_load_row(a->q, off_q(a, b, h, r0 + r), a->head_dim, a->dtype, qf[r]);
        for (int64_t d = 0; d < a->head_dim; d++) acc[r][d] = 0.0;
        mx[r] = -INFINITY;
        l[r] = 0.0;
    }
}

typedef struct ref_ctx {
    const sage_problem *p;
    int64_t n_chunks;       /* row chunks per head */
} ref_ctx;

/* Exact attention for rows [r0, r1) of (b, h): keys outer (each K/V row converted once), rows
 * inner, a per-row online softmax in double with natural exp. */
static void ref_item(void *vctx, int64_t item, int worker) {
    const ref_ctx *c = (const ref_ctx *)vctx;
    const sage_problem *p = c->p;
    const sage_args *a = &p->a;
    const int64_t D = a->head_dim, Nq = a->seqlen_q;
    const int64_t chunk = item % c->n_chunks, bh = item / c->n_chunks;
    const int64_t h = bh % a->heads_q, b = bh / a->heads_q, hk = h / p->group_size;
    const int64_t r0 = chunk * SAGE_REF_ROWS;
    const int64_t R = Nq - r0 < SAGE_REF_ROWS ? Nq - r0 : SAGE_REF_ROWS;
    const double scale = (double)a->sm_scale;
    float qf[SAGE_REF_ROWS][SAGE_MAX_HEAD_DIM];
    double acc[SAGE_REF_ROWS][SAGE_MAX_HEAD_DIM];
    double mx[SAGE_REF_ROWS], l[SAGE_REF_ROWS];
    float kf[SAGE_MAX_HEAD_DIM], vf[SAGE_MAX_HEAD_DIM], out[SAGE_MAX_HEAD_DIM];
    (void)worker;

    rows_begin(a, b, h, r0, R, qf, acc, mx, l);
    const int64_t kmax = last_key(a, r0 + R - 1);
    for (int64_t t = 0; t <= kmax; t++) {
        sage_load_row(a->k, off_k(a, b, hk, t), D, a->dtype, kf);
        sage_load_row(a->v, off_v(a, b, hk, t), D, a->dtype, vf);
        for (int64_t r = 0; r < R; r++) {
            if (t > last_key(a, r0 + r)) continue;
            const double s = dot_f64(qf[r], kf, D) * scale;
            if (s > mx[r]) {
                const double f = exp(mx[r] - s); /* 0 for the first key */
                for (int64_t d = 0; d < D; d++) acc[r][d] *= f;
                l[r] *= f;
                mx[r] = s;
            }
            const double w = exp(s - mx[r]);
            l[r] += w;
            for (int64_t d = 0; d < D; d++) acc[r][d] += w * (double)vf[d];
        }
    }
    for (int64_t r = 0; r < R; r++) {
        const int64_t i = r0 + r;
        if (l[r] > 0.0) {
            for (int64_t d = 0; d < D; d++) out[d] = (float)(acc[r][d] / l[r]);
            if (a->lse) a->lse[bh * Nq + i] = (float)(mx[r] + log(l[r]));
        } else {
            for (int64_t d = 0; d < D; d++) out[d] = 0.0f;
            if (a->lse) a->lse[bh * Nq + i] = -INFINITY;
        }
        sage_store_row(a->o, off_o(a, b, h, i), D, a->dtype, out);
    }
}

void sage_spec_reference(const sage_problem *p) {
    const sage_args *a = &p->a;
    ref_ctx c;
    c.p = p;
    c.n_chunks = ceil_div(a->seqlen_q, SAGE_REF_ROWS);
    sage_parallel_for(sage_cpu_threads(a->cpu_threads), a->batch * a->heads_q * c.n_chunks, ref_item, &c);
}

/* ---- the FP8 floor ----------------------------------------------------------------------------- */

typedef struct floor_ctx {
    const sage_problem *p;
    const sage_spec_maps *m;
    int64_t n_chunks;
    const uint8_t *v8;      /* [B, Hkv, D, Nk] as sage_spec_quantize makes it */
    const float *vs, *vm;   /* [B, Hkv, D] */
    double *scratch;        /* per worker: scores [SAGE_REF_ROWS][kv_tile] */
    size_t scratch_doubles;
} floor_ctx;

/* Exact scores (double, from the fp32 inputs), base-2 online softmax per kv_tile with the FP8
 * SHIFT, P~ rounded to e4m3 (through fp32) and multiplied with the e4m3 V of the quantized path;
 * l, acc and the epilogue in double. */
static void floor_item(void *vctx, int64_t item, int worker) {
    const floor_ctx *c = (const floor_ctx *)vctx;
    const sage_problem *p = c->p;
    const sage_args *a = &p->a;
    const int64_t D = a->head_dim, Nq = a->seqlen_q, Nk = a->seqlen_kv, T = c->m->kv_tile;
    const int64_t chunk = item % c->n_chunks, bh = item / c->n_chunks;
    const int64_t h = bh % a->heads_q, b = bh / a->heads_q, hk = h / p->group_size;
    const int64_t bhk = b * a->heads_kv + hk;
    const int64_t r0 = chunk * SAGE_REF_ROWS;
    const int64_t R = Nq - r0 < SAGE_REF_ROWS ? Nq - r0 : SAGE_REF_ROWS;
    const double cs = (double)a->sm_scale * 1.4426950408889634; /* log2 e */
    const double shift = (double)SAGE_FP8_SHIFT;
    const uint8_t *v8 = c->v8 + bhk * D * Nk;
    const float *vs = c->vs + bhk * D, *vm = c->vm + bhk * D;
    float qf[SAGE_REF_ROWS][SAGE_MAX_HEAD_DIM];
    double acc[SAGE_REF_ROWS][SAGE_MAX_HEAD_DIM], tacc[SAGE_MAX_HEAD_DIM];
    double mx[SAGE_REF_ROWS], l[SAGE_REF_ROWS];
    float kf[SAGE_MAX_HEAD_DIM], out[SAGE_MAX_HEAD_DIM];
    double *s = c->scratch + (size_t)worker * c->scratch_doubles; /* [R][T] */
    double *vt = s + SAGE_REF_ROWS * T;                               /* [T][D] */

    rows_begin(a, b, h, r0, R, qf, acc, mx, l);
    const int64_t kmax = last_key(a, r0 + R - 1);
    for (int64_t t0 = 0; t0 <= kmax; t0 += T) {
        const int64_t nt = Nk - t0 < T ? Nk - t0 : T;
        for (int64_t d = 0; d < D; d++)
            for (int64_t j = 0; j < nt; j++) vt[j * D + d] = (double)sage_e4m3_to_f32(v8[d * Nk + t0 + j]);
        for (int64_t j = 0; j < nt; j++) {
            sage_load_row(a->k, off_k(a, b, hk, t0 + j), D, a->dtype, kf);
            for (int64_t r = 0; r < R; r++) {
                if (t0 + j > last_key(a, r0 + r)) {
                    s[r * T + j] = -INFINITY;
                    continue;
                }
                s[r * T + j] = dot_f64(qf[r], kf, D) * cs;
            }
        }
        for (int64_t r = 0; r < R; r++) {
            double mt = -INFINITY;
            for (int64_t j = 0; j < nt; j++)
                if (s[r * T + j] > mt) mt = s[r * T + j];
            if (mt == -INFINITY) continue;
            const double m_new = mt > mx[r] ? mt : mx[r];
            const double alpha = exp2(mx[r] - m_new);
            double lsum = 0.0;
            for (int64_t d = 0; d < D; d++) tacc[d] = 0.0;
            for (int64_t j = 0; j < nt; j++) {
                const double pt = exp2(s[r * T + j] - m_new + shift);
                const double pq = (double)sage_round_e4m3((float)pt);
                lsum += pt;
                if (pq == 0.0) continue;
                for (int64_t d = 0; d < D; d++) tacc[d] += pq * vt[j * D + d];
            }
            for (int64_t d = 0; d < D; d++) acc[r][d] = acc[r][d] * alpha + tacc[d];
            l[r] = l[r] * alpha + lsum;
            mx[r] = m_new;
        }
    }
    for (int64_t r = 0; r < R; r++) {
        const int64_t i = r0 + r;
        if (l[r] > 0.0) {
            for (int64_t d = 0; d < D; d++) out[d] = (float)(acc[r][d] / l[r] * (double)vs[d] + (double)vm[d]);
            if (a->lse) a->lse[bh * Nq + i] = (float)(0.6931471805599453 * (mx[r] + log2(l[r]) - shift));
        } else {
            for (int64_t d = 0; d < D; d++) out[d] = 0.0f;
            if (a->lse) a->lse[bh * Nq + i] = -INFINITY;
        }
        sage_store_row(a->o, off_o(a, b, h, i), D, a->dtype, out);
    }
}

typedef struct floor_v_ctx {
    const sage_problem *p;
    uint8_t *v8;
    float *vs, *vm;
} floor_v_ctx;

static void floor_v_item(void *vctx, int64_t item, int worker) {
    const floor_v_ctx *c = (const floor_v_ctx *)vctx;
    const sage_args *a = &c->p->a;
    const int64_t D = a->head_dim;
    (void)worker;
    quant_v_head(c->p, item / a->heads_kv, item % a->heads_kv, NULL, c->v8 + item * D * a->seqlen_kv,
                 c->vs + item * D, c->vm + item * D);
}

void sage_spec_pv_floor(const sage_problem *p, const sage_spec_maps *m) {
    const sage_args *a = &p->a;
    const int64_t D = a->head_dim, nbh = a->batch * a->heads_kv;
    const int workers = sage_cpu_threads(a->cpu_threads);
    floor_ctx c;
    floor_v_ctx vc;
    uint8_t *v8 = (uint8_t *)malloc((size_t)(nbh * D * a->seqlen_kv));
    float *vs = (float *)malloc((size_t)(nbh * D) * sizeof(float));
    float *vm = (float *)malloc((size_t)(nbh * D) * sizeof(float));
    const size_t per = (size_t)m->kv_tile * (size_t)(SAGE_REF_ROWS + D);
    double *scratch = (double *)malloc((size_t)workers * per * sizeof(double));
    if (v8 && vs && vm && scratch) {
        vc.p = p;
        vc.v8 = v8;
        vc.vs = vs;
        vc.vm = vm;
        sage_parallel_for(workers, nbh, floor_v_item, &vc);
        c.p = p;
        c.m = m;
        c.n_chunks = ceil_div(a->seqlen_q, SAGE_REF_ROWS);
        c.v8 = v8;
        c.vs = vs;
        c.vm = vm;
        c.scratch = scratch;
        c.scratch_doubles = per;
        sage_parallel_for(workers, a->batch * a->heads_q * c.n_chunks, floor_item, &c);
    }
    free(v8);
    free(vs);
    free(vm);
    free(scratch);
}
