/* Private: the CUDA kernel descriptors of this directory and the lookups used by tests and the
 * bench to force one kernel. */
#ifndef SAGE_CUDA_KERNELS_H
#define SAGE_CUDA_KERNELS_H

#include "../internal.h"
#include "attn_mma.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Portable path: quantization + mma.sync attention, 64-row CTAs ("cuda_sm80_mma", selected). */
extern const sage_kernel sage_cuda_mma_kernel;
/* The same with 128-row CTAs ("cuda_sm80_mma_q128"): forced by name only. */
extern const sage_kernel sage_cuda_mma_q128_kernel;
/* Exact fp32 attention on the GPU ("cuda_reference"). */
extern const sage_kernel sage_cuda_reference_kernel;

/* The kernel called `name` if it is built into this library, else NULL. Names: "cuda_sm80_mma",
 * "cuda_sm80_mma_q128", "cuda_reference", and the Hopper kernel's name ("cuda_sm90_wgmma") when
 * the sm90a objects are built. */
const sage_kernel *sage_cuda_kernel_by_name(const char *name);

/* Names of the built quantized CUDA kernels (not the reference), NULL-terminated, static. Tests
 * run every case for each. */
const char *const *sage_cuda_kernel_names(void);

#ifdef __cplusplus
}
#endif
#endif
