/* Private: what every CUDA file of the library shares — error checks that turn a CUDA error
 * into a sage_status with the CUDA message, the per-device property cache, the architecture
 * predicates, and a guard that switches to the problem's device and back.
 *
 * Never cudaGetLastError here: it clears the caller's pending error. Launch errors are read with
 * cudaPeekAtLastError right after the launch (a launch error is "sticky" only for the launch). */
#ifndef SAGE_CUDA_COMMON_H
#define SAGE_CUDA_COMMON_H

#include "../internal.h"

#include <cuda_runtime.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- architecture predicates (cc = major * 10 + minor) ------------------------------------- */
/* mma.sync m16n8k32 s8 (IMMA): Ampere and newer. */
static inline bool sage_has_int8_mma(int cc) { return cc >= 80; }
/* mma.sync m16n8k32 e4m3 (QMMA): Ada (sm89) and newer. */
static inline bool sage_has_fp8_mma(int cc) { return cc >= 89; }
/* wgmma + TMA + setmaxnreg: exactly sm_90, and only when the sm_90a objects were built
 * (sm_90a code runs on no other architecture). */
static inline bool sage_has_wgmma(int cc) {
#ifdef SAGE_HAVE_SM90A
    return cc == 90;
#else
    (void)cc;
    return false;
#endif
}

/* Rows of 2-byte elements accessible in chunks of `elems` elements (8: 16-byte vectors, 2: 4-byte
 * pairs): a base aligned to 2 * elems bytes and every element stride a multiple of elems. */
static inline bool sage_rows_aligned(const void *ptr, int64_t sb, int64_t sh, int64_t sn, int elems) {
    return ((uintptr_t)ptr % (uintptr_t)(2 * elems)) == 0 && sb % elems == 0 && sh % elems == 0 && sn % elems == 0;
}

/* ---- per-device properties, read once per process ------------------------------------------- */
typedef struct sage_cuda_device_props {
    int cc;                     /* major * 10 + minor */
    int sm_count;
    int max_smem_optin;         /* bytes of dynamic shared memory a block may opt in to */
    int max_smem_per_sm;
    int l2_bytes;
} sage_cuda_device_props;

/* Properties of device `ordinal`. Thread-safe; the first call queries every device once.
 * SAGE_ERR_NO_DEVICE when no device / ordinal out of range (message says which). */
sage_status sage_cuda_device_props_get(int ordinal, const sage_cuda_device_props **props, sage_msg msg);

/* ---- errors ------------------------------------------------------------------------------- */
/* SAGE_OK for cudaSuccess, else SAGE_ERR_CUDA with "what: cudaErrorName: cudaErrorString". */
sage_status sage_cuda_check(cudaError_t err, const char *what, sage_msg msg);
/* After a kernel launch: reads (without clearing) the launch error. */
sage_status sage_cuda_check_launch(const char *kernel_name, sage_msg msg);

#define SAGE_CUDA_TRY(call, what, msg)                                      \
    do {                                                                    \
        sage_status st_ = sage_cuda_check((call), (what), (msg));           \
        if (st_ != SAGE_OK) return st_;                                     \
    } while (0)

/* ---- current-device guard -------------------------------------------------------------------- */
/* Switch to `ordinal` remembering the caller's device; restore it with sage_cuda_device_leave. */
typedef struct sage_cuda_device_scope {
    int prev;
    bool switched;
} sage_cuda_device_scope;
sage_status sage_cuda_device_enter(int ordinal, sage_cuda_device_scope *s, sage_msg msg);
void sage_cuda_device_leave(const sage_cuda_device_scope *s);

#ifdef __cplusplus
}
#endif
#endif
