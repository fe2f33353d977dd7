/* GPU quantization vs the CPU specification, bit for bit (given the GPU's means), padding
 * included: the workspace is poisoned with 0xFF before each run, so every padding byte the run
 * leaves unwritten shows up as a mismatch. */
#include "gpu_common.h"

#include <string.h>

namespace {

struct Mismatch {
    long long n = 0;
    void add(const char *what, long long i, double got, double want) {
        if (n++ < 4) printf("    %s[%lld]: gpu %.9g spec %.9g\n", what, i, got, want);
    }
};

/* Compare the workspace of r (layout r.L) with the spec's tensors; returns the mismatch count. */
long long compare_quant(const tc_data *d, const gpu_result &r, const gpu_spec_quant &sq) {
    const tc_case *c = &d->c;
    const sage_cuda_quant_layout &L = r.L;
    const int64_t D = c->D, dp = L.d_pad;
    const uint8_t *w = r.ws.data();
    Mismatch mm;
    for (int64_t bh = 0; bh < c->B * c->Hq; bh++)
        for (int64_t i = 0; i < L.nq_pad; i++)
            for (int64_t x = 0; x < dp; x++) {
                const int8_t got = (int8_t)w[L.off_q8 + (size_t)((bh * L.nq_pad + i) * dp + x)];
                const int8_t want = i < c->Nq && x < D ? sq.q8[(size_t)((bh * c->Nq + i) * D + x)] : 0;
                if (got != want) mm.add("q8", (bh * L.nq_pad + i) * dp + x, got, want);
            }
    const float *qs = reinterpret_cast<const float *>(w + L.off_q_scale);
    for (size_t i = 0; i < sq.qs.size(); i++)
        if (memcmp(&qs[i], &sq.qs[i], 4)) mm.add("q_scale", (long long)i, qs[i], sq.qs[i]);
    for (int64_t bh = 0; bh < c->B * c->Hkv; bh++)
        for (int64_t t = 0; t < L.nk_pad; t++)
            for (int64_t x = 0; x < dp; x++) {
                const int8_t got = (int8_t)w[L.off_k8 + (size_t)((bh * L.nk_pad + t) * dp + x)];
                const int8_t want = t < c->Nk && x < D ? sq.k8[(size_t)((bh * c->Nk + t) * D + x)] : 0;
                if (got != want) mm.add("k8", (bh * L.nk_pad + t) * dp + x, got, want);
            }
    const float *ks = reinterpret_cast<const float *>(w + L.off_k_scale);
    for (size_t i = 0; i < sq.ks.size(); i++)
        if (memcmp(&ks[i], &sq.ks[i], 4)) mm.add("k_scale", (long long)i, ks[i], sq.ks[i]);
    if (r.p.pv == SAGE_PV_FP8) {
        const float *vs = reinterpret_cast<const float *>(w + L.off_v_scale);
        for (int64_t bh = 0; bh < c->B * c->Hkv; bh++) {
            for (int64_t x = 0; x < dp; x++) {
                const float want = x < D ? sq.vs[(size_t)(bh * D + x)] : 1.0f;
                if (memcmp(&vs[bh * dp + x], &want, 4)) mm.add("v_scale", bh * dp + x, vs[bh * dp + x], want);
                for (int64_t t = 0; t < L.nk_pad; t++) {
                    const uint8_t got = w[L.off_v8 + (size_t)(bh * dp * L.nk_pad + sage_vt_offset(x, t, L.nk_pad))];
                    const uint8_t want8 = x < D && t < c->Nk ? sq.v8[(size_t)((bh * D + x) * c->Nk + t)] : 0;
                    if (got != want8) mm.add("v8 (d*Nk+t)", (bh * D + x) * c->Nk + t, got, want8);
                }
            }
        }
    }
    return mm.n;
}

/* One case through the path its layout takes and, where that is the one-pass path (sm_90+, short
 * heads), through the split path too. Returns the layout's kv_cluster (0: split path only). */
int quant_case(tc_case c, tc_opts o, sage_geometry g, int64_t d_pad, const char *label) {
    tc_data *d = tc_make(&c);
    tc_out out = tc_out_alloc(d);
    int kv_cluster = 0;
    for (int split = 0; split < 2; split++) {
        gpu_result r = gpu_run_quant(d, &out, o, g, d_pad, split);
        CHECK_MSG(r.status == SAGE_OK, "%s (%s path): %s", label, split ? "split" : "default", r.msg);
        if (r.status == SAGE_OK) {
            gpu_spec_quant sq;
            gpu_spec_quantize(d, r, g, &sq);
            const long long n = compare_quant(d, r, sq);
            CHECK_MSG(n == 0, "%s (%s path, cluster %d): %lld quantized bytes/scales differ from the spec", label,
                      split ? "split" : "default", r.L.kv_cluster, n);
        }
        if (!split) {
            kv_cluster = r.L.kv_cluster;
            /* on sm_90 every one-pass layout of these tests fits the device: it must have run */
            if (r.status == SAGE_OK)
                CHECK_MSG(r.one_pass == (kv_cluster > 0), "%s: one-pass layout %d, one-pass grid ran %d", label,
                          kv_cluster, r.one_pass);
        }
        if (!kv_cluster) break; /* the default was the split path */
    }
    tc_out_free(&out);
    tc_free(d);
    return kv_cluster;
}

} // namespace

TEST(gpu_quant_bitexact_grid) {
    if (!gpu_available()) return;
    const bool fp8 = sage_has_fp8_mma(gpu_cc());
    const sage_geometry portable = sage_mma_geometry(4); /* cuda_sm80_mma: 64-row CTAs */
    const sage_qk_groups grans[] = {SAGE_QK_PER_BLOCK, SAGE_QK_PER_WARP, SAGE_QK_PER_THREAD};
    const int64_t dims[] = {64, 128, 40, 100};
    for (int di = 0; di < 4; di++)
        for (int gi = 0; gi < 3; gi++)
            for (int dt = 0; dt < 2; dt++) {
                tc_case c = tc_case_default();
                c.dtype = dt ? SAGE_DTYPE_BF16 : SAGE_DTYPE_FP16;
                c.B = 2; c.Hq = 4; c.Hkv = 2; c.Nq = 129; c.Nk = 257; c.D = dims[di];
                c.input = gi == 1 ? TC_KBIAS : TC_RANDN;
                c.seed = 100 + di * 10 + gi * 2 + dt;
                tc_opts o = tc_opts_default();
                o.groups = grans[gi];
                o.pv = fp8 ? SAGE_PV_FP8 : SAGE_PV_16BIT;
                char label[96];
                snprintf(label, sizeof label, "D%lld gran %d %s", (long long)c.D, (int)grans[gi], dt ? "bf16" : "fp16");
                quant_case(c, o, portable, sage_mma_d_pad(c.D), label);
            }
}

TEST(gpu_quant_bitexact_smoothing_and_layouts) {
    if (!gpu_available()) return;
    const bool fp8 = sage_has_fp8_mma(gpu_cc());
    const sage_geometry portable = sage_mma_geometry(8); /* cuda_sm80_mma_q128: 128-row CTAs */
    for (int v = 0; v < 8; v++) {
        tc_case c = tc_case_default();
        c.B = 1; c.Hq = 2; c.Hkv = 2; c.Nq = 200; c.Nk = 200; c.D = 64;
        c.layout = v % 3 == 0 ? TC_BHND : v % 3 == 1 ? TC_PACKED_QKV : TC_BNHD;
        c.input = v < 4 ? TC_QBIAS : TC_VBIAS;
        c.seed = 300 + v;
        tc_opts o = tc_opts_default();
        o.smooth_k = v & 1;
        o.smooth_q = (v >> 1) & 1;
        o.smooth_v = fp8 ? (v >> 2) & 1 : 0;
        o.pv = fp8 ? SAGE_PV_FP8 : SAGE_PV_16BIT;
        char label[96];
        snprintf(label, sizeof label, "layout %d smooth k%d q%d v%d", (int)c.layout, o.smooth_k, o.smooth_q, o.smooth_v);
        quant_case(c, o, portable, 64, label);
    }
}

/* The Hopper kernel reuses sage_cuda_quantize with its own geometry (128 x 128, warps_q 8, K blocks of 64) and
 * head dims up to 256: check those layouts too, without its attention kernel. */
TEST(gpu_quant_bitexact_hopper_geometry) {
    if (!gpu_available()) return;
    if (!sage_has_fp8_mma(gpu_cc())) { sage_test_skip("needs sm_89+ for e4m3 V"); return; }
    const sage_geometry hop = {128, 128, 8, 64}; /* 64-key K scale blocks inside 128-key tiles */
    const int64_t dims[] = {256, 200, 128};
    for (int di = 0; di < 3; di++) {
        tc_case c = tc_case_default();
        c.B = 1; c.Hq = 2; c.Hkv = 1; c.Nq = 130; c.Nk = 300; c.D = dims[di];
        c.seed = 400 + di;
        tc_opts o = tc_opts_default();
        o.pv = SAGE_PV_FP8;
        o.smooth_v = di == 1;
        char label[64];
        snprintf(label, sizeof label, "hopper geometry D%lld", (long long)c.D);
        quant_case(c, o, hop, c.D <= 128 ? 128 : 256, label);
    }
}

/* Several reduction chunks, K tiles and V blocks per head (V blocks cover 16 * 256 / (d_pad / 8) tokens,
 * the last one past nk_pad), in both geometries. */
TEST(gpu_quant_bitexact_multi_chunk) {
    if (!gpu_available()) return;
    const bool fp8 = sage_has_fp8_mma(gpu_cc());
    const sage_geometry geos[] = {sage_mma_geometry(4), {128, 128, 8, 64}};
    const int64_t dims[] = {128, 64};
    for (int i = 0; i < 4; i++) {
        tc_case c = tc_case_default();
        c.dtype = i & 1 ? SAGE_DTYPE_BF16 : SAGE_DTYPE_FP16;
        c.B = 2; c.Hq = 4; c.Hkv = 2; c.Nq = 1000 + 37 * i; c.Nk = 1500 - 91 * i; c.D = dims[i / 2];
        c.input = i == 3 ? TC_KBIAS : TC_RANDN;
        c.seed = 500 + i;
        tc_opts o = tc_opts_default();
        o.groups = i == 2 ? SAGE_QK_PER_BLOCK : SAGE_QK_PER_THREAD;
        o.pv = fp8 ? SAGE_PV_FP8 : SAGE_PV_16BIT;
        o.smooth_v = fp8 && i == 1;
        const sage_geometry g = geos[i % 2];
        char label[96];
        snprintf(label, sizeof label, "multi-chunk D%lld cta %d/%d %s", (long long)c.D, g.cta_q, g.cta_k,
                 i & 1 ? "bf16" : "fp16");
        quant_case(c, o, g, c.D, label);
    }
}

/* The one-pass path (sm_90: a cluster of at most 16 CTAs per head, each holding <= 64 KB of one
 * tensor) on both sides of its limits: the longest heads it takes and the first too long for it (the
 * split path), uneven chunks (the last CTA's second tile wholly past nk_pad), single-CTA clusters,
 * odd lengths. */
TEST(gpu_quant_bitexact_one_pass_limits) {
    if (!gpu_available()) return;
    if (gpu_cc() < 90) { sage_test_skip("the one-pass path needs sm_90"); return; }
    const sage_geometry hop = SAGE_SM90_GEOMETRY;
    struct { int64_t D, Nk; int want_cluster; } cases[] = {
        {128, 1024, 4}, {128, 1025, 5}, {128, 4096, 16}, {128, 4097, 0}, {64, 8192, 16}, {64, 8193, 0},
        {256, 2048, 16}, {256, 2049, 0}, {128, 77, 1}, {96, 1500, 6}, {128, 2049, 9},
    };
    for (int i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++) {
        tc_case c = tc_case_default();
        c.dtype = i & 1 ? SAGE_DTYPE_BF16 : SAGE_DTYPE_FP16;
        c.B = 2; c.Hq = 2; c.Hkv = 1; c.Nq = 64; c.Nk = cases[i].Nk; c.D = cases[i].D;
        c.input = i % 3 == 1 ? TC_KBIAS : i % 3 == 2 ? TC_VBIAS : TC_RANDN;
        c.seed = 700 + i;
        tc_opts o = tc_opts_default();
        o.pv = SAGE_PV_FP8;
        o.smooth_v = i % 4 == 3;
        o.smooth_k = i != 8;
        char label[96];
        snprintf(label, sizeof label, "one-pass limits D%lld Nk%lld %s", (long long)c.D, (long long)c.Nk,
                 i & 1 ? "bf16" : "fp16");
        const int64_t d_pad = c.D <= 64 ? 64 : c.D <= 128 ? 128 : 256;
        const int got = quant_case(c, o, hop, d_pad, label);
        CHECK_MSG(got == cases[i].want_cluster, "%s: cluster of %d CTAs, expected %d", label, got,
                  cases[i].want_cluster);
    }
}
