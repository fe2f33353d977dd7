/* The exact reference (sage_spec_reference) against a naive double implementation written here
 * (all scores of a row, then max, exp, sum), over masks, GQA, Nq != Nk and layouts; and the
 * "no visible key" rows of every CPU algorithm. */
#include "test_cpu_common.h"

#include <math.h>
#include <stdlib.h>

/* Naive attention in double: o [B, Hq, Nq, D] and lse [B, Hq, Nq]. */
static void naive(const tc_data *d, double *o, double *lse) {
    const sage_args *a = &d->a;
    const tc_case *c = &d->c;
    const double scale = (double)(float)(1.0 / sqrt((double)c->D)); /* the fp32 sm_scale */
    double *s = (double *)malloc((size_t)c->Nk * sizeof(double));
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t h = 0; h < c->Hq; h++) {
            const int64_t hk = h / (c->Hq / c->Hkv);
            for (int64_t i = 0; i < c->Nq; i++) {
                double mx = -INFINITY, sum = 0.0;
                double *orow = o + ((b * c->Hq + h) * c->Nq + i) * c->D;
                for (int64_t j = 0; j < c->Nk; j++) {
                    int visible = c->causal == SAGE_CAUSAL_NONE ? 1
                                : c->causal == SAGE_CAUSAL_TOP_LEFT ? j <= i
                                                                    : j <= i + (c->Nk - c->Nq);
                    double dot = 0.0;
                    if (!visible) {
                        s[j] = -INFINITY;
                        continue;
                    }
                    for (int64_t e = 0; e < c->D; e++)
                        dot += (double)sage_load_f32(a->q, b * a->q_stride_b + h * a->q_stride_h + i * a->q_stride_n + e, c->dtype) *
                               (double)sage_load_f32(a->k, b * a->k_stride_b + hk * a->k_stride_h + j * a->k_stride_n + e, c->dtype);
                    s[j] = dot * scale;
                    if (s[j] > mx) mx = s[j];
                }
                for (int64_t e = 0; e < c->D; e++) orow[e] = 0.0;
                if (mx == -INFINITY) {
                    lse[(b * c->Hq + h) * c->Nq + i] = -INFINITY;
                    continue;
                }
                for (int64_t j = 0; j < c->Nk; j++) {
                    double p = s[j] == -INFINITY ? 0.0 : exp(s[j] - mx);
                    sum += p;
                    for (int64_t e = 0; e < c->D; e++)
                        orow[e] += p * (double)sage_load_f32(a->v, b * a->v_stride_b + hk * a->v_stride_h + j * a->v_stride_n + e, c->dtype);
                }
                for (int64_t e = 0; e < c->D; e++) orow[e] /= sum;
                lse[(b * c->Hq + h) * c->Nq + i] = mx + log(sum);
            }
        }
    free(s);
}

static void check_reference(tc_case c, const char *label) {
    tc_data *d = tc_make(&c);
    tc_out out = tc_out_alloc(d);
    const size_t rows = (size_t)(c.B * c.Hq * c.Nq);
    double *o = (double *)malloc(d->o_elems * sizeof(double));
    double *lse = (double *)malloc(rows * sizeof(double));
    /* fp32 output: 2^-22 relative to the row scale; 16-bit: one rounding of the type */
    const double tol = c.dtype == SAGE_DTYPE_FP32 ? 1e-6 : c.dtype == SAGE_DTYPE_FP16 ? 1.0 / 1024 : 1.0 / 128;
    int bad = 0;
    naive(d, o, lse);
    tc_run_reference(d, &out);
    for (size_t i = 0; i < d->o_elems && bad < 3; i++) {
        double got = (double)tc_o_at(d, out.o, i), want = o[i];
        if (!(fabs(got - want) <= tol * (fabs(want) + 1e-3))) {
            CHECK_MSG(0, "%s: o[%zu] = %.9g, naive %.9g", label, i, got, want);
            bad++;
        }
    }
    for (size_t i = 0; i < rows && bad < 6; i++) {
        double got = (double)out.lse[i], want = lse[i];
        if (want == -INFINITY ? got != -INFINITY : !(fabs(got - want) <= 1e-6 * (fabs(want) + 1.0))) {
            CHECK_MSG(0, "%s: lse[%zu] = %.9g, naive %.9g", label, i, got, want);
            bad++;
        }
    }
    free(o);
    free(lse);
    tc_out_free(&out);
    tc_free(d);
}

TEST(cpu_reference_matches_naive_double) {
    tc_case c = tc_case_default();
    c.dtype = SAGE_DTYPE_FP32;
    c.Nq = c.Nk = 67;
    c.D = 40;
    check_reference(c, "fp32 N67 D40");
    c.causal = SAGE_CAUSAL_TOP_LEFT;
    c.Nq = 50;
    c.Nk = 90;
    check_reference(c, "fp32 causal top-left Nq50 Nk90");
    c.causal = SAGE_CAUSAL_BOTTOM_RIGHT;
    check_reference(c, "fp32 causal bottom-right Nq50 Nk90");
    c.Nq = 90;
    c.Nk = 50; /* bottom-right with Nq > Nk: the first 40 rows see nothing */
    check_reference(c, "fp32 causal bottom-right Nq90 Nk50");
    c.causal = SAGE_CAUSAL_NONE;
    c.Hq = 6;
    c.Hkv = 2;
    c.B = 2;
    c.layout = TC_BNHD;
    check_reference(c, "fp32 GQA 6/2 B2 BNHD");
    c = tc_case_default();
    c.Nq = c.Nk = 33;
    c.D = 128;
    c.layout = TC_PACKED_QKV;
    check_reference(c, "fp16 packed qkv");
    c.dtype = SAGE_DTYPE_BF16;
    c.layout = TC_BHND;
    c.D = 256;
    c.Nq = 1;
    check_reference(c, "bf16 D256 Nq1");
}

/* Rows that see no key (bottom-right, Nq > Nk): o = 0 and lse = -inf in every algorithm; every
 * other row finite. */
TEST(cpu_fully_masked_rows_give_zero_and_minus_inf) {
    tc_case c = tc_case_default();
    c.Nq = 200;
    c.Nk = 70; /* rows 0..129 see nothing */
    c.causal = SAGE_CAUSAL_BOTTOM_RIGHT;
    tc_data *d = tc_make(&c);
    for (int run = 0; run < 4; run++) {
        tc_out out = tc_out_alloc(d);
        tc_opts o = tc_opts_default();
        const char *name = run == 0 ? "reference" : run == 1 ? "floor" : run == 2 ? "fp8" : "pv16";
        if (run == 0) tc_run_reference(d, &out);
        if (run == 1) tc_run_floor(d, &out, o);
        if (run == 2) {
            o.pv = SAGE_PV_FP8;
            o.smooth_q = 1;
            o.smooth_v = 1;
            tc_run_quantized(d, &out, o, tc_cpu_geometry());
        }
        if (run == 3) tc_run_quantized(d, &out, o, tc_cpu_geometry());
        for (int64_t h = 0; h < c.Hq; h++)
            for (int64_t i = 0; i < c.Nq; i++) {
                const int masked = i < c.Nq - c.Nk;
                const float l = out.lse[h * c.Nq + i];
                int zeros = 1, finite = 1;
                for (int64_t e = 0; e < c.D; e++) {
                    float x = tc_o_at(d, out.o, (size_t)((h * c.Nq + i) * c.D + e));
                    zeros &= x == 0.0f;
                    finite &= isfinite(x) != 0;
                }
                if (masked) {
                    CHECK_MSG(zeros && l == -INFINITY, "%s: masked row %lld: lse %g", name, (long long)i, (double)l);
                } else {
                    CHECK_MSG(finite && isfinite(l) && !zeros, "%s: row %lld not finite", name, (long long)i);
                }
            }
        tc_out_free(&out);
    }
    tc_free(d);
}
