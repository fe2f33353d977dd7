/*
 * sageattn — 8-bit quantized attention (INT8 QK^T, FP8 or 16-bit PV).
 *
 * One public header, C99, no CUDA includes. Typical use:
 *
 *   sage_args a;
 *   sage_args_init(&a);                       // struct_size + every default
 *   a.dtype = SAGE_DTYPE_FP16;
 *   a.batch = B; a.heads_q = H; a.heads_kv = H; a.seqlen_q = N; a.seqlen_kv = N; a.head_dim = D;
 *   a.q = q; a.k = k; a.v = v; a.o = o;       // strides: sage_set_contiguous_bhnd(&a)
 *   size_t ws_size; char msg[256];
 *   if (sage_workspace_size(&a, &ws_size, msg, sizeof msg) != SAGE_OK) { puts(msg); ... }
 *   ... allocate ws_size bytes, 256-byte aligned, on the device that runs the call ...
 *   sage_status st = sage_forward(&a, ws, ws_size, stream, msg, sizeof msg);
 *
 * Contract of every call:
 *  - thread-safe; no global "last error": messages go to the caller's buffer (may be NULL/0);
 *  - no allocation, no synchronisation, no default-stream work inside sage_forward on CUDA
 *    (CUDA-graph capture works); one workspace per concurrent call;
 *  - deterministic: the same arguments give the same bytes;
 *  - on any error nothing is written outside o and lse; the library never prints or exits.
 */
#ifndef SAGEATTN_H
#define SAGEATTN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(SAGE_BUILD_SHARED)
#define SAGE_API __declspec(dllexport)
#elif defined(__GNUC__)
#define SAGE_API __attribute__((visibility("default")))
#else
#define SAGE_API
#endif

#define SAGE_VERSION_MAJOR 0
#define SAGE_VERSION_MINOR 1
#define SAGE_VERSION_PATCH 0
/* MAJOR * 10000 + MINOR * 100 + PATCH */
#define SAGE_VERSION_NUMBER (SAGE_VERSION_MAJOR * 10000 + SAGE_VERSION_MINOR * 100 + SAGE_VERSION_PATCH)

/* Version of the library actually linked (compare with SAGE_VERSION_NUMBER). */
SAGE_API int sage_version_number(void);
/* "MAJOR.MINOR.PATCH", static storage. */
SAGE_API const char *sage_version_string(void);

typedef enum sage_status {
    SAGE_OK = 0,
    SAGE_ERR_NULL_POINTER,       /* args, q, k, v, o or an out-pointer is NULL */
    SAGE_ERR_STRUCT_SIZE,        /* args->struct_size is not one this library knows */
    SAGE_ERR_INVALID_SIZE,       /* batch, heads, sequence lengths or head_dim <= 0 */
    SAGE_ERR_HEADS_MISMATCH,     /* heads_q is not a multiple of heads_kv */
    SAGE_ERR_HEAD_DIM,           /* head_dim not supported by the chosen device */
    SAGE_ERR_INVALID_STRIDE,     /* negative stride, 0 < stride < head_dim, or an overflowing extent */
    SAGE_ERR_OVERLAP,            /* o or lse overlaps an input, each other, or itself */
    SAGE_ERR_INVALID_ENUM,       /* an enum field holds an unknown value */
    SAGE_ERR_INVALID_SCALE,      /* sm_scale is negative, NaN or infinite */
    SAGE_ERR_WORKSPACE_TOO_SMALL,/* workspace_size is below sage_workspace_size() */
    SAGE_ERR_WORKSPACE_ALIGNMENT,/* workspace is NULL while needed, or not 256-byte aligned */
    SAGE_ERR_UNSUPPORTED,        /* valid arguments this build or device cannot run (message says why) */
    SAGE_ERR_NO_CUDA,            /* CUDA requested from a build without CUDA */
    SAGE_ERR_NO_DEVICE,          /* no CUDA device, or device_ordinal out of range */
    SAGE_ERR_CUDA,               /* a CUDA runtime call or launch failed (message has the CUDA error) */
    SAGE_STATUS_COUNT_           /* not a status; keeps the enum's range checkable */
} sage_status;

/* Short static description of a status ("invalid stride", ...). Never NULL. */
SAGE_API const char *sage_status_string(sage_status status);

/* Element type of q, k, v and o (o has the type of q). FP32 only on the CPU. */
typedef enum sage_dtype { SAGE_DTYPE_FP16 = 0, SAGE_DTYPE_BF16 = 1, SAGE_DTYPE_FP32 = 2 } sage_dtype;

/* Causal mask. With Nq != Nk the two alignments differ (identical when Nq == Nk):
 *  TOP_LEFT     (torch SDPA is_causal): query i sees key j iff j <= i;
 *  BOTTOM_RIGHT (FlashAttention >= 2.1): query i sees key j iff j <= i + (Nk - Nq).
 * A query row that sees no key gives o = 0 and lse = -inf. */
typedef enum sage_causal {
    SAGE_CAUSAL_NONE = 0,
    SAGE_CAUSAL_TOP_LEFT = 1,
    SAGE_CAUSAL_BOTTOM_RIGHT = 2
} sage_causal;

/* What is computed. QUANTIZED is the product; REFERENCE is exact attention (fp32 math, double
 * accumulation on the CPU; an fp32 kernel on CUDA) for validation. */
typedef enum sage_algorithm { SAGE_ALGO_QUANTIZED = 0, SAGE_ALGO_REFERENCE = 1 } sage_algorithm;

/* Scale groups of INT8 Q and K (one fp32 scale per group; finer = more accurate, same speed).
 * AUTO picks PER_THREAD. See docs/algorithm.md for the exact token -> group maps. */
typedef enum sage_qk_groups {
    SAGE_QK_AUTO = 0,
    SAGE_QK_PER_BLOCK = 1,   /* Q: all rows of a CTA tile; K: all tokens of a KV tile */
    SAGE_QK_PER_WARP = 2,    /* Q: the rows one warp owns; K: as per-block */
    SAGE_QK_PER_THREAD = 3   /* Q: the 2 rows of one thread's fragment; K: the quarter of a KV
                                tile one thread's fragment holds (token % 8 / 2) */
} sage_qk_groups;

/* Precision of P and V in the PV product. AUTO: FP8 where the GPU has FP8 MMA (sm89, sm90),
 * 16-bit elsewhere (CPU, sm80, sm86). FP16 means "16 bits in the input's type": fp16 or bf16
 * (bf16 for fp32 inputs on the CPU, whose range fp16 may not hold). */
typedef enum sage_pv_type { SAGE_PV_AUTO = 0, SAGE_PV_FP8 = 1, SAGE_PV_16BIT = 2 } sage_pv_type;

/* Tri-state switch; AUTO takes the documented default of each option. */
typedef enum sage_toggle { SAGE_AUTO = 0, SAGE_OFF = 1, SAGE_ON = 2 } sage_toggle;

typedef enum sage_device { SAGE_DEVICE_CPU = 0, SAGE_DEVICE_CUDA = 1 } sage_device;

typedef struct sage_options {
    sage_algorithm algorithm;   /* default QUANTIZED */
    sage_qk_groups qk_groups;   /* default AUTO (= PER_THREAD) */
    sage_pv_type pv;            /* default AUTO */
    sage_toggle smooth_k;       /* subtract the per-head K mean before INT8; AUTO = ON */
    sage_toggle smooth_q;       /* subtract the per-block Q mean, add q_mean.k back; AUTO = OFF */
    sage_toggle smooth_v;       /* FP8 PV: subtract the per-channel V mean, add it to o; AUTO = OFF */
} sage_options;

/*
 * Arguments of one attention call.
 *   q [batch, heads_q,  seqlen_q,  head_dim]    o like q, same dtype
 *   k [batch, heads_kv, seqlen_kv, head_dim]    v like k
 * Every tensor is addressed with element strides (batch, head, token); head_dim is unit-stride.
 * A zero batch or head stride on q, k, v broadcasts; o must not overlap itself or any input.
 * GQA: query head h reads kv head h / (heads_q / heads_kv).
 */
typedef struct sage_args {
    size_t struct_size;          /* = sizeof(sage_args); set by sage_args_init(), check of the ABI */

    sage_dtype dtype;            /* of q, k, v and o */
    int64_t batch;               /* B  >= 1 */
    int64_t heads_q;             /* Hq >= 1 */
    int64_t heads_kv;            /* Hkv >= 1, divides Hq */
    int64_t seqlen_q;            /* Nq >= 1 */
    int64_t seqlen_kv;           /* Nk >= 1 */
    int64_t head_dim;            /* D: CPU any 1..256; CUDA see sage_supported() */

    const void *q; int64_t q_stride_b, q_stride_h, q_stride_n;
    const void *k; int64_t k_stride_b, k_stride_h, k_stride_n;
    const void *v; int64_t v_stride_b, v_stride_h, v_stride_n;
    void *o;       int64_t o_stride_b, o_stride_h, o_stride_n;

    /* Optional (NULL = not computed): fp32 [batch, heads_q, seqlen_q], contiguous.
     * lse = natural log of sum_j exp(sm_scale * q . k_j) over the visible keys. */
    float *lse;

    float sm_scale;              /* softmax scale; 0 means 1/sqrt(head_dim) */
    sage_causal causal;          /* default NONE */
    sage_options options;

    sage_device device;          /* default CPU; CUDA pointers must live on device_ordinal */
    int device_ordinal;          /* CUDA device index */
    int cpu_threads;             /* CPU path: worker threads, 0 = all online cores */
} sage_args;

/* Set struct_size and every default (CPU device, options AUTO, no mask, sm_scale 0). */
SAGE_API void sage_args_init(sage_args *args);

/* Fill the strides of q, k, v, o for contiguous [B, H, N, D] tensors ("HND") from the sizes. */
SAGE_API void sage_set_contiguous_bhnd(sage_args *args);

/* What sage_forward would run for these arguments. */
typedef struct sage_plan {
    const char *kernel;          /* static name, e.g. "cpu_quantized", "cuda_sm80_mma" */
    sage_qk_groups qk_groups;    /* resolved (never AUTO) */
    sage_pv_type pv;             /* resolved (never AUTO) */
    int smooth_k, smooth_q, smooth_v; /* resolved, 0 or 1 */
    size_t workspace_size;       /* bytes sage_forward needs */
} sage_plan;

/* SAGE_OK when sage_forward can run these arguments (plan filled when not NULL), else the
 * reason in msg. Checks everything sage_forward checks except workspace, and for CUDA queries
 * the device's compute capability (once per device, cached). */
SAGE_API sage_status sage_supported(const sage_args *args, sage_plan *plan, char *msg, size_t msg_size);

/* Bytes of workspace sage_forward needs (may be 0; then workspace may be NULL). */
SAGE_API sage_status sage_workspace_size(const sage_args *args, size_t *bytes, char *msg, size_t msg_size);

/* Attention. workspace: >= sage_workspace_size() bytes, 256-byte aligned, host memory for the
 * CPU device and device memory for CUDA. stream: a cudaStream_t (NULL = legacy default stream);
 * ignored on the CPU. On CUDA the call is asynchronous: errors of the kernels themselves show up
 * on the stream, launch errors are returned here. */
SAGE_API sage_status sage_forward(const sage_args *args, void *workspace, size_t workspace_size,
                                  void *stream, char *msg, size_t msg_size);

#ifdef __cplusplus
}
#endif
#endif /* SAGEATTN_H */
