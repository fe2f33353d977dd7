/* The one selection function: sage_supported, sage_workspace_size and sage_forward all call
 * sage_select_kernel, so the three can never disagree about what runs. */
#include "internal.h"
#include "validate.h"

#include <math.h>

static bool resolve_toggle(sage_toggle t, bool auto_value) { return t == SAGE_AUTO ? auto_value : t == SAGE_ON; }

sage_status sage_select_kernel(const sage_args *args, sage_problem *p, const sage_kernel **kernel,
                               sage_msg msg) {
    sage_status st = sage_validate_args(args, msg);
    if (st != SAGE_OK) return st;

    p->a = *args;
    if (p->a.sm_scale == 0.0f) p->a.sm_scale = (float)(1.0 / sqrt((double)args->head_dim));
    p->algorithm = args->options.algorithm;
    /* Defaults of the brief §1: per-thread groups (finest, same speed), smooth K on (exact and
     * cheap), smooth Q and V off (they help only with biased inputs). */
    p->qk_groups = args->options.qk_groups == SAGE_QK_AUTO ? SAGE_QK_PER_THREAD : args->options.qk_groups;
    p->pv = args->options.pv; /* the backend resolves AUTO: it depends on the hardware */
    p->smooth_k = resolve_toggle(args->options.smooth_k, true);
    p->smooth_q = resolve_toggle(args->options.smooth_q, false);
    p->smooth_v = resolve_toggle(args->options.smooth_v, false);
    p->cuda_cc = 0;
    p->group_size = args->heads_q / args->heads_kv;

    *kernel = NULL;
    st = args->device == SAGE_DEVICE_CPU ? sage_cpu_select(p, kernel, msg) : sage_cuda_select(p, kernel, msg);
    if (st != SAGE_OK) return st;
    /* V is not scaled in 16-bit PV, so there is no V mean to take out. */
    if (p->pv == SAGE_PV_16BIT) p->smooth_v = false;
    return SAGE_OK;
}
