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

__device__ __forceinline__ float bits_to_float(uint16_t b, const __half *) { return __half2float(__ushort_as_half(b)); }
__device__ __forceinline__ float bits_to_float(uint16_t b, const __nv_bfloat16 *) {
    return __bfloat162float(__ushort_as_bfloat16(b));
}

/* The raw bits of row[d0 .. d0+7] (8 two-byte elements), zero bits (+0) for d >= D. `vec`: the row
 * start is 16-byte aligned (base and every stride multiples of 8 elements), so a full vector is one
 * 16-byte load; else element loads. */
template <typename T>
__device__ __forceinline__ uint4 load8_raw(const T *row, int d0, int D, bool vec) {
    if (vec && d0 + 8 <= D) return __ldg(reinterpret_cast<const uint4 *>(row + d0));
    uint32_t e[8];
#pragma unroll
    for (int i = 0; i < 8; i++) e[i] = d0 + i < D ? __ldg(reinterpret_cast<const unsigned short *>(row + d0 + i)) : 0u;
    return make_uint4(e[0] | e[1] << 16, e[2] | e[3] << 16, e[4] | e[5] << 16, e[6] | e[7] << 16);
}

/* Element i (0..7) of a raw 8-element vector as fp32 (exact). */
template <typename T>
__device__ __forceinline__ float raw_elem(const uint4 &u, int i) {
    const uint32_t w = i < 2 ? u.x : i < 4 ? u.y : i < 6 ? u.z : u.w;
    return bits_to_float((uint16_t)(i % 2 ? w >> 16 : w & 0xffffu), (const T *)nullptr);
}

/* Round to nearest even for |x| < 2^22 on the FMA pipe (F2I runs at 16/clk/SM): adding
 * 1.5 * 2^23 puts the integer in the low mantissa bits (HOPPER-NOTES G2). rne_bits keeps those
 * bits: rne(x) = bits - 0x4B400000, and for |rne(x)| <= 127 the low byte is its int8. */
__device__ __forceinline__ uint32_t rne_bits(float x) { return __float_as_uint(__fadd_rn(x, 12582912.0f)); }
__device__ __forceinline__ int rne_int(float x) { return (int)rne_bits(x) - 0x4B400000; }

/* The pinned INT8 recipe's group scales from the group's max |x|: the stored scale amax / 127 and
 * the multiplier 127 / amax; amax == 0 -> scale 1 and multiplier 0 (every x8 = 0). */
__device__ __forceinline__ float int8_inv(float amax) { return amax > 0.f ? __fdiv_rn(127.0f, amax) : 0.f; }
__device__ __forceinline__ float int8_scale(float amax) { return amax > 0.f ? __fdiv_rn(amax, 127.0f) : 1.f; }

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

/* 16-byte global -> shared copy that bypasses the registers (cp.async, sm_80+), and the wait for all of
 * this thread's copies. */
__device__ __forceinline__ void cp_async16(void *smem, const void *gmem) {
    const unsigned sa = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(sa), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;" ::: "memory"); }

/* Programmatic dependent launch (sm_90+; no-ops below): a kernel launched with programmatic stream
 * serialization may start before its predecessor ends; griddep_wait() returns once the predecessor
 * has completed and its writes are visible. griddep_launch_dependents() lets the next kernel start. */
__device__ __forceinline__ void griddep_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void griddep_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

/* Thread block clusters (sm_90+; never called below): a barrier of every thread of the cluster, split
 * in its arrive (release: this thread's earlier memory accesses are ordered before it; relaxed: none
 * are) and its wait (acquire); and a 32-bit load from the shared memory of the cluster's CTA `rank`,
 * at the address that `local` has in this CTA (mapa). */
__device__ __forceinline__ void cluster_arrive() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.arrive.release.aligned;" ::: "memory");
#endif
}
__device__ __forceinline__ void cluster_arrive_relaxed() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory");
#endif
}
__device__ __forceinline__ void cluster_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.wait.acquire.aligned;" ::: "memory");
#endif
}
__device__ __forceinline__ float ld_cluster_f32(const float *local, uint32_t rank) {
    float v = 0.f;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    uint32_t remote;
    asm("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"((uint32_t)__cvta_generic_to_shared(local)), "r"(rank));
    /* volatile: stays after the cluster barrier that orders the data; no memory clobber, so a run
     * of these loads issues back to back */
    asm volatile("ld.shared::cluster.f32 %0, [%1];" : "=f"(v) : "r"(remote));
#else
    (void)local; (void)rank;
#endif
    return v;
}

/* *addr += v at gpu scope with release semantics: the writes that happen before it (this thread's,
 * and by a CTA barrier before it its block's) are visible to whoever acquires the new value. */
__device__ __forceinline__ void red_release_gpu_add(int *addr, int v) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700
    asm volatile("red.release.gpu.global.add.s32 [%0], %1;" ::"l"(addr), "r"(v) : "memory");
#else
    (void)addr; (void)v;
#endif
}

} // namespace sage

#endif
