/* Hopper (sm90a) attention, the 64-row kernel (cuda_sm90_wgmma_q64): one warpgroup per CTA, no
 * producer, several CTAs per SM. The numerics, the tiles and the per-tile steps are those of the
 * 128-row kernel (attn_qk_int8_pv_fp8_sm90.cu; shared device code in attn_sm90_device.cuh); only
 * the schedule differs.
 *
 * Thread 0 issues the TMA loads of a K/V ring (2 stages; 1 at D = 256). A stage needs no empty
 * barrier: thread 0 refills it once its own warpgroup's MMA on it has completed, and all four warps
 * issued that MMA after their wait on the full barrier. Per tile, one step after another: S(j),
 * softmax(j), T = P(j) V(j) (D = 256: two halves of 128 channels), fold. Nothing overlaps inside a
 * CTA; the overlap comes from the other CTAs of the SM: 4 at D = 64, 3 at D = 128, 2 at D = 256
 * (registers: 128 / 168 / 255 per thread, no setmaxnreg), i.e. three or four warps per scheduler
 * where the 128-row kernel has two. (SageAttention2's sm90 kernel is built the same way: one
 * warpgroup, 64 query rows, TMA from one thread.) Measured against the 128-row kernel and the
 * earlier warp-specialized 64-row shapes in docs/perf-log.md (session 6). */
#include "attn_sm90_device.cuh"

namespace sage_sm90 {

template <int D> struct Q64Cfg {
    /* CTAs per SM, by registers: 65536 / (128 x CTAS) per thread = 128 (D 64), 168 (D 128), 255
     * (D 256); ptxas fits each schedule there without spills (build check). */
    static constexpr int CTAS_PER_SM = D == 64 ? 4 : D == 128 ? 3 : 2;
    /* K/V stages: two, except D = 256, where one (Q 16 KB + 64 KB) is what fits twice in 227 KB. */
    static constexpr int STAGES = D == 256 ? 1 : 2;
    /* Q tile, K/V ring, full barriers (K and V, 8 B each per stage), 4 warp amaxes, alignment. */
    static constexpr uint32_t SMEM =
        Tile<D, 1>::Q_BYTES + STAGES * (Tile<D, 1>::K_BYTES + Tile<D, 1>::V_BYTES) + 16 * STAGES + 16 + 1024;
    static_assert(SMEM * CTAS_PER_SM <= 227 * 1024, "shared memory for CTAS_PER_SM");
};

template <int D, bool CAUSAL, typename OutT>
__global__ void __launch_bounds__(128, Q64Cfg<D>::CTAS_PER_SM)
    attn_qk_int8_pv_fp8_sm90_q64(const __grid_constant__ CUtensorMap tm_k, const __grid_constant__ CUtensorMap tm_v,
                                 const __grid_constant__ sage_sm90_params p) {
    using C = Tile<D, 1>;
    constexpr int CTA_Q = WG_Q, NS = KT / 2, ST = Q64Cfg<D>::STAGES, XP = SAGE_SM90_XP;
    constexpr uint32_t OFF_K = C::Q_BYTES, OFF_V = OFF_K + ST * C::K_BYTES, OFF_BAR = OFF_V + ST * C::V_BYTES;
    extern __shared__ uint8_t smem_raw[];
    const uint32_t sbase = (smem_addr(smem_raw) + 1023u) & ~1023u;
    const uint32_t s_q = sbase, s_k = sbase + OFF_K, s_v = sbase + OFF_V;
    const uint32_t bar_kf = sbase + OFF_BAR, bar_vf = bar_kf + 8 * ST, s_red = bar_vf + 8 * ST;

    const int qtile = gridDim.x - 1 - blockIdx.x;
    const int h = blockIdx.y, b = blockIdx.z, hk = h / p.group;
    const int q0 = qtile * CTA_Q;
    const int causal_off = p.causal == SAGE_CAUSAL_BOTTOM_RIGHT ? p.nk - p.nq : 0;
    const int n_kv = kv_tiles<CAUSAL>(p, q0, CTA_Q, causal_off);
    const int tid = threadIdx.x, w = tid / 32, lane = tid % 32, g = lane / 4, qd = lane % 4;
    const int yk = (int)(((int64_t)b * p.heads_kv + hk) * p.nk_pad);
    const int yv = (int)(((int64_t)b * p.heads_kv + hk) * D);
    auto load_k = [&](int j) {
        const int st = j % ST;
        mbar_arrive_expect_tx(bar_kf + 8 * st, C::K_BYTES);
#pragma unroll
        for (int u = 0; u < C::SUBS; ++u)
            tma_load_2d(s_k + st * C::K_BYTES + u * C::K_SUB_BYTES, &tm_k, u * C::QK_SWZ, yk + j * KT, bar_kf + 8 * st);
    };
    auto load_v = [&](int j) {
        const int st = j % ST;
        mbar_arrive_expect_tx(bar_vf + 8 * st, C::V_BYTES);
        tma_load_2d(s_v + st * C::V_BYTES, &tm_v, j * KT, yv, bar_vf + 8 * st);
    };
    const int row0 = q0 + 16 * w + g;
    /* the Q loads first: their latency overlaps the barrier set-up, the first TMA issue and, in the
     * concurrent mode, the wait for the head's K / V */
    uint4 qraw[2][D / 32];
    load_q_rows<D, OutT>(p, q0, row0 - q0, lane, qraw);
    if (tid == 0) {
        for (int s = 0; s < ST; ++s) {
            mbar_init(bar_kf + 8 * s, 1);
            mbar_init(bar_vf + 8 * s, 1);
        }
        mbar_init_fence();
        tma_prefetch_desc(&tm_k);
        tma_prefetch_desc(&tm_v);
        if (p.kv_ready) wait_kv_ready(p.kv_ready + ((int64_t)b * p.heads_kv + hk), p.kv_ready_target);
        for (int j = 0; j < ST && j < n_kv; ++j) {
            load_k(j);
            load_v(j);
        }
    }
    __syncthreads();

    constexpr sage_geometry geo = C::geometry();
    const sage_qk_groups gran = (sage_qk_groups)p.qk_gran;
    const int64_t bhk = (int64_t)b * p.heads_kv + hk;
    const float qs = quantize_loaded_q_rows<D, 1, OutT>(p, qraw, s_q, s_red, q0, row0 - q0, w, lane);
    const float cs = p.sm_scale * LOG2E;
    const int ks_step = gran == SAGE_QK_PER_THREAD ? 4 : 1;

    float O[D / 2];
#pragma unroll
    for (int i = 0; i < D / 2; ++i) O[i] = 0.f;
    float m[2] = {-INFINITY, -INFINITY};
    float l[2] = {0.f, 0.f};
    const uint64_t qdesc = make_desc(s_q, C::QK_SWZ);
    /* Tiles from j_mask on need the mask: the ragged last tile, and with causal masking every tile
     * not wholly visible to the CTA's first row. */
    int j_mask = p.nk / KT;
    if (CAUSAL) {
        const int vis = q0 + causal_off + 1;
        j_mask = min(j_mask, vis < 0 ? 0 : vis / KT);
    }
    /* K scale of tile j: k_scale[ks_off + j * ks_step], loaded one tile ahead. */
    const int ks_off = (int)(bhk * p.n_k_groups + sage_k_group(geo, gran, 2 * qd));
    float ks_next = n_kv > 0 ? ld_f32(p.k_scale + ks_off) : 0.f;
    for (int j = 0; j < n_kv; ++j) {
        const int st = j % ST;
        const uint32_t ph = (uint32_t)(j / ST) & 1u;
        const float ks = ks_next;
        ks_next = ld_f32(p.k_scale + (ks_off + min(j + 1, n_kv - 1) * ks_step));
        uint32_t S[NS];
        mbar_wait(bar_kf + 8 * st, ph);
        wgmma_fence();
        issue_qk<D, 1>(S, qdesc, make_desc(s_k + st * C::K_BYTES, C::QK_SWZ));
        wgmma_commit();
        /* Thread 0 refills stages in the shadow of an MMA, where its warp waits anyway, not between
         * an MMA's completion and the softmax, where its warp would hold up the warpgroup's next
         * wgmma: here V stage (j - 1) % ST, whose MMA PV(j - 1) completed. With one stage (D = 256)
         * each refill is issued as soon as its stage is free instead. */
        if (ST > 1 && tid == 0 && j >= 1 && j - 1 + ST < n_kv) load_v(j - 1 + ST);
        wgmma_wait<0>();
        reg_fence_arr(S);
        if (ST == 1 && tid == 0 && j + ST < n_kv) load_k(j + ST);   /* the warpgroup's MMA on this K stage is done */
        float Pf[NS], alpha[2];
        uint32_t P[NS / 4];
        if (j >= j_mask)
            softmax_tile<NS, true, CAUSAL, XP, 4, true>(S, Pf, (qs * ks) * cs, m, l, alpha, j * KT, p.nk, row0,
                                                        causal_off, qd, P);
        else
            softmax_tile<NS, false, CAUSAL, XP, 4, true>(S, Pf, (qs * ks) * cs, m, l, alpha, j * KT, p.nk, row0,
                                                         causal_off, qd, P);
        mbar_wait(bar_vf + 8 * st, ph);
#pragma unroll
        for (int half = 0; half < D / (2 * C::NT); ++half) {   /* D = 256: channels 0..127, then 128..255 */
            float T[C::NT];
            reg_fence_arr(P);
            wgmma_fence();
            issue_pv<2 * C::NT>(T, P, make_desc(s_v + st * C::V_BYTES + half * (2 * C::NT) * KT, C::V_SWZ));
            wgmma_commit();
            if (ST > 1 && tid == 0 && j + ST < n_kv) load_k(j + ST);   /* QK(j) on this K stage completed */
            wgmma_wait<0>();
            reg_fence_arr(T);
            reg_fence_arr(P);
            if (ST == 1 && half == D / (2 * C::NT) - 1 && tid == 0 && j + ST < n_kv) load_v(j + ST);   /* V read */
            fold(O, T, half * C::NT, alpha);
        }
    }
    /* K stage 0 (64 rows x D bytes, at least the 64 x 2D of o) is free: every tile was consumed */
    epilogue<D, 1, OutT, 0>(p, O, l, m, s_k);
}

/* ---------------- host side ---------------- */

struct Q64Kernel {
    template <int D, bool CAUSAL, typename OutT>
    static sage_status run(const sage_sm90_params *p, const CUtensorMap &tk, const CUtensorMap &tv, cudaStream_t stream,
                           sage_msg msg) {
        const dim3 grid((unsigned)(p->nq_pad / WG_Q), (unsigned)p->heads_q, (unsigned)p->batch);
        return launch_instance(attn_qk_int8_pv_fp8_sm90_q64<D, CAUSAL, OutT>, grid, 128, Q64Cfg<D>::SMEM, stream, p,
                               tk, tv, msg);
    }
};

}  // namespace sage_sm90

sage_status sage_sm90_launch_q64(const sage_sm90_params *p, int d_pad, int bf16, const CUtensorMap *tk,
                                 const CUtensorMap *tv, cudaStream_t stream, sage_msg msg) {
    return sage_sm90::launch_for<sage_sm90::Q64Kernel>(p, d_pad, bf16, tk, tv, stream, msg);
}
