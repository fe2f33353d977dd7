/* Hopper (sm90a) attention, the 128-row kernel (cuda_sm90_wgmma): INT8 QK^T and FP8 PV on wgmma,
 * tiles by TMA, warp-specialised. The device code it shares with the 64-row kernel
 * (attn_qk_int8_pv_fp8_sm90_q64.cu) is in attn_sm90_device.cuh.
 *
 * CTA = 3 warpgroups (__launch_bounds__(384, 1) so setmaxnreg works: F2):
 *   WG0  producer: one thread issues every TMA load (K and V tiles into a ring of STAGES buffers
 *        guarded by full/empty mbarriers, E5); setmaxnreg.dec 24.
 *   WG1, WG2 consumers: each owns 64 of the CTA's 128 query rows (one m64 wgmma tile);
 *        setmaxnreg.inc 240 (24 + 2 x 240 = 504 = 3 x 168, F3). The consumers quantize their Q rows
 *        themselves (prologue: raw q -> INT8 in the swizzled smem tile, the pinned recipe), so Q
 *        needs no pass of its own before the kernel.
 * Head dims 64, 128, 256 (the template D; other D <= 256 run padded to the next of these: the
 * quantizer zero-fills the padded channels and only the first p.d columns of o are stored).
 * KV tiles of 128 keys. Per KV tile j a consumer warpgroup, for D <= 128:
 *   issues S(j) = Q8 . K8(j)^T        wgmma m64n128k32 s32.s8.s8, A and B from smem (K-major)
 *   issues T = P(j-1) . V8(j-1)       wgmma m64nDk32 f32.e4m3.e4m3, A = P from registers, fresh
 *                                     accumulator (scale-d = 0 on the first k-step): level one of
 *                                     the two-level accumulation
 *   softmax(j) on S(j) while T is computed (the PV of the previous tile overlaps the softmax)
 *   O = O * alpha(j-1) + T            level two, true fp32 in registers
 * At D = 64 the two consumer warpgroups take turns issuing (named barriers 1 and 2, E6) so one's
 * softmax runs while the tensor cores work on the other's matrices; otherwise they run freely
 * (measured faster at D = 128, WsCfg::PINGPONG). D = 256 does not fit that schedule in 240
 * registers (O alone is 128): per tile it runs S(j), softmax(j), then PV in two halves of 128
 * channels, each folded into O before the next is issued; the other warpgroup fills the gaps.
 *
 * Scores: s = int32 sum, sc = (qs * ks) * (sm_scale * log2 e), base 2. Row max on the raw sums
 * (IMNMX), scaled per lane; exponent fma(float(s), sc, -(m - SHIFT)) in one FFMA, the CPU spec's
 * formula (rounded score fl(s * sc) - (m - SHIFT) only for |m - SHIFT| >= 2^20 and smooth Q).
 * One qs * ks per thread per tile: the per-thread groups of geometry.h match the accumulator
 * layout A4 (HOPPER-NOTES A8). P~ = exp2(S - m + SHIFT) in [0, 448], rounded to e4m3 and packed
 * from the accumulator registers as they are (A7); V^T is stored with the matching 16-token
 * permutation. Epilogue: o = O / l * vs (+ v_mean);
 * lse = ln2 * (m + log2 l - SHIFT) + sm_scale * q.k_mean, q.k_mean from the raw q rows. */
#include "attn_sm90_device.cuh"

#include <type_traits>

namespace sage_sm90 {

/* The pipeline of the 128-row kernel, beside its tiles. */
template <int D> struct WsCfg : Tile<D, 2> {
    using T = Tile<D, 2>;
    static constexpr int NTHREADS = 128 + T::CONSUMERS;
    /* Registers per consumer thread after setmaxnreg: the launch pool is 65536 / 384 = 168 per
     * thread, the producer keeps 24 (F3). */
    static constexpr int CONSUMER_REGS = 240;
    static_assert(24 * 128 + CONSUMER_REGS * T::CONSUMERS <= 65536, "register pool");
    /* Stages of the K/V ring: 4 x 16 KB (D = 64), 3 x 32 KB (128), 2 x 64 KB (256). One CTA per
     * SM (registers), so stages only add prefetch depth. */
    static constexpr int STAGES = D == 64 ? 4 : D == 128 ? 3 : 2;
    static constexpr uint32_t OFF_Q = 0;
    static constexpr uint32_t OFF_K = OFF_Q + T::Q_BYTES;
    static constexpr uint32_t OFF_V = OFF_K + STAGES * T::K_BYTES;
    static constexpr uint32_t OFF_BAR = OFF_V + STAGES * T::V_BYTES;
    /* barriers: k_full[S], k_empty[S], v_full[S], v_empty[S] (8 B each) */
    static constexpr uint32_t BAR_BYTES = 8 * 4 * STAGES;
    /* per consumer warp: its Q amax (per-block Q groups span all consumer warps) */
    static constexpr uint32_t OFF_RED = OFF_BAR + BAR_BYTES;
    /* +1024: dynamic smem is only 16-B aligned; swizzled tiles need 1024-B alignment (D6). */
    static constexpr uint32_t SMEM = OFF_RED + 4 * 8 + 1024;
    /* The two consumer warpgroups take turns issuing (named barriers, E6) only at D = 64: measured
     * against free-running warpgroups in one call (session 3), turns gave +1..3 % at D = 64 up to
     * N = 4K (even at 16K) and cost 1..4 % at D = 128 (causal up to 8 %). D = 256 has none. */
    static constexpr bool PINGPONG = D == 64;
    /* S(j) and T(j-1) in flight together (64 + NT registers beside O) fits 240 registers at
     * D <= 128; D = 256 has a schedule of its own (see the top). */
    static constexpr bool PIPELINED = D <= 128;
    /* Partial maxima / sums per row in the softmax (ILP against register pressure). Measured per
     * instance against 8 (session 3, one call): 4 is 1-8 % faster everywhere except D = 64
     * causal, where 8 is 5-7 % faster from N = 4K (code generation, not arithmetic). */
    template <bool CAUSAL> static constexpr int np() { return D == 64 && CAUSAL ? 8 : 4; }
};

/* Ping-pong of the two consumer warpgroups (E6): WG c waits for its turn, issues, hands over. */
template <int XP> __device__ __forceinline__ void pp_wait(int c, bool first) {
    if (XP & XP_NO_PINGPONG) return;
    if (c == 0) {
        if (!first) named_sync<1, 256>();
    } else {
        named_sync<2, 256>();
    }
}
template <int XP> __device__ __forceinline__ void pp_signal(int c) {
    if (XP & XP_NO_PINGPONG) return;
    if (c == 0) named_arrive<2, 256>();
    else named_arrive<1, 256>();
}

/* A consumer warp is done with a ring stage: the warp's lanes converge, then one arrive (the
 * empty barriers count consumer warps, E5). */
__device__ __forceinline__ void warp_release(uint32_t bar, int lane) {
    __syncwarp();
    if (lane == 0) mbar_arrive(bar);
}

template <int D, bool CAUSAL, typename OutT, int XP>
__global__ void __launch_bounds__(WsCfg<D>::NTHREADS, 1)
    attn_qk_int8_pv_fp8_sm90(const __grid_constant__ CUtensorMap tm_k, const __grid_constant__ CUtensorMap tm_v,
                             const __grid_constant__ sage_sm90_params p) {
    using C = WsCfg<D>;
    constexpr int NC = 2, CTA_Q = C::CTA_Q;
    constexpr int NS = KT / 2;         /* S registers per thread (m64 x KT tile, A4) */
    constexpr int XPP = XP | (C::PINGPONG ? 0 : XP_NO_PINGPONG);   /* ping-pong off where it loses */
    extern __shared__ uint8_t smem_raw[];
    const uint32_t sraw = smem_addr(smem_raw);
    const uint32_t sbase = (sraw + 1023u) & ~1023u;
    const uint32_t s_q = sbase + C::OFF_Q, s_k = sbase + C::OFF_K, s_v = sbase + C::OFF_V;
    const uint32_t bar_kf = sbase + C::OFF_BAR, bar_ke = bar_kf + 8 * C::STAGES;
    const uint32_t bar_vf = bar_ke + 8 * C::STAGES, bar_ve = bar_vf + 8 * C::STAGES;

    /* Heavier (causal: later) Q tiles first. */
    const int qtile = gridDim.x - 1 - blockIdx.x;
    const int h = blockIdx.y, b = blockIdx.z;
    const int hk = h / p.group;
    const int q0 = qtile * CTA_Q;
    const int causal_off = p.causal == SAGE_CAUSAL_BOTTOM_RIGHT ? p.nk - p.nq : 0;

    const int n_kv = kv_tiles<CAUSAL>(p, q0, CTA_Q, causal_off);

    const int tid = threadIdx.x;
    if (tid == 0) {
        for (int s = 0; s < C::STAGES; ++s) {
            mbar_init(bar_kf + 8 * s, 1);      /* the producer's arrive.expect_tx */
            mbar_init(bar_ke + 8 * s, 4 * NC); /* one arrive per consumer warp */
            mbar_init(bar_vf + 8 * s, 1);
            mbar_init(bar_ve + 8 * s, 4 * NC);
        }
        mbar_init_fence();
    }
    __syncthreads();

    const int wg = tid / 128;
    if (wg == 0) {
        /* ---------------- producer ---------------- */
        setmaxnreg_dec<24>();
        if (tid == 0 && n_kv > 0) {
            tma_prefetch_desc(&tm_k);
            tma_prefetch_desc(&tm_v);
            const int yk = (int)(((int64_t)b * p.heads_kv + hk) * p.nk_pad);
            const int yv = (int)(((int64_t)b * p.heads_kv + hk) * D);
            int st = 0;
            uint32_t ph = 0;
            for (int j = 0; j < n_kv; ++j) {
                mbar_wait(bar_ke + 8 * st, ph ^ 1u);
                mbar_arrive_expect_tx(bar_kf + 8 * st, C::K_BYTES);
#pragma unroll
                for (int u = 0; u < C::SUBS; ++u)
                    tma_load_2d(s_k + st * C::K_BYTES + u * C::K_SUB_BYTES, &tm_k, u * C::QK_SWZ, yk + j * KT,
                                bar_kf + 8 * st);
                mbar_wait(bar_ve + 8 * st, ph ^ 1u);
                mbar_arrive_expect_tx(bar_vf + 8 * st, C::V_BYTES);
                tma_load_2d(s_v + st * C::V_BYTES, &tm_v, j * KT, yv, bar_vf + 8 * st);
                if (++st == C::STAGES) { st = 0; ph ^= 1u; }
            }
        }
        return;
    }

    /* ---------------- consumers ---------------- */
    setmaxnreg_inc<C::CONSUMER_REGS>();
    const int c = wg - 1;              /* consumer warpgroup 0 .. NC-1: rows 64c .. 64c+63 */
    const int t = tid - 128 * wg;
    const int w = t / 32, lane = t % 32, g = lane / 4, qd = lane % 4;
    const int row0 = q0 + WG_Q * c + 16 * w + g; /* this thread's rows: row0, row0 + 8 */

    constexpr sage_geometry geo = C::geometry();
    const sage_qk_groups gran = (sage_qk_groups)p.qk_gran;
    const int64_t bhk = (int64_t)b * p.heads_kv + hk;
    const float qs = quantize_q_rows<D, NC, OutT>(p, s_q, sbase + C::OFF_RED, q0, row0 - q0, 4 * c + w, lane);
    const float cs = p.sm_scale * LOG2E;  /* scores in base-2 units; S scale = (qs * ks) * cs */
    /* K scale of tile j: k_scale[ks_off + j * ks_step] (geometry.h: per-thread groups are
     * (tile, q), 4 per tile; per-block and per-warp one per tile). */
    const int ks_step = gran == SAGE_QK_PER_THREAD ? 4 : 1;

    float O[D / 2];
#pragma unroll
    for (int i = 0; i < D / 2; ++i) O[i] = 0.f;
    float m[2] = {-INFINITY, -INFINITY};
    float l[2] = {0.f, 0.f};   /* this lane's partial row sums (its columns of rows g, g + 8) */

    const uint64_t qdesc = make_desc(s_q + c * (WG_Q * C::QK_SWZ), C::QK_SWZ);
    /* Tiles from j_mask on need the mask: the ragged last tile, and with causal every tile not
     * wholly visible to the CTA's first row. The same for both warpgroups (the second masks at
     * most one tile it would not need to), so the compiler keeps it in a uniform register: a
     * per-warpgroup bound spilled at D = 128 causal. */
    int j_mask = p.nk / KT;
    if (CAUSAL) {
        const int vis = q0 + causal_off + 1;   /* keys visible to the CTA's first row */
        j_mask = min(j_mask, vis < 0 ? 0 : vis / KT);
    }

    if (n_kv > 0) {
        uint32_t S[NS];
        float Pf[NS];
        uint32_t P[NS / 4];
        /* pack: std::true_type packs P inside the exp stream (the serial schedule, where P is free);
         * the pipelined one packs after T(j-1) completed, PV(j-1) reading P until then. */
        auto softmax = [&](int j, float sc, float (&alpha)[2], auto pack) {
            constexpr bool PK = decltype(pack)::value;
            const int kv0 = j * KT;
            if (j >= j_mask)
                softmax_tile<NS, true, CAUSAL, XP, C::template np<CAUSAL>(), PK>(S, Pf, sc, m, l, alpha, kv0, p.nk, row0,
                                                                                 causal_off, qd, P);
            else
                softmax_tile<NS, false, CAUSAL, XP, C::template np<CAUSAL>(), PK>(S, Pf, sc, m, l, alpha, kv0, p.nk, row0,
                                                                                  causal_off, qd, P);
        };
        /* Address of tile j's K scale: a 32-bit offset from the parameter's base (one register
         * instead of a 64-bit pointer; bhk * n_k_groups < 2^31: the launcher bounds
         * B * Hkv * nk_pad). Measured +6-8 % at D = 64 (device call 8, docs/perf-log.md); at
         * D = 128 with the warpgroups free-running it is the register that avoids a spill. */
        const int ks_off = (int)(bhk * p.n_k_groups + sage_k_group(geo, gran, 2 * qd));
        auto ks_addr = [&](int j) -> const float * { return p.k_scale + (ks_off + j * ks_step); };
        /* K scale of the next tile, loaded one iteration ahead by a load the compiler cannot sink
         * to its use (a plain load landed right before the softmax: its L2 latency showed as
         * "long scoreboard" stalls). */
        float ks = *ks_addr(0);
        float ks_next = ld_f32(ks_addr(min(1, n_kv - 1)));

        if constexpr (C::PIPELINED) {
            /* Pipelined: QK^T(j) and PV(j-1) issued together, softmax(j) overlaps PV(j-1); the
             * QK^T latency is exposed and covered by the other warpgroup (ping-pong). */
            float T[C::NT];
            float alpha_prev[2];
            /* slot 0: S(0) */
            pp_wait<XPP>(c, true);
            mbar_wait(bar_kf, 0);
            wgmma_fence();
            issue_qk<D, NC>(S, qdesc, make_desc(s_k, C::QK_SWZ));
            wgmma_commit();
            pp_signal<XPP>(c);
            wgmma_wait<0>();
            reg_fence_arr(S);
            warp_release(bar_ke, lane);
            softmax(0, (qs * ks) * cs, alpha_prev, std::false_type{});
            pack_p<NS>(Pf, P);

            /* slots 1 .. n_kv-1: S(j) and T = P(j-1) V(j-1) in flight, softmax(j) meanwhile */
            for (int j = 1; j < n_kv; ++j) {
                const int st = j % C::STAGES, pst = (j - 1) % C::STAGES;
                const uint32_t ph = (uint32_t)(j / C::STAGES) & 1u, pph = (uint32_t)((j - 1) / C::STAGES) & 1u;
                ks = ks_next;
                ks_next = ld_f32(ks_addr(min(j + 1, n_kv - 1)));
                pp_wait<XPP>(c, false);
                mbar_wait(bar_kf + 8 * st, ph);
                reg_fence_arr(P);
                wgmma_fence();
                issue_qk<D, NC>(S, qdesc, make_desc(s_k + st * C::K_BYTES, C::QK_SWZ));
                wgmma_commit();
                mbar_wait(bar_vf + 8 * pst, pph);
                if (!(XP & XP_NO_PV)) issue_pv<D>(T, P, make_desc(s_v + pst * C::V_BYTES, C::V_SWZ));
                wgmma_commit();
                pp_signal<XPP>(c);

                wgmma_wait<1>();          /* S(j) ready */
                reg_fence_arr(S);
                warp_release(bar_ke + 8 * st, lane);
                float alpha[2];
                softmax(j, (qs * ks) * cs, alpha, std::false_type{});

                wgmma_wait<0>();          /* T ready */
                reg_fence_arr(T);
                reg_fence_arr(P);
                warp_release(bar_ve + 8 * pst, lane);
                fold(O, T, 0, alpha_prev);
                alpha_prev[0] = alpha[0];
                alpha_prev[1] = alpha[1];
                pack_p<NS>(Pf, P);
            }

            /* last slot: T = P(n-1) V(n-1) */
            {
                const int pst = (n_kv - 1) % C::STAGES;
                const uint32_t pph = (uint32_t)((n_kv - 1) / C::STAGES) & 1u;
                pp_wait<XPP>(c, false);
                mbar_wait(bar_vf + 8 * pst, pph);
                reg_fence_arr(P);
                wgmma_fence();
                issue_pv<D>(T, P, make_desc(s_v + pst * C::V_BYTES, C::V_SWZ));
                wgmma_commit();
                pp_signal<XPP>(c);
                wgmma_wait<0>();
                reg_fence_arr(T);
                warp_release(bar_ve + 8 * pst, lane);
                fold(O, T, 0, alpha_prev);
            }
            if (c == 0 && !(XPP & XP_NO_PINGPONG))
                named_sync<1, 256>();           /* consume WG2's last hand-over (E6) */
        } else {
            /* D = 256, one step after another: S(j), softmax(j), PV(j) over channels 0..127 into
             * a fresh T, fold, then channels 128..255, fold. No ping-pong: each
             * warpgroup waits on its own MMAs and the other one fills the tensor cores. */
            for (int j = 0; j < n_kv; ++j) {
                const int st = j % C::STAGES;
                const uint32_t ph = (uint32_t)(j / C::STAGES) & 1u;
                if (j > 0) {
                    ks = ks_next;
                    ks_next = ld_f32(ks_addr(min(j + 1, n_kv - 1)));
                }
                mbar_wait(bar_kf + 8 * st, ph);
                wgmma_fence();
                issue_qk<D, NC>(S, qdesc, make_desc(s_k + st * C::K_BYTES, C::QK_SWZ));
                wgmma_commit();
                wgmma_wait<0>();
                reg_fence_arr(S);
                warp_release(bar_ke + 8 * st, lane);
                float alpha[2];
                softmax(j, (qs * ks) * cs, alpha, std::true_type{});
                mbar_wait(bar_vf + 8 * st, ph);
                {
                    float T[C::NT];
                    reg_fence_arr(P);
                    wgmma_fence();
                    issue_pv<128>(T, P, make_desc(s_v + st * C::V_BYTES, C::V_SWZ));
                    wgmma_commit();
                    wgmma_wait<0>();
                    reg_fence_arr(T);
                    fold(O, T, 0, alpha);
                }
                {
                    float T[C::NT];
                    reg_fence_arr(P);
                    wgmma_fence();
                    issue_pv<128>(T, P, make_desc(s_v + st * C::V_BYTES + 128 * KT, C::V_SWZ));
                    wgmma_commit();
                    wgmma_wait<0>();
                    reg_fence_arr(T);
                    reg_fence_arr(P);
                    warp_release(bar_ve + 8 * st, lane);
                    fold(O, T, 64, alpha);
                }
            }
        }
    }

    epilogue<D, NC, OutT>(p, O, l, m);
}

/* ---------------- host side ---------------- */

struct WsKernel {
    template <int D, bool CAUSAL, typename OutT, int XP = 0>
    static sage_status run_xp(const sage_sm90_params *p, const CUtensorMap &tk, const CUtensorMap &tv,
                              cudaStream_t stream, sage_msg msg) {
        using C = WsCfg<D>;
        const dim3 grid((unsigned)(p->nq_pad / C::CTA_Q), (unsigned)p->heads_q, (unsigned)p->batch);
        return launch_instance(attn_qk_int8_pv_fp8_sm90<D, CAUSAL, OutT, XP>, grid, C::NTHREADS, C::SMEM, stream, p,
                               tk, tv, msg);
    }
    template <int D, bool CAUSAL, typename OutT>
    static sage_status run(const sage_sm90_params *p, const CUtensorMap &tk, const CUtensorMap &tv, cudaStream_t stream,
                           sage_msg msg) {
#ifdef SAGE_SM90_EXPERIMENTS
        if constexpr (D == 128 && !CAUSAL && std::is_same<OutT, __half>::value) {
            switch (p->flags) {
            case 1: return run_xp<D, false, __half, 1>(p, tk, tv, stream, msg);
            case 2: return run_xp<D, false, __half, 2>(p, tk, tv, stream, msg);
            case 4: return run_xp<D, false, __half, 4>(p, tk, tv, stream, msg);
            case 8: return run_xp<D, false, __half, 8>(p, tk, tv, stream, msg);
            case 16: return run_xp<D, false, __half, 16>(p, tk, tv, stream, msg);
            case 32: return run_xp<D, false, __half, 32>(p, tk, tv, stream, msg);
            default: break;
            }
        }
#endif
        return run_xp<D, CAUSAL, OutT, SAGE_SM90_XP>(p, tk, tv, stream, msg);
    }
};

}  // namespace sage_sm90

sage_status sage_sm90_launch_wgmma(const sage_sm90_params *p, int d_pad, int bf16, const CUtensorMap *tk,
                                   const CUtensorMap *tv, cudaStream_t stream, sage_msg msg) {
    return sage_sm90::launch_for<sage_sm90::WsKernel>(p, d_pad, bf16, tk, tv, stream, msg);
}
