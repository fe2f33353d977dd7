/* The quantization workspace layout (quant.h): needs no device, so it runs in CI too. Every
 * region 256-B aligned, in order, not overlapping, sized as documented. */
#include "gpu_common.h"

TEST(gpu_quant_layout_regions) {
    const sage_geometry geos[] = {sage_mma_geometry(4), sage_mma_geometry(8), {128, 128, 8, 64}};
    for (int gi = 0; gi < 3; gi++)
        for (int v = 0; v < 8; v++) {
            tc_case c = tc_case_default();
            c.B = 3; c.Hq = 6; c.Hkv = 2; c.Nq = 1000; c.Nk = 777; c.D = 80;
            tc_data d0 = {};
            d0.c = c;
            tc_out o = {nullptr, nullptr};
            tc_opts opts = tc_opts_default();
            opts.pv = (v & 1) ? SAGE_PV_FP8 : SAGE_PV_16BIT;
            opts.smooth_q = (v >> 1) & 1;
            const int q8 = !(v & 4) || opts.smooth_q; /* no Q8 region: Q quantized by the kernel */
            d0.a.struct_size = sizeof(sage_args);
            d0.a.batch = c.B; d0.a.heads_q = c.Hq; d0.a.heads_kv = c.Hkv;
            d0.a.seqlen_q = c.Nq; d0.a.seqlen_kv = c.Nk; d0.a.head_dim = c.D;
            sage_problem p;
            tc_problem(&d0, &o, opts, &p);
            const int64_t dp = 128;
            sage_cuda_quant_layout L;
            sage_cuda_quant_layout_init(&p, geos[gi], dp, q8, &L);
            const sage_geometry g = geos[gi];
            CHECK_EQ_INT(L.nq_pad, (c.Nq + g.cta_q - 1) / g.cta_q * g.cta_q);
            CHECK_EQ_INT(L.nk_pad, (c.Nk + g.cta_k - 1) / g.cta_k * g.cta_k);
            CHECK_EQ_INT(L.n_q_groups, sage_q_group_count(g, p.qk_groups, c.Nq));
            CHECK_EQ_INT(L.n_k_groups, sage_k_group_count(g, p.qk_groups, c.Nk));
            const bool fp8 = p.pv == SAGE_PV_FP8;
            const int64_t nqb = L.nq_pad / g.cta_q;
            struct R { size_t off, bytes; } r[] = {
                {L.off_q8, q8 ? (size_t)(c.B * c.Hq * L.nq_pad * dp) : 0},
                {L.off_q_scale, 4 * (size_t)(c.B * c.Hq * L.n_q_groups)},
                {L.off_k8, (size_t)(c.B * c.Hkv * L.nk_pad * dp)},
                {L.off_k_scale, 4 * (size_t)(c.B * c.Hkv * L.n_k_groups)},
                {L.off_k_mean, 4 * (size_t)(c.B * c.Hkv * dp)},
                {L.off_v8, fp8 ? (size_t)(c.B * c.Hkv * dp * L.nk_pad) : 0},
                {L.off_v_scale, fp8 ? 4 * (size_t)(c.B * c.Hkv * dp) : 0},
                {L.off_v_mean, fp8 ? 4 * (size_t)(c.B * c.Hkv * dp) : 0},
                {L.off_q_mean, p.smooth_q ? 4 * (size_t)(c.B * c.Hq * nqb * dp) : 0},
                {L.off_qk_bias, p.smooth_q ? 4 * (size_t)(c.B * c.Hq * nqb * L.nk_pad) : 0},
                {L.off_scratch, 4 * (size_t)c.B * c.Hkv * dp},
                {L.off_kv_ready, L.kv_cluster ? 4 * (size_t)(c.B * c.Hkv) : 0},
            };
            size_t end = 0;
            for (const R &x : r) {
                CHECK_MSG(x.off % 256 == 0, "geometry %d variant %d: offset %zu not 256-aligned", gi, v, x.off);
                CHECK_MSG(x.off >= end, "geometry %d variant %d: region at %zu overlaps the one before", gi, v, x.off);
                end = x.off + x.bytes;
            }
            CHECK(L.total >= end && L.total % 256 == 0);
            CHECK_EQ_INT(L.q8, q8);
        }
}
