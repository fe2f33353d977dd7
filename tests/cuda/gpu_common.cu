/* GPU test helpers (gpu_common.h). */
#include "gpu_common.h"

#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "cuda/cuda_common.h"
}

bool gpu_available() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        sage_test_skip("no CUDA device");
        return false;
    }
    return true;
}

int gpu_cc() {
    int n = 0, major = 0, minor = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) return 0;
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0);
    cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, 0);
    return major * 10 + minor;
}

std::vector<const char *> gpu_kernels_for_device() {
    std::vector<const char *> v;
    const int cc = gpu_cc();
    for (const char *const *n = sage_cuda_kernel_names(); *n; n++) {
        if (!strncmp(*n, "cuda_sm80", 9) || cc == 90) v.push_back(*n); /* others: sm90a only */
    }
    return v;
}

namespace {

size_t es_of(sage_dtype dt) { return dt == SAGE_DTYPE_FP32 ? 4 : 2; }

/* Device copy of one host buffer; returns the device pointer matching host pointer `p` inside it. */
struct DevBuf {
    void *dev = nullptr;
    const void *host = nullptr;
    size_t bytes = 0;
    void up(const void *h, size_t n) {
        host = h;
        bytes = n;
        if (!h || !n) return;
        cudaMalloc(&dev, n);
        cudaMemcpy(dev, h, n, cudaMemcpyHostToDevice);
    }
    const void *map(const void *p) const {
        if (!host) return nullptr;
        return static_cast<const uint8_t *>(dev) + (static_cast<const uint8_t *>(p) - static_cast<const uint8_t *>(host));
    }
    ~DevBuf() { if (dev) cudaFree(dev); }
};

} // namespace

static gpu_result run_impl(const tc_data *d, tc_out *out, tc_opts opts, const char *name, bool keep_ws,
                           const sage_geometry *qgeo, int64_t qdpad, bool split = false) {
    gpu_result r;
    const tc_case *c = &d->c;
    const size_t es = es_of(c->dtype);
    const sage_kernel *k = sage_cuda_kernel_by_name(name);
    if (!k || (qgeo && k != &sage_cuda_mma_kernel)) {
        r.status = SAGE_ERR_UNSUPPORTED;
        snprintf(r.msg, sizeof r.msg, "kernel %s not built", name);
        return r;
    }
    DevBuf qkv, qb, kb, vb;
    if (d->qkv_buf) qkv.up(d->qkv_buf, (size_t)(c->B * c->Nq * 3 * c->Hq * c->D) * es);
    if (d->q_buf) qb.up(d->q_buf, (size_t)(c->B * c->Hq * c->Nq * c->D) * es);
    if (d->k_buf) kb.up(d->k_buf, (size_t)(c->B * c->Hkv * c->Nk * c->D) * es);
    if (d->v_buf) vb.up(d->v_buf, (size_t)(c->B * c->Hkv * c->Nk * c->D) * es);

    tc_problem(d, out, opts, &r.p);
    const int cc = gpu_cc();
    if (opts.pv == SAGE_PV_AUTO) r.p.pv = sage_has_fp8_mma(cc) ? SAGE_PV_FP8 : SAGE_PV_16BIT;
    r.p.smooth_v = r.p.pv == SAGE_PV_FP8 && opts.smooth_v > 0;
    r.p.cuda_cc = cc;
    sage_problem pd = r.p;
    pd.a.device = SAGE_DEVICE_CUDA;
    pd.a.device_ordinal = 0;
    const DevBuf &src = d->qkv_buf ? qkv : qb;
    pd.a.q = src.map(d->a.q);
    pd.a.k = (d->qkv_buf ? qkv : kb).map(d->a.k);
    pd.a.v = (d->qkv_buf ? qkv : vb).map(d->a.v);

    const size_t o_bytes = d->o_elems * es, lse_bytes = (size_t)(c->B * c->Hq * c->Nq) * sizeof(float);
    void *o_dev = nullptr, *lse_dev = nullptr, *ws = nullptr;
    cudaMalloc(&o_dev, o_bytes);
    cudaMalloc(&lse_dev, lse_bytes);
    cudaMemset(o_dev, 0xFF, o_bytes);     /* NaN in fp16, bf16 and fp32 */
    cudaMemset(lse_dev, 0xFF, lse_bytes);
    pd.a.o = o_dev;
    pd.a.lse = out->lse ? static_cast<float *>(lse_dev) : nullptr;
    if (qgeo) {
        sage_cuda_quant_layout_init(&pd, *qgeo, qdpad, 1, &r.L);
        if (split) r.L.kv_cluster = r.L.kv_chunk = 0;
    }
    else if (k != &sage_cuda_reference_kernel) sage_cuda_kernel_quant_layout(k, &pd, &r.L);
    const size_t ws_bytes = qgeo ? r.L.total : k->workspace_size(k, &pd);
    if (ws_bytes) {
        cudaMalloc(&ws, ws_bytes);
        cudaMemset(ws, 0xFF, ws_bytes); /* every padding byte must be written by the run */
    }
    sage_msg msg = {r.msg, sizeof r.msg};
    r.status = qgeo ? sage_cuda_quantize(&pd, *qgeo, &r.L, ws, nullptr, 0, &r.one_pass, msg) : k->run(k, &pd, ws, nullptr, msg);
    cudaError_t e = cudaDeviceSynchronize();
    if (r.status == SAGE_OK && e != cudaSuccess) {
        r.status = SAGE_ERR_CUDA;
        snprintf(r.msg, sizeof r.msg, "after %s: %s", name, cudaGetErrorString(e));
    }
    if (r.status == SAGE_OK) {
        cudaMemcpy(out->o, o_dev, o_bytes, cudaMemcpyDeviceToHost);
        if (out->lse) cudaMemcpy(out->lse, lse_dev, lse_bytes, cudaMemcpyDeviceToHost);
        if (keep_ws && ws_bytes) {
            r.ws.resize(ws_bytes);
            cudaMemcpy(r.ws.data(), ws, ws_bytes, cudaMemcpyDeviceToHost);
        }
    }
    cudaFree(o_dev);
    cudaFree(lse_dev);
    if (ws) cudaFree(ws);
    return r;
}

gpu_result gpu_run(const tc_data *d, tc_out *out, tc_opts opts, const char *name, bool keep_ws) {
    return run_impl(d, out, opts, name, keep_ws, nullptr, 0);
}

gpu_result gpu_run_quant(const tc_data *d, tc_out *out, tc_opts opts, sage_geometry g, int64_t d_pad, bool split) {
    return run_impl(d, out, opts, "cuda_sm80_mma", true, &g, d_pad, split);
}

/* [rows][d_pad] floats of the workspace -> [rows][D]. */
static std::vector<float> compact(const gpu_result &r, size_t off, int64_t rows, int64_t D) {
    std::vector<float> v((size_t)(rows * D));
    const float *src = reinterpret_cast<const float *>(r.ws.data() + off);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t d = 0; d < D; d++) v[(size_t)(i * D + d)] = src[i * r.L.d_pad + d];
    return v;
}

void gpu_spec_quantize(const tc_data *d, const gpu_result &r, sage_geometry g, gpu_spec_quant *sq) {
    const tc_case *c = &d->c;
    const sage_problem &p = r.p;
    sq->qg.resize((size_t)c->Nq);
    sq->kg.resize((size_t)c->Nk);
    sage_spec_maps_fill(&sq->m, g, p.qk_groups, c->Nq, c->Nk, sq->qg.data(), sq->kg.data());
    const int64_t nq = c->B * c->Hq, nk = c->B * c->Hkv, D = c->D;
    const int64_t nqb = (c->Nq + sq->m.q_block - 1) / sq->m.q_block;
    std::vector<float> km = compact(r, r.L.off_k_mean, nk, D), qm, vm;
    /* GPU q_mean is [B, Hq, nq_pad / cta_q, d_pad]; nq_pad / cta_q == ceil(Nq / cta_q). */
    if (p.smooth_q) qm = compact(r, r.L.off_q_mean, nq * nqb, D);
    if (p.pv == SAGE_PV_FP8) vm = compact(r, r.L.off_v_mean, nk, D);
    sq->q8.resize((size_t)(nq * c->Nq * D));
    sq->k8.resize((size_t)(nk * c->Nk * D));
    sq->v8.resize((size_t)(nk * D * c->Nk));
    sq->qs.resize((size_t)(nq * sq->m.n_q_groups));
    sq->ks.resize((size_t)(nk * sq->m.n_k_groups));
    sq->qm.resize((size_t)(nq * nqb * D));
    sq->km.resize((size_t)(nk * D));
    sq->vs.resize((size_t)(nk * D));
    sq->vm.resize((size_t)(nk * D));
    sq->qt = {sq->q8.data(), sq->qs.data(), sq->qm.data(), sq->k8.data(), sq->ks.data(), sq->km.data(),
              sq->v8.data(), sq->vs.data(), sq->vm.data()};
    sage_spec_quantize_ex(&p, &sq->m, km.data(), qm.empty() ? nullptr : qm.data(), vm.empty() ? nullptr : vm.data(),
                          &sq->qt);
}

void gpu_spec_of(const tc_data *d, const gpu_result &r, const sage_kernel *k, tc_out *ref, int64_t plant_row,
                 int32_t plant_group) {
    gpu_spec_quant sq;
    gpu_spec_quantize(d, r, k->geometry, &sq);
    sage_problem p = r.p;
    p.a.o = ref->o;
    p.a.lse = ref->lse;
    if (plant_row >= 0) sq.qg[(size_t)plant_row] = plant_group; /* attention reads q_group for qs */
    sage_spec_attention(&p, &sq.m, &sq.qt);
}

bool gpu_within_spec_tol(const char *label, const tc_err &e) {
    tc_print_err(label, e);
    return e.rel_l1 <= 1e-3 && 1.0 - e.cos <= 1e-6 && e.lse_max_abs <= 1e-3 && e.nonfinite == 0 &&
           e.lse_inf_mismatch == 0;
}
