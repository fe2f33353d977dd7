/* Row conversions of numerics.h (the per-element functions are inline there). */
#include "numerics.h"

void sage_load_row(const void *base, int64_t off, int64_t n, sage_dtype dt, float *dst) {
    switch (dt) {
    case SAGE_DTYPE_FP16: {
        const uint16_t *s = (const uint16_t *)base + off;
        for (int64_t i = 0; i < n; i++) dst[i] = sage_fp16_to_f32(s[i]);
        break;
    }
    case SAGE_DTYPE_BF16: {
        const uint16_t *s = (const uint16_t *)base + off;
        for (int64_t i = 0; i < n; i++) dst[i] = sage_bf16_to_f32(s[i]);
        break;
    }
    default: {
        const float *s = (const float *)base + off;
        for (int64_t i = 0; i < n; i++) dst[i] = s[i];
        break;
    }
    }
}

void sage_store_row(void *base, int64_t off, int64_t n, sage_dtype dt, const float *src) {
    switch (dt) {
    case SAGE_DTYPE_FP16: {
        uint16_t *d = (uint16_t *)base + off;
        for (int64_t i = 0; i < n; i++) d[i] = sage_f32_to_fp16(src[i]);
        break;
    }
    case SAGE_DTYPE_BF16: {
        uint16_t *d = (uint16_t *)base + off;
        for (int64_t i = 0; i < n; i++) d[i] = sage_f32_to_bf16(src[i]);
        break;
    }
    default: {
        float *d = (float *)base + off;
        for (int64_t i = 0; i < n; i++) d[i] = src[i];
        break;
    }
    }
}
