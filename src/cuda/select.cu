/* CUDA dispatch: sage_cuda_select (called by sage_select_kernel after validation), the portable
 * kernel's descriptor, and the name lookups.
 *
 * Order of decisions: device properties (cached) -> sm_80+ -> input type -> algorithm (reference)
 * -> PV type (AUTO: FP8 where mma.sync e4m3 exists, sm_89+; else 16-bit) -> the Hopper kernel
 * when it accepts the problem -> the portable kernel (head_dim <= 128). */
#include "cuda_common.h"
#include "cuda_kernels.h"
#include "quant.h"

#include <string.h>

#if defined(SAGE_HAVE_SM90A) && defined(__has_include)
#if __has_include("sm90/sm90.h")
#include "sm90/sm90.h"
#define SAGE_USE_SM90 1
#endif
#endif

extern "C" void sage_cuda_kernel_quant_layout(const sage_kernel *k, const sage_problem *p, sage_cuda_quant_layout *L) {
#ifdef SAGE_USE_SM90
    /* The Hopper kernel quantizes Q in its prologue: no Q8 in the workspace. */
    if (k == &sage_sm90_kernel || k == &sage_sm90_q64_kernel) {
        sage_cuda_quant_layout_init(p, k->geometry, sage_sm90_padded_head_dim(p->a.head_dim), 0, L);
        return;
    }
#endif
    sage_cuda_quant_layout_init(p, k->geometry, sage_mma_d_pad(p->a.head_dim), 1, L);
}

namespace {

size_t mma_workspace(const sage_kernel *k, const sage_problem *p) {
    sage_cuda_quant_layout L;
    sage_cuda_kernel_quant_layout(k, p, &L);
    return L.total;
}

sage_status mma_run(const sage_kernel *k, const sage_problem *p, void *ws, void *stream, sage_msg msg) {
    const sage_cuda_device_props *props;
    if (sage_status s = sage_cuda_device_props_get(p->a.device_ordinal, &props, msg)) return s;
    if (p->pv == SAGE_PV_FP8 && !sage_has_fp8_mma(props->cc))
        return sage_fail(msg, SAGE_ERR_UNSUPPORTED, "FP8 PV needs sm_89+ (device is sm_%d)", props->cc);
    if (p->a.head_dim > 128)
        return sage_fail(msg, SAGE_ERR_HEAD_DIM, "%s: head_dim %lld > 128", k->name, (long long)p->a.head_dim);
    sage_cuda_quant_layout L;
    sage_cuda_kernel_quant_layout(k, p, &L);
    sage_cuda_device_scope scope;
    if (sage_status s = sage_cuda_device_enter(p->a.device_ordinal, &scope, msg)) return s;
    sage_status s = sage_cuda_quantize(p, k->geometry, &L, ws, stream, 0, nullptr, msg);
    if (s == SAGE_OK) s = sage_mma_attention(p, k->geometry, &L, ws, stream, msg);
    sage_cuda_device_leave(&scope);
    return s;
}

const char *const kNames[] = {
    "cuda_sm80_mma",
    "cuda_sm80_mma_q128",
#ifdef SAGE_SM90_KERNEL_NAME
    SAGE_SM90_KERNEL_NAME,
    SAGE_SM90_Q64_KERNEL_NAME,
#endif
    nullptr};

} // namespace

/* 64-row CTAs (4 warps, two CTAs per SM): the portable kernel sage_cuda_select picks. */
extern "C" const sage_kernel sage_cuda_mma_kernel = {
    "cuda_sm80_mma", SAGE_DEVICE_CUDA, {64, SAGE_MMA_CTA_K, 4, 0}, mma_workspace, mma_run};

/* The same code with 128-row CTAs (8 warps, one CTA per SM): forced by name only (bench, tests). */
extern "C" const sage_kernel sage_cuda_mma_q128_kernel = {
    "cuda_sm80_mma_q128", SAGE_DEVICE_CUDA, {128, SAGE_MMA_CTA_K, 8, 0}, mma_workspace, mma_run};

extern "C" const char *const *sage_cuda_kernel_names(void) { return kNames; }

extern "C" const sage_kernel *sage_cuda_kernel_by_name(const char *name) {
    if (!name) return nullptr;
    if (!strcmp(name, sage_cuda_mma_kernel.name)) return &sage_cuda_mma_kernel;
    if (!strcmp(name, sage_cuda_reference_kernel.name)) return &sage_cuda_reference_kernel;
    if (!strcmp(name, sage_cuda_mma_q128_kernel.name)) return &sage_cuda_mma_q128_kernel;
#if defined(SAGE_USE_SM90) && defined(SAGE_SM90_KERNEL_NAME)
    /* Contract with src/cuda/sm90/sm90.h: SAGE_SM90_KERNEL_NAME and sage_sm90_kernel. */
    if (!strcmp(name, SAGE_SM90_KERNEL_NAME)) return &sage_sm90_kernel;
    if (!strcmp(name, SAGE_SM90_Q64_KERNEL_NAME)) return &sage_sm90_q64_kernel;
#endif
    return nullptr;
}

extern "C" sage_status sage_cuda_select(sage_problem *p, const sage_kernel **kernel, sage_msg msg) {
    *kernel = nullptr;
    const sage_cuda_device_props *props;
    if (sage_status s = sage_cuda_device_props_get(p->a.device_ordinal, &props, msg)) return s;
    const int cc = props->cc;
    p->cuda_cc = cc;
    if (!sage_has_int8_mma(cc))
        return sage_fail(msg, SAGE_ERR_UNSUPPORTED,
                         "CUDA device %d is sm_%d: sageattn needs sm_80 or newer (INT8 mma.sync)",
                         p->a.device_ordinal, cc);
    if (p->a.dtype != SAGE_DTYPE_FP16 && p->a.dtype != SAGE_DTYPE_BF16)
        return sage_fail(msg, SAGE_ERR_UNSUPPORTED, "CUDA takes fp16 or bf16 inputs (fp32 runs on the CPU)");

    if (p->pv == SAGE_PV_AUTO) p->pv = sage_has_fp8_mma(cc) ? SAGE_PV_FP8 : SAGE_PV_16BIT;
    if (p->algorithm == SAGE_ALGO_REFERENCE) {
        *kernel = &sage_cuda_reference_kernel;
        return SAGE_OK;
    }
    if (p->pv == SAGE_PV_FP8 && !sage_has_fp8_mma(cc))
        return sage_fail(msg, SAGE_ERR_UNSUPPORTED,
                         "FP8 PV needs FP8 mma (sm_89 or newer); device %d is sm_%d: use 16-bit PV",
                         p->a.device_ordinal, cc);
#ifdef SAGE_USE_SM90
    if (sage_has_wgmma(cc)) {
        char buf[256];
        sage_msg quiet = {buf, sizeof buf}; /* its "no" is not the caller's error */
        const sage_kernel *k = nullptr;
        if (sage_sm90_select(p, &k, quiet) == SAGE_OK && k) {
            *kernel = k;
            return SAGE_OK;
        }
    }
#endif
    if (p->a.head_dim > 128)
        return sage_fail(msg, SAGE_ERR_HEAD_DIM,
                         "head_dim = %lld: the portable CUDA kernel supports head_dim <= 128%s",
                         (long long)p->a.head_dim,
                         sage_has_wgmma(cc) ? " (the Hopper kernel declined these arguments)" : "");
    *kernel = &sage_cuda_mma_kernel;
    return SAGE_OK;
}
