/* CUDA backend of a build without CUDA: every CUDA request says so. */
#include "internal.h"

sage_status sage_cuda_select(sage_problem *p, const sage_kernel **kernel, sage_msg msg) {
    (void)p;
    *kernel = NULL;
    return sage_fail(msg, SAGE_ERR_NO_CUDA, "device CUDA requested, but this library was built without CUDA");
}
