/* "cuda_reference": exact attention in fp32 on the GPU (algorithm == SAGE_ALGO_REFERENCE), the
 * yardstick sageattn-bench validates against. Not fast, only simple: one warp per query row, each
 * lane holding 8 channels (D <= 256); online softmax in natural units with expf. */
#include "cuda_common.h"
#include "cuda_kernels.h"
#include "quant_device.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace sage {
namespace {

constexpr int kRefWarps = 8;

struct RefParams {
    const void *q, *k, *v;
    void *o;
    float *lse;
    int64_t qsb, qsh, qsn, ksb, ksh, ksn, vsb, vsh, vsn, osb, osh, osn;
    int64_t Hq, Nq, Nk, group;
    int D;
    float sm_scale;
    int causal;
    int64_t causal_off;
};

template <typename T>
__device__ __forceinline__ void store(T *p, float x);
template <>
__device__ __forceinline__ void store<__half>(__half *p, float x) { *p = __float2half_rn(x); }
template <>
__device__ __forceinline__ void store<__nv_bfloat16>(__nv_bfloat16 *p, float x) { *p = __float2bfloat16_rn(x); }

template <typename T>
__global__ void __launch_bounds__(kRefWarps * 32) reference_kernel(RefParams P) {
    const int lane = threadIdx.x % 32;
    const int64_t row = (int64_t)blockIdx.x * kRefWarps + threadIdx.x / 32;
    const int64_t h = blockIdx.y, b = blockIdx.z, hk = h / P.group;
    if (row >= P.Nq) return;
    const T *q = static_cast<const T *>(P.q) + b * P.qsb + h * P.qsh + row * P.qsn;
    const T *k = static_cast<const T *>(P.k) + b * P.ksb + hk * P.ksh;
    const T *v = static_cast<const T *>(P.v) + b * P.vsb + hk * P.vsh;
    float qr[8], acc[8];
#pragma unroll
    for (int i = 0; i < 8; i++) {
        const int d = lane + 32 * i;
        qr[i] = d < P.D ? to_float(q[d]) * P.sm_scale : 0.f;
        acc[i] = 0.f;
    }
    int64_t last = P.Nk - 1;
    if (P.causal) last = min(last, row + P.causal_off);
    float m = -INFINITY, l = 0.f;
    for (int64_t t = 0; t <= last; t++) {
        float s = 0.f;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int d = lane + 32 * i;
            if (d < P.D) s += qr[i] * to_float(k[t * P.ksn + d]);
        }
#pragma unroll
        for (int off = 16; off >= 1; off /= 2) s += __shfl_xor_sync(0xffffffffu, s, off);
        const float mn = fmaxf(m, s);
        const float alpha = expf(m - mn), p = expf(s - mn);
        l = l * alpha + p;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int d = lane + 32 * i;
            acc[i] = acc[i] * alpha + (d < P.D ? p * to_float(v[t * P.vsn + d]) : 0.f);
        }
        m = mn;
    }
    T *o = static_cast<T *>(P.o) + b * P.osb + h * P.osh + row * P.osn;
    const float inv = l > 0.f ? 1.f / l : 0.f;
#pragma unroll
    for (int i = 0; i < 8; i++) {
        const int d = lane + 32 * i;
        if (d < P.D) store(o + d, acc[i] * inv);
    }
    if (P.lse && lane == 0) P.lse[(b * P.Hq + h) * P.Nq + row] = l > 0.f ? m + logf(l) : -INFINITY;
}

size_t ref_workspace(const sage_kernel *, const sage_problem *) { return 0; }

sage_status ref_run(const sage_kernel *, const sage_problem *p, void *, void *stream, sage_msg msg) {
    const sage_args *a = &p->a;
    if (a->head_dim > 256) return sage_fail(msg, SAGE_ERR_HEAD_DIM, "cuda_reference: head_dim > 256");
    sage_cuda_device_scope scope;
    if (sage_status s = sage_cuda_device_enter(a->device_ordinal, &scope, msg)) return s;
    RefParams P{};
    P.q = a->q; P.k = a->k; P.v = a->v; P.o = a->o; P.lse = a->lse;
    P.qsb = a->q_stride_b; P.qsh = a->q_stride_h; P.qsn = a->q_stride_n;
    P.ksb = a->k_stride_b; P.ksh = a->k_stride_h; P.ksn = a->k_stride_n;
    P.vsb = a->v_stride_b; P.vsh = a->v_stride_h; P.vsn = a->v_stride_n;
    P.osb = a->o_stride_b; P.osh = a->o_stride_h; P.osn = a->o_stride_n;
    P.Hq = a->heads_q; P.Nq = a->seqlen_q; P.Nk = a->seqlen_kv; P.group = p->group_size;
    P.D = (int)a->head_dim;
    P.sm_scale = a->sm_scale;
    P.causal = a->causal != SAGE_CAUSAL_NONE;
    P.causal_off = a->causal == SAGE_CAUSAL_BOTTOM_RIGHT ? a->seqlen_kv - a->seqlen_q : 0;
    dim3 grid((unsigned)((a->seqlen_q + kRefWarps - 1) / kRefWarps), (unsigned)a->heads_q, (unsigned)a->batch);
    cudaStream_t st = static_cast<cudaStream_t>(stream);
    if (a->dtype == SAGE_DTYPE_BF16) reference_kernel<__nv_bfloat16><<<grid, kRefWarps * 32, 0, st>>>(P);
    else reference_kernel<__half><<<grid, kRefWarps * 32, 0, st>>>(P);
    sage_status s = sage_cuda_check_launch("sage cuda_reference kernel", msg);
    sage_cuda_device_leave(&scope);
    return s;
}

} // namespace
} // namespace sage

extern "C" const sage_kernel sage_cuda_reference_kernel = {
    "cuda_reference", SAGE_DEVICE_CUDA, {64, SAGE_MMA_CTA_K, 4, 0}, /* unused: no quantization */
    sage::ref_workspace, sage::ref_run};
