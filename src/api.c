/* Public entry points: thin wrappers around sage_select_kernel. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

#define SAGE_STR2(x) #x
#define SAGE_STR(x) SAGE_STR2(x)

int sage_version_number(void) { return SAGE_VERSION_NUMBER; }

const char *sage_version_string(void) {
    return SAGE_STR(SAGE_VERSION_MAJOR) "." SAGE_STR(SAGE_VERSION_MINOR) "." SAGE_STR(SAGE_VERSION_PATCH);
}

const char *sage_status_string(sage_status status) {
    switch (status) {
    case SAGE_OK: return "ok";
    case SAGE_ERR_NULL_POINTER: return "null pointer";
    case SAGE_ERR_STRUCT_SIZE: return "struct size mismatch (header and library differ)";
    case SAGE_ERR_INVALID_SIZE: return "invalid size";
    case SAGE_ERR_HEADS_MISMATCH: return "heads_q is not a multiple of heads_kv";
    case SAGE_ERR_HEAD_DIM: return "unsupported head_dim";
    case SAGE_ERR_INVALID_STRIDE: return "invalid stride";
    case SAGE_ERR_OVERLAP: return "output overlaps an input or itself";
    case SAGE_ERR_INVALID_ENUM: return "invalid enum value";
    case SAGE_ERR_INVALID_SCALE: return "invalid sm_scale";
    case SAGE_ERR_WORKSPACE_TOO_SMALL: return "workspace too small";
    case SAGE_ERR_WORKSPACE_ALIGNMENT: return "workspace missing or misaligned";
    case SAGE_ERR_UNSUPPORTED: return "unsupported configuration";
    case SAGE_ERR_NO_CUDA: return "library built without CUDA";
    case SAGE_ERR_NO_DEVICE: return "no such CUDA device";
    case SAGE_ERR_CUDA: return "CUDA error";
    case SAGE_STATUS_COUNT_: break;
    }
    return "unknown status";
}

sage_status sage_fail(sage_msg msg, sage_status status, const char *fmt, ...) {
    if (msg.buf && msg.size > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg.buf, msg.size, fmt, ap);
        va_end(ap);
    }
    return status;
}

size_t sage_dtype_size(sage_dtype dtype) { return dtype == SAGE_DTYPE_FP32 ? 4 : 2; }

void sage_args_init(sage_args *args) {
    if (!args) return;
    memset(args, 0, sizeof *args); /* every enum's 0 is its default */
    args->struct_size = sizeof *args;
}

void sage_set_contiguous_bhnd(sage_args *a) {
    if (!a) return;
    int64_t d = a->head_dim;
    a->q_stride_n = a->o_stride_n = d;
    a->q_stride_h = a->o_stride_h = a->seqlen_q * d;
    a->q_stride_b = a->o_stride_b = a->heads_q * a->seqlen_q * d;
    a->k_stride_n = a->v_stride_n = d;
    a->k_stride_h = a->v_stride_h = a->seqlen_kv * d;
    a->k_stride_b = a->v_stride_b = a->heads_kv * a->seqlen_kv * d;
}

static void clear_msg(sage_msg msg) {
    if (msg.buf && msg.size > 0) msg.buf[0] = '\0';
}

sage_status sage_supported(const sage_args *args, sage_plan *plan, char *msg_buf, size_t msg_size) {
    sage_msg msg = {msg_buf, msg_size};
    clear_msg(msg);
    sage_problem p;
    const sage_kernel *k;
    sage_status st = sage_select_kernel(args, &p, &k, msg);
    if (st != SAGE_OK) return st;
    if (plan) {
        plan->kernel = k->name;
        plan->qk_groups = p.qk_groups;
        plan->pv = p.pv;
        plan->smooth_k = p.smooth_k;
        plan->smooth_q = p.smooth_q;
        plan->smooth_v = p.smooth_v;
        plan->workspace_size = k->workspace_size(k, &p);
    }
    return SAGE_OK;
}

sage_status sage_workspace_size(const sage_args *args, size_t *bytes, char *msg_buf, size_t msg_size) {
    sage_msg msg = {msg_buf, msg_size};
    clear_msg(msg);
    if (!bytes) return sage_fail(msg, SAGE_ERR_NULL_POINTER, "bytes is NULL");
    sage_problem p;
    const sage_kernel *k;
    sage_status st = sage_select_kernel(args, &p, &k, msg);
    if (st != SAGE_OK) return st;
    *bytes = k->workspace_size(k, &p);
    return SAGE_OK;
}

sage_status sage_forward(const sage_args *args, void *workspace, size_t workspace_size, void *stream,
                         char *msg_buf, size_t msg_size) {
    sage_msg msg = {msg_buf, msg_size};
    clear_msg(msg);
    sage_problem p;
    const sage_kernel *k;
    sage_status st = sage_select_kernel(args, &p, &k, msg);
    if (st != SAGE_OK) return st;
    size_t need = k->workspace_size(k, &p);
    if (workspace_size < need)
        return sage_fail(msg, SAGE_ERR_WORKSPACE_TOO_SMALL, "workspace_size = %zu, kernel %s needs %zu bytes",
                         workspace_size, k->name, need);
    if (need > 0 && (!workspace || (uintptr_t)workspace % SAGE_WORKSPACE_ALIGN != 0))
        return sage_fail(msg, SAGE_ERR_WORKSPACE_ALIGNMENT, "workspace %p must be non-NULL and %d-byte aligned",
                         workspace, SAGE_WORKSPACE_ALIGN);
    return k->run(k, &p, workspace, stream, msg);
}
