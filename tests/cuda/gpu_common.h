/* Helpers of the GPU tests (tests/cuda/*.cu): run one CUDA kernel, by name, on a tc_data case
 * (inputs copied to the device with the same strides), read back o, lse and the quantized
 * workspace, and build the CPU-spec comparison fed with the GPU's means. */
#ifndef SAGE_TEST_GPU_COMMON_H
#define SAGE_TEST_GPU_COMMON_H

extern "C" {
#include "test_cpu_common.h"
}
#include "cuda/cuda_common.h"
#include "cuda/cuda_kernels.h"
#include "cuda/quant.h"

#include <vector>

/* 1 when a CUDA device is present; otherwise marks the case skipped ("no CUDA device"). */
bool gpu_available();
/* Compute capability of device 0 (major * 10 + minor), 0 without a device. */
int gpu_cc();

/* What one GPU run leaves behind. */
struct gpu_result {
    sage_status status = SAGE_OK;
    char msg[256] = {0};
    sage_problem p{};                    /* the problem as run (host pointers for o / lse) */
    sage_cuda_quant_layout L{};          /* quantized kernels only */
    std::vector<uint8_t> ws;             /* the workspace after the run (when asked for) */
    int one_pass = 0;                    /* gpu_run_quant: the one-pass K/V grid ran */
};

/* Run kernel `name` on d with opts (pv AUTO resolved like sage_cuda_select); o and lse land
 * in out (host). Outputs and workspace are poisoned (0xFF bytes: NaN) before the run. */
gpu_result gpu_run(const tc_data *d, tc_out *out, tc_opts opts, const char *name, bool keep_ws);

/* Only the quantization (sage_cuda_quantize) with geometry g and padded head dim d_pad; the
 * workspace is kept. o / lse are not written. split: the split path even where the layout would
 * take the one-pass path (r.L.kv_cluster reports which one ran). */
gpu_result gpu_run_quant(const tc_data *d, tc_out *out, tc_opts opts, sage_geometry g, int64_t d_pad, bool split);

/* The spec's quantized tensors of a GPU run (fed the GPU's means), for bit comparisons. */
struct gpu_spec_quant {
    std::vector<int8_t> q8, k8;
    std::vector<uint8_t> v8;
    std::vector<float> qs, ks, qm, km, vs, vm;
    std::vector<int32_t> qg, kg;
    sage_spec_maps m{};
    sage_spec_quant qt{};
};
void gpu_spec_quantize(const tc_data *d, const gpu_result &r, sage_geometry g, gpu_spec_quant *sq);

/* The CPU specification of the same run: maps from kernel k's geometry, fed with the GPU's
 * k_mean (and q_mean / v_mean when smoothing is on). q_group_override: when >= 0, the
 * q_group of row `plant_row` is replaced by it (the planted-error test). */
void gpu_spec_of(const tc_data *d, const gpu_result &r, const sage_kernel *k, tc_out *ref,
                 int64_t plant_row = -1, int32_t plant_group = -1);

/* Tolerances of brief §4 (GPU vs CPU spec). Returns true when within; prints the numbers. */
bool gpu_within_spec_tol(const char *label, const tc_err &e);

/* Names of the quantized CUDA kernels to test on this device (runnable there). */
std::vector<const char *> gpu_kernels_for_device();

#endif
