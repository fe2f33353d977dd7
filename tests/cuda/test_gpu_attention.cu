/* GPU attention vs the CPU specification (brief §4: relL1 <= 1e-3, 1 - cos <= 1e-6, lse within
 * 1e-3, no NaN/Inf), for every built CUDA kernel that runs on this device. The spec gets the
 * maps of the kernel's geometry and the GPU's means, so both quantize identically. */
#include "gpu_common.h"

#include <string.h>

namespace {

/* One case for one kernel: run, compare, report. Returns false when out of tolerance. */
bool attn_case(const tc_case &c, tc_opts o, const char *kname, const char *label, bool expect_pass = true) {
    tc_data *d = tc_make(&c);
    tc_out out = tc_out_alloc(d), ref = tc_out_alloc(d);
    gpu_result r = gpu_run(d, &out, o, kname, true);
    bool ok = false;
    if (r.status == SAGE_ERR_UNSUPPORTED || r.status == SAGE_ERR_HEAD_DIM) {
        printf("    %s [%s]: not supported here: %s\n", label, kname, r.msg);
        ok = true;
    } else {
        CHECK_MSG(r.status == SAGE_OK, "%s [%s]: %s", label, kname, r.msg);
        if (r.status == SAGE_OK) {
            gpu_spec_of(d, r, sage_cuda_kernel_by_name(kname), &ref);
            char full[160];
            snprintf(full, sizeof full, "%s [%s]", label, kname);
            tc_err e = tc_compare(d, &out, &ref, 0);
            ok = gpu_within_spec_tol(full, e);
            if (expect_pass) CHECK_MSG(ok, "%s: GPU vs spec out of tolerance", full);
            /* The Q scales a run leaves in the workspace (the Hopper kernel computes them in its
             * prologue, the portable path in the quantization pass) are the spec's, bit for bit. */
            gpu_spec_quant sq;
            gpu_spec_quantize(d, r, sage_cuda_kernel_by_name(kname)->geometry, &sq);
            const float *qs = reinterpret_cast<const float *>(r.ws.data() + r.L.off_q_scale);
            size_t bad = 0;
            for (size_t i = 0; i < sq.qs.size(); i++) bad += memcmp(&qs[i], &sq.qs[i], 4) != 0;
            CHECK_MSG(bad == 0, "%s: %zu of %zu q_scale entries differ from the spec", full, bad, sq.qs.size());
        }
    }
    tc_out_free(&out);
    tc_out_free(&ref);
    tc_free(d);
    return ok;
}

tc_case odd_case() {
    tc_case c = tc_case_default();
    c.B = 1; c.Hq = 4; c.Hkv = 2; c.Nq = 129; c.Nk = 257; c.D = 64;
    c.seed = 7;
    return c;
}

} // namespace

/* Every option combination at one odd shape (GQA, Nq != Nk, neither a tile multiple). */
TEST(gpu_attn_every_option) {
    if (!gpu_available()) return;
    const bool fp8 = sage_has_fp8_mma(gpu_cc());
    const sage_qk_groups grans[] = {SAGE_QK_PER_BLOCK, SAGE_QK_PER_WARP, SAGE_QK_PER_THREAD};
    for (const char *kn : gpu_kernels_for_device())
        for (int pvi = 0; pvi < 2; pvi++) {
            if (pvi == 0 && !fp8) continue;
            for (int gi = 0; gi < 3; gi++)
                for (int sm = 0; sm < 8; sm++) {
                    if (pvi == 1 && (sm & 4)) continue; /* smooth V is an FP8-PV option */
                    tc_case c = odd_case();
                    c.input = (sm & 2) ? TC_QBIAS : (sm & 4) ? TC_VBIAS : TC_KBIAS;
                    c.causal = (sm + gi) % 3 == 0 ? SAGE_CAUSAL_NONE : (sm + gi) % 3 == 1 ? SAGE_CAUSAL_TOP_LEFT
                                                                                         : SAGE_CAUSAL_BOTTOM_RIGHT;
                    c.seed = 1000 + pvi * 100 + gi * 10 + sm;
                    tc_opts o = tc_opts_default();
                    o.pv = pvi == 0 ? SAGE_PV_FP8 : SAGE_PV_16BIT;
                    o.groups = grans[gi];
                    o.smooth_k = sm & 1;
                    o.smooth_q = (sm >> 1) & 1;
                    o.smooth_v = (sm >> 2) & 1;
                    char label[128];
                    snprintf(label, sizeof label, "%s gran%d sk%d sq%d sv%d causal%d", pvi ? "pv16" : "pv8", (int)grans[gi],
                             o.smooth_k, o.smooth_q, o.smooth_v, (int)c.causal);
                    attn_case(c, o, kn, label);
                }
        }
}

/* The default mode over input type x head dim x causal, with GQA and B = 2. Head dims: the
 * Hopper kernel's native 64 / 128 / 256 and padded ones (32, 40, 96, 200). */
TEST(gpu_attn_default_grid) {
    if (!gpu_available()) return;
    const int64_t dims[] = {64, 128, 96, 40, 256, 200, 32};
    const sage_causal cm[] = {SAGE_CAUSAL_NONE, SAGE_CAUSAL_TOP_LEFT, SAGE_CAUSAL_BOTTOM_RIGHT};
    for (const char *kn : gpu_kernels_for_device())
        for (int dt = 0; dt < 2; dt++)
            for (int di = 0; di < (int)(sizeof dims / sizeof dims[0]); di++)
                for (int ci = 0; ci < 3; ci++) {
                    tc_case c = tc_case_default();
                    c.dtype = dt ? SAGE_DTYPE_BF16 : SAGE_DTYPE_FP16;
                    c.B = 2; c.Hq = 4; c.Hkv = 2; c.Nq = 200; c.Nk = 333; c.D = dims[di];
                    c.causal = cm[ci];
                    c.seed = 2000 + dt * 100 + di * 10 + ci;
                    char label[96];
                    snprintf(label, sizeof label, "default %s D%lld causal%d", dt ? "bf16" : "fp16", (long long)c.D, ci);
                    attn_case(c, tc_opts_default(), kn, label);
                }
}

/* Every Q/K group granularity at every native head dim, Q with outlier channels (so the groups'
 * scales differ): the Hopper kernel reduces its Q groups in its prologue per granularity, and
 * attn_case holds its q_scale to the spec bit for bit. Rows past Nq sit in the last tile. */
TEST(gpu_attn_q_groups_every_head_dim) {
    if (!gpu_available()) return;
    const sage_qk_groups grans[] = {SAGE_QK_PER_BLOCK, SAGE_QK_PER_WARP, SAGE_QK_PER_THREAD};
    const int64_t dims[] = {64, 128, 256};
    for (const char *kn : gpu_kernels_for_device())
        for (int di = 0; di < 3; di++)
            for (int gi = 0; gi < 3; gi++) {
                tc_case c = tc_case_default();
                c.B = 1; c.Hq = 2; c.Hkv = 1; c.Nq = 300; c.Nk = 200; c.D = dims[di];
                c.input = TC_QOUTLIER;
                c.causal = gi == 1 ? SAGE_CAUSAL_BOTTOM_RIGHT : SAGE_CAUSAL_NONE;
                c.seed = 2500 + di * 10 + gi;
                tc_opts o = tc_opts_default();
                o.groups = grans[gi];
                char label[96];
                snprintf(label, sizeof label, "Q outliers D%lld gran%d", (long long)c.D, (int)grans[gi]);
                attn_case(c, o, kn, label);
            }
}

/* Long KV (what catches a missing two-level accumulation), one per PV mode. */
TEST(gpu_attn_long_kv) {
    if (!gpu_available()) return;
    const bool fp8 = sage_has_fp8_mma(gpu_cc());
    for (const char *kn : gpu_kernels_for_device())
        for (int pvi = 0; pvi < 3; pvi++) {
            if (pvi != 1 && !fp8) continue;
            tc_case c = tc_case_default();
            c.B = 1; c.Hq = 2; c.Hkv = 1; c.Nq = 256; c.Nk = 8192 + 77; c.D = pvi == 2 ? 256 : 128;
            c.seed = 3000 + pvi;
            tc_opts o = tc_opts_default();
            o.pv = pvi == 1 ? SAGE_PV_16BIT : SAGE_PV_FP8;
            attn_case(c, o, kn, pvi == 0 ? "Nk 8269 pv8" : pvi == 1 ? "Nk 8269 pv16" : "Nk 8269 pv8 D256");
        }
}

/* Layouts and edge shapes: packed QKV, [B, N, H, D], unaligned head dim (scalar paths),
 * N = 1, Nq > Nk with bottom-right causal (rows that see no key: o = 0, lse = -inf). */
TEST(gpu_attn_layouts_and_edges) {
    if (!gpu_available()) return;
    struct E { tc_layout lay; int64_t Nq, Nk, D; sage_causal cm; const char *label; };
    const E es[] = {
        {TC_PACKED_QKV, 150, 150, 64, SAGE_CAUSAL_TOP_LEFT, "packed qkv"},
        {TC_BNHD, 77, 190, 128, SAGE_CAUSAL_NONE, "BNHD"},
        {TC_BHND, 70, 90, 100, SAGE_CAUSAL_BOTTOM_RIGHT, "D100 (unaligned rows)"},
        {TC_BHND, 1, 1, 64, SAGE_CAUSAL_NONE, "N = 1"},
        {TC_BHND, 1, 1000, 128, SAGE_CAUSAL_BOTTOM_RIGHT, "Nq 1, Nk 1000"},
        {TC_BHND, 300, 100, 64, SAGE_CAUSAL_BOTTOM_RIGHT, "Nq 300 > Nk 100, bottom-right"},
        {TC_BHND, 300, 100, 64, SAGE_CAUSAL_TOP_LEFT, "Nq 300 > Nk 100, top-left"},
    };
    for (const char *kn : gpu_kernels_for_device())
        for (const E &e : es) {
            tc_case c = tc_case_default();
            c.layout = e.lay;
            c.B = 2; c.Hq = 2; c.Hkv = e.lay == TC_PACKED_QKV ? 2 : 1;
            c.Nq = e.Nq; c.Nk = e.lay == TC_PACKED_QKV ? e.Nq : e.Nk; c.D = e.D;
            c.causal = e.cm;
            c.seed = 4000 + (uint64_t)(&e - es);
            attn_case(c, tc_opts_default(), kn, e.label);
        }
}

/* The check must catch a wrong scale index: the spec, fed a map with one row's Q group
 * changed to the group whose scale differs most, must disagree with the GPU. */
TEST(gpu_attn_planted_wrong_scale_is_caught) {
    if (!gpu_available()) return;
    for (const char *kn : gpu_kernels_for_device()) {
        tc_case c = tc_case_default();
        c.B = 1; c.Hq = 1; c.Hkv = 1; c.Nq = 16; c.Nk = 64; c.D = 64;
        c.input = TC_QOUTLIER;
        c.seed = 5000;
        tc_data *d = tc_make(&c);
        tc_out out = tc_out_alloc(d), ref = tc_out_alloc(d), ref2 = tc_out_alloc(d);
        gpu_result r = gpu_run(d, &out, tc_opts_default(), kn, true);
        CHECK_MSG(r.status == SAGE_OK, "%s", r.msg);
        if (r.status == SAGE_OK) {
            const sage_kernel *k = sage_cuda_kernel_by_name(kn);
            gpu_spec_of(d, r, k, &ref);
            tc_err good = tc_compare(d, &out, &ref, 0);
            CHECK_MSG(gpu_within_spec_tol("unplanted", good), "unplanted comparison must pass");
            gpu_spec_quant sq;
            gpu_spec_quantize(d, r, k->geometry, &sq);
            const int64_t row = 3;
            const int32_t g0 = sq.qg[row];
            int32_t best = g0;
            for (int32_t g = 0; g < (int32_t)sq.m.n_q_groups; g++)
                if (fabsf(sq.qs[g] - sq.qs[g0]) > fabsf(sq.qs[best] - sq.qs[g0])) best = g;
            CHECK_MSG(best != g0, "no other Q group to plant");
            gpu_spec_of(d, r, k, &ref2, row, best);
            tc_err bad = tc_compare(d, &out, &ref2, 0);
            const bool passed = gpu_within_spec_tol("planted (must fail)", bad);
            CHECK_MSG(!passed, "[%s] a wrong Q scale index (row %lld: group %d -> %d) was not caught", kn,
                      (long long)row, g0, best);
        }
        tc_out_free(&out);
        tc_out_free(&ref);
        tc_out_free(&ref2);
        tc_free(d);
    }
}

/* The 64-row Hopper kernel beside the one-pass K/V quantization (concurrent mode, sm_90): heads
 * enough for several rounds of the persistent K/V grid (items > its clusters), so attention CTAs
 * really wait on heads still being quantized; GQA, causal, bf16, D 64 with clusters of 8. The
 * workspace's counters end at their targets. */
TEST(gpu_attn_concurrent_quantization) {
    if (!gpu_available()) return;
    if (gpu_cc() < 90) { sage_test_skip("the concurrent mode needs sm_90"); return; }
    struct E { int64_t B, Hq, Hkv, N, D; sage_causal cm; sage_dtype dt; const char *label; };
    const E es[] = {
        {4, 16, 8, 1024, 128, SAGE_CAUSAL_NONE, SAGE_DTYPE_FP16, "B4 H16/8 N1024 D128"},
        {2, 8, 8, 1500, 128, SAGE_CAUSAL_TOP_LEFT, SAGE_DTYPE_BF16, "B2 H8 N1500 D128 causal bf16"},
        {2, 16, 16, 3000, 64, SAGE_CAUSAL_NONE, SAGE_DTYPE_FP16, "B2 H16 N3000 D64"},
    };
    const char *kn = "cuda_sm90_wgmma_q64";
    for (const E &e : es) {
        tc_case c = tc_case_default();
        c.B = e.B; c.Hq = e.Hq; c.Hkv = e.Hkv; c.Nq = e.N; c.Nk = e.N; c.D = e.D;
        c.causal = e.cm;
        c.dtype = e.dt;
        c.seed = 4500 + (uint64_t)(&e - es);
        tc_data *d = tc_make(&c);
        tc_out out = tc_out_alloc(d), ref = tc_out_alloc(d);
        gpu_result r = gpu_run(d, &out, tc_opts_default(), kn, true);
        CHECK_MSG(r.status == SAGE_OK, "%s: %s", e.label, r.msg);
        if (r.status == SAGE_OK) {
            CHECK_MSG(r.L.kv_cluster > 0, "%s: expected the one-pass layout", e.label);
            gpu_spec_of(d, r, sage_cuda_kernel_by_name(kn), &ref);
            CHECK_MSG(gpu_within_spec_tol(e.label, tc_compare(d, &out, &ref, 0)), "%s: GPU vs spec out of tolerance",
                      e.label);
            const int *ready = reinterpret_cast<const int *>(r.ws.data() + r.L.off_kv_ready);
            const int target = sage_cuda_kv_ready_target(&r.p, &r.L);
            int64_t off = 0;
            for (int64_t i = 0; i < e.B * e.Hkv; i++) off += ready[i] != target;
            CHECK_MSG(off == 0, "%s: %lld head counters not at %d", e.label, (long long)off, target);
        }
        tc_out_free(&out);
        tc_out_free(&ref);
        tc_free(d);
    }
}

/* Same arguments, same bytes. */
TEST(gpu_attn_deterministic) {
    if (!gpu_available()) return;
    for (const char *kn : gpu_kernels_for_device()) {
        tc_case c = odd_case();
        tc_data *d = tc_make(&c);
        tc_out a = tc_out_alloc(d), b = tc_out_alloc(d);
        gpu_result ra = gpu_run(d, &a, tc_opts_default(), kn, true);
        gpu_result rb = gpu_run(d, &b, tc_opts_default(), kn, true);
        CHECK(ra.status == SAGE_OK && rb.status == SAGE_OK);
        CHECK_MSG(!memcmp(a.o, b.o, d->o_elems * 2), "[%s] two runs differ in o", kn);
        CHECK_MSG(!memcmp(a.lse, b.lse, (size_t)(c.B * c.Hq * c.Nq) * 4), "[%s] two runs differ in lse", kn);
        CHECK_MSG(ra.ws == rb.ws, "[%s] two runs differ in the workspace", kn);
        tc_out_free(&a);
        tc_out_free(&b);
        tc_free(d);
    }
}

/* The fp32 GPU reference against the CPU's exact reference. */
TEST(gpu_reference_kernel_matches_cpu_reference) {
    if (!gpu_available()) return;
    const sage_causal cm[] = {SAGE_CAUSAL_NONE, SAGE_CAUSAL_BOTTOM_RIGHT};
    for (int i = 0; i < 2; i++) {
        tc_case c = odd_case();
        c.D = i ? 128 : 80;
        c.causal = cm[i];
        c.dtype = i ? SAGE_DTYPE_BF16 : SAGE_DTYPE_FP16;
        tc_data *d = tc_make(&c);
        tc_out out = tc_out_alloc(d), ref = tc_out_alloc(d);
        gpu_result r = gpu_run(d, &out, tc_opts_default(), "cuda_reference", false);
        CHECK_MSG(r.status == SAGE_OK, "%s", r.msg);
        tc_run_reference(d, &ref);
        tc_err e = tc_compare(d, &out, &ref, 0);
        tc_print_err("cuda_reference vs cpu reference", e);
        CHECK(e.rel_l1 <= 2e-3 && e.lse_max_abs <= 1e-4 && e.nonfinite == 0 && e.lse_inf_mismatch == 0);
        tc_out_free(&out);
        tc_out_free(&ref);
        tc_free(d);
    }
}
