/* CUDA dispatch through the public API: the plan on this device, AUTO resolution, refusals with
 * a reason, and one end-to-end sage_forward against the CPU spec. */
#include "gpu_common.h"

#include <cuda_runtime.h>
#include <string.h>

extern "C" {
#include "cuda/cuda_common.h"
}

namespace {
sage_args cuda_args(int64_t D) {
    sage_args a;
    sage_args_init(&a);
    a.dtype = SAGE_DTYPE_FP16;
    a.batch = 1; a.heads_q = 2; a.heads_kv = 2; a.seqlen_q = 100; a.seqlen_kv = 100; a.head_dim = D;
    /* sage_supported validates pointers only for non-NULL-ness and overlap: fake distinct ones */
    a.q = (void *)0x100000; a.k = (void *)0x200000; a.v = (void *)0x300000; a.o = (void *)0x400000;
    sage_set_contiguous_bhnd(&a);
    a.device = SAGE_DEVICE_CUDA;
    return a;
}
} // namespace

TEST(gpu_arch_predicates) {
    CHECK(!sage_has_int8_mma(75) && sage_has_int8_mma(80) && sage_has_int8_mma(86));
    CHECK(!sage_has_fp8_mma(86) && sage_has_fp8_mma(89) && sage_has_fp8_mma(90));
    CHECK(!sage_has_wgmma(89));
    CHECK(sage_cuda_kernel_by_name("cuda_sm80_mma") != nullptr);
    CHECK(sage_cuda_kernel_by_name("cuda_reference") != nullptr);
    CHECK(sage_cuda_kernel_by_name("no_such_kernel") == nullptr);
}

TEST(gpu_select_plan) {
    if (!gpu_available()) return;
    const int cc = gpu_cc();
    char msg[256];
    sage_plan plan;
    sage_args a = cuda_args(128);
    sage_status st = sage_supported(&a, &plan, msg, sizeof msg);
    CHECK_MSG(st == SAGE_OK, "%s", msg);
    if (st == SAGE_OK) {
        printf("    sm_%d: kernel %s, pv %d, groups %d, workspace %zu\n", cc, plan.kernel, (int)plan.pv,
               (int)plan.qk_groups, plan.workspace_size);
        CHECK(plan.pv == (sage_has_fp8_mma(cc) ? SAGE_PV_FP8 : SAGE_PV_16BIT));
        CHECK(plan.qk_groups == SAGE_QK_PER_THREAD);
        CHECK(plan.workspace_size > 0);
    }
    a.options.algorithm = SAGE_ALGO_REFERENCE;
    st = sage_supported(&a, &plan, msg, sizeof msg);
    CHECK(st == SAGE_OK && !strcmp(plan.kernel, "cuda_reference"));

    /* head_dim 256: only the Hopper kernel takes it; 257: nothing does */
    sage_args b = cuda_args(256);
    st = sage_supported(&b, &plan, msg, sizeof msg);
    if (cc != 90) CHECK_MSG(st == SAGE_ERR_HEAD_DIM && strstr(msg, "128"), "D256 on sm_%d: %d %s", cc, (int)st, msg);
    else CHECK_MSG(st == SAGE_OK && !strncmp(plan.kernel, "cuda_sm90_wgmma", 15), "D256 on sm_90: %d %s", (int)st, msg);
    b.head_dim = 257;
    CHECK_EQ_INT(sage_supported(&b, &plan, msg, sizeof msg), SAGE_ERR_HEAD_DIM);
    /* on sm_90, the 64-row Hopper kernel runs head dims up to 64 at any length, up to 128 up to
     * 16384 keys, up to 256 up to 8192 keys; the 128-row one everything else */
    if (cc == 90) {
        const struct { int64_t d, nk; sage_causal causal; const char *kernel; } want[] = {
            {40, 100, SAGE_CAUSAL_NONE, "cuda_sm90_wgmma_q64"}, {64, 20000, SAGE_CAUSAL_NONE, "cuda_sm90_wgmma_q64"},
            {64, 20000, SAGE_CAUSAL_TOP_LEFT, "cuda_sm90_wgmma_q64"}, {65, 100, SAGE_CAUSAL_NONE, "cuda_sm90_wgmma_q64"},
            {128, 16384, SAGE_CAUSAL_NONE, "cuda_sm90_wgmma_q64"}, {128, 16385, SAGE_CAUSAL_NONE, "cuda_sm90_wgmma"},
            {128, 16384, SAGE_CAUSAL_TOP_LEFT, "cuda_sm90_wgmma_q64"}, {128, 16385, SAGE_CAUSAL_BOTTOM_RIGHT, "cuda_sm90_wgmma"},
            {129, 100, SAGE_CAUSAL_NONE, "cuda_sm90_wgmma_q64"}, {256, 8192, SAGE_CAUSAL_TOP_LEFT, "cuda_sm90_wgmma_q64"},
            {256, 8193, SAGE_CAUSAL_NONE, "cuda_sm90_wgmma"}};
        for (const auto &w : want) {
            sage_args e = cuda_args(w.d);
            e.seqlen_kv = w.nk;
            /* fake pointers far enough apart for 20000 keys */
            e.q = (void *)0x10000000000; e.k = (void *)0x20000000000; e.v = (void *)0x30000000000;
            e.o = (void *)0x40000000000;
            sage_set_contiguous_bhnd(&e);
            e.causal = w.causal;
            st = sage_supported(&e, &plan, msg, sizeof msg);
            CHECK_MSG(st == SAGE_OK && !strcmp(plan.kernel, w.kernel), "D%lld Nk%lld causal %d on sm_90: %d %s (want %s)",
                      (long long)w.d, (long long)w.nk, (int)w.causal, (int)st, st == SAGE_OK ? plan.kernel : msg, w.kernel);
        }
    }
    /* device out of range */
    sage_args c = cuda_args(64);
    c.device_ordinal = 999;
    CHECK_EQ_INT(sage_supported(&c, &plan, msg, sizeof msg), SAGE_ERR_NO_DEVICE);
    /* FP8 PV where the GPU has no FP8 MMA */
    if (!sage_has_fp8_mma(cc)) {
        sage_args e = cuda_args(64);
        e.options.pv = SAGE_PV_FP8;
        CHECK_EQ_INT(sage_supported(&e, &plan, msg, sizeof msg), SAGE_ERR_UNSUPPORTED);
    }
}

/* The public entry point on the device, end to end, with the caller's device left as it was. */
TEST(gpu_forward_public_api) {
    if (!gpu_available()) return;
    tc_case c = tc_case_default();
    c.B = 1; c.Hq = 2; c.Hkv = 1; c.Nq = 150; c.Nk = 150; c.D = 128;
    c.causal = SAGE_CAUSAL_TOP_LEFT;
    tc_data *d = tc_make(&c);
    tc_out out = tc_out_alloc(d), ref = tc_out_alloc(d);
    const size_t in_bytes = (size_t)(c.Hq * c.Nq * c.D) * 2, kv_bytes = (size_t)(c.Hkv * c.Nk * c.D) * 2;
    void *q, *k, *v, *o, *ws = nullptr;
    float *lse;
    cudaMalloc(&q, in_bytes); cudaMalloc(&k, kv_bytes); cudaMalloc(&v, kv_bytes); cudaMalloc(&o, in_bytes);
    cudaMalloc((void **)&lse, (size_t)(c.Hq * c.Nq) * 4);
    cudaMemcpy(q, d->a.q, in_bytes, cudaMemcpyHostToDevice);
    cudaMemcpy(k, d->a.k, kv_bytes, cudaMemcpyHostToDevice);
    cudaMemcpy(v, d->a.v, kv_bytes, cudaMemcpyHostToDevice);
    cudaMemset(o, 0xFF, in_bytes);
    sage_args a = d->a;
    a.q = q; a.k = k; a.v = v; a.o = o; a.lse = lse;
    a.device = SAGE_DEVICE_CUDA;
    char msg[256];
    size_t wsb = 0;
    CHECK(sage_workspace_size(&a, &wsb, msg, sizeof msg) == SAGE_OK);
    if (wsb) cudaMalloc(&ws, wsb);
    sage_plan plan;
    CHECK(sage_supported(&a, &plan, msg, sizeof msg) == SAGE_OK);
    sage_status st = sage_forward(&a, ws, wsb, nullptr, msg, sizeof msg);
    CHECK_MSG(st == SAGE_OK, "%s", msg);
    CHECK(cudaDeviceSynchronize() == cudaSuccess);
    cudaMemcpy(out.o, o, in_bytes, cudaMemcpyDeviceToHost);
    cudaMemcpy(out.lse, lse, (size_t)(c.Hq * c.Nq) * 4, cudaMemcpyDeviceToHost);
    /* the same run through the test helper gives the means the spec needs */
    tc_opts opts = tc_opts_default();
    opts.pv = plan.pv;
    tc_out out2 = tc_out_alloc(d);
    gpu_result r = gpu_run(d, &out2, opts, plan.kernel, true);
    CHECK_MSG(r.status == SAGE_OK, "%s", r.msg);
    CHECK_MSG(!memcmp(out.o, out2.o, d->o_elems * 2), "sage_forward and the forced kernel %s differ", plan.kernel);
    gpu_spec_of(d, r, sage_cuda_kernel_by_name(plan.kernel), &ref);
    CHECK(gpu_within_spec_tol("sage_forward vs spec", tc_compare(d, &out, &ref, 0)));
    cudaFree(q); cudaFree(k); cudaFree(v); cudaFree(o); cudaFree(lse);
    if (ws) cudaFree(ws);
    tc_out_free(&out);
    tc_out_free(&out2);
    tc_out_free(&ref);
    tc_free(d);
}
