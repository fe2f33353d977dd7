/* The sm90a kernel's descriptor: selection, workspace size and run (quantize K and V, then
 * attention, which quantizes Q itself).
 * No allocation, no synchronisation: the quantization kernels and the attention kernel are
 * launched on the caller's stream, the tensor maps are encoded on the host. */
#include "sm90.h"

#include "../cuda_common.h"
#include "../quant.h"
#include "attn_sm90.h"

namespace {

constexpr sage_geometry kGeometry = SAGE_SM90_GEOMETRY;
constexpr sage_geometry kGeometryQ64 = SAGE_SM90_Q64_GEOMETRY;
static_assert(kGeometry.cta_k == SAGE_SM90_CTA_K && kGeometryQ64.cta_k == SAGE_SM90_CTA_K,
              "geometry.h and the kernel's KV tiles agree");

/* The Hopper kernel for these arguments: the 64-row CTAs (one warpgroup, no producer, 2-4 CTAs
 * per SM) wherever they measured faster than the 128-row ones. Measured against the 128-row
 * kernel in one call each (docs/perf-log.md, session 6): D = 128 +5.6 / +0.2 / -2.9 % at 8K / 16K
 * / 32K keys (causal 16K / 32K +3.2 / -1.7 %), and ahead of the earlier 64-row shapes, which
 * beat the 128-row kernel up to 8K, by 3.5-11 % at 1K..16K; D = 64 ahead of every other shape
 * at every length (+5.6..+21 %); D = 256 ahead up to 8K keys, 2-4 % behind at 16K. */
const sage_kernel *sm90_kernel_for(const sage_args *a) {
    const int d_pad = sage_sm90_padded_head_dim(a->head_dim);
    const int64_t q64_up_to = d_pad == 64 ? INT64_MAX : d_pad == 128 ? 16384 : 8192;
    return a->seqlen_kv <= q64_up_to ? &sage_sm90_q64_kernel : &sage_sm90_kernel;
}

size_t sm90_workspace(const sage_kernel *k, const sage_problem *p) {
    sage_cuda_quant_layout L;
    sage_cuda_kernel_quant_layout(k, p, &L);
    return sage_align_ws(L.total);
}

sage_status sm90_run(const sage_kernel *k, const sage_problem *p, void *ws, void *stream, sage_msg msg) {
    const sage_args *a = &p->a;
    const sage_cuda_device_props *props;
    if (sage_status s = sage_cuda_device_props_get(a->device_ordinal, &props, msg)) return s;
    if (!sage_has_wgmma(props->cc))
        return sage_fail(msg, SAGE_ERR_UNSUPPORTED, "%s needs sm_90 (device is sm_%d)", k->name, props->cc);
    const int d_pad = sage_sm90_padded_head_dim(a->head_dim);
    if (p->pv != SAGE_PV_FP8 || !d_pad || p->smooth_q)
        return sage_fail(msg, SAGE_ERR_UNSUPPORTED, "%s: FP8 PV, head_dim <= 256, no smooth Q only", k->name);
    sage_cuda_quant_layout L;
    sage_cuda_kernel_quant_layout(k, p, &L);

    sage_sm90_params P = {};
    P.batch = (int)a->batch;
    P.heads_q = (int)a->heads_q;
    P.heads_kv = (int)a->heads_kv;
    P.group = (int)p->group_size;
    P.nq = (int)a->seqlen_q;
    P.nk = (int)a->seqlen_kv;
    P.nq_pad = L.nq_pad;
    P.nk_pad = L.nk_pad;
    P.n_q_groups = L.n_q_groups;
    P.n_k_groups = L.n_k_groups;
    P.qk_gran = p->qk_groups;
    uint8_t *w = static_cast<uint8_t *>(ws);
    P.q_scale = reinterpret_cast<float *>(w + L.off_q_scale);
    P.k_scale = reinterpret_cast<const float *>(w + L.off_k_scale);
    P.k_mean = p->smooth_k && a->lse ? reinterpret_cast<const float *>(w + L.off_k_mean) : nullptr;
    P.v_scale = reinterpret_cast<const float *>(w + L.off_v_scale);
    P.v_mean = p->smooth_v ? reinterpret_cast<const float *>(w + L.off_v_mean) : nullptr;
    P.q = a->q;
    P.q_sb = a->q_stride_b;
    P.q_sh = a->q_stride_h;
    P.q_sn = a->q_stride_n;
    P.q_vec = sage_rows_aligned(a->q, a->q_stride_b, a->q_stride_h, a->q_stride_n, 8);
    P.o = a->o;
    P.o_sb = a->o_stride_b;
    P.o_sh = a->o_stride_h;
    P.o_sn = a->o_stride_n;
    P.lse = a->lse;
    P.d = (int)a->head_dim;
    P.sm_scale = a->sm_scale;
    P.causal = a->causal;
    /* 4-byte stores of element pairs need every row start 4-byte aligned. */
    P.o_pairs = sage_rows_aligned(a->o, a->o_stride_b, a->o_stride_h, a->o_stride_n, 2);
    P.o_vec = sage_rows_aligned(a->o, a->o_stride_b, a->o_stride_h, a->o_stride_n, 8);

    sage_cuda_device_scope scope;
    if (sage_status s = sage_cuda_device_enter(a->device_ordinal, &scope, msg)) return s;
    /* The 64-row kernel runs beside the one-pass K/V quantization, head by head (quant.h). */
    const int concurrent = L.kv_cluster > 0 && k->geometry.cta_q == 64;
    int one_pass = 0;
    sage_status s = sage_cuda_quantize(p, k->geometry, &L, ws, stream, concurrent, &one_pass, msg);
    if (concurrent && one_pass) {
        P.kv_ready = reinterpret_cast<const int *>(w + L.off_kv_ready);
        P.kv_ready_target = sage_cuda_kv_ready_target(p, &L);
    }
    if (s == SAGE_OK)
        s = sage_sm90_launch(&P, d_pad, k->geometry.cta_q, a->dtype == SAGE_DTYPE_BF16, w + L.off_k8, w + L.off_v8,
                             static_cast<cudaStream_t>(stream), msg);
    sage_cuda_device_leave(&scope);
    return s;
}

}  // namespace

extern "C" const sage_kernel sage_sm90_kernel = {SAGE_SM90_KERNEL_NAME, SAGE_DEVICE_CUDA, kGeometry, sm90_workspace,
                                                 sm90_run};
extern "C" const sage_kernel sage_sm90_q64_kernel = {SAGE_SM90_Q64_KERNEL_NAME, SAGE_DEVICE_CUDA, kGeometryQ64,
                                                     sm90_workspace, sm90_run};

extern "C" sage_status sage_sm90_select(sage_problem *p, const sage_kernel **kernel, sage_msg msg) {
    *kernel = nullptr;
    const sage_args *a = &p->a;
    if (p->algorithm != SAGE_ALGO_QUANTIZED)
        return sage_fail(msg, SAGE_ERR_UNSUPPORTED, "sm90: only the quantized algorithm");
    if (p->pv != SAGE_PV_FP8)
        return sage_fail(msg, SAGE_ERR_UNSUPPORTED, "sm90: 16-bit PV is not implemented on the Hopper kernel");
    if (a->dtype != SAGE_DTYPE_FP16 && a->dtype != SAGE_DTYPE_BF16)
        return sage_fail(msg, SAGE_ERR_UNSUPPORTED, "sm90: inputs must be fp16 or bf16");
    if (!sage_sm90_padded_head_dim(a->head_dim))
        return sage_fail(msg, SAGE_ERR_HEAD_DIM, "sm90: head_dim %lld (the Hopper kernel runs 1..256)",
                         (long long)a->head_dim);
    if (p->smooth_q)
        return sage_fail(msg, SAGE_ERR_UNSUPPORTED, "sm90: smooth Q is not implemented on the Hopper kernel");
    const sage_kernel *k = sm90_kernel_for(a);
    /* 32-bit limits: grid y/z, TMA row coordinates (rows of the 2-D views < 2^31), int lengths. */
    const int64_t nq_pad = sage_round_up(a->seqlen_q, k->geometry.cta_q);
    const int64_t nk_pad = sage_round_up(a->seqlen_kv, SAGE_SM90_CTA_K);
    if (a->batch > 65535 || a->heads_q > 65535 || nq_pad / k->geometry.cta_q > INT32_MAX ||
        a->batch * a->heads_q * nq_pad >= ((int64_t)1 << 31) || a->batch * a->heads_kv * nk_pad >= ((int64_t)1 << 31) ||
        a->batch * a->heads_kv * sage_sm90_padded_head_dim(a->head_dim) >= ((int64_t)1 << 31) ||
        a->seqlen_q > INT32_MAX / 2 || a->seqlen_kv > INT32_MAX / 2)
        return sage_fail(msg, SAGE_ERR_UNSUPPORTED, "sm90: problem too large for the kernel's 32-bit coordinates");
    *kernel = k;
    return SAGE_OK;
}
