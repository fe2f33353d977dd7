/* Hopper kernel cases (both CTA shapes: cuda_sm90_wgmma and cuda_sm90_wgmma_q64) the generic GPU tests
 * do not reach: the K/V stage ring wrapping around at every head dim (4 stages at D = 64, 3 at 128,
 * 2 at 256; the 64-row kernel: 2, and 1 at 256), KV tile counts of 1, 2, STAGES and STAGES + 1 (the pipeline's first/last-tile paths),
 * causal CTAs that skip KV tiles, GQA with 4 query heads per KV head (CTAs of different heads share
 * K/V tiles in L2), and Q row counts that leave consumer warpgroups without rows. GPU vs CPU spec,
 * brief §4 tolerances. */
#include "gpu_common.h"

#include <string.h>

namespace {

/* The Hopper kernels of this device (both run every head dim and masking). */
std::vector<const char *> sm90_kernels() {
    std::vector<const char *> v;
    for (const char *kn : gpu_kernels_for_device()) {
        if (strncmp(kn, "cuda_sm90", 9)) continue;
        v.push_back(kn);
    }
    return v;
}

/* Whether the Hopper kernels can run here; if not, the test is skipped (with the reason). */
bool sm90_runnable() {
    if (!gpu_available()) return false;
    if (sm90_kernels().empty()) {
        sage_test_skip("the Hopper kernels are not built or not runnable on this device");
        return false;
    }
    return true;
}

bool sm90_case(const tc_case &c, tc_opts o, const char *kn, const char *label) {
    tc_data *d = tc_make(&c);
    tc_out out = tc_out_alloc(d), ref = tc_out_alloc(d);
    gpu_result r = gpu_run(d, &out, o, kn, true);
    bool ok = false;
    CHECK_MSG(r.status == SAGE_OK, "%s: %s", label, r.msg);
    if (r.status == SAGE_OK) {
        gpu_spec_of(d, r, sage_cuda_kernel_by_name(kn), &ref);
        char full[160];
        snprintf(full, sizeof full, "%s [%s]", label, kn);
        ok = gpu_within_spec_tol(full, tc_compare(d, &out, &ref, 0));
        CHECK_MSG(ok, "%s: GPU vs spec out of tolerance", full);
    }
    tc_out_free(&out);
    tc_out_free(&ref);
    tc_free(d);
    return ok;
}

} // namespace

TEST(gpu_sm90_tile_counts_and_ring) {
    if (!sm90_runnable()) return;
    /* KV tiles of 128 keys: 1, 2 (= D256 stages), 3 (= D128 stages), 4 (= D64 stages), 5, 16 (ring
     * wraps). */
    const int64_t nks[] = {100, 256, 300, 512, 577, 2000};
    /* 64: only the first consumer warpgroup has valid rows; 200: the last CTA's too (128-row CTAs:
     * 72 rows, 192-row ones: 8) */
    const int64_t nqs[] = {64, 200};
    const sage_causal cms[] = {SAGE_CAUSAL_NONE, SAGE_CAUSAL_BOTTOM_RIGHT, SAGE_CAUSAL_TOP_LEFT};
    int n = 0;
    for (int64_t D : {64, 128, 256})
        for (int64_t Nk : nks)
            for (int64_t Nq : nqs)
                for (sage_causal cm : cms) {
                    tc_case c = tc_case_default();
                    c.dtype = (n & 1) ? SAGE_DTYPE_BF16 : SAGE_DTYPE_FP16;
                    c.B = 1; c.Hq = 4; c.Hkv = 1; c.Nq = Nq; c.Nk = Nk; c.D = D;
                    c.causal = cm;
                    c.input = (n % 3 == 2) ? TC_KBIAS : TC_RANDN;
                    c.seed = 9000 + (uint64_t)n++;
                    tc_opts o = tc_opts_default();
                    o.pv = SAGE_PV_FP8;
                    char label[128];
                    snprintf(label, sizeof label, "sm90 D%lld Nq%lld Nk%lld causal%d %s", (long long)D, (long long)Nq,
                             (long long)Nk, (int)cm, c.dtype == SAGE_DTYPE_BF16 ? "bf16" : "fp16");
                    for (const char *kn : sm90_kernels()) sm90_case(c, o, kn, label);
                }
}

/* Causal at a longer square shape: CTAs near the top skip most KV tiles, the heaviest run all;
 * blockIdx order is reversed (heavy first), so this also covers the q-tile index mapping. */
TEST(gpu_sm90_causal_skip) {
    if (!sm90_runnable()) return;
    for (int64_t D : {64, 128, 256}) {
        tc_case c = tc_case_default();
        c.B = 2; c.Hq = 2; c.Hkv = 2; c.Nq = 1100; c.Nk = 1100; c.D = D;
        c.causal = SAGE_CAUSAL_TOP_LEFT;
        c.seed = 9500 + (uint64_t)D;
        tc_opts o = tc_opts_default();
        o.pv = SAGE_PV_FP8;
        char label[64];
        snprintf(label, sizeof label, "sm90 causal N1100 D%lld", (long long)D);
        for (const char *kn : sm90_kernels()) sm90_case(c, o, kn, label);
    }
}

/* Many short Q tiles over few keys: 3000 rows x 16 heads = 752 CTAs of 64 rows (376 of 128), more than
 * an H100 or H200 holds at once at any head dim (the 64-row kernel: 4 / 3 / 2 CTAs per SM at D 64 /
 * 128 / 256), so CTAs start as others finish; KV tiles per CTA 1 (Nk 100) or 3; with bottom-right
 * causal masking (Nq > Nk) the first Nq - Nk rows see no key (o = 0, lse = -inf) beside rows that
 * see some. GQA 16 / 4. */
TEST(gpu_sm90_many_q_tiles) {
    if (!sm90_runnable()) return;
    const sage_causal cms[] = {SAGE_CAUSAL_NONE, SAGE_CAUSAL_BOTTOM_RIGHT, SAGE_CAUSAL_TOP_LEFT};
    int n = 0;
    for (int64_t D : {64, 128, 256})
        for (int64_t Nk : {100, 300})
            for (sage_causal cm : cms) {
                tc_case c = tc_case_default();
                c.dtype = (n & 1) ? SAGE_DTYPE_BF16 : SAGE_DTYPE_FP16;
                c.B = 1; c.Hq = 16; c.Hkv = 4; c.Nq = 3000; c.Nk = Nk; c.D = D;
                c.causal = cm;
                c.seed = 9700 + (uint64_t)n++;
                tc_opts o = tc_opts_default();
                o.pv = SAGE_PV_FP8;
                char label[128];
                snprintf(label, sizeof label, "sm90 many tiles D%lld Nq3000 Nk%lld causal%d", (long long)D, (long long)Nk,
                         (int)cm);
                for (const char *kn : sm90_kernels()) sm90_case(c, o, kn, label);
            }
}
