/* Private: the validated problem, the kernel descriptor and the one selection function.
 * Every backend sees the arguments only through sage_problem, after validation. */
#ifndef SAGE_INTERNAL_H
#define SAGE_INTERNAL_H

#include "sageattn.h"
#include "geometry.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SAGE_WORKSPACE_ALIGN 256
#define SAGE_MAX_HEAD_DIM 256

/* Caller's message buffer (may be NULL / 0). */
typedef struct sage_msg {
    char *buf;
    size_t size;
} sage_msg;

/* Write a formatted message (truncated to fit, always NUL-terminated) and return status. */
sage_status sage_fail(sage_msg msg, sage_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Arguments after validation, with every AUTO resolved. */
typedef struct sage_problem {
    sage_args a;                 /* copy of the caller's args; a.sm_scale resolved (never 0) */
    sage_algorithm algorithm;
    sage_qk_groups qk_groups;    /* never AUTO */
    sage_pv_type pv;             /* never AUTO */
    bool smooth_k, smooth_q, smooth_v;
    int cuda_cc;                 /* CUDA: major*10+minor of the device; CPU: 0 */
    int64_t group_size;          /* heads_q / heads_kv */
} sage_problem;

typedef struct sage_kernel sage_kernel;
struct sage_kernel {
    const char *name;
    sage_device device;
    sage_geometry geometry;      /* tiles the quantization groups and the softmax steps follow */
    /* Workspace bytes for p (a multiple of SAGE_WORKSPACE_ALIGN). */
    size_t (*workspace_size)(const sage_kernel *k, const sage_problem *p);
    /* Run. ws is SAGE_WORKSPACE_ALIGN-aligned with at least workspace_size bytes. */
    sage_status (*run)(const sage_kernel *k, const sage_problem *p, void *ws, void *stream, sage_msg msg);
};

/* The one selection function: validates args, resolves the options for the target, and picks
 * the kernel. sage_supported, sage_workspace_size and sage_forward all go through it. */
sage_status sage_select_kernel(const sage_args *args, sage_problem *p, const sage_kernel **kernel,
                               sage_msg msg);

/* Backends. Each resolves the AUTO options it owns and picks one of its kernels, or says why not.
 * On entry p is validated and p->algorithm / smooth flags / qk_groups are resolved; pv is AUTO
 * (the backend resolves it). */
sage_status sage_cpu_select(sage_problem *p, const sage_kernel **kernel, sage_msg msg);
sage_status sage_cuda_select(sage_problem *p, const sage_kernel **kernel, sage_msg msg);

/* Bytes of one element of dtype. */
size_t sage_dtype_size(sage_dtype dtype);

/* Round n up to a multiple of m (m > 0). */
static inline int64_t sage_round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }
static inline size_t sage_align_ws(size_t n) {
    return (n + SAGE_WORKSPACE_ALIGN - 1) / SAGE_WORKSPACE_ALIGN * SAGE_WORKSPACE_ALIGN;
}

#ifdef __cplusplus
}
#endif
#endif
