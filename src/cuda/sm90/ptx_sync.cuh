/* mbarrier, named-barrier, setmaxnreg and proxy-fence wrappers for the sm90a kernel.
 * HOPPER-NOTES E1-E6 (mbarrier ring, named barriers), F1-F4 (setmaxnreg), C3 (proxy fences).
 * Addresses are 32-bit shared-window addresses (__cvta_generic_to_shared). */
#ifndef SAGE_SM90_PTX_SYNC_CUH
#define SAGE_SM90_PTX_SYNC_CUH

#include <stdint.h>

namespace sage_sm90 {

__device__ __forceinline__ uint32_t smem_addr(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* E2: one thread initialises; fence + __syncthreads before any use. */
__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_init_fence() {
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
/* E3: plain arrive (count 1, release.cta). */
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
/* E3: expect `bytes` of transactions, then arrive (count 1). */
__device__ __forceinline__ void mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
/* E4: wait until the phase with this parity has completed (loop in C: try_wait may time out). */
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
    uint32_t ok;
    do {
        asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(ok)
                     : "r"(bar), "r"(parity)
                     : "memory");
    } while (!ok);
}

/* E6: named barriers (id 0 is __syncthreads). n = participating threads, multiple of 32. */
template <int ID, int N> __device__ __forceinline__ void named_sync() {
    asm volatile("bar.sync %0, %1;\n" ::"n"(ID), "n"(N) : "memory");
}
template <int ID, int N> __device__ __forceinline__ void named_arrive() {
    asm volatile("bar.arrive %0, %1;\n" ::"n"(ID), "n"(N) : "memory");
}

/* C3: this thread's earlier st.shared become visible to the async proxy (wgmma, TMA) once a
 * barrier orders them before the reader. */
__device__ __forceinline__ void fence_proxy_async() {
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

/* F1: register reallocation for warp-specialised roles (needs __launch_bounds__(T, 1)). */
template <int R> __device__ __forceinline__ void setmaxnreg_dec() {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(R));
}
template <int R> __device__ __forceinline__ void setmaxnreg_inc() {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(R));
}

}  // namespace sage_sm90
#endif
