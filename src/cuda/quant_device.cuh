/* Private device helpers of the quantization kernels: 8-element loads with any stride, the
 * pinned INT8 recipe and the e4m3 conversion. Bit-exact with src/cpu (brief §1.2, §1.5):
 * every product/quotient is written with the _rn intrinsics, so nvcc can never contract them. */
#ifndef SAGE_CUDA_QUANT_DEVICE_CUH
#define SAGE_CUDA_QUANT_DEVICE_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

namespace sage {

__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

/* x[0..7] = row[d0 .. d0+7] as fp32, zero for d >= D. `vec`: the row start is 16-byte aligned
 * (base and every stride multiples of 8 elements), so a full vector is one 16-byte load. */
template <typename T>
__device__ __forceinline__ void load8(const T *row, int d0, int D, bool vec, float x[8]) {
    if (vec && d0 + 8 <= D) {
        uint4 u = __ldg(reinterpret_cast<const uint4 *>(row + d0));
        const T *e = reinterpret_cast<const T *>(&u);
#pragma unroll
        for (int i = 0; i < 8; i++) x[i] = to_float(e[i]);
    } else {
#pragma unroll
        for (int i = 0; i < 8; i++) x[i] = d0 + i < D ? to_float(row[d0 + i]) : 0.0f;
    }
}

/* Round to nearest even for |x| < 2^22 on the FMA pipe (F2I runs at 16/clk/SM): adding
 * 1.5 * 2^23 puts the integer in the low mantissa bits (HOPPER-NOTES G2). */
__device__ __forceinline__ int rne_int(float x) {
    return __float_as_int(__fadd_rn(x, 12582912.0f)) - 0x4B400000;
}

/* The pinned INT8 recipe: x8 = clamp(rne(x * inv), -127, 127). */
__device__ __forceinline__ int quant_s8(float x, float inv) {
    int i = rne_int(__fmul_rn(x, inv));
    return max(-127, min(127, i));
}

/* e4m3 of x, round to nearest even, saturating to +-448 (cvt puts its first operand in the high
 * byte: HOPPER-NOTES G1). Only sm_89+ has the instruction; callers run it only there. */
__device__ __forceinline__ uint32_t e4m3x2(float hi, float lo) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
    uint16_t r;
    asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(r) : "f"(hi), "f"(lo));
    return r;
#else
    (void)hi; (void)lo;
    return 0;
#endif
}

} // namespace sage

#endif
