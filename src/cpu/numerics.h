/* Private: the number formats of sageattn, bit for bit (docs/algorithm.md, "Number formats").
 *
 *  - fp16 (IEEE binary16) and bf16 <-> fp32: round to nearest even, NaN stays NaN (quiet),
 *    Inf stays Inf, overflow rounds to Inf, subnormals both ways;
 *  - FP8 e4m3 (OCP "E4M3FN": bias 7, no Inf, S.1111.111 is NaN, max 448): encode with round to
 *    nearest even and "satfinite" (|x| > 448 -> +-448, +-Inf -> +-448, NaN -> 0x7F), exactly what
 *    the GPU's cvt.rn.satfinite.e4m3x2.f32 does; decode of all 256 codes;
 *  - INT8: clamp(rne(x), -127, 127), as cvt.rni.sat.s8.f32 (NaN -> 0).
 *
 * Everything is integer bit manipulation or exact fp32 operations (scaling by powers of two, the
 * magic-number rounding below), so the results do not depend on the compiler as long as it does
 * not reassociate floating point (no -ffast-math; the build passes -ffp-contract=off). */
#ifndef SAGE_CPU_NUMERICS_H
#define SAGE_CPU_NUMERICS_H

#include "sageattn.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

static inline uint32_t sage_f32_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}
static inline float sage_bits_f32(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* Round to the nearest integer, ties to even, for |x| <= 2^22 (exact: adding 1.5 * 2^23 puts the
 * units digit at the last mantissa bit, and the fp32 addition rounds to nearest even; the
 * subtraction is exact). Outside that range the result is still x rounded to an integer-valued
 * float of the right sign, which every caller clamps. NaN stays NaN. */
static inline float sage_rne_f32(float x) {
    const float magic = 12582912.0f; /* 1.5 * 2^23 */
    if (!(fabsf(x) < 4194304.0f)) return x; /* |x| >= 2^22 is an integer already; NaN as is */
    return (x + magic) - magic;
}

/* INT8 of the quantization recipe: clamp(rne(x), -127, 127); NaN -> 0. x is the already
 * scaled value (x * inv). -128 is never produced (symmetric range). */
static inline int8_t sage_int8_rne(float x) {
    float r;
    if (x != x) return 0;
    r = sage_rne_f32(x);
    if (r > 127.0f) r = 127.0f;
    if (r < -127.0f) r = -127.0f;
    return (int8_t)(int)r;
}

/* ---- fp16 -------------------------------------------------------------------------------- */

static inline uint16_t sage_f32_to_fp16(float f) {
    uint32_t x = sage_f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t a = x & 0x7FFFFFFFu;
    if (a >= 0x7F800000u) { /* Inf, NaN (keep the top payload bits, force quiet) */
        if (a == 0x7F800000u) return (uint16_t)(sign | 0x7C00u);
        return (uint16_t)(sign | 0x7E00u | ((a >> 13) & 0x3FFu));
    }
    if (a >= 0x38800000u) { /* normal in fp16 (>= 2^-14), or overflow to Inf */
        uint32_t r = a - ((uint32_t)(127 - 15) << 23);
        r = (r + 0xFFFu + ((r >> 13) & 1u)) >> 13; /* RNE on the 13 dropped bits */
        if (r >= 0x7C00u) r = 0x7C00u;             /* rounds past 65504: Inf */
        return (uint16_t)(sign | r);
    }
    /* subnormal or zero: units of 2^-24. a < 2^-14, so a * 2^24 < 2^10 is exact and the
     * rounding below is RNE; 1024 (= 2^-14 exactly) is the encoding of the smallest normal. */
    {
        float s = sage_bits_f32(a) * 16777216.0f;
        return (uint16_t)(sign | (uint16_t)(int)sage_rne_f32(s));
    }
}

static inline float sage_fp16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
    if (e == 0x1Fu) return sage_bits_f32(sign | 0x7F800000u | (m << 13));
    if (e == 0) { /* zero or subnormal: m * 2^-24, exact in fp32 */
        float v = (float)m * 5.9604644775390625e-08f;
        return sign ? -v : v;
    }
    return sage_bits_f32(sign | ((e + 127u - 15u) << 23) | (m << 13));
}

/* ---- bf16 -------------------------------------------------------------------------------- */

static inline uint16_t sage_f32_to_bf16(float f) {
    uint32_t x = sage_f32_bits(f);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((x >> 16) | 0x0040u); /* quiet NaN */
    x += 0x7FFFu + ((x >> 16) & 1u); /* RNE; carries into the exponent (up to Inf) as it should */
    return (uint16_t)(x >> 16);
}

static inline float sage_bf16_to_f32(uint16_t h) { return sage_bits_f32((uint32_t)h << 16); }

/* Round an fp32 value to fp16 / bf16 and back (the value the 16-bit PV path multiplies). */
static inline float sage_round_fp16(float x) { return sage_fp16_to_f32(sage_f32_to_fp16(x)); }
static inline float sage_round_bf16(float x) { return sage_bf16_to_f32(sage_f32_to_bf16(x)); }

/* ---- FP8 e4m3 ---------------------------------------------------------------------------- */

#define SAGE_E4M3_MAX 448.0f
#define SAGE_E4M3_NAN 0x7Fu

/* fp32 -> e4m3, round to nearest even, satfinite. */
static inline uint8_t sage_f32_to_e4m3(float f) {
    uint32_t x = sage_f32_bits(f);
    uint8_t sign = (uint8_t)((x >> 24) & 0x80u);
    uint32_t a = x & 0x7FFFFFFFu;
    if (a > 0x7F800000u) return SAGE_E4M3_NAN;             /* NaN */
    if (a > 0x43E00000u) return (uint8_t)(sign | 0x7Eu);   /* |x| > 448 (Inf too): +-448 */
    if (a >= 0x3C800000u) {                                /* |x| >= 2^-6: normal e4m3 */
        uint32_t r = a - ((uint32_t)(127 - 7) << 23);      /* rebias the exponent */
        r = (r + 0x7FFFFu + ((r >> 20) & 1u)) >> 20;       /* RNE on the 20 dropped bits */
        return (uint8_t)(sign | r);                        /* <= 0x7E since |x| <= 448 */
    }
    /* subnormal e4m3 (units of 2^-9) or zero; 8 units (2^-6) is code 0x08, the smallest normal */
    {
        float s = sage_bits_f32(a) * 512.0f; /* exact */
        return (uint8_t)(sign | (uint8_t)(int)sage_rne_f32(s));
    }
}

/* e4m3 -> fp32 (exact). 0x7F and 0xFF are NaN. */
static inline float sage_e4m3_to_f32(uint8_t c) {
    uint32_t sign = (uint32_t)(c & 0x80u) << 24;
    uint32_t e = (c >> 3) & 0xFu, m = c & 7u;
    if ((c & 0x7Fu) == 0x7Fu) return sage_bits_f32(0x7FC00000u | sign);
    if (e == 0) { /* m * 2^-9 */
        float v = (float)m * 0.001953125f;
        return sign ? -v : v;
    }
    return sage_bits_f32(sign | ((e + 127u - 7u) << 23) | (m << 20));
}

/* The value an fp32 takes after the round trip through e4m3. */
static inline float sage_round_e4m3(float x) { return sage_e4m3_to_f32(sage_f32_to_e4m3(x)); }

/* ---- elements of a sage_dtype ------------------------------------------------------------ */

/* Element i of an array of dtype, as fp32 (exact for every dtype). */
static inline float sage_load_f32(const void *base, int64_t i, sage_dtype dt) {
    switch (dt) {
    case SAGE_DTYPE_FP16: return sage_fp16_to_f32(((const uint16_t *)base)[i]);
    case SAGE_DTYPE_BF16: return sage_bf16_to_f32(((const uint16_t *)base)[i]);
    default: return ((const float *)base)[i];
    }
}

/* Store x as element i of an array of dtype (RNE for the 16-bit types). */
static inline void sage_store_f32(void *base, int64_t i, sage_dtype dt, float x) {
    switch (dt) {
    case SAGE_DTYPE_FP16: ((uint16_t *)base)[i] = sage_f32_to_fp16(x); break;
    case SAGE_DTYPE_BF16: ((uint16_t *)base)[i] = sage_f32_to_bf16(x); break;
    default: ((float *)base)[i] = x; break;
    }
}

/* n consecutive elements starting at element off, converted to fp32 into dst. */
void sage_load_row(const void *base, int64_t off, int64_t n, sage_dtype dt, float *dst);
/* n fp32 values stored as consecutive elements starting at element off. */
void sage_store_row(void *base, int64_t off, int64_t n, sage_dtype dt, const float *src);

/* Round x to the 16-bit type of the 16-bit PV path for inputs of dtype: fp16 for fp16 inputs,
 * bf16 for bf16 and for fp32 inputs (fp16's range may not hold fp32 V). */
static inline float sage_round_pv16(float x, sage_dtype dt) {
    return dt == SAGE_DTYPE_FP16 ? sage_round_fp16(x) : sage_round_bf16(x);
}

#ifdef __cplusplus
}
#endif
#endif
