#include "validate.h"

#include <math.h>
#include <string.h>

/* One tensor as validation sees it. */
typedef struct tensor_view {
    const char *name;
    const void *data;
    int64_t size[3];   /* batch, heads, tokens */
    int64_t stride[3]; /* element strides of the same dims */
    int64_t head_dim;
    size_t elem_size;
    bool is_output;
} tensor_view;

/* Byte range [lo, hi) a tensor may touch. */
typedef struct byte_range {
    uintptr_t lo, hi;
} byte_range;

static const char *const k_dim_names[3] = {"stride_b", "stride_h", "stride_n"};

static bool mul_overflows(int64_t a, int64_t b, int64_t *out) {
    /* a, b >= 0 here */
    if (a != 0 && b > INT64_MAX / a) return true;
    *out = a * b;
    return false;
}

static bool add_overflows(int64_t a, int64_t b, int64_t *out) {
    if (b > INT64_MAX - a) return true;
    *out = a + b;
    return false;
}

/* Strides and extent of one tensor; fills its byte range. */
static sage_status check_tensor(const tensor_view *t, byte_range *range, sage_msg msg) {
    int64_t last = t->head_dim; /* elements from the first to one past the last */
    for (int d = 0; d < 3; d++) {
        int64_t s = t->stride[d];
        if (s < 0)
            return sage_fail(msg, SAGE_ERR_INVALID_STRIDE, "%s_%s = %lld is negative", t->name,
                             k_dim_names[d], (long long)s);
        if (t->size[d] == 1) continue; /* the stride of a size-1 dim is never used */
        if (s == 0 && t->is_output)
            return sage_fail(msg, SAGE_ERR_OVERLAP,
                             "%s_%s = 0: the output would write several rows to one place", t->name,
                             k_dim_names[d]);
        if (s != 0 && s < t->head_dim)
            return sage_fail(msg, SAGE_ERR_INVALID_STRIDE,
                             "%s_%s = %lld is below head_dim = %lld: head_dim must be contiguous "
                             "and rows must not overlap",
                             t->name, k_dim_names[d], (long long)s, (long long)t->head_dim);
        int64_t span;
        if (mul_overflows(t->size[d] - 1, s, &span) || add_overflows(last, span, &last))
            return sage_fail(msg, SAGE_ERR_INVALID_STRIDE, "%s: sizes x strides overflow int64",
                             t->name);
    }
    int64_t bytes;
    if (mul_overflows(last, (int64_t)t->elem_size, &bytes) ||
        (uint64_t)bytes > (uint64_t)(UINTPTR_MAX - (uintptr_t)t->data))
        return sage_fail(msg, SAGE_ERR_INVALID_STRIDE, "%s: extent overflows the address space",
                         t->name);
    range->lo = (uintptr_t)t->data;
    range->hi = range->lo + (uintptr_t)bytes;
    return SAGE_OK;
}

/* An output must not write one element twice: visiting its dims from the smallest stride up,
 * each stride must step past everything the inner dims cover. */
static sage_status check_output_disjoint(const tensor_view *t, sage_msg msg) {
    int order[3] = {0, 1, 2};
    for (int i = 0; i < 3; i++)
        for (int j = i + 1; j < 3; j++)
            if (t->stride[order[j]] < t->stride[order[i]]) {
                int tmp = order[i];
                order[i] = order[j];
                order[j] = tmp;
            }
    int64_t covered = t->head_dim;
    for (int i = 0; i < 3; i++) {
        int d = order[i];
        if (t->size[d] == 1) continue;
        if (t->stride[d] < covered)
            return sage_fail(msg, SAGE_ERR_OVERLAP,
                             "%s_%s = %lld makes the output overlap itself (inner dims span %lld elements)",
                             t->name, k_dim_names[d], (long long)t->stride[d], (long long)covered);
        covered = t->stride[d] * (t->size[d] - 1) + covered; /* no overflow: checked above */
    }
    return SAGE_OK;
}

static bool ranges_overlap(byte_range a, byte_range b) { return a.lo < b.hi && b.lo < a.hi; }

static sage_status check_enums(const sage_args *a, sage_msg msg) {
#define SAGE_CHECK_ENUM(field, lo, hi)                                                           \
    if ((int)(field) < (int)(lo) || (int)(field) > (int)(hi))                                    \
        return sage_fail(msg, SAGE_ERR_INVALID_ENUM, "%s = %d is not a known value", #field, (int)(field));
    SAGE_CHECK_ENUM(a->dtype, SAGE_DTYPE_FP16, SAGE_DTYPE_FP32)
    SAGE_CHECK_ENUM(a->causal, SAGE_CAUSAL_NONE, SAGE_CAUSAL_BOTTOM_RIGHT)
    SAGE_CHECK_ENUM(a->options.algorithm, SAGE_ALGO_QUANTIZED, SAGE_ALGO_REFERENCE)
    SAGE_CHECK_ENUM(a->options.qk_groups, SAGE_QK_AUTO, SAGE_QK_PER_THREAD)
    SAGE_CHECK_ENUM(a->options.pv, SAGE_PV_AUTO, SAGE_PV_16BIT)
    SAGE_CHECK_ENUM(a->options.smooth_k, SAGE_AUTO, SAGE_ON)
    SAGE_CHECK_ENUM(a->options.smooth_q, SAGE_AUTO, SAGE_ON)
    SAGE_CHECK_ENUM(a->options.smooth_v, SAGE_AUTO, SAGE_ON)
    SAGE_CHECK_ENUM(a->device, SAGE_DEVICE_CPU, SAGE_DEVICE_CUDA)
#undef SAGE_CHECK_ENUM
    return SAGE_OK;
}

static sage_status check_sizes(const sage_args *a, sage_msg msg) {
    const struct { const char *name; int64_t v; } sizes[] = {
        {"batch", a->batch},       {"heads_q", a->heads_q},     {"heads_kv", a->heads_kv},
        {"seqlen_q", a->seqlen_q}, {"seqlen_kv", a->seqlen_kv}, {"head_dim", a->head_dim},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (sizes[i].v <= 0)
            return sage_fail(msg, SAGE_ERR_INVALID_SIZE, "%s = %lld must be positive", sizes[i].name,
                             (long long)sizes[i].v);
    if (a->heads_q % a->heads_kv != 0)
        return sage_fail(msg, SAGE_ERR_HEADS_MISMATCH, "heads_q = %lld is not a multiple of heads_kv = %lld",
                         (long long)a->heads_q, (long long)a->heads_kv);
    if (a->head_dim > SAGE_MAX_HEAD_DIM)
        return sage_fail(msg, SAGE_ERR_HEAD_DIM, "head_dim = %lld is above the maximum %d",
                         (long long)a->head_dim, SAGE_MAX_HEAD_DIM);
    if (!(a->sm_scale >= 0.0f) || isinf(a->sm_scale)) /* also rejects NaN */
        return sage_fail(msg, SAGE_ERR_INVALID_SCALE, "sm_scale = %g must be finite and >= 0 (0 = 1/sqrt(head_dim))",
                         (double)a->sm_scale);
    if (a->device == SAGE_DEVICE_CUDA && a->device_ordinal < 0)
        return sage_fail(msg, SAGE_ERR_NO_DEVICE, "device_ordinal = %d is negative", a->device_ordinal);
    if (a->cpu_threads < 0)
        return sage_fail(msg, SAGE_ERR_INVALID_SIZE, "cpu_threads = %d is negative", a->cpu_threads);
    return SAGE_OK;
}

sage_status sage_validate_args(const sage_args *a, sage_msg msg) {
    if (!a) return sage_fail(msg, SAGE_ERR_NULL_POINTER, "args is NULL");
    if (a->struct_size != sizeof(sage_args))
        return sage_fail(msg, SAGE_ERR_STRUCT_SIZE,
                         "args->struct_size = %zu, this library's sage_args has %zu bytes "
                         "(call sage_args_init; header and library must match)",
                         a->struct_size, sizeof(sage_args));
    sage_status st = check_enums(a, msg);
    if (st != SAGE_OK) return st;
    if (!a->q || !a->k || !a->v || !a->o)
        return sage_fail(msg, SAGE_ERR_NULL_POINTER, "%s is NULL",
                         !a->q ? "q" : !a->k ? "k" : !a->v ? "v" : "o");
    if ((st = check_sizes(a, msg)) != SAGE_OK) return st;

    size_t es = sage_dtype_size(a->dtype);
    const tensor_view views[4] = {
        {"q", a->q, {a->batch, a->heads_q, a->seqlen_q}, {a->q_stride_b, a->q_stride_h, a->q_stride_n}, a->head_dim, es, false},
        {"k", a->k, {a->batch, a->heads_kv, a->seqlen_kv}, {a->k_stride_b, a->k_stride_h, a->k_stride_n}, a->head_dim, es, false},
        {"v", a->v, {a->batch, a->heads_kv, a->seqlen_kv}, {a->v_stride_b, a->v_stride_h, a->v_stride_n}, a->head_dim, es, false},
        {"o", a->o, {a->batch, a->heads_q, a->seqlen_q}, {a->o_stride_b, a->o_stride_h, a->o_stride_n}, a->head_dim, es, true},
    };
    byte_range ranges[5];
    for (int i = 0; i < 4; i++)
        if ((st = check_tensor(&views[i], &ranges[i], msg)) != SAGE_OK) return st;
    if ((st = check_output_disjoint(&views[3], msg)) != SAGE_OK) return st;
    int n_ranges = 4;
    if (a->lse) {
        /* lse is dense [B, Hq, Nq] fp32: B*Hq*Nq*4 bytes cannot overflow once o's extent did not. */
        ranges[4].lo = (uintptr_t)a->lse;
        ranges[4].hi = ranges[4].lo + (uintptr_t)(a->batch * a->heads_q * a->seqlen_q) * sizeof(float);
        n_ranges = 5;
    }
    static const char *const names[5] = {"q", "k", "v", "o", "lse"};
    /* Each output (o, lse) against everything before it. Inputs may overlap each other. */
    for (int out = 3; out < n_ranges; out++)
        for (int other = 0; other < out; other++)
            if (ranges_overlap(ranges[out], ranges[other]))
                return sage_fail(msg, SAGE_ERR_OVERLAP, "%s overlaps %s in memory", names[out], names[other]);
    return SAGE_OK;
}
