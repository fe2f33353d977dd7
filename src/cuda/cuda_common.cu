/* Error helpers, the device property cache and the device guard (cuda_common.h). */
#include "cuda_common.h"

#include <stdlib.h>

namespace {

/* Enough for any node; devices beyond it are reported as unsupported ordinals. */
constexpr int kMaxDevices = 64;

struct PropsTable {
    int count = 0;
    cudaError_t err = cudaSuccess;
    sage_cuda_device_props dev[kMaxDevices];
};

/* Filled once: C++ guarantees a function-local static is initialised by exactly one thread
 * while the others wait (the "once" of the cache). Attribute queries need no context. */
const PropsTable &props_table() {
    static const PropsTable table = [] {
        PropsTable t;
        int n = 0;
        t.err = cudaGetDeviceCount(&n);
        if (t.err != cudaSuccess) return t;
        t.count = n < kMaxDevices ? n : kMaxDevices;
        for (int i = 0; i < t.count; i++) {
            int major = 0, minor = 0;
            sage_cuda_device_props &p = t.dev[i];
            cudaError_t e = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, i);
            if (e == cudaSuccess) e = cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, i);
            if (e == cudaSuccess) e = cudaDeviceGetAttribute(&p.sm_count, cudaDevAttrMultiProcessorCount, i);
            if (e == cudaSuccess)
                e = cudaDeviceGetAttribute(&p.max_smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, i);
            if (e == cudaSuccess)
                e = cudaDeviceGetAttribute(&p.max_smem_per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, i);
            if (e == cudaSuccess) e = cudaDeviceGetAttribute(&p.l2_bytes, cudaDevAttrL2CacheSize, i);
            if (e != cudaSuccess) { t.err = e; t.count = 0; return t; }
            p.cc = major * 10 + minor;
        }
        return t;
    }();
    return table;
}

} // namespace

extern "C" sage_status sage_cuda_device_props_get(int ordinal, const sage_cuda_device_props **props,
                                                  sage_msg msg) {
    const PropsTable &t = props_table();
    if (t.err == cudaErrorNoDevice || t.err == cudaErrorInsufficientDriver)
        return sage_fail(msg, SAGE_ERR_NO_DEVICE, "no CUDA device: %s", cudaGetErrorString(t.err));
    if (t.err != cudaSuccess)
        return sage_fail(msg, SAGE_ERR_CUDA, "querying CUDA devices: %s: %s", cudaGetErrorName(t.err),
                         cudaGetErrorString(t.err));
    if (t.count == 0) return sage_fail(msg, SAGE_ERR_NO_DEVICE, "no CUDA device");
    if (ordinal < 0 || ordinal >= t.count)
        return sage_fail(msg, SAGE_ERR_NO_DEVICE, "CUDA device ordinal %d out of range (%d device%s)",
                         ordinal, t.count, t.count == 1 ? "" : "s");
    *props = &t.dev[ordinal];
    return SAGE_OK;
}

extern "C" sage_status sage_cuda_check(cudaError_t err, const char *what, sage_msg msg) {
    if (err == cudaSuccess) return SAGE_OK;
    return sage_fail(msg, SAGE_ERR_CUDA, "%s: %s: %s", what, cudaGetErrorName(err), cudaGetErrorString(err));
}

extern "C" sage_status sage_cuda_check_launch(const char *kernel_name, sage_msg msg) {
    return sage_cuda_check(cudaPeekAtLastError(), kernel_name, msg);
}

extern "C" sage_status sage_cuda_device_enter(int ordinal, sage_cuda_device_scope *s, sage_msg msg) {
    s->prev = 0;
    s->switched = false;
    SAGE_CUDA_TRY(cudaGetDevice(&s->prev), "cudaGetDevice", msg);
    if (s->prev != ordinal) {
        SAGE_CUDA_TRY(cudaSetDevice(ordinal), "cudaSetDevice", msg);
        s->switched = true;
    }
    return SAGE_OK;
}

extern "C" void sage_cuda_device_leave(const sage_cuda_device_scope *s) {
    if (s->switched) (void)cudaSetDevice(s->prev);
}
