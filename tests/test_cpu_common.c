/* Helpers of the CPU-path tests (test_cpu_common.h). */
#define _POSIX_C_SOURCE 200809L
#include "test_cpu_common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- random ------------------------------------------------------------------------------------- */

void tc_rng_seed(tc_rng *r, uint64_t seed) {
    r->s = seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
    r->have = 0;
    r->spare = 0.0;
}

uint64_t tc_rng_u64(tc_rng *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double tc_rng_uniform(tc_rng *r) { return ((double)(tc_rng_u64(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

double tc_rng_normal(tc_rng *r) {
    if (r->have) {
        r->have = 0;
        return r->spare;
    }
    double u = tc_rng_uniform(r), v = tc_rng_uniform(r);
    double rad = sqrt(-2.0 * log(u)), th = 6.283185307179586 * v;
    r->spare = rad * sin(th);
    r->have = 1;
    return rad * cos(th);
}

double tc_rng_student(tc_rng *r, int nu) {
    double chi2 = 0.0;
    for (int i = 0; i < nu; i++) {
        double z = tc_rng_normal(r);
        chi2 += z * z;
    }
    return tc_rng_normal(r) / sqrt(chi2 / nu);
}

const char *tc_input_name(tc_input in) {
    static const char *names[] = {"randn", "k-bias", "q-outlier", "student-t", "q-bias", "v-bias"};
    return in < TC_INPUT_COUNT ? names[in] : "?";
}

/* ---- cases -------------------------------------------------------------------------------------- */

tc_case tc_case_default(void) {
    tc_case c;
    memset(&c, 0, sizeof c);
    c.dtype = SAGE_DTYPE_FP16;
    c.B = 1;
    c.Hq = c.Hkv = 2;
    c.Nq = c.Nk = 256;
    c.D = 64;
    c.causal = SAGE_CAUSAL_NONE;
    c.layout = TC_BHND;
    c.input = TC_RANDN;
    c.seed = 1;
    c.threads = 0;
    return c;
}

static size_t dt_size(sage_dtype dt) { return dt == SAGE_DTYPE_FP32 ? 4 : 2; }

/* Fill one [B, H, N, D] tensor addressed by (base, strides) with values from gen. */
typedef double (*tc_gen)(tc_rng *r, void *ctx, int64_t b, int64_t h, int64_t n, int64_t d);

static void fill(void *base, sage_dtype dt, int64_t B, int64_t H, int64_t N, int64_t D, int64_t sb, int64_t sh,
                 int64_t sn, tc_rng *r, tc_gen gen, void *ctx) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t n = 0; n < N; n++)
                for (int64_t d = 0; d < D; d++)
                    sage_store_f32(base, b * sb + h * sh + n * sn + d, dt, (float)gen(r, ctx, b, h, n, d));
}

typedef struct gen_ctx {
    tc_input input;
    int which;          /* 0 q, 1 k, 2 v */
    const double *bias; /* [B, H, D] or NULL */
    int64_t H, D;
} gen_ctx;

static double gen_value(tc_rng *r, void *vctx, int64_t b, int64_t h, int64_t n, int64_t d) {
    const gen_ctx *g = (const gen_ctx *)vctx;
    double x = g->input == TC_STUDENT ? tc_rng_student(r, 3) : tc_rng_normal(r);
    (void)n;
    if (g->input == TC_QOUTLIER && g->which == 0 && d % 16 == 5) x *= 10.0;
    if (g->bias) x += g->bias[(b * g->H + h) * g->D + d];
    return x;
}

tc_data *tc_make(const tc_case *c) {
    tc_data *d = (tc_data *)calloc(1, sizeof *d);
    sage_args *a = &d->a;
    const size_t es = dt_size(c->dtype);
    tc_rng r;
    d->c = *c;
    memset(a, 0, sizeof *a);
    a->struct_size = sizeof *a;
    a->dtype = c->dtype;
    a->batch = c->B;
    a->heads_q = c->Hq;
    a->heads_kv = c->Hkv;
    a->seqlen_q = c->Nq;
    a->seqlen_kv = c->Nk;
    a->head_dim = c->D;
    a->causal = c->causal;
    a->cpu_threads = c->threads;
    a->sm_scale = 0.0f;

    if (c->layout == TC_PACKED_QKV) {
        const int64_t H = c->Hq, N = c->Nq, D = c->D;
        d->qkv_buf = calloc((size_t)(c->B * N * 3 * H * D), es);
        a->q = d->qkv_buf;
        a->k = (char *)d->qkv_buf + (size_t)(H * D) * es;
        a->v = (char *)d->qkv_buf + (size_t)(2 * H * D) * es;
        a->q_stride_b = a->k_stride_b = a->v_stride_b = N * 3 * H * D;
        a->q_stride_h = a->k_stride_h = a->v_stride_h = D;
        a->q_stride_n = a->k_stride_n = a->v_stride_n = 3 * H * D;
    } else {
        d->q_buf = calloc((size_t)(c->B * c->Hq * c->Nq * c->D), es);
        d->k_buf = calloc((size_t)(c->B * c->Hkv * c->Nk * c->D), es);
        d->v_buf = calloc((size_t)(c->B * c->Hkv * c->Nk * c->D), es);
        a->q = d->q_buf;
        a->k = d->k_buf;
        a->v = d->v_buf;
        if (c->layout == TC_BNHD) {
            a->q_stride_n = c->Hq * c->D, a->q_stride_h = c->D, a->q_stride_b = c->Nq * c->Hq * c->D;
            a->k_stride_n = c->Hkv * c->D, a->k_stride_h = c->D, a->k_stride_b = c->Nk * c->Hkv * c->D;
        } else {
            a->q_stride_n = c->D, a->q_stride_h = c->Nq * c->D, a->q_stride_b = c->Hq * c->Nq * c->D;
            a->k_stride_n = c->D, a->k_stride_h = c->Nk * c->D, a->k_stride_b = c->Hkv * c->Nk * c->D;
        }
        a->v_stride_n = a->k_stride_n, a->v_stride_h = a->k_stride_h, a->v_stride_b = a->k_stride_b;
    }
    /* o: contiguous, filled by the runs */
    a->o_stride_n = c->D;
    a->o_stride_h = c->Nq * c->D;
    a->o_stride_b = c->Hq * c->Nq * c->D;
    d->o_elems = (size_t)(c->B * c->Hq * c->Nq * c->D);

    tc_rng_seed(&r, c->seed);
    {
        double *qb = NULL, *kb = NULL, *vb = NULL;
        double mag = c->input == TC_KBIAS ? 10.0 : c->input == TC_QBIAS ? 3.0 : c->input == TC_VBIAS ? 5.0 : 0.0;
        double **which = c->input == TC_KBIAS ? &kb : c->input == TC_QBIAS ? &qb : c->input == TC_VBIAS ? &vb : NULL;
        if (which) {
            int64_t H = c->input == TC_QBIAS ? c->Hq : c->Hkv;
            size_t n = (size_t)(c->B * H * c->D);
            *which = (double *)malloc(n * sizeof(double));
            for (size_t i = 0; i < n; i++) (*which)[i] = mag * tc_rng_normal(&r);
        }
        gen_ctx gq = {c->input, 0, qb, c->Hq, c->D}, gk = {c->input, 1, kb, c->Hkv, c->D},
                gv = {c->input, 2, vb, c->Hkv, c->D};
        fill((void *)a->q, c->dtype, c->B, c->Hq, c->Nq, c->D, a->q_stride_b, a->q_stride_h, a->q_stride_n, &r,
             gen_value, &gq);
        fill((void *)a->k, c->dtype, c->B, c->Hkv, c->Nk, c->D, a->k_stride_b, a->k_stride_h, a->k_stride_n, &r,
             gen_value, &gk);
        fill((void *)a->v, c->dtype, c->B, c->Hkv, c->Nk, c->D, a->v_stride_b, a->v_stride_h, a->v_stride_n, &r,
             gen_value, &gv);
        free(qb);
        free(kb);
        free(vb);
    }
    /* channel means of v, from the stored values */
    d->v_mean = (double *)calloc((size_t)(c->B * c->Hkv * c->D), sizeof(double));
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t h = 0; h < c->Hkv; h++)
            for (int64_t dd = 0; dd < c->D; dd++) {
                double s = 0.0;
                for (int64_t n = 0; n < c->Nk; n++)
                    s += sage_load_f32(a->v, b * a->v_stride_b + h * a->v_stride_h + n * a->v_stride_n + dd, c->dtype);
                d->v_mean[(b * c->Hkv + h) * c->D + dd] = s / (double)c->Nk;
            }
    return d;
}

void tc_free(tc_data *d) {
    if (!d) return;
    free(d->qkv_buf);
    free(d->q_buf);
    free(d->k_buf);
    free(d->v_buf);
    free(d->v_mean);
    free(d);
}

tc_out tc_out_alloc(const tc_data *d) {
    tc_out o;
    o.o = calloc(d->o_elems, dt_size(d->c.dtype));
    o.lse = (float *)calloc((size_t)(d->c.B * d->c.Hq * d->c.Nq), sizeof(float));
    return o;
}

void tc_out_free(tc_out *o) {
    free(o->o);
    free(o->lse);
    o->o = NULL;
    o->lse = NULL;
}

tc_opts tc_opts_default(void) {
    tc_opts o;
    o.pv = SAGE_PV_AUTO;
    o.groups = SAGE_QK_AUTO;
    o.smooth_k = o.smooth_q = o.smooth_v = -1;
    return o;
}

void tc_problem(const tc_data *d, const tc_out *o, tc_opts opts, sage_problem *p) {
    memset(p, 0, sizeof *p);
    p->a = d->a;
    p->a.o = o->o;
    p->a.lse = o->lse;
    if (p->a.sm_scale == 0.0f) p->a.sm_scale = (float)(1.0 / sqrt((double)p->a.head_dim));
    p->algorithm = SAGE_ALGO_QUANTIZED;
    p->qk_groups = opts.groups == SAGE_QK_AUTO ? SAGE_QK_PER_THREAD : opts.groups;
    p->pv = opts.pv == SAGE_PV_AUTO ? SAGE_PV_16BIT : opts.pv;
    p->smooth_k = opts.smooth_k < 0 ? true : opts.smooth_k != 0;
    p->smooth_q = opts.smooth_q < 0 ? false : opts.smooth_q != 0;
    p->smooth_v = p->pv == SAGE_PV_FP8 && opts.smooth_v > 0;
    p->cuda_cc = 0;
    p->group_size = p->a.heads_q / p->a.heads_kv;
}

sage_geometry tc_cpu_geometry(void) { return sage_cpu_geometry(); }

void tc_run_reference(const tc_data *d, tc_out *out) {
    sage_problem p;
    tc_problem(d, out, tc_opts_default(), &p);
    p.algorithm = SAGE_ALGO_REFERENCE;
    sage_spec_reference(&p);
}

void tc_run_floor(const tc_data *d, tc_out *out, tc_opts opts) {
    sage_problem p;
    sage_spec_maps m;
    int32_t *qg = (int32_t *)malloc((size_t)d->c.Nq * sizeof(int32_t));
    int32_t *kg = (int32_t *)malloc((size_t)d->c.Nk * sizeof(int32_t));
    opts.pv = SAGE_PV_FP8;
    tc_problem(d, out, opts, &p);
    sage_spec_maps_fill(&m, tc_cpu_geometry(), p.qk_groups, d->c.Nq, d->c.Nk, qg, kg);
    sage_spec_pv_floor(&p, &m);
    free(qg);
    free(kg);
}

void tc_run_quantized(const tc_data *d, tc_out *out, tc_opts opts, sage_geometry g) {
    const tc_case *c = &d->c;
    sage_problem p;
    sage_spec_maps m;
    sage_spec_quant qt;
    int32_t *qg = (int32_t *)malloc((size_t)c->Nq * sizeof(int32_t));
    int32_t *kg = (int32_t *)malloc((size_t)c->Nk * sizeof(int32_t));
    tc_problem(d, out, opts, &p);
    sage_spec_maps_fill(&m, g, p.qk_groups, c->Nq, c->Nk, qg, kg);
    {
        const size_t nq = (size_t)(c->B * c->Hq), nk = (size_t)(c->B * c->Hkv), D = (size_t)c->D;
        const size_t nqb = (size_t)((c->Nq + m.q_block - 1) / m.q_block);
        qt.q8 = (int8_t *)malloc(nq * (size_t)c->Nq * D);
        qt.q_scale = (float *)malloc(nq * (size_t)m.n_q_groups * sizeof(float));
        qt.q_mean = (float *)malloc(nq * nqb * D * sizeof(float));
        qt.k8 = (int8_t *)malloc(nk * (size_t)c->Nk * D);
        qt.k_scale = (float *)malloc(nk * (size_t)m.n_k_groups * sizeof(float));
        qt.k_mean = (float *)malloc(nk * D * sizeof(float));
        qt.v8 = (uint8_t *)malloc(nk * D * (size_t)c->Nk);
        qt.v_scale = (float *)malloc(nk * D * sizeof(float));
        qt.v_mean = (float *)malloc(nk * D * sizeof(float));
    }
    sage_spec_quantize(&p, &m, NULL, &qt);
    sage_spec_attention(&p, &m, &qt);
    free(qt.q8);
    free(qt.q_scale);
    free(qt.q_mean);
    free(qt.k8);
    free(qt.k_scale);
    free(qt.k_mean);
    free(qt.v8);
    free(qt.v_scale);
    free(qt.v_mean);
    free(qg);
    free(kg);
}

static sage_toggle toggle(int v) { return v < 0 ? SAGE_AUTO : v ? SAGE_ON : SAGE_OFF; }

sage_status tc_run_api(const tc_data *d, tc_out *out, tc_opts opts, sage_algorithm algo, const char **kernel) {
    sage_args a = d->a;
    sage_plan plan;
    char msg[256];
    size_t ws_size = 0;
    void *ws = NULL;
    sage_status st;
    a.o = out->o;
    a.lse = out->lse;
    a.device = SAGE_DEVICE_CPU;
    a.options.algorithm = algo;
    a.options.qk_groups = opts.groups;
    a.options.pv = opts.pv;
    a.options.smooth_k = toggle(opts.smooth_k);
    a.options.smooth_q = toggle(opts.smooth_q);
    a.options.smooth_v = toggle(opts.smooth_v);
    st = sage_supported(&a, &plan, msg, sizeof msg);
    if (st != SAGE_OK) {
        printf("    sage_supported: %s (%s)\n", sage_status_string(st), msg);
        return st;
    }
    if (kernel) *kernel = plan.kernel;
    st = sage_workspace_size(&a, &ws_size, msg, sizeof msg);
    if (st != SAGE_OK) return st;
    if (ws_size) ws = aligned_alloc(256, (ws_size + 255) / 256 * 256);
    st = sage_forward(&a, ws, ws_size, NULL, msg, sizeof msg);
    if (st != SAGE_OK) printf("    sage_forward: %s (%s)\n", sage_status_string(st), msg);
    free(ws);
    return st;
}

/* ---- metrics ------------------------------------------------------------------------------------ */

float tc_o_at(const tc_data *d, const void *o, size_t i) { return sage_load_f32(o, (int64_t)i, d->c.dtype); }

tc_err tc_compare(const tc_data *d, const tc_out *o, const tc_out *ref, int center) {
    const tc_case *c = &d->c;
    tc_err e;
    double sa = 0.0, sr = 0.0, dot = 0.0, no = 0.0, nr = 0.0, se = 0.0;
    memset(&e, 0, sizeof e);
    for (size_t i = 0; i < d->o_elems; i++) {
        const int64_t dd = (int64_t)(i % (size_t)c->D);
        const int64_t h = (int64_t)(i / (size_t)(c->D * c->Nq)) % c->Hq;
        const int64_t b = (int64_t)(i / (size_t)(c->D * c->Nq * c->Hq));
        const double mu = center ? d->v_mean[(b * c->Hkv + h / (c->Hq / c->Hkv)) * c->D + dd] : 0.0;
        const double x = (double)tc_o_at(d, o->o, i), y = (double)tc_o_at(d, ref->o, i);
        if (!isfinite(x)) {
            e.nonfinite++;
            continue;
        }
        const double xc = x - mu, yc = y - mu;
        sa += fabs(xc - yc);
        sr += fabs(yc);
        dot += xc * yc;
        no += xc * xc;
        nr += yc * yc;
        se += (xc - yc) * (xc - yc);
        if (fabs(x - y) > e.max_abs) e.max_abs = fabs(x - y);
    }
    e.rel_l1 = sr > 0.0 ? sa / sr : sa;
    e.cos = (no > 0.0 && nr > 0.0) ? dot / sqrt(no * nr) : (no == nr ? 1.0 : 0.0);
    e.rmse = sqrt(se / (double)d->o_elems);
    for (size_t i = 0; i < (size_t)(c->B * c->Hq * c->Nq); i++) {
        const float x = o->lse[i], y = ref->lse[i];
        if (isfinite(x) && isfinite(y)) {
            if (fabs((double)x - (double)y) > e.lse_max_abs) e.lse_max_abs = fabs((double)x - (double)y);
        } else if (!(x == -INFINITY && y == -INFINITY)) {
            e.lse_inf_mismatch++;
        }
    }
    return e;
}

void tc_print_err(const char *label, tc_err e) {
    printf("    %-46s relL1 %.5f  cos %.6f  rmse %.5f  lse %.2e%s\n", label, e.rel_l1, e.cos, e.rmse, e.lse_max_abs,
           e.nonfinite || e.lse_inf_mismatch ? "  NONFINITE" : "");
}

double tc_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int tc_sanitized(void) {
#if defined(__SANITIZE_ADDRESS__)
    return 1;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    return 1;
#else
    return 0;
#endif
#else
    return 0;
#endif
}
