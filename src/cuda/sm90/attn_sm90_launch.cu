/* Host side of the sm90a attention kernels: the TMA tensor maps of the quantized K and V, and the
 * launch of the kernel of the requested CTA height (attn_sm90.h). */
#include "attn_sm90.h"

#include <cuda.h>

namespace {

typedef CUresult (*encode_tiled_fn)(CUtensorMap *, CUtensorMapDataType, cuuint32_t, void *, const cuuint64_t *,
                                    const cuuint64_t *, const cuuint32_t *, const cuuint32_t *, CUtensorMapInterleave,
                                    CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

/* cuTensorMapEncodeTiled through the runtime's driver entry point (D2): no link to libcuda.
 * A function-local static is initialised once, thread-safely (C++11). */
static encode_tiled_fn get_encode(void) {
    static encode_tiled_fn fn = []() -> encode_tiled_fn {
        void *f = nullptr;
        cudaDriverEntryPointQueryResult qr;
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &qr) !=
                cudaSuccess ||
            qr != cudaDriverEntryPointSuccess)
            return nullptr;
        return (encode_tiled_fn)f;
    }();
    return fn;
}

/* 2-D uint8 map: rows of `width` bytes (pitch = width), box {box_w, box_h}. */
static bool make_map(encode_tiled_fn enc, CUtensorMap *tm, const void *base, uint64_t width, uint64_t rows,
                     uint32_t box_w, uint32_t box_h, CUtensorMapSwizzle swz) {
    const cuuint64_t dims[2] = {width, rows};
    const cuuint64_t strides[1] = {width};
    const cuuint32_t box[2] = {box_w, box_h};
    const cuuint32_t estr[2] = {1, 1};
    return enc(tm, CU_TENSOR_MAP_DATA_TYPE_UINT8, 2, const_cast<void *>(base), dims, strides, box, estr,
               CU_TENSOR_MAP_INTERLEAVE_NONE, swz, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
               CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

}  // namespace

int sage_sm90_padded_head_dim(int64_t d) {
    if (d < 1 || d > 256) return 0;
    return d <= 64 ? 64 : d <= 128 ? 128 : 256;
}

sage_status sage_sm90_launch(const sage_sm90_params *p, int d_pad, int cta_q, int bf16, const void *k8,
                             const void *v8, cudaStream_t stream, sage_msg msg) {
    if (d_pad != 64 && d_pad != 128 && d_pad != 256)
        return sage_fail(msg, SAGE_ERR_UNSUPPORTED, "sm90: padded head_dim %d not 64, 128 or 256", d_pad);
    if (cta_q != 128 && cta_q != 64)
        return sage_fail(msg, SAGE_ERR_UNSUPPORTED, "sm90: no %d-row CTA at padded head_dim %d", cta_q, d_pad);
    if (p->d < 1 || p->d > d_pad)
        return sage_fail(msg, SAGE_ERR_UNSUPPORTED, "sm90: head_dim %d outside 1..%d", p->d, d_pad);
    encode_tiled_fn enc = get_encode();
    if (!enc) return sage_fail(msg, SAGE_ERR_UNSUPPORTED, "sm90: cuTensorMapEncodeTiled unavailable");
    if (p->nq_pad % cta_q || p->nk_pad % SAGE_SM90_CTA_K)
        return sage_fail(msg, SAGE_ERR_UNSUPPORTED, "sm90: workspace not padded to the tiles");
    /* TMA coordinates are int32: rows of the 2-D views stay below 2^31 (and the Q rows, as the
     * selection bounds them). */
    const int64_t q_rows = (int64_t)p->batch * p->heads_q * p->nq_pad;
    const int64_t k_rows = (int64_t)p->batch * p->heads_kv * p->nk_pad;
    const int64_t v_rows = (int64_t)p->batch * p->heads_kv * d_pad;
    if (q_rows >= ((int64_t)1 << 31) || k_rows >= ((int64_t)1 << 31) || v_rows >= ((int64_t)1 << 31) ||
        p->nk_pad >= ((int64_t)1 << 31) ||
        p->heads_q > 65535 || p->batch > 65535)
        return sage_fail(msg, SAGE_ERR_UNSUPPORTED, "sm90: problem too large for this kernel's grid");
    /* K: boxes of (sub-tile) rows of 64 B (SW64, d_pad 64) or 128 B (SW128; d_pad 256 loads two
     * boxes per tile); V^T rows are 128 bytes (one KV tile) (SW128), d_pad rows per box. */
    const uint32_t qk_box = d_pad == 64 ? 64 : 128;
    const CUtensorMapSwizzle swz_qk = d_pad == 64 ? CU_TENSOR_MAP_SWIZZLE_64B : CU_TENSOR_MAP_SWIZZLE_128B;
    alignas(64) CUtensorMap tk, tv;
    if (!make_map(enc, &tk, k8, (uint64_t)d_pad, (uint64_t)k_rows, qk_box, (uint32_t)SAGE_SM90_CTA_K, swz_qk) ||
        !make_map(enc, &tv, v8, (uint64_t)p->nk_pad, (uint64_t)v_rows, (uint32_t)SAGE_SM90_CTA_K, (uint32_t)d_pad,
                  CU_TENSOR_MAP_SWIZZLE_128B))
        return sage_fail(msg, SAGE_ERR_CUDA, "sm90: cuTensorMapEncodeTiled failed");
    if (cta_q == 64) return sage_sm90_launch_q64(p, d_pad, bf16, &tk, &tv, stream, msg);
    return sage_sm90_launch_wgmma(p, d_pad, bf16, &tk, &tv, stream, msg);
}
