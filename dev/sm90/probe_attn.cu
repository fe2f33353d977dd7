// Standalone probe of the sm90a attention kernel: fills K8/V8 and scales in the documented
// workspace layout (src/cuda/quant.h) with a CPU quantizer following the pinned recipe (Q8 too,
// for the emulation: the kernel quantizes the raw q itself), runs
// the kernel, and compares with (1) a CPU emulation of the same quantized math, tile by tile,
// and (2) exact attention in double. Then times the kernel alone at the benchmark shapes.
// Build: nvcc -std=c++17 -O2 --expt-relaxed-constexpr -gencode=arch=compute_90a,code=sm_90a -I include -I src \
//   -DSAGE_SM90_EXPERIMENTS dev/sm90/probe_attn.cu src/cuda/sm90/attn_qk_int8_pv_fp8_sm90.cu \
//   src/cuda/sm90/attn_qk_int8_pv_fp8_sm90_q64.cu src/cuda/sm90/attn_sm90_launch.cu \
//   build-sm90/libsageattn.a -o build-sm90/probe_attn
// Modes: check | time | api | prof (one D=128 N=8K launch for ncu) ; default: check time api
#include "cuda/sm90/attn_sm90.h"
#include "sageattn.h"
#include "geometry.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#define CK(x)                                                                                 \
    do {                                                                                      \
        cudaError_t e_ = (x);                                                                 \
        if (e_ != cudaSuccess) {                                                              \
            fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)

static const float SHIFT = 8.807354922057604f, LOG2E = 1.4426950408889634f, LN2 = 0.6931471805599453f;

// ---- e4m3 on the CPU (RNE, satfinite) ----
static float e4m3_round(float x) {
    float a = fabsf(x);
    if (!(a == a)) return x;
    float q;
    if (a < 0.015625f) {
        q = rintf(a * 512.f) / 512.f;  // subnormal step 2^-9
    } else {
        int e;
        frexpf(a, &e);  // a = f * 2^e, f in [0.5, 1): binade 2^(e-1)
        float step = ldexpf(1.f, e - 1 - 3);
        q = rintf(a / step) * step;
    }
    if (q > 448.f) q = 448.f;
    return x < 0 ? -q : q;
}
static uint8_t e4m3_encode(float x) {  // x already representable
    uint8_t s = x < 0 ? 0x80 : 0;
    float a = fabsf(x);
    if (a == 0.f) return s;
    if (a < 0.015625f) return s | (uint8_t)(int)(a * 512.f);
    int e;
    frexpf(a, &e);
    int E = e - 1;
    int mant = (int)(a / ldexpf(1.f, E - 3)) - 8;
    return s | (uint8_t)((E + 7) << 3) | (uint8_t)mant;
}
static float e4m3_decode(uint8_t b) {
    int s = b >> 7, E = (b >> 3) & 15, m = b & 7;
    float v = E == 0 ? ldexpf((float)m, -9) : ldexpf(1.f + m / 8.f, E - 7);
    return s ? -v : v;
}

static float to_f(uint16_t bits, bool bf16) {
    if (bf16) {
        uint32_t u = (uint32_t)bits << 16;
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    __half h;
    memcpy(&h, &bits, 2);
    return __half2float(h);
}
static uint16_t from_f(float f, bool bf16) {
    if (bf16) {
        __nv_bfloat16 b = __float2bfloat16_rn(f);
        uint16_t u;
        memcpy(&u, &b, 2);
        return u;
    }
    __half h = __float2half_rn(f);
    uint16_t u;
    memcpy(&u, &h, 2);
    return u;
}

template <class F> static void par_for(int n, F f) {
    int nt = std::max(1u, std::thread::hardware_concurrency());
    std::vector<std::thread> th;
    for (int t = 0; t < nt; ++t)
        th.emplace_back([&, t] {
            for (int i = t; i < n; i += nt) f(i);
        });
    for (auto &x : th) x.join();
}

struct Case {
    const char *name;
    int B, Hq, Hkv, Nq, Nk, D;
    int causal;     // sage_causal
    bool bf16;
    bool lse;
    bool smooth_v;
    int gran;       // sage_qk_groups
    int o_pad;      // extra elements per o row (odd -> scalar stores)
    float kbias;    // per-channel bias added to K (what smoothing is for)
};

static int run_case(const Case &cs_in, int flags = 0) {
    Case cs = cs_in;
    const int B = cs.B, Hq = cs.Hq, Hkv = cs.Hkv, Nq = cs.Nq, Nk = cs.Nk, D = cs.D;
    const bool bf16 = cs.bf16;
    const float sm_scale = 1.f / sqrtf((float)D);
    const sage_geometry geo = SAGE_SM90_GEOMETRY;
    const sage_qk_groups gran = (sage_qk_groups)cs.gran;
    const int64_t nq_pad = sage_round_up(Nq, geo.cta_q), nk_pad = sage_round_up(Nk, geo.cta_k);
    const int64_t nqg = sage_q_group_count(geo, gran, nq_pad), nkg = sage_k_group_count(geo, gran, nk_pad);

    std::mt19937 rng(1234 + Nq * 7 + Nk * 13 + D);
    std::normal_distribution<float> nd(0.f, 1.f);
    std::vector<uint16_t> q((size_t)B * Hq * Nq * D), k((size_t)B * Hkv * Nk * D), v((size_t)B * Hkv * Nk * D);
    std::vector<float> kb(D);
    for (int d = 0; d < D; ++d) kb[d] = cs.kbias * nd(rng);
    for (auto &x : q) x = from_f(nd(rng), bf16);
    for (size_t i = 0; i < k.size(); ++i) k[i] = from_f(nd(rng) + kb[i % D], bf16);
    for (auto &x : v) x = from_f(nd(rng), bf16);

    // ---- CPU quantization in the workspace layout ----
    std::vector<int8_t> q8((size_t)B * Hq * nq_pad * D, 0), k8((size_t)B * Hkv * nk_pad * D, 0);
    std::vector<uint8_t> v8((size_t)B * Hkv * D * nk_pad, 0);
    std::vector<float> qsc((size_t)B * Hq * nqg, 1.f), ksc((size_t)B * Hkv * nkg, 1.f), kmean((size_t)B * Hkv * D),
        vsc((size_t)B * Hkv * D), vmean((size_t)B * Hkv * D, 0.f);
    std::vector<float> v8f((size_t)B * Hkv * D * nk_pad, 0.f);  // logical dequantised-e4m3 values V8[d][t]
    for (int bh = 0; bh < B * Hkv; ++bh) {
        const uint16_t *kh = &k[(size_t)bh * Nk * D], *vh = &v[(size_t)bh * Nk * D];
        for (int d = 0; d < D; ++d) {
            float s = 0.f;
            for (int t = 0; t < Nk; ++t) s += to_f(kh[(size_t)t * D + d], bf16);
            kmean[(size_t)bh * D + d] = s / (float)Nk;
        }
        std::vector<float> amax(nkg, 0.f);
        for (int t = 0; t < Nk; ++t) {
            int64_t gi = sage_k_group(geo, gran, t);
            for (int d = 0; d < D; ++d)
                amax[gi] = std::max(amax[gi], fabsf(to_f(kh[(size_t)t * D + d], bf16) - kmean[(size_t)bh * D + d]));
        }
        for (int64_t gi = 0; gi < nkg; ++gi) ksc[(size_t)bh * nkg + gi] = amax[gi] > 0 ? amax[gi] / 127.f : 1.f;
        for (int t = 0; t < Nk; ++t) {
            int64_t gi = sage_k_group(geo, gran, t);
            float inv = amax[gi] > 0 ? 127.f / amax[gi] : 0.f;
            for (int d = 0; d < D; ++d) {
                float x = (to_f(kh[(size_t)t * D + d], bf16) - kmean[(size_t)bh * D + d]) * inv;
                float r = std::min(127.f, std::max(-127.f, rintf(x)));
                k8[((size_t)bh * nk_pad + t) * D + d] = (int8_t)r;
            }
        }
        for (int d = 0; d < D; ++d) {
            float mean = 0.f;
            if (cs.smooth_v) {
                for (int t = 0; t < Nk; ++t) mean += to_f(vh[(size_t)t * D + d], bf16);
                mean /= (float)Nk;
            }
            vmean[(size_t)bh * D + d] = mean;
            float am = 0.f;
            for (int t = 0; t < Nk; ++t) am = std::max(am, fabsf(to_f(vh[(size_t)t * D + d], bf16) - mean));
            float s = am > 0 ? am / 448.f : 1.f;
            vsc[(size_t)bh * D + d] = s;
            float inv = am > 0 ? 448.f / am : 0.f;
            for (int t = 0; t < Nk; ++t) {
                float x = e4m3_round((to_f(vh[(size_t)t * D + d], bf16) - mean) * inv);
                v8[(size_t)bh * D * nk_pad + sage_vt_offset(d, t, nk_pad)] = e4m3_encode(x);
                v8f[((size_t)bh * D + d) * nk_pad + t] = x;
            }
        }
    }
    for (int bh = 0; bh < B * Hq; ++bh) {
        std::vector<float> amax(nqg, 0.f);
        const uint16_t *qh = &q[(size_t)bh * Nq * D];
        for (int r = 0; r < Nq; ++r) {
            int64_t gi = sage_q_group(geo, gran, r);
            for (int d = 0; d < D; ++d) amax[gi] = std::max(amax[gi], fabsf(to_f(qh[(size_t)r * D + d], bf16)));
        }
        for (int64_t gi = 0; gi < nqg; ++gi) qsc[(size_t)bh * nqg + gi] = amax[gi] > 0 ? amax[gi] / 127.f : 1.f;
        for (int r = 0; r < Nq; ++r) {
            int64_t gi = sage_q_group(geo, gran, r);
            float inv = amax[gi] > 0 ? 127.f / amax[gi] : 0.f;
            for (int d = 0; d < D; ++d) {
                float x = to_f(qh[(size_t)r * D + d], bf16) * inv;
                q8[((size_t)bh * nq_pad + r) * D + d] = (int8_t)std::min(127.f, std::max(-127.f, rintf(x)));
            }
        }
    }

    // ---- device ----
    const int64_t o_sn = D + cs.o_pad;
    void *d_k8, *d_v8, *d_q, *d_o;
    float *d_qsc, *d_ksc, *d_km, *d_vs, *d_vm, *d_lse;
    CK(cudaMalloc(&d_k8, k8.size()));
    CK(cudaMalloc(&d_v8, v8.size()));
    CK(cudaMalloc(&d_q, q.size() * 2));
    size_t o_elems = (size_t)B * Hq * Nq * o_sn;
    CK(cudaMalloc(&d_o, o_elems * 2));
    CK(cudaMalloc(&d_qsc, qsc.size() * 4));
    CK(cudaMalloc(&d_ksc, ksc.size() * 4));
    CK(cudaMalloc(&d_km, kmean.size() * 4));
    CK(cudaMalloc(&d_vs, vsc.size() * 4));
    CK(cudaMalloc(&d_vm, vmean.size() * 4));
    CK(cudaMalloc(&d_lse, (size_t)B * Hq * Nq * 4));
    CK(cudaMemcpy(d_k8, k8.data(), k8.size(), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_v8, v8.data(), v8.size(), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_q, q.data(), q.size() * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_qsc, qsc.data(), qsc.size() * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_ksc, ksc.data(), ksc.size() * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_km, kmean.data(), kmean.size() * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_vs, vsc.data(), vsc.size() * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_vm, vmean.data(), vmean.size() * 4, cudaMemcpyHostToDevice));
    CK(cudaMemset(d_o, 0xFF, o_elems * 2));  // poison (NaN)
    CK(cudaMemset(d_lse, 0xFF, (size_t)B * Hq * Nq * 4));

    sage_sm90_params p;
    memset(&p, 0, sizeof p);
    p.batch = B; p.heads_q = Hq; p.heads_kv = Hkv; p.group = Hq / Hkv;
    p.nq = Nq; p.nk = Nk; p.nq_pad = nq_pad; p.nk_pad = nk_pad; p.n_q_groups = nqg; p.n_k_groups = nkg;
    p.qk_gran = gran;
    p.q_scale = d_qsc; p.k_scale = d_ksc; p.k_mean = d_km; p.v_scale = d_vs; p.v_mean = cs.smooth_v ? d_vm : nullptr;
    p.q = d_q; p.q_sb = (int64_t)Hq * Nq * D; p.q_sh = (int64_t)Nq * D; p.q_sn = D; p.q_vec = D % 8 == 0;
    p.o = d_o; p.o_sb = (int64_t)Hq * Nq * o_sn; p.o_sh = (int64_t)Nq * o_sn; p.o_sn = o_sn;
    p.lse = cs.lse ? d_lse : nullptr;
    p.sm_scale = sm_scale; p.causal = cs.causal; p.o_pairs = (o_sn % 2 == 0);
    p.d = D; p.flags = flags;
    char buf[256] = {0};
    sage_msg msg = {buf, sizeof buf};
    sage_status st = sage_sm90_launch(&p, D, 128, bf16, d_k8, d_v8, 0, msg);
    if (st != SAGE_OK) { printf("%s: launch failed: %s\n", cs.name, buf); return 1; }
    CK(cudaDeviceSynchronize());
    std::vector<uint16_t> o(o_elems);
    std::vector<float> lse((size_t)B * Hq * Nq);
    CK(cudaMemcpy(o.data(), d_o, o_elems * 2, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(lse.data(), d_lse, lse.size() * 4, cudaMemcpyDeviceToHost));

    // ---- CPU: emulation of the quantized kernel math, and exact attention ----
    const int off = cs.causal == SAGE_CAUSAL_BOTTOM_RIGHT ? Nk - Nq : 0;
    std::vector<float> oe((size_t)B * Hq * Nq * D), le((size_t)B * Hq * Nq);
    std::vector<double> orf((size_t)B * Hq * Nq * D), lrf((size_t)B * Hq * Nq);
    std::vector<double> vmean_all((size_t)B * Hkv * D, 0.0);
    for (int bh = 0; bh < B * Hkv; ++bh)
        for (int d = 0; d < D; ++d) {
            double s = 0;
            for (int t = 0; t < Nk; ++t) s += to_f(v[((size_t)bh * Nk + t) * D + d], bf16);
            vmean_all[(size_t)bh * D + d] = s / Nk;
        }
    par_for(B * Hq * Nq, [&](int idx) {
        const int r = idx % Nq, bh = idx / Nq, h = bh % Hq, b = bh / Hq;
        const int bhk = b * Hkv + h / (Hq / Hkv);
        const int8_t *qr = &q8[((size_t)bh * nq_pad + r) * D];
        const float qs = qsc[(size_t)bh * nqg + sage_q_group(geo, gran, r)];
        float m = -INFINITY, l = 0.f;
        std::vector<float> O(D, 0.f), T(D);
        const int KT = geo.cta_k;
        const int nt = (Nk + KT - 1) / KT;
        std::vector<float> s(KT), sraw(KT), scv(KT);
        for (int j = 0; j < nt; ++j) {
            float mx = -INFINITY;
            for (int c = 0; c < KT; ++c) {
                int t = j * KT + c;
                bool dead = t >= Nk || (cs.causal && t > r + off);
                if (dead) { s[c] = -INFINITY; continue; }
                const int8_t *kr = &k8[((size_t)bhk * nk_pad + t) * D];
                int acc = 0;
                for (int d = 0; d < D; ++d) acc += (int)qr[d] * (int)kr[d];
                float sc = (qs * ksc[(size_t)bhk * nkg + sage_k_group(geo, gran, t)]) * (sm_scale * LOG2E);
                s[c] = (float)acc * sc;
                sraw[c] = (float)acc;
                scv[c] = sc;
                mx = std::max(mx, s[c]);
            }
            float mn = std::max(m, mx);
            float mu = mn == -INFINITY ? 0.f : mn;
            float alpha = exp2f(m - mu);
            m = mn;
            std::fill(T.begin(), T.end(), 0.f);
            float rs = 0.f;
            for (int c = 0; c < KT; ++c) {
                int t = j * KT + c;
                if (t >= Nk) break;
                const float msh = mu - SHIFT;
                float pp = s[c] == -INFINITY ? 0.f
                           : fabsf(msh) < 0x1p20f ? exp2f(fmaf(sraw[c], scv[c], -msh)) : exp2f(s[c] - msh);  /* the spec */
                rs += pp;
                float p8 = e4m3_round(pp);
                if (p8 != 0.f)
                    for (int d = 0; d < D; ++d) T[d] += p8 * v8f[((size_t)bhk * D + d) * nk_pad + t];
            }
            l = l * alpha + rs;
            for (int d = 0; d < D; ++d) O[d] = O[d] * alpha + T[d];
        }
        double qkm = 0;
        for (int d = 0; d < D; ++d) qkm += (double)to_f(q[((size_t)bh * Nq + r) * D + d], bf16) * kmean[(size_t)bhk * D + d];
        for (int d = 0; d < D; ++d)
            oe[(size_t)idx * D + d] =
                to_f(from_f(l > 0 ? O[d] / l * vsc[(size_t)bhk * D + d] + vmean[(size_t)bhk * D + d] : 0.f, bf16), bf16);
        le[idx] = l > 0 ? LN2 * (m + log2f(l) - SHIFT) + sm_scale * (float)qkm : -INFINITY;
        // exact
        std::vector<double> sc(Nk);
        double mm = -INFINITY;
        for (int t = 0; t < Nk; ++t) {
            if (cs.causal && t > r + off) { sc[t] = -INFINITY; continue; }
            double a = 0;
            for (int d = 0; d < D; ++d)
                a += (double)to_f(q[((size_t)bh * Nq + r) * D + d], bf16) * to_f(k[((size_t)bhk * Nk + t) * D + d], bf16);
            sc[t] = a * sm_scale;
            mm = std::max(mm, sc[t]);
        }
        double ll = 0;
        std::vector<double> acc(D, 0.0);
        for (int t = 0; t < Nk; ++t) {
            if (sc[t] == -INFINITY) continue;
            double e = exp(sc[t] - mm);
            ll += e;
            for (int d = 0; d < D; ++d) acc[d] += e * to_f(v[((size_t)bhk * Nk + t) * D + d], bf16);
        }
        for (int d = 0; d < D; ++d) orf[(size_t)idx * D + d] = ll > 0 ? acc[d] / ll : 0.0;
        lrf[idx] = ll > 0 ? mm + log(ll) : -INFINITY;
    });

    // ---- compare ----
    double se = 0, sr = 0, dot = 0, ng = 0, ne = 0, xe = 0, xr = 0, lmax = 0, lmax_ref = 0;
    long bad = 0, unwritten = 0, lse_bad = 0;
    for (size_t idx = 0; idx < (size_t)B * Hq * Nq; ++idx) {
        int r = idx % Nq;
        size_t bh = idx / Nq;
        for (int d = 0; d < D; ++d) {
            uint16_t bits = o[(bh * Nq + r) * o_sn + d];
            float g = to_f(bits, bf16);
            if (!std::isfinite(g)) { ++unwritten; continue; }
            float e = oe[idx * D + d];
            double rf = orf[idx * D + d];
            se += fabs(g - e); sr += fabs(e); dot += (double)g * e; ng += (double)g * g; ne += (double)e * e;
            xe += fabs(g - rf); xr += fabs(rf);
        }
        // padding columns of o must stay untouched (poison)
        for (int d = D; d < o_sn; ++d) if (std::isfinite(to_f(o[(bh * Nq + r) * o_sn + d], bf16))) ++bad;
        if (cs.lse) {
            float gl = lse[idx], el = le[idx];
            if (std::isinf(el) || std::isinf(gl)) {
                if (!(std::isinf(el) && std::isinf(gl) && el < 0 && gl < 0)) ++lse_bad;
            } else {
                lmax = std::max(lmax, (double)fabs(gl - el));
                lmax_ref = std::max(lmax_ref, fabs(gl - lrf[idx]));
            }
        }
    }
    const double rel = se / std::max(sr, 1e-30), cosv = dot / sqrt(std::max(ng * ne, 1e-300));
    const double relx = xe / std::max(xr, 1e-30);
    const bool ok = unwritten == 0 && bad == 0 && lse_bad == 0 && rel <= 1e-3 && 1 - cosv <= 1e-6 && lmax <= 1e-3;
    printf("xp%-2d %-34s %s relL1(emu)=%.2e 1-cos=%.1e lse_err=%.1e | vs exact: relL1=%.4f lse=%.1e | nan=%ld pad=%ld lsebad=%ld\n",
           flags, cs.name, ok ? "PASS" : "FAIL", rel, 1 - cosv, lmax, relx, lmax_ref, unwritten, bad, lse_bad);
    cudaFree(d_k8); cudaFree(d_v8); cudaFree(d_q); cudaFree(d_o); cudaFree(d_qsc); cudaFree(d_ksc);
    cudaFree(d_km); cudaFree(d_vs); cudaFree(d_vm); cudaFree(d_lse);
    return ok ? 0 : 1;
}

// ---- timing at the benchmark shapes (kernel only; quantized inputs random) ----
__global__ void fill_rand(uint8_t *p, size_t n, uint32_t seed, int kind) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t x = (uint32_t)i * 2654435761u ^ seed;
        x ^= x >> 13; x *= 0x5bd1e995u; x ^= x >> 15;
        if (kind == 0) p[i] = (uint8_t)(int8_t)((int)(x % 255) - 127);          // int8 in [-127, 127]
        else p[i] = (uint8_t)((x & 0x80) | ((x >> 8) % 0x77));                 // e4m3, no NaN, |v| < 2^7
    }
}
// randn (Box-Muller)
__global__ void fill_half(__half *p, size_t n, uint32_t seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t x = (uint32_t)i * 2654435761u ^ seed;
        x ^= x >> 13; x *= 0x5bd1e995u; x ^= x >> 15; x *= 0x27d4eb2du; x ^= x >> 16;
        uint32_t y = x * 1664525u + 1013904223u;
        float u1 = ((x >> 8) + 1) * (1.f / 16777217.f), u2 = (y >> 8) * (1.f / 16777216.f);
        p[i] = __float2half(sqrtf(-2.f * logf(u1)) * cospif(2.f * u2));
    }
}
__global__ void fill_f(float *p, size_t n, float v) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) p[i] = v;
}

static void time_shape(int B, int H, int N, int D, int causal, int flags = 0, int iters = 15) {
    const sage_geometry geo = SAGE_SM90_GEOMETRY;
    const sage_qk_groups gran = SAGE_QK_PER_THREAD;
    const int64_t np = sage_round_up(N, 128);
    const int64_t nqg = sage_q_group_count(geo, gran, np), nkg = sage_k_group_count(geo, gran, np);
    size_t n8 = (size_t)B * H * np * D;
    uint8_t *k8, *v8;
    __half *q;
    float *qs, *ks, *vs;
    void *o;
    CK(cudaMalloc(&q, n8 * 2)); CK(cudaMalloc(&k8, n8)); CK(cudaMalloc(&v8, n8));
    CK(cudaMalloc(&qs, (size_t)B * H * nqg * 4)); CK(cudaMalloc(&ks, (size_t)B * H * nkg * 4));
    CK(cudaMalloc(&vs, (size_t)B * H * D * 4)); CK(cudaMalloc(&o, (size_t)B * H * N * D * 2));
    fill_half<<<1024, 256>>>(q, n8, 1); fill_rand<<<1024, 256>>>(k8, n8, 2, 0); fill_rand<<<1024, 256>>>(v8, n8, 3, 1);
    fill_f<<<256, 256>>>(qs, (size_t)B * H * nqg, 0.02f); fill_f<<<256, 256>>>(ks, (size_t)B * H * nkg, 0.02f);
    fill_f<<<256, 256>>>(vs, (size_t)B * H * D, 0.01f);
    sage_sm90_params p;
    memset(&p, 0, sizeof p);
    p.batch = B; p.heads_q = H; p.heads_kv = H; p.group = 1; p.nq = N; p.nk = N; p.nq_pad = np; p.nk_pad = np;
    p.n_q_groups = nqg; p.n_k_groups = nkg; p.qk_gran = gran; p.q_scale = qs; p.k_scale = ks; p.v_scale = vs;
    p.q = q; p.q_sb = (int64_t)H * np * D; p.q_sh = (int64_t)np * D; p.q_sn = D; p.q_vec = 1;
    p.o = o; p.o_sb = (int64_t)H * N * D; p.o_sh = (int64_t)N * D; p.o_sn = D; p.sm_scale = 1.f / sqrtf((float)D);
    p.causal = causal; p.o_pairs = 1; p.flags = flags; p.d = D;
    char buf[256];
    sage_msg msg = {buf, sizeof buf};
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0)); CK(cudaEventCreate(&e1));
    for (int i = 0; i < 3; ++i) sage_sm90_launch(&p, D, 128, 0, k8, v8, 0, msg);
    CK(cudaDeviceSynchronize());
    std::vector<float> ts;
    for (int i = 0; i < iters; ++i) {
        CK(cudaEventRecord(e0));
        sage_sm90_launch(&p, D, 128, 0, k8, v8, 0, msg);
        CK(cudaEventRecord(e1));
        CK(cudaEventSynchronize(e1));
        float ms;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        ts.push_back(ms);
    }
    CK(cudaGetLastError());
    std::sort(ts.begin(), ts.end());
    double ms = ts[ts.size() / 2];
    double ops = 4.0 * B * H * (double)N * N * D * (causal ? 0.5 : 1.0);
    printf("TIME kernel v%d flags=%d D=%d causal=%d B=%d H=%d N=%d: %.3f ms  %.1f TOPS\n", 1, flags, D,
           causal, B, H, N, ms, ops / ms / 1e9);
    cudaFree(q); cudaFree(k8); cudaFree(v8); cudaFree(qs); cudaFree(ks); cudaFree(vs); cudaFree(o);
}

// ---- the whole call through the public API (quantization included) ----
static void time_api(int B, int H, int N, int D, int causal) {
    size_t n = (size_t)B * H * N * D;
    __half *q, *k, *v, *o;
    CK(cudaMalloc(&q, n * 2)); CK(cudaMalloc(&k, n * 2)); CK(cudaMalloc(&v, n * 2)); CK(cudaMalloc(&o, n * 2));
    fill_half<<<1024, 256>>>(q, n, 11); fill_half<<<1024, 256>>>(k, n, 12); fill_half<<<1024, 256>>>(v, n, 13);
    sage_args a;
    sage_args_init(&a);
    a.dtype = SAGE_DTYPE_FP16; a.batch = B; a.heads_q = H; a.heads_kv = H; a.seqlen_q = N; a.seqlen_kv = N;
    a.head_dim = D; a.q = q; a.k = k; a.v = v; a.o = o;
    sage_set_contiguous_bhnd(&a);
    a.causal = causal ? SAGE_CAUSAL_BOTTOM_RIGHT : SAGE_CAUSAL_NONE;
    a.device = SAGE_DEVICE_CUDA;
    char msg[256] = {0};
    sage_plan plan;
    if (sage_supported(&a, &plan, msg, sizeof msg) != SAGE_OK) { printf("API unsupported: %s\n", msg); return; }
    void *ws = nullptr;
    CK(cudaMalloc(&ws, plan.workspace_size + 256));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0)); CK(cudaEventCreate(&e1));
    for (int i = 0; i < 3; ++i)
        if (sage_forward(&a, ws, plan.workspace_size, 0, msg, sizeof msg) != SAGE_OK) { printf("API fail: %s\n", msg); return; }
    CK(cudaDeviceSynchronize());
    std::vector<float> ts;
    for (int i = 0; i < 15; ++i) {
        CK(cudaEventRecord(e0));
        sage_forward(&a, ws, plan.workspace_size, 0, msg, sizeof msg);
        CK(cudaEventRecord(e1));
        CK(cudaEventSynchronize(e1));
        float ms;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        ts.push_back(ms);
    }
    CK(cudaGetLastError());
    std::sort(ts.begin(), ts.end());
    double ms = ts[ts.size() / 2];
    double ops = 4.0 * B * H * (double)N * N * D * (causal ? 0.5 : 1.0);
    printf("TIME api[%s] D=%d causal=%d B=%d H=%d N=%d: %.3f ms  %.1f TOPS\n", plan.kernel, D, causal, B, H, N, ms,
           ops / ms / 1e9);
    cudaFree(q); cudaFree(k); cudaFree(v); cudaFree(o); cudaFree(ws);
}

int main(int argc, char **argv) {
    auto has = [&](const char *m) {
        if (argc < 2) return strcmp(m, "prof") != 0;
        for (int i = 1; i < argc; ++i) if (!strcmp(argv[i], m)) return true;
        return false;
    };
    int fails = 0;
    if (has("prof")) {
        time_shape(2, 32, 8192, 128, 0, 0, 2);
        return 0;
    }
    if (has("check")) {
        const Case cases[] = {
            // name                              B Hq Hkv  Nq    Nk    D  causal bf16  lse  smV  gran  opad kbias
            {"d128 n1024 fp16",                  1, 2, 2, 1024, 1024, 128, 0, false, true, false, 3, 0, 0.f},
            {"d64 n1024 fp16",                   1, 2, 2, 1024, 1024, 64, 0, false, true, false, 3, 0, 0.f},
            {"d128 causalTL gqa bf16 q1000 k1500", 1, 4, 2, 1000, 1500, 128, 1, true, true, false, 3, 0, 0.f},
            {"d64 causalBR q1500 k1000 (dead rows)", 1, 2, 1, 1500, 1000, 64, 2, false, true, false, 3, 0, 0.f},
            {"d128 causalBR q700 k2000 bf16",    2, 2, 2, 700, 2000, 128, 2, true, true, false, 3, 0, 0.f},
            {"d64 causalTL q77 k300 oddstride",  1, 3, 1, 77, 300, 64, 1, false, true, false, 3, 1, 0.f},
            {"d128 q256 k8192 (two-level)",      1, 2, 2, 256, 8192, 128, 0, false, true, false, 3, 0, 0.f},
            {"d64 q128 k16384 causalBR",         1, 2, 2, 128, 16384, 64, 2, false, true, false, 3, 0, 0.f},
            {"d128 kbias5 smoothV perblock",     1, 2, 2, 512, 777, 128, 0, true, true, true, 1, 0, 5.f},
            {"d128 kbias5 perthread",            1, 2, 2, 512, 777, 128, 0, false, true, false, 3, 0, 5.f},
            {"d64 perwarp q300 k1100 nolse",     2, 2, 2, 300, 1100, 64, 0, false, false, false, 2, 0, 0.f},
            {"d64 q200 k50 (one KV tile)",       1, 2, 2, 200, 50, 64, 0, true, true, false, 3, 0, 0.f},
            {"d64 q64 k100 (two tiles at kt64)", 1, 2, 2, 64, 100, 64, 0, false, true, false, 3, 0, 0.f},
            {"d64 q130 k150 causalTL",           1, 2, 2, 130, 150, 64, 1, false, true, false, 3, 0, 0.f},
            {"d64 kbias5 smoothV bf16 q512 k700", 1, 2, 2, 512, 700, 64, 0, true, true, true, 3, 0, 5.f},
        };
        for (const Case &c : cases) fails += run_case(c);
        printf("CHECKS: %d failed\n", fails);
    }
    const int Ns[] = {1024, 2048, 4096, 8192, 16384, 32768};
    if (has("time")) {
        for (int D : {128, 64})
            for (int causal : {0, 1})
                for (int N : Ns) time_shape(std::max(1, 16384 / N), 32, N, D, causal);
    }
    if (has("tq")) {  /* quick grid: the targets' shapes */
        for (int D : {128, 64})
            for (int causal : {0, 1})
                for (int N : {1024, 8192, 16384}) time_shape(std::max(1, 16384 / N), 32, N, D, causal);
    }
    if (has("aq")) {
        for (int D : {128, 64})
            for (int causal : {0, 1})
                for (int N : {1024, 8192, 16384}) time_api(std::max(1, 16384 / N), 32, N, D, causal);
    }
    if (has("xq")) {  /* quick experiments at D = 128, N = 8K: candidates + bounds */
        const Case xc[] = {
            {"d128 n1024 fp16",                  1, 2, 2, 1024, 1024, 128, 0, false, true, false, 3, 0, 0.f},
            {"d128 kbias5 perthread q300 k777",  2, 4, 2, 300, 777, 128, 0, false, true, false, 3, 0, 5.f},
        };
        for (int xp : {16, 32})
            for (const Case &c : xc) fails += run_case(c, xp);
        printf("XP CHECKS: %d failed\n", fails);
        for (int xp : {0, 16, 32, 1, 2, 4}) time_shape(2, 32, 8192, 128, 0, xp);
    }
    if (has("xp")) {  /* experiment variants (SAGE_SM90_EXPERIMENTS): what bounds the time */
        /* the numerically valid candidates must pass the checks (D = 128, non-causal, fp16) */
        const Case xc[] = {
            {"d128 n1024 fp16",                  1, 2, 2, 1024, 1024, 128, 0, false, true, false, 3, 0, 0.f},
            {"d128 q256 k8192 (two-level)",      1, 2, 2, 256, 8192, 128, 0, false, true, false, 3, 0, 0.f},
            {"d128 kbias5 perthread q300 k777",  2, 4, 2, 300, 777, 128, 0, false, true, false, 3, 0, 5.f},
            {"d128 q100 k100 (one tile)",        1, 2, 2, 100, 100, 128, 0, false, true, false, 3, 0, 0.f},
            {"d128 q128 k200 (two tiles)",       1, 2, 2, 128, 200, 128, 0, false, true, false, 3, 0, 0.f},
        };
        for (int xp : {16, 32})
            for (const Case &c : xc) fails += run_case(c, xp);
        printf("XP CHECKS: %d failed\n", fails);
        for (int xp : {0, 16, 32})
            for (int N : {1024, 8192, 16384}) time_shape(std::max(1, 16384 / N), 32, N, 128, 0, xp);
        for (int xp : {1, 2, 3, 4, 5, 8, 12})
            for (int N : {1024, 8192}) time_shape(std::max(1, 16384 / N), 32, N, 128, 0, xp);
    }
    if (has("api")) {
        for (int D : {128, 64})
            for (int causal : {0, 1})
                for (int N : Ns) time_api(std::max(1, 16384 / N), 32, N, D, causal);
    }
    return fails ? 1 : 0;
}
