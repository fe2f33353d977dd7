/* The quantized CPU attention (the specification of the GPU kernels) against the exact reference,
 * with the budgets of brief §4:
 *   FP8 PV:    relL1 <= 1.05 x the floor (P and V rounded to e4m3 only) at the same shape and
 *              inputs, cos >= 0.9992;
 *   16-bit PV: relL1 <= 0.015, cos >= 0.9999;
 * on randn and on K with a large per-channel bias; the other input kinds are printed with their
 * errors (gated only on sanity and on "smoothing helps"). Plus: the floor against the brief's
 * values, shapes (masks, Nq != Nk, GQA, strides, N = 1, odd sizes, D 1..256), lse, determinism
 * over thread counts, the API path, the quantization recipe bit for bit, and planted errors that
 * the budgets must catch. */
#include "test_cpu_common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Brief §4: 1.05 x the floor. The INT8 QK^T error adds to the floor (~0.035) in quadrature, so
 * at D = 128 the group geometry decides: 2-row Q groups with 64-key K blocks (the CPU geometry)
 * measure 1.045..1.047 here, 4-row Q groups with 128-key blocks 1.051..1.053 (docs/algorithm.md). */
#define FP8_FLOOR_FACTOR 1.05
#define FP8_COS_MIN 0.9992
#define PV16_REL_L1_MAX 0.015
#define PV16_COS_MIN 0.9999

static tc_opts opts_pv(sage_pv_type pv) {
    tc_opts o = tc_opts_default();
    o.pv = pv;
    return o;
}

/* Error of one run of the quantized algorithm in geometry g against the reference (computed once
 * by the caller). */
static tc_err run_err_geo(const tc_data *d, const tc_out *ref, tc_opts o, int center, sage_geometry g) {
    tc_out out = tc_out_alloc(d);
    tc_err e;
    tc_run_quantized(d, &out, o, g);
    e = tc_compare(d, &out, ref, center);
    tc_out_free(&out);
    return e;
}

static tc_err run_err(const tc_data *d, const tc_out *ref, tc_opts o, int center) {
    return run_err_geo(d, ref, o, center, tc_cpu_geometry());
}

static tc_err floor_err(const tc_data *d, const tc_out *ref, tc_opts o, int center) {
    tc_out out = tc_out_alloc(d);
    tc_err e;
    tc_run_floor(d, &out, o);
    e = tc_compare(d, &out, ref, center);
    tc_out_free(&out);
    return e;
}

static void case_label(char *buf, size_t n, const tc_case *c, const char *what) {
    static const char *dt[] = {"fp16", "bf16", "fp32"};
    static const char *cz[] = {"", " causal-tl", " causal-br"};
    snprintf(buf, n, "%s %s %s B%lld H%lld/%lld N%lld/%lld D%lld%s", what, tc_input_name(c->input), dt[c->dtype],
             (long long)c->B, (long long)c->Hq, (long long)c->Hkv, (long long)c->Nq, (long long)c->Nk, (long long)c->D,
             cz[c->causal]);
}

/* ---- the floor ------------------------------------------------------------------------------------ */

TEST(cpu_floor_reproduces_brief_values) {
    struct { int64_t N, D, H; double brief_l1, brief_cos; int big; } cases[] = {
        {1024, 128, 2, 0.0356, 0.99936, 0},
        {4096, 128, 1, 0.0366, 0.99932, 1},
        {4096, 64, 1, 0.0381, 0.99928, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tc_case c = tc_case_default();
        char label[160];
        if (cases[i].big && tc_sanitized()) {
            printf("    (N %lld floor case left out under the sanitizer)\n", (long long)cases[i].N);
            continue;
        }
        c.Nq = c.Nk = cases[i].N;
        c.D = cases[i].D;
        c.Hq = c.Hkv = cases[i].H;
        tc_data *d = tc_make(&c);
        tc_out ref = tc_out_alloc(d);
        tc_run_reference(d, &ref);
        tc_err e = floor_err(d, &ref, opts_pv(SAGE_PV_FP8), 0);
        case_label(label, sizeof label, &c, "floor");
        tc_print_err(label, e);
        printf("    %-46s brief: relL1 %.4f cos %.5f\n", "", cases[i].brief_l1, cases[i].brief_cos);
        /* same format, same method: within a few percent of the brief (other random draws) */
        CHECK_MSG(fabs(e.rel_l1 / cases[i].brief_l1 - 1.0) < 0.06, "floor relL1 %.5f vs brief %.4f", e.rel_l1,
                  cases[i].brief_l1);
        CHECK_MSG(fabs(e.cos - cases[i].brief_cos) < 1.5e-4, "floor cos %.6f vs brief %.5f", e.cos, cases[i].brief_cos);
        CHECK(e.nonfinite == 0 && e.lse_inf_mismatch == 0);
        CHECK_MSG(e.lse_max_abs < 1e-4, "floor lse error %.2e (exact scores: only rounding)", e.lse_max_abs);
        tc_out_free(&ref);
        tc_free(d);
    }
}

/* ---- budgets ---------------------------------------------------------------------------------------- */

TEST(cpu_fp8_pv_within_budget) {
    const tc_input inputs[2] = {TC_RANDN, TC_KBIAS};
    const int64_t dims[2] = {64, 128};
    /* the CPU kernels' geometry and the Hopper kernels' (2-row Q groups, 128-key K blocks; 128-row
     * CTAs of 8 warps and 64-row CTAs of 4) */
    const sage_geometry geos[3] = {tc_cpu_geometry(), SAGE_SM90_GEOMETRY, SAGE_SM90_Q64_GEOMETRY};
    const char *geo_names[3] = {"cpu", "sm90", "sm90_q64"};
    for (int ii = 0; ii < 2; ii++)
        for (int di = 0; di < 2; di++) {
            tc_case c = tc_case_default();
            char label[160];
            c.Nq = c.Nk = 1024;
            c.D = dims[di];
            c.input = inputs[ii];
            c.seed = 100 + (uint64_t)(ii * 2 + di);
            tc_data *d = tc_make(&c);
            tc_out ref = tc_out_alloc(d);
            tc_run_reference(d, &ref);
            tc_err f = floor_err(d, &ref, opts_pv(SAGE_PV_FP8), 0);
            for (int gi = 0; gi < 3; gi++) {
                char what[32];
                snprintf(what, sizeof what, "fp8 %s", geo_names[gi]);
                tc_err e = run_err_geo(d, &ref, opts_pv(SAGE_PV_FP8), 0, geos[gi]);
                case_label(label, sizeof label, &c, what);
                tc_print_err(label, e);
                printf("    %-46s floor relL1 %.5f, ratio %.4f (budget %.2f)\n", "", f.rel_l1, e.rel_l1 / f.rel_l1,
                       FP8_FLOOR_FACTOR);
                CHECK_MSG(e.rel_l1 <= FP8_FLOOR_FACTOR * f.rel_l1, "%s: relL1 %.5f > %.2f x floor %.5f", label,
                          e.rel_l1, FP8_FLOOR_FACTOR, f.rel_l1);
                CHECK_MSG(e.cos >= FP8_COS_MIN, "%s: cos %.6f", label, e.cos);
                CHECK_MSG(e.lse_max_abs < 0.02 && e.lse_inf_mismatch == 0, "%s: lse error %.3e", label,
                          e.lse_max_abs);
                CHECK(e.nonfinite == 0);
            }
            tc_out_free(&ref);
            tc_free(d);
        }
}

TEST(cpu_pv16_within_budget) {
    const tc_input inputs[2] = {TC_RANDN, TC_KBIAS};
    const int64_t dims[2] = {64, 128};
    const sage_dtype types[3] = {SAGE_DTYPE_FP16, SAGE_DTYPE_BF16, SAGE_DTYPE_FP32};
    for (int ii = 0; ii < 2; ii++)
        for (int di = 0; di < 2; di++)
            for (int ti = 0; ti < 3; ti++) {
                tc_case c = tc_case_default();
                char label[160];
                if (ti > 0 && di == 0) continue; /* other types at D 128 only */
                c.Nq = c.Nk = tc_sanitized() ? 256 : 512; /* the sanitizer build runs ~10x slower */
                c.D = dims[di];
                c.input = inputs[ii];
                c.dtype = types[ti];
                c.seed = 200 + (uint64_t)(ii * 8 + di * 4 + ti);
                tc_data *d = tc_make(&c);
                tc_out ref = tc_out_alloc(d);
                tc_run_reference(d, &ref);
                tc_err e = run_err(d, &ref, opts_pv(SAGE_PV_16BIT), 0);
                case_label(label, sizeof label, &c, "pv16");
                tc_print_err(label, e);
                CHECK_MSG(e.rel_l1 <= PV16_REL_L1_MAX, "%s: relL1 %.5f", label, e.rel_l1);
                CHECK_MSG(e.cos >= PV16_COS_MIN, "%s: cos %.6f", label, e.cos);
                CHECK_MSG(e.lse_max_abs < 0.02 && e.lse_inf_mismatch == 0, "%s: lse error %.3e", label, e.lse_max_abs);
                CHECK(e.nonfinite == 0);
                if (c.input == TC_KBIAS && ti == 0) {
                    /* what smoothing is for: without it the same inputs miss the budget */
                    tc_opts o = opts_pv(SAGE_PV_16BIT);
                    o.smooth_k = 0;
                    tc_err u = run_err(d, &ref, o, 0);
                    tc_print_err("  same, smooth K off", u);
                    CHECK_MSG(u.rel_l1 > PV16_REL_L1_MAX, "K bias without smoothing should miss the budget");
                }
                tc_out_free(&ref);
                tc_free(d);
            }
}

/* ---- other inputs: reported --------------------------------------------------------------------------- */

TEST(cpu_other_inputs_reported) {
    const tc_input inputs[4] = {TC_QOUTLIER, TC_STUDENT, TC_QBIAS, TC_VBIAS};
    for (int ii = 0; ii < 4; ii++) {
        tc_case c = tc_case_default();
        char label[160];
        const int center = inputs[ii] == TC_VBIAS;
        c.Nq = c.Nk = tc_sanitized() ? 256 : 512;
        c.D = 128;
        c.input = inputs[ii];
        c.seed = 300 + (uint64_t)ii;
        tc_data *d = tc_make(&c);
        tc_out ref = tc_out_alloc(d);
        tc_run_reference(d, &ref);
        for (int smooth = 0; smooth < 2; smooth++) {
            tc_opts o8 = opts_pv(SAGE_PV_FP8), o16 = opts_pv(SAGE_PV_16BIT);
            if (smooth && c.input != TC_QBIAS && c.input != TC_VBIAS) continue;
            if (smooth && c.input == TC_QBIAS) o8.smooth_q = o16.smooth_q = 1;
            if (smooth && c.input == TC_VBIAS) o8.smooth_v = 1;
            tc_err f = floor_err(d, &ref, o8, center);
            tc_err e8 = run_err(d, &ref, o8, center);
            tc_err e16 = run_err(d, &ref, o16, center);
            case_label(label, sizeof label, &c, smooth ? (c.input == TC_QBIAS ? "fp8 +smoothQ" : "fp8 +smoothV") : "fp8");
            tc_print_err(label, e8);
            printf("    %-46s floor relL1 %.5f, ratio %.3f\n", "", f.rel_l1, e8.rel_l1 / f.rel_l1);
            case_label(label, sizeof label, &c, smooth && c.input == TC_QBIAS ? "pv16 +smoothQ" : "pv16");
            tc_print_err(label, e16);
            CHECK(e8.nonfinite == 0 && e16.nonfinite == 0 && e8.lse_inf_mismatch == 0 && e16.lse_inf_mismatch == 0);
            CHECK_MSG(e16.cos > 0.995 && e8.cos > 0.95, "%s: implausible error", label);
        }
        /* smoothing must help where it is meant to */
        if (c.input == TC_QBIAS) {
            tc_opts off = opts_pv(SAGE_PV_16BIT), on = off;
            on.smooth_q = 1;
            tc_err a = run_err(d, &ref, off, 0), b = run_err(d, &ref, on, 0);
            CHECK_MSG(b.rel_l1 < a.rel_l1, "smooth Q did not help a Q bias: %.5f vs %.5f", b.rel_l1, a.rel_l1);
        }
        if (c.input == TC_VBIAS) {
            tc_opts off = opts_pv(SAGE_PV_FP8), on = off;
            on.smooth_v = 1;
            tc_err a = run_err(d, &ref, off, 1), b = run_err(d, &ref, on, 1);
            CHECK_MSG(b.rel_l1 < 0.5 * a.rel_l1, "smooth V did not help a V bias: %.5f vs %.5f", b.rel_l1, a.rel_l1);
        }
        tc_out_free(&ref);
        tc_free(d);
    }
}

/* ---- shapes ---------------------------------------------------------------------------------------------- */

TEST(cpu_shapes_masks_strides_vs_reference) {
    struct { int64_t B, Hq, Hkv, Nq, Nk, D; sage_causal causal; tc_layout layout; sage_dtype dt; } shapes[] = {
        {1, 2, 2, 300, 300, 64, SAGE_CAUSAL_TOP_LEFT, TC_BHND, SAGE_DTYPE_FP16},
        {1, 2, 2, 200, 333, 128, SAGE_CAUSAL_BOTTOM_RIGHT, TC_BHND, SAGE_DTYPE_FP16},
        {1, 2, 2, 200, 333, 128, SAGE_CAUSAL_TOP_LEFT, TC_BHND, SAGE_DTYPE_BF16},
        {1, 2, 2, 333, 200, 64, SAGE_CAUSAL_BOTTOM_RIGHT, TC_BHND, SAGE_DTYPE_FP16},
        {2, 2, 1, 333, 200, 64, SAGE_CAUSAL_NONE, TC_BNHD, SAGE_DTYPE_FP16},
        {1, 8, 2, 257, 257, 128, SAGE_CAUSAL_NONE, TC_BHND, SAGE_DTYPE_FP16},
        {2, 3, 3, 190, 190, 64, SAGE_CAUSAL_BOTTOM_RIGHT, TC_PACKED_QKV, SAGE_DTYPE_FP16},
        {1, 2, 2, 1, 1, 128, SAGE_CAUSAL_NONE, TC_BHND, SAGE_DTYPE_FP16},
        {1, 4, 2, 1, 500, 128, SAGE_CAUSAL_BOTTOM_RIGHT, TC_BHND, SAGE_DTYPE_FP16},
        {1, 2, 2, 77, 77, 96, SAGE_CAUSAL_NONE, TC_BHND, SAGE_DTYPE_FP32},
        {1, 1, 1, 130, 130, 256, SAGE_CAUSAL_TOP_LEFT, TC_BHND, SAGE_DTYPE_BF16},
        {1, 2, 2, 150, 150, 17, SAGE_CAUSAL_NONE, TC_BHND, SAGE_DTYPE_FP16},
        {1, 2, 1, 50, 50, 1, SAGE_CAUSAL_NONE, TC_BHND, SAGE_DTYPE_FP32},
        {1, 1, 1, 64, 8192, 128, SAGE_CAUSAL_BOTTOM_RIGHT, TC_BHND, SAGE_DTYPE_FP16}, /* long Nk */
    };
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        tc_case c = tc_case_default();
        char label[160];
        c.B = shapes[si].B;
        c.Hq = shapes[si].Hq;
        c.Hkv = shapes[si].Hkv;
        c.Nq = shapes[si].Nq;
        c.Nk = shapes[si].Nk;
        c.D = shapes[si].D;
        c.causal = shapes[si].causal;
        c.layout = shapes[si].layout;
        c.dtype = shapes[si].dt;
        c.seed = 400 + si;
        tc_data *d = tc_make(&c);
        tc_out ref = tc_out_alloc(d);
        tc_run_reference(d, &ref);
        tc_err f = floor_err(d, &ref, opts_pv(SAGE_PV_FP8), 0);
        tc_err e8 = run_err(d, &ref, opts_pv(SAGE_PV_FP8), 0);
        tc_err e16 = run_err(d, &ref, opts_pv(SAGE_PV_16BIT), 0);
        case_label(label, sizeof label, &c, c.layout == TC_PACKED_QKV ? "fp8 packed" : c.layout == TC_BNHD ? "fp8 bnhd" : "fp8");
        tc_print_err(label, e8);
        printf("    %-46s floor relL1 %.5f, ratio %.3f\n", "", f.rel_l1, f.rel_l1 > 0 ? e8.rel_l1 / f.rel_l1 : 0.0);
        case_label(label, sizeof label, &c, "pv16");
        tc_print_err(label, e16);
        /* Small shapes have few elements; the ratio to the floor is noisier than on the budget
         * cases above, so it is gated at 1.10 here (plus an absolute slack for N = 1, where both
         * are a pure V rounding). */
        CHECK_MSG(e8.rel_l1 <= 1.10 * f.rel_l1 + 1e-3, "%s: fp8 relL1 %.5f vs floor %.5f", label, e8.rel_l1, f.rel_l1);
        CHECK_MSG(e8.cos >= 0.999, "%s: fp8 cos %.6f", label, e8.cos);
        CHECK_MSG(e16.rel_l1 <= PV16_REL_L1_MAX && e16.cos >= PV16_COS_MIN, "%s: pv16 relL1 %.5f cos %.6f", label,
                  e16.rel_l1, e16.cos);
        CHECK_MSG(e8.lse_max_abs < 0.03 && e16.lse_max_abs < 0.03, "%s: lse error %.3e / %.3e", label, e8.lse_max_abs,
                  e16.lse_max_abs);
        CHECK(e8.lse_inf_mismatch == 0 && e16.lse_inf_mismatch == 0 && f.lse_inf_mismatch == 0);
        CHECK(e8.nonfinite == 0 && e16.nonfinite == 0);
        tc_out_free(&ref);
        tc_free(d);
    }
}

/* One key: softmax is exactly 1, so o is V through the PV path's rounding alone. */
TEST(cpu_single_key_is_v_through_the_pv_rounding) {
    for (int dt = 0; dt < 3; dt++) {
        tc_case c = tc_case_default();
        c.dtype = (sage_dtype)dt;
        c.Nq = 5;
        c.Nk = 1;
        c.D = 48;
        c.seed = 500 + (uint64_t)dt;
        tc_data *d = tc_make(&c);
        for (int pv = 1; pv <= 2; pv++) {
            tc_out out = tc_out_alloc(d);
            tc_opts o = opts_pv((sage_pv_type)pv);
            sage_problem p;
            int bad = 0;
            tc_run_quantized(d, &out, o, tc_cpu_geometry());
            tc_problem(d, &out, o, &p);
            for (int64_t h = 0; h < c.Hq && !bad; h++) {
                /* the V8 and vs this V gets (per channel, one token: amax = |v|) */
                for (int64_t i = 0; i < c.Nq && !bad; i++)
                    for (int64_t e = 0; e < c.D; e++) {
                        float v = sage_load_f32(d->a.v, h * d->a.v_stride_h + e, c.dtype), want;
                        float got = tc_o_at(d, out.o, (size_t)((h * c.Nq + i) * c.D + e));
                        double tol;
                        if (pv == SAGE_PV_16BIT) { /* P = 1 exactly; V in its 16-bit type */
                            want = sage_round_pv16(v, c.dtype);
                            tol = 0.0;
                        } else { /* P~ = 448 exactly after e4m3; V8 = e4m3(v * 448 / |v|) = +-448 */
                            want = v;
                            tol = c.dtype == SAGE_DTYPE_FP32 ? 1e-6 : c.dtype == SAGE_DTYPE_FP16 ? 1e-3 : 8e-3;
                        }
                        if (!(fabs((double)got - (double)want) <= tol * fabs((double)want))) {
                            CHECK_MSG(0, "dtype %d pv %d: o = %.9g, want %.9g", dt, pv, (double)got, (double)want);
                            bad = 1;
                            break;
                        }
                    }
            }
            (void)p;
            tc_out_free(&out);
        }
        tc_free(d);
    }
}

/* ---- determinism, API ------------------------------------------------------------------------------------ */

TEST(cpu_same_bytes_for_any_thread_count) {
    tc_case c = tc_case_default();
    c.Hq = 3;
    c.Hkv = 1;
    c.Nq = 300;
    c.Nk = 270;
    c.causal = SAGE_CAUSAL_BOTTOM_RIGHT;
    c.seed = 600;
    const int threads[4] = {1, 2, 3, 7};
    for (int mode = 0; mode < 3; mode++) {
        tc_out first = {NULL, NULL};
        for (int ti = 0; ti < 4; ti++) {
            c.threads = threads[ti];
            tc_data *d = tc_make(&c);
            tc_out out = tc_out_alloc(d);
            tc_opts o = opts_pv(mode == 0 ? SAGE_PV_16BIT : SAGE_PV_FP8);
            if (mode == 2) {
                o.smooth_q = o.smooth_v = 1;
            }
            tc_run_quantized(d, &out, o, tc_cpu_geometry());
            if (ti == 0) {
                first = out;
            } else {
                CHECK_MSG(memcmp(first.o, out.o, d->o_elems * 2) == 0, "mode %d: o differs with %d threads", mode,
                          threads[ti]);
                CHECK_MSG(memcmp(first.lse, out.lse, (size_t)(c.Hq * c.Nq) * sizeof(float)) == 0,
                          "mode %d: lse differs with %d threads", mode, threads[ti]);
                tc_out_free(&out);
            }
            tc_free(d);
        }
        tc_out_free(&first);
    }
}

TEST(cpu_api_runs_the_spec) {
    tc_case c = tc_case_default();
    c.Hq = 4;
    c.Hkv = 2;
    c.Nq = 150;
    c.Nk = 260;
    c.causal = SAGE_CAUSAL_TOP_LEFT;
    c.seed = 700;
    c.threads = 2;
    tc_data *d = tc_make(&c);
    const size_t obytes = d->o_elems * 2, lbytes = (size_t)(c.Hq * c.Nq) * sizeof(float);
    for (int mode = 0; mode < 3; mode++) {
        tc_out api = tc_out_alloc(d), spec = tc_out_alloc(d);
        tc_opts o = tc_opts_default();
        const char *kernel = NULL;
        sage_status st;
        if (mode == 1) o.pv = SAGE_PV_FP8, o.smooth_q = 1, o.smooth_v = 1, o.groups = SAGE_QK_PER_WARP;
        if (mode == 2) {
            st = tc_run_api(d, &api, o, SAGE_ALGO_REFERENCE, &kernel);
            tc_run_reference(d, &spec);
        } else {
            st = tc_run_api(d, &api, o, SAGE_ALGO_QUANTIZED, &kernel);
            tc_run_quantized(d, &spec, o, tc_cpu_geometry());
        }
        CHECK_EQ_INT(st, SAGE_OK);
        CHECK(kernel && strcmp(kernel, mode == 2 ? "cpu_reference" : "cpu_quantized") == 0);
        CHECK_MSG(memcmp(api.o, spec.o, obytes) == 0 && memcmp(api.lse, spec.lse, lbytes) == 0,
                  "mode %d: sage_forward and the spec functions differ", mode);
        tc_out_free(&api);
        tc_out_free(&spec);
    }
    /* the plan of the defaults on the CPU: 16-bit PV, per-thread groups, smooth K only */
    {
        sage_args a = d->a;
        sage_plan plan;
        tc_out out = tc_out_alloc(d);
        a.o = out.o;
        CHECK_EQ_INT(sage_supported(&a, &plan, NULL, 0), SAGE_OK);
        CHECK(strcmp(plan.kernel, "cpu_quantized") == 0);
        CHECK_EQ_INT(plan.pv, SAGE_PV_16BIT);
        CHECK_EQ_INT(plan.qk_groups, SAGE_QK_PER_THREAD);
        CHECK(plan.smooth_k == 1 && plan.smooth_q == 0 && plan.smooth_v == 0);
        CHECK(plan.workspace_size > 0 && plan.workspace_size % 256 == 0);
        a.options.algorithm = SAGE_ALGO_REFERENCE;
        CHECK_EQ_INT(sage_supported(&a, &plan, NULL, 0), SAGE_OK);
        CHECK(strcmp(plan.kernel, "cpu_reference") == 0 && plan.workspace_size == 0);
        tc_out_free(&out);
    }
    tc_free(d);
}

/* K and V with a zero batch stride (one K/V shared by both batches) give the same bytes as the
 * K/V copied into both batches. */
TEST(cpu_zero_batch_stride_broadcasts) {
    tc_case c = tc_case_default();
    c.B = 2;
    c.Nq = 140;
    c.Nk = 150;
    c.seed = 800;
    tc_data *d = tc_make(&c);
    const size_t per_b = (size_t)(c.Hkv * c.Nk * c.D) * 2;
    for (int pv = 1; pv <= 2; pv++) {
        tc_out bc = tc_out_alloc(d), dup = tc_out_alloc(d);
        tc_data shadow = *d;
        shadow.a.k_stride_b = 0;
        shadow.a.v_stride_b = 0;
        tc_run_quantized(&shadow, &bc, opts_pv((sage_pv_type)pv), tc_cpu_geometry());
        memcpy((char *)d->k_buf + per_b, d->k_buf, per_b);
        memcpy((char *)d->v_buf + per_b, d->v_buf, per_b);
        tc_run_quantized(d, &dup, opts_pv((sage_pv_type)pv), tc_cpu_geometry());
        CHECK_MSG(memcmp(bc.o, dup.o, d->o_elems * 2) == 0, "pv %d: stride-0 broadcast differs", pv);
        tc_out_free(&bc);
        tc_out_free(&dup);
    }
    tc_free(d);
}

/* ---- the quantization recipe, bit for bit ------------------------------------------------------------------ */

typedef struct quant_bufs {
    sage_spec_quant qt;
    sage_spec_maps m;
    int32_t *qg, *kg;
} quant_bufs;

static void quant_alloc(quant_bufs *b, const tc_case *c, sage_qk_groups gran) {
    sage_geometry g = tc_cpu_geometry();
    b->qg = (int32_t *)malloc((size_t)c->Nq * sizeof(int32_t));
    b->kg = (int32_t *)malloc((size_t)c->Nk * sizeof(int32_t));
    sage_spec_maps_fill(&b->m, g, gran, c->Nq, c->Nk, b->qg, b->kg);
    const size_t nq = (size_t)(c->B * c->Hq), nk = (size_t)(c->B * c->Hkv), D = (size_t)c->D;
    const size_t nqb = (size_t)((c->Nq + b->m.q_block - 1) / b->m.q_block);
    b->qt.q8 = (int8_t *)calloc(nq * (size_t)c->Nq * D, 1);
    b->qt.q_scale = (float *)calloc(nq * (size_t)b->m.n_q_groups, sizeof(float));
    b->qt.q_mean = (float *)calloc(nq * nqb * D, sizeof(float));
    b->qt.k8 = (int8_t *)calloc(nk * (size_t)c->Nk * D, 1);
    b->qt.k_scale = (float *)calloc(nk * (size_t)b->m.n_k_groups, sizeof(float));
    b->qt.k_mean = (float *)calloc(nk * D, sizeof(float));
    b->qt.v8 = (uint8_t *)calloc(nk * D * (size_t)c->Nk, 1);
    b->qt.v_scale = (float *)calloc(nk * D, sizeof(float));
    b->qt.v_mean = (float *)calloc(nk * D, sizeof(float));
}

static void quant_free(quant_bufs *b) {
    free(b->qt.q8), free(b->qt.q_scale), free(b->qt.q_mean), free(b->qt.k8), free(b->qt.k_scale);
    free(b->qt.k_mean), free(b->qt.v8), free(b->qt.v_scale), free(b->qt.v_mean), free(b->qg), free(b->kg);
}

/* Element (b, h, n, e) of q / k / v as fp32. */
static float elem(const tc_data *d, int which, int64_t b, int64_t h, int64_t n, int64_t e) {
    const sage_args *a = &d->a;
    if (which == 0) return sage_load_f32(a->q, b * a->q_stride_b + h * a->q_stride_h + n * a->q_stride_n + e, a->dtype);
    if (which == 1) return sage_load_f32(a->k, b * a->k_stride_b + h * a->k_stride_h + n * a->k_stride_n + e, a->dtype);
    return sage_load_f32(a->v, b * a->v_stride_b + h * a->v_stride_h + n * a->v_stride_n + e, a->dtype);
}

/* Check one INT8 tensor of one head against the recipe: x = value - mean(row), amax per group,
 * x8 = clamp(rint(x * (127 / amax))), scale = amax / 127 (1 and zeros when amax == 0). */
static int check_int8_head(const tc_data *d, int which, int64_t b, int64_t h, int64_t N, const int32_t *grp,
                           int64_t n_groups, const float *mean, int64_t mean_block, const int8_t *x8,
                           const float *scale) {
    const int64_t D = d->c.D;
    int bad = 0;
    float *amax = (float *)calloc((size_t)n_groups, sizeof(float));
    int *hit127 = (int *)calloc((size_t)n_groups, sizeof(int));
    for (int64_t n = 0; n < N; n++)
        for (int64_t e = 0; e < D; e++) {
            float x = elem(d, which, b, h, n, e) - (mean ? mean[(n / mean_block) * D + e] : 0.0f);
            if (fabsf(x) > amax[grp[n]]) amax[grp[n]] = fabsf(x);
        }
    for (int64_t g = 0; g < n_groups && bad < 3; g++) {
        float want = amax[g] > 0.0f ? amax[g] / 127.0f : 1.0f;
        if (scale[g] != want) {
            CHECK_MSG(0, "tensor %d group %lld: scale %.9g, want %.9g", which, (long long)g, (double)scale[g], (double)want);
            bad++;
        }
    }
    for (int64_t n = 0; n < N && bad < 3; n++)
        for (int64_t e = 0; e < D; e++) {
            float x = elem(d, which, b, h, n, e) - (mean ? mean[(n / mean_block) * D + e] : 0.0f);
            float am = amax[grp[n]];
            float r = am > 0.0f ? rintf(x * (127.0f / am)) : 0.0f;
            int want = r > 127.0f ? 127 : r < -127.0f ? -127 : (int)r;
            int got = x8[n * D + e];
            if (abs(got) == 127) hit127[grp[n]] = 1;
            if (got != want) {
                CHECK_MSG(0, "tensor %d row %lld ch %lld: x8 %d, want %d", which, (long long)n, (long long)e, got, want);
                bad++;
                break;
            }
        }
    for (int64_t g = 0; g < n_groups; g++) /* the amax element of every non-zero group lands on +-127 */
        if (amax[g] > 0.0f) CHECK_MSG(hit127[g], "tensor %d group %lld never reaches 127", which, (long long)g);
    free(amax);
    free(hit127);
    return bad;
}

TEST(cpu_quantization_follows_the_recipe_bit_for_bit) {
    tc_case c = tc_case_default();
    c.B = 2;
    c.Hq = 4;
    c.Hkv = 2;
    c.Nq = 300; /* 3 Q tiles, the last partial; 2 smooth-Q blocks of 128 + 44 */
    c.Nk = 200;
    c.D = 24;
    c.input = TC_KBIAS;
    c.seed = 900;
    tc_data *d = tc_make(&c);
    for (int gi = 0; gi < 3; gi++) {
        const sage_qk_groups gran = gi == 0 ? SAGE_QK_PER_BLOCK : gi == 1 ? SAGE_QK_PER_WARP : SAGE_QK_PER_THREAD;
        quant_bufs qb;
        tc_out out = tc_out_alloc(d);
        tc_opts o = opts_pv(SAGE_PV_FP8);
        sage_problem p;
        o.groups = gran;
        o.smooth_q = o.smooth_v = 1;
        tc_problem(d, &out, o, &p);
        quant_alloc(&qb, &c, gran);
        sage_spec_quantize(&p, &qb.m, NULL, &qb.qt);
        const int64_t nqb = (c.Nq + qb.m.q_block - 1) / qb.m.q_block;
        for (int64_t b = 0; b < c.B; b++) {
            for (int64_t h = 0; h < c.Hkv; h++) {
                const int64_t bh = b * c.Hkv + h;
                float km[64], vm[64];
                for (int64_t e = 0; e < c.D; e++) { /* means: double sum in token order, one rounding */
                    double sk = 0.0, sv = 0.0;
                    for (int64_t n = 0; n < c.Nk; n++) sk += elem(d, 1, b, h, n, e), sv += elem(d, 2, b, h, n, e);
                    km[e] = (float)(sk / (double)c.Nk);
                    vm[e] = (float)(sv / (double)c.Nk);
                    CHECK(qb.qt.k_mean[bh * c.D + e] == km[e]);
                    CHECK(qb.qt.v_mean[bh * c.D + e] == vm[e]);
                }
                check_int8_head(d, 1, b, h, c.Nk, qb.kg, qb.m.n_k_groups, km, c.Nk, qb.qt.k8 + bh * c.Nk * c.D,
                                qb.qt.k_scale + bh * qb.m.n_k_groups);
                /* V: per channel, x = v - vm, vs = amax / 448, V8 = e4m3(x * (448 / amax)) */
                for (int64_t e = 0; e < c.D; e++) {
                    float amax = 0.0f;
                    for (int64_t n = 0; n < c.Nk; n++)
                        if (fabsf(elem(d, 2, b, h, n, e) - vm[e]) > amax) amax = fabsf(elem(d, 2, b, h, n, e) - vm[e]);
                    CHECK(qb.qt.v_scale[bh * c.D + e] == amax / 448.0f);
                    for (int64_t n = 0; n < c.Nk; n++) {
                        uint8_t want = sage_f32_to_e4m3((elem(d, 2, b, h, n, e) - vm[e]) * (448.0f / amax));
                        if (qb.qt.v8[(bh * c.D + e) * c.Nk + n] != want) {
                            CHECK_MSG(0, "V8[%lld][%lld] = 0x%02X, want 0x%02X", (long long)e, (long long)n,
                                      qb.qt.v8[(bh * c.D + e) * c.Nk + n], want);
                            break;
                        }
                    }
                }
            }
            for (int64_t h = 0; h < c.Hq; h++) {
                const int64_t bh = b * c.Hq + h;
                float *qm = (float *)malloc((size_t)(nqb * c.D) * sizeof(float));
                for (int64_t blk = 0; blk < nqb; blk++) {
                    const int64_t n0 = blk * qb.m.q_block, n1 = n0 + qb.m.q_block < c.Nq ? n0 + qb.m.q_block : c.Nq;
                    for (int64_t e = 0; e < c.D; e++) {
                        double s = 0.0;
                        for (int64_t n = n0; n < n1; n++) s += elem(d, 0, b, h, n, e);
                        qm[blk * c.D + e] = (float)(s / (double)(n1 - n0));
                        CHECK(qb.qt.q_mean[(bh * nqb + blk) * c.D + e] == qm[blk * c.D + e]);
                    }
                }
                check_int8_head(d, 0, b, h, c.Nq, qb.qg, qb.m.n_q_groups, qm, qb.m.q_block,
                                qb.qt.q8 + bh * c.Nq * c.D, qb.qt.q_scale + bh * qb.m.n_q_groups);
                free(qm);
            }
        }
        /* a K mean given by the caller is the one used */
        {
            quant_bufs q2;
            float *given = (float *)malloc((size_t)(c.B * c.Hkv * c.D) * sizeof(float));
            for (int64_t i = 0; i < c.B * c.Hkv * c.D; i++) given[i] = qb.qt.k_mean[i] + 0.25f;
            quant_alloc(&q2, &c, gran);
            sage_spec_quantize(&p, &q2.m, given, &q2.qt);
            CHECK(memcmp(q2.qt.k_mean, given, (size_t)(c.B * c.Hkv * c.D) * sizeof(float)) == 0);
            check_int8_head(d, 1, 1, 1, c.Nk, q2.kg, q2.m.n_k_groups, given + (1 * c.Hkv + 1) * c.D, c.Nk,
                            q2.qt.k8 + (1 * c.Hkv + 1) * c.Nk * c.D, q2.qt.k_scale + (1 * c.Hkv + 1) * q2.m.n_k_groups);
            quant_free(&q2);
            free(given);
        }
        quant_free(&qb);
        tc_out_free(&out);
    }
    tc_free(d);
}

/* A group whose values are all zero: scale 1, every x8 0 (and the result stays finite). */
TEST(cpu_zero_group_gets_scale_one) {
    tc_case c = tc_case_default();
    c.Hq = c.Hkv = 1;
    c.Nq = c.Nk = 130;
    c.D = 32;
    c.seed = 950;
    tc_data *d = tc_make(&c);
    uint16_t *k = (uint16_t *)d->k_buf, *q = (uint16_t *)d->q_buf;
    for (int64_t t = 0; t < c.Nk; t++)
        if (t < 128 && (t % 8) / 2 == 1) /* per-thread K group 1 of tile 0 */
            for (int64_t e = 0; e < c.D; e++) k[t * c.D + e] = 0;
    for (int64_t i = 0; i < c.Nq; i++)
        if (i < 128 && (i / 16) % 4 == 1) /* warp 1 of Q tile 0 (rows 16..31, 80..95): groups 8..15 */
            for (int64_t e = 0; e < c.D; e++) q[i * c.D + e] = 0x8000; /* -0.0 */
    tc_out out = tc_out_alloc(d), ref = tc_out_alloc(d);
    tc_opts o = opts_pv(SAGE_PV_FP8);
    sage_problem p;
    quant_bufs qb;
    o.smooth_k = 0; /* else the mean makes the zeros non-zero */
    tc_problem(d, &out, o, &p);
    quant_alloc(&qb, &c, SAGE_QK_PER_THREAD);
    sage_spec_quantize(&p, &qb.m, NULL, &qb.qt);
    CHECK(qb.qt.k_scale[1] == 1.0f);
    CHECK(qb.qt.k_scale[0] != 1.0f && qb.qt.k_scale[2] != 1.0f);
    for (int g = 8; g < 16; g++) CHECK(qb.qt.q_scale[g] == 1.0f);
    for (int64_t t = 0; t < 128; t++)
        if ((t % 8) / 2 == 1)
            for (int64_t e = 0; e < c.D; e++) CHECK(qb.qt.k8[t * c.D + e] == 0);
    sage_spec_attention(&p, &qb.m, &qb.qt);
    tc_run_reference(d, &ref);
    {
        tc_err e = tc_compare(d, &out, &ref, 0);
        tc_print_err("fp8 with zero groups", e);
        CHECK(e.nonfinite == 0 && e.lse_inf_mismatch == 0 && e.cos > 0.999);
    }
    quant_free(&qb);
    tc_out_free(&out);
    tc_out_free(&ref);
    tc_free(d);
}

/* The budgets catch a planted error: a scale index off by one (the K scale of the neighbouring
 * per-thread group, or the Q scale of the neighbouring thread) must push 16-bit PV out of its
 * budget; so must a V scale of the wrong channel for FP8. */
TEST(cpu_planted_wrong_scale_index_is_caught) {
    tc_case c = tc_case_default();
    c.Nq = c.Nk = 512;
    c.D = 128;
    c.input = TC_KBIAS;
    c.seed = 1000;
    tc_data *d = tc_make(&c);
    tc_out ref = tc_out_alloc(d);
    tc_run_reference(d, &ref);
    for (int plant = 0; plant < 4; plant++) {
        quant_bufs qb;
        tc_out out = tc_out_alloc(d);
        tc_opts o = opts_pv(plant == 3 ? SAGE_PV_FP8 : SAGE_PV_16BIT);
        sage_problem p;
        tc_problem(d, &out, o, &p);
        quant_alloc(&qb, &c, SAGE_QK_PER_THREAD);
        sage_spec_quantize(&p, &qb.m, NULL, &qb.qt);
        if (plant == 1) /* K tokens of quad 1 read quad 2's scale */
            for (int64_t t = 0; t < c.Nk; t++)
                if ((t % 8) / 2 == 1) qb.kg[t] += 1;
        if (plant == 2) /* Q rows with g == 3 read g == 4's scale */
            for (int64_t i = 0; i < c.Nq; i++)
                if (i % 8 == 3) qb.qg[i] += 1;
        if (plant == 3) /* V scales shifted by one channel */
            for (int64_t i = 0; i < c.B * c.Hkv * c.D - 1; i++) qb.qt.v_scale[i] = qb.qt.v_scale[i + 1];
        sage_spec_attention(&p, &qb.m, &qb.qt);
        tc_err e = tc_compare(d, &out, &ref, 0);
        char label[64];
        snprintf(label, sizeof label, "plant %d (%s)", plant,
                 plant == 0 ? "none" : plant == 1 ? "K scale index" : plant == 2 ? "Q scale index" : "V scale channel");
        tc_print_err(label, e);
        if (plant == 0)
            CHECK(e.rel_l1 <= PV16_REL_L1_MAX && e.cos >= PV16_COS_MIN);
        else if (plant < 3)
            CHECK_MSG(e.rel_l1 > PV16_REL_L1_MAX || e.cos < PV16_COS_MIN, "%s not caught: relL1 %.5f", label, e.rel_l1);
        else
            CHECK_MSG(e.rel_l1 > 0.06 || e.cos < FP8_COS_MIN, "%s not caught: relL1 %.5f", label, e.rel_l1);
        quant_free(&qb);
        tc_out_free(&out);
    }
    tc_out_free(&ref);
    tc_free(d);
}

/* ---- speed (opt-in: SAGE_TEST_PERF=1) -------------------------------------------------------------------------- */

TEST(cpu_perf_b1_h8_n4096_d128) {
    const char *env = getenv("SAGE_TEST_PERF");
    if (!env || !*env || *env == '0') {
        sage_test_skip("set SAGE_TEST_PERF=1 to time B1 H8 N4096 D128 on the CPU");
        return;
    }
    tc_case c = tc_case_default();
    c.Hq = c.Hkv = 8;
    c.Nq = c.Nk = 4096;
    c.D = 128;
    tc_data *d = tc_make(&c);
    for (int mode = 0; mode < 3; mode++) {
        tc_out out = tc_out_alloc(d);
        tc_opts o = opts_pv(mode == 1 ? SAGE_PV_FP8 : SAGE_PV_AUTO);
        double t0, t1;
        d->c.causal = mode == 2 ? SAGE_CAUSAL_BOTTOM_RIGHT : SAGE_CAUSAL_NONE;
        d->a.causal = d->c.causal;
        t0 = tc_now();
        CHECK_EQ_INT(tc_run_api(d, &out, o, SAGE_ALGO_QUANTIZED, NULL), SAGE_OK);
        t1 = tc_now();
        printf("    B1 H8 N4096 D128 fp16 %s%s, cpu_threads 0: %.3f s\n", mode == 1 ? "FP8 PV" : "16-bit PV",
               mode == 2 ? " causal" : "", t1 - t0);
        tc_out_free(&out);
    }
    tc_free(d);
}

/* ---- extremes ------------------------------------------------------------------------------------------------ */

/* fp16 inputs near the top of the range (scores in the millions: softmax one-hot) and in the
 * subnormal range: every output finite, every lse finite; the tiny case still accurate. */
TEST(cpu_extreme_fp16_values_stay_finite) {
    for (int which = 0; which < 2; which++) {
        tc_case c = tc_case_default();
        c.Nq = c.Nk = 200;
        c.seed = 1100 + (uint64_t)which;
        c.causal = SAGE_CAUSAL_BOTTOM_RIGHT;
        tc_data *d = tc_make(&c);
        const size_t n = (size_t)(c.B * c.Hq * c.Nq * c.D);
        void *bufs[3] = {d->q_buf, d->k_buf, d->v_buf};
        for (int t = 0; t < 3; t++)
            for (size_t i = 0; i < n; i++) {
                float x = sage_load_f32(bufs[t], (int64_t)i, c.dtype) * (which == 0 ? 16000.0f : 1e-6f);
                if (x > 65504.0f) x = 65504.0f;
                if (x < -65504.0f) x = -65504.0f;
                sage_store_f32(bufs[t], (int64_t)i, c.dtype, x);
            }
        tc_out ref = tc_out_alloc(d);
        tc_run_reference(d, &ref);
        for (int pv = 1; pv <= 2; pv++)
            for (int smooth = 0; smooth < 2; smooth++) {
                tc_out out = tc_out_alloc(d);
                tc_opts o = opts_pv((sage_pv_type)pv);
                char label[96];
                o.smooth_q = o.smooth_v = smooth;
                tc_run_quantized(d, &out, o, tc_cpu_geometry());
                tc_err e = tc_compare(d, &out, &ref, 0);
                int lse_finite = 1;
                for (int64_t i = 0; i < c.Hq * c.Nq; i++) lse_finite &= isfinite(out.lse[i]) != 0;
                snprintf(label, sizeof label, "%s inputs, %s PV%s", which == 0 ? "huge (x16000)" : "tiny (x1e-6)",
                         pv == 1 ? "FP8" : "16-bit", smooth ? ", smooth Q+V" : "");
                tc_print_err(label, e);
                CHECK_MSG(e.nonfinite == 0 && lse_finite, "%s: non-finite output", label);
                /* tiny: scores ~ 0, so o is a plain mean of V: FP8 costs its V rounding (~0.03 relL1) */
                if (which == 1) CHECK_MSG(e.cos > (pv == 1 ? 0.99 : 0.9999), "%s: cos %.6f", label, e.cos);
                tc_out_free(&out);
            }
        tc_out_free(&ref);
        tc_free(d);
    }
}

/* The spec takes any token -> group map: per-token groups (each row and each key its own scale)
 * built by hand are at least as accurate as the finest kernel map, which beats per-block. */
TEST(cpu_spec_takes_any_group_map) {
    tc_case c = tc_case_default();
    c.Nq = c.Nk = 384;
    c.D = 128;
    c.seed = 1200;
    tc_data *d = tc_make(&c);
    tc_out ref = tc_out_alloc(d);
    double err[3];
    tc_run_reference(d, &ref);
    for (int mode = 0; mode < 3; mode++) {
        quant_bufs qb;
        tc_out out = tc_out_alloc(d);
        tc_opts o = opts_pv(SAGE_PV_16BIT);
        sage_problem p;
        o.groups = mode == 0 ? SAGE_QK_PER_BLOCK : SAGE_QK_PER_THREAD;
        tc_problem(d, &out, o, &p);
        quant_alloc(&qb, &c, o.groups);
        if (mode == 2) { /* per token: group = row; the scale arrays must hold Nq / Nk groups */
            free(qb.qt.q_scale);
            free(qb.qt.k_scale);
            qb.qt.q_scale = (float *)calloc((size_t)(c.B * c.Hq * c.Nq), sizeof(float));
            qb.qt.k_scale = (float *)calloc((size_t)(c.B * c.Hkv * c.Nk), sizeof(float));
            for (int64_t i = 0; i < c.Nq; i++) qb.qg[i] = (int32_t)i;
            for (int64_t t = 0; t < c.Nk; t++) qb.kg[t] = (int32_t)t;
            qb.m.n_q_groups = c.Nq;
            qb.m.n_k_groups = c.Nk;
        }
        sage_spec_quantize(&p, &qb.m, NULL, &qb.qt);
        sage_spec_attention(&p, &qb.m, &qb.qt);
        tc_err e = tc_compare(d, &out, &ref, 0);
        tc_print_err(mode == 0 ? "pv16 per-block" : mode == 1 ? "pv16 per-thread" : "pv16 per-token (hand-made map)", e);
        err[mode] = e.rel_l1;
        quant_free(&qb);
        tc_out_free(&out);
    }
    CHECK_MSG(err[1] < err[0], "per-thread %.5f should beat per-block %.5f", err[1], err[0]);
    CHECK_MSG(err[2] < err[1] * 1.02, "per-token %.5f should be no worse than per-thread %.5f", err[2], err[1]);
    tc_out_free(&ref);
    tc_free(d);
}
