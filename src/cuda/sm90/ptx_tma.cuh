/* TMA (cp.async.bulk.tensor) device wrappers for the sm90a kernel. HOPPER-NOTES D3-D5.
 * The tensor map is a __grid_constant__ kernel parameter; pass its generic address. */
#ifndef SAGE_SM90_PTX_TMA_CUH
#define SAGE_SM90_PTX_TMA_CUH

#include <cuda.h>
#include <stdint.h>

namespace sage_sm90 {

__device__ __forceinline__ void tma_prefetch_desc(const CUtensorMap *tm) {
    asm volatile("prefetch.tensormap [%0];\n" ::"l"((uint64_t)tm) : "memory");
}

/* 2-D tile load: box at element coordinates (x = innermost, y) into smem dst; completes
 * `box bytes` of transactions on mbarrier bar (the caller did arrive.expect_tx of the full box). */
__device__ __forceinline__ void tma_load_2d(uint32_t dst, const CUtensorMap *tm, int32_t x, int32_t y, uint32_t bar) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(dst),
        "l"((uint64_t)tm), "r"(x), "r"(y), "r"(bar)
        : "memory");
}

}  // namespace sage_sm90
#endif
