/* Scale-group maps (sage_spec_maps_fill over geometry.h) checked against the fragment layouts they
 * are derived from (HOPPER-NOTES A4 / A8: the rows and columns one thread's accumulator holds),
 * and the V^T storage map (sage_vt_offset) against the register packing of HOPPER-NOTES A7. */
#include "test_cpu_common.h"

#include <stdlib.h>
#include <string.h>

static const sage_qk_groups k_grans[3] = {SAGE_QK_PER_BLOCK, SAGE_QK_PER_WARP, SAGE_QK_PER_THREAD};

/* Rows of a Q tile that thread (w, g) of the tile's warps holds: each 16-row slab s with
 * s % warps_q == w contributes rows 16 s + g and 16 s + g + 8. */
static int thread_rows(sage_geometry geo, int w, int g, int64_t *rows) {
    int n = 0;
    for (int s = 0; s < geo.cta_q / 16; s++)
        if (s % geo.warps_q == w) {
            rows[n++] = 16 * s + g;
            rows[n++] = 16 * s + g + 8;
        }
    return n;
}

static void check_geometry(sage_geometry geo) {
    const int64_t sizes[] = {1, 7, 16, 77, (int64_t)geo.cta_q, (int64_t)geo.cta_q * 3 + 5, 1000};
    for (int gi = 0; gi < 3; gi++) {
        const sage_qk_groups gran = k_grans[gi];
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
            const int64_t nq = sizes[si], nk = sizes[(si + 3) % (sizeof sizes / sizeof sizes[0])];
            int32_t *qg = (int32_t *)malloc((size_t)nq * sizeof(int32_t));
            int32_t *kg = (int32_t *)malloc((size_t)nk * sizeof(int32_t));
            sage_spec_maps m;
            sage_spec_maps_fill(&m, geo, gran, nq, nk, qg, kg);
            CHECK(m.q_block == geo.cta_q && m.kv_tile == geo.cta_k);
            /* the fill is the geometry.h map, in range */
            for (int64_t i = 0; i < nq; i++) {
                CHECK_EQ_INT(qg[i], sage_q_group(geo, gran, i));
                CHECK(qg[i] >= 0 && qg[i] < m.n_q_groups);
            }
            for (int64_t t = 0; t < nk; t++) {
                CHECK_EQ_INT(kg[t], sage_k_group(geo, gran, t));
                CHECK(kg[t] >= 0 && kg[t] < m.n_k_groups);
            }
            /* counts: tiles x (1 | warps_q | warps_q * 8) for Q, K blocks x (1 | 1 | 4) for K */
            {
                int64_t qt = (nq + geo.cta_q - 1) / geo.cta_q, kt = (nk + sage_k_block(geo) - 1) / sage_k_block(geo);
                int64_t qper = gran == SAGE_QK_PER_BLOCK ? 1 : gran == SAGE_QK_PER_WARP ? geo.warps_q : geo.warps_q * 8;
                CHECK_EQ_INT(m.n_q_groups, qt * qper);
                CHECK_EQ_INT(m.n_k_groups, kt * (gran == SAGE_QK_PER_THREAD ? 4 : 1));
            }
            /* groups never straddle tiles */
            for (int64_t i = 1; i < nq; i++)
                if (i % geo.cta_q == 0) CHECK(qg[i] > qg[i - 1]);
            free(qg);
            free(kg);
        }
        /* Fragment ownership in one full tile (tile index 2, so offsets are exercised). */
        {
            const int64_t nq = 3 * (int64_t)geo.cta_q, nk = 3 * (int64_t)geo.cta_k;
            const int64_t base = 2 * (int64_t)geo.cta_q, kbase = 2 * (int64_t)geo.cta_k;
            int32_t *qg = (int32_t *)malloc((size_t)nq * sizeof(int32_t));
            int32_t *kg = (int32_t *)malloc((size_t)nk * sizeof(int32_t));
            int64_t rows[64];
            int32_t seen[8 * 32]; /* one group per thread of up to 32 warps */
            int n_seen = 0;
            if (geo.warps_q > 32 || geo.cta_q > 512) {
                CHECK_MSG(0, "geometry too large for this test's arrays");
                free(qg);
                free(kg);
                return;
            }
            sage_spec_maps m;
            sage_spec_maps_fill(&m, geo, gran, nq, nk, qg, kg);
            for (int w = 0; w < geo.warps_q; w++)
                for (int g = 0; g < 8; g++) {
                    int n = thread_rows(geo, w, g, rows);
                    int32_t grp = qg[base + rows[0]];
                    for (int r = 1; r < n; r++) /* one Q scale per thread */
                        CHECK_MSG(qg[base + rows[r]] == grp, "gran %d: thread (w%d, g%d) spans Q groups", gran, w, g);
                    if (gran == SAGE_QK_PER_THREAD) { /* and no two threads share one */
                        for (int k = 0; k < n_seen; k++) CHECK(seen[k] != grp);
                        seen[n_seen++] = grp;
                    }
                    if (gran == SAGE_QK_PER_WARP && g == 0) {
                        for (int k = 0; k < n_seen; k++) CHECK(seen[k] != grp);
                        seen[n_seen++] = grp;
                    }
                    if (gran == SAGE_QK_PER_BLOCK) CHECK(grp == qg[base]);
                }
            /* K: the thread with quad index q holds columns 8 j + 2 q + {0, 1} of every n8 block;
             * inside each K scale block of the tile they share one group */
            const int kblk = (int)sage_k_block(geo);
            CHECK(geo.cta_k % kblk == 0);
            for (int b0 = 0; b0 < geo.cta_k; b0 += kblk)
                for (int q = 0; q < 4; q++) {
                    int32_t grp = kg[kbase + b0 + 2 * q];
                    for (int j = 0; j < kblk / 8; j++)
                        for (int e = 0; e < 2; e++)
                            CHECK_MSG(kg[kbase + b0 + 8 * j + 2 * q + e] == grp, "gran %d: quad %d spans K groups", gran, q);
                    if (gran == SAGE_QK_PER_THREAD)
                        for (int q2 = 0; q2 < q; q2++) CHECK(kg[kbase + b0 + 2 * q2] != grp);
                    else
                        CHECK(grp == kg[kbase + b0]);
                    if (b0 > 0) CHECK(grp != kg[kbase + b0 - kblk + 2 * q]); /* blocks differ */
                }
            free(qg);
            free(kg);
        }
    }
}

TEST(cpu_group_maps_match_fragment_layout) {
    sage_geometry hopper = {128, 128, 4, 0}; /* one warpgroup owning two m64 tiles */
    sage_geometry mma = {64, 64, 4, 0};      /* mma.sync style: one 16-row slab per warp */
    sage_geometry wide = {128, 64, 8, 0};    /* one slab per warp over 128 rows */
    sage_geometry split = sage_cpu_geometry(); /* 64-key K scale blocks in 128-key tiles */
    sage_geometry q64 = SAGE_SM90_Q64_GEOMETRY;   /* one warpgroup: 4 warps, one slab each */
    check_geometry(split);
    check_geometry(q64);
    check_geometry(hopper);
    check_geometry(mma);
    check_geometry(wide);
    /* Spot values of the Hopper geometry (docs/algorithm.md's table). */
    CHECK_EQ_INT(sage_q_group(hopper, SAGE_QK_PER_THREAD, 0), 0);
    CHECK_EQ_INT(sage_q_group(hopper, SAGE_QK_PER_THREAD, 8), 0);   /* rows g, g + 8 */
    CHECK_EQ_INT(sage_q_group(hopper, SAGE_QK_PER_THREAD, 64), 0);  /* slab 4 belongs to warp 0 */
    CHECK_EQ_INT(sage_q_group(hopper, SAGE_QK_PER_THREAD, 72), 0);
    CHECK_EQ_INT(sage_q_group(hopper, SAGE_QK_PER_THREAD, 16), 8);  /* warp 1, g 0 */
    CHECK_EQ_INT(sage_q_group(hopper, SAGE_QK_PER_THREAD, 131), 35);/* tile 1, warp 0, g 3 */
    CHECK_EQ_INT(sage_q_group(hopper, SAGE_QK_PER_WARP, 80), 1);
    CHECK_EQ_INT(sage_k_group(hopper, SAGE_QK_PER_THREAD, 6), 3);
    CHECK_EQ_INT(sage_k_group(hopper, SAGE_QK_PER_THREAD, 129), 4);
    CHECK_EQ_INT(sage_q_group(q64, SAGE_QK_PER_THREAD, 35), 2 * 8 + 3); /* warp 2, g 3 */
    CHECK_EQ_INT(sage_q_group(q64, SAGE_QK_PER_WARP, 70), 4);           /* tile 1, warp 0 */
    CHECK_EQ_INT(sage_q_group(q64, SAGE_QK_PER_BLOCK, 63), 0);
    CHECK_EQ_INT(sage_q_group(q64, SAGE_QK_PER_BLOCK, 64), 1);
}

TEST(cpu_vt_storage_is_the_a7_permutation) {
    static const int tokens_at[16] = {0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15};
    int used[16];
    memset(used, 0, sizeof used);
    for (int t = 0; t < 16; t++) {
        int p = sage_vt_position(t);
        CHECK(p >= 0 && p < 16);
        if (p >= 0 && p < 16) {
            used[p]++;
            CHECK_MSG(tokens_at[p] == t, "position %d holds token %d, HOPPER-NOTES A7 says %d", p, t, tokens_at[p]);
        }
    }
    for (int p = 0; p < 16; p++) CHECK_EQ_INT(used[p], 1);

    /* A7 derivation: thread quad q packs its S registers of a k32 chunk as
     * a[0] = (s0, s1, s4, s5), a[1] = (s2, s3, s6, s7), a[2] = (s8, s9, s12, s13), a[3] = (s10, s11, s14, s15);
     * register i of S holds column 8 (i >> 2) + 2 q + (i & 1) (A4), and byte b of A register j is
     * the k index 4 q + b + 16 (j >> 1) (A5). The V^T storage must put that column's token at k. */
    static const int pack[4][4] = {{0, 1, 4, 5}, {2, 3, 6, 7}, {8, 9, 12, 13}, {10, 11, 14, 15}};
    const int64_t nk_pad = 96;
    for (int chunk = 0; chunk < 3; chunk++)
        for (int q = 0; q < 4; q++)
            for (int j = 0; j < 4; j++)
                for (int b = 0; b < 4; b++) {
                    int i = pack[j][b];
                    int64_t token = 32 * chunk + 8 * (i >> 2) + 2 * q + (i & 1);
                    int64_t k = 32 * chunk + 4 * q + b + 16 * (j >> 1);
                    for (int64_t d = 0; d < 3; d++)
                        CHECK_MSG(sage_vt_offset(d, token, nk_pad) == d * nk_pad + k,
                                  "token %lld (quad %d reg %d byte %d) stored at %lld, the mma reads k %lld",
                                  (long long)token, q, j, b, (long long)(sage_vt_offset(d, token, nk_pad) - d * nk_pad),
                                  (long long)k);
                }
    /* a permutation of each row [0, nk_pad) that keeps every token in its 16-token group */
    {
        int seen[96];
        memset(seen, 0, sizeof seen);
        for (int64_t t = 0; t < nk_pad; t++) {
            int64_t o = sage_vt_offset(5, t, nk_pad) - 5 * nk_pad;
            CHECK(o >= 0 && o < nk_pad && o / 16 == t / 16);
            if (o >= 0 && o < nk_pad) seen[o]++;
        }
        for (int i = 0; i < 96; i++) CHECK_EQ_INT(seen[i], 1);
    }
}
