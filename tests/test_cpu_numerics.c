/* The number formats of src/cpu/numerics.h, each against an independent derivation:
 * e4m3 decode of all 256 codes from the format's definition, e4m3 encode against a brute-force
 * nearest-code search (ties to the even code, satfinite), INT8 rounding against rint, fp16 and
 * bf16 over every code plus explicit ties. */
#include "test_cpu_common.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* e4m3 value of a code from the definition: bias 7, 3 mantissa bits, e == 0 subnormal
 * (m * 2^-9), S.1111.111 NaN, no infinities. */
static double e4m3_def(int c) {
    int s = c >> 7, e = (c >> 3) & 15, m = c & 7;
    double v;
    if (e == 15 && m == 7) return NAN;
    v = e == 0 ? ldexp((double)m, -9) : ldexp((double)(8 + m), e - 10);
    return s ? -v : v;
}

/* Brute force: the finite code nearest to x (|x| > 448 -> +-448), ties to the even code. */
static int e4m3_nearest(double x) {
    int sign = signbit(x) ? 0x80 : 0;
    double a = fabs(x), best_d = INFINITY;
    int best = 0;
    if (isnan(x)) return 0x7F;
    if (a > 448.0) return sign | 0x7E;
    for (int c = 0; c <= 0x7E; c++) {
        double d = fabs(e4m3_def(c) - a);
        if (d < best_d || (d == best_d && (c & 1) == 0)) {
            best_d = d;
            best = c;
        }
    }
    return sign | best;
}

TEST(cpu_e4m3_decode_all_256_codes) {
    for (int c = 0; c < 256; c++) {
        float got = sage_e4m3_to_f32((uint8_t)c);
        double want = e4m3_def(c);
        if (isnan(want)) {
            CHECK_MSG(isnan(got), "code 0x%02X should be NaN, got %g", c, (double)got);
            continue;
        }
        CHECK_MSG((double)got == want && !signbit(got) == !signbit(want), "code 0x%02X: got %.9g want %.9g", c,
                  (double)got, want);
        /* every finite code survives encode(decode(c)) */
        CHECK_MSG(sage_f32_to_e4m3(got) == c, "code 0x%02X does not round-trip (0x%02X)", c,
                  sage_f32_to_e4m3(got));
    }
    /* anchors */
    CHECK(sage_e4m3_to_f32(0x7E) == 448.0f);
    CHECK(sage_e4m3_to_f32(0xFE) == -448.0f);
    CHECK(sage_e4m3_to_f32(0x38) == 1.0f);
    CHECK(sage_e4m3_to_f32(0x08) == 0.015625f); /* 2^-6, smallest normal */
    CHECK(sage_e4m3_to_f32(0x01) == 0.001953125f); /* 2^-9, smallest subnormal */
    CHECK(sage_e4m3_to_f32(0x07) == 7.0f * 0.001953125f);
    CHECK(isnan(sage_e4m3_to_f32(0x7F)) && isnan(sage_e4m3_to_f32(0xFF)));
}

TEST(cpu_e4m3_encode_ties_even_and_saturates) {
    struct { float x; uint8_t want; } cases[] = {
        {1.0625f, 0x38},      /* tie 1.0 | 1.125 -> even mantissa 0 */
        {1.1875f, 0x3A},      /* tie 1.125 | 1.25 -> 1.25 */
        {-1.0625f, 0xB8},
        {400.0f, 0x7C},       /* tie 384 | 416 -> 384 */
        {432.0f, 0x7E},       /* tie 416 | 448 -> 448 */
        {0.0009765625f, 0x00},/* 2^-10: tie 0 | 2^-9 -> 0 */
        {0.0029296875f, 0x02},/* 3 * 2^-10: tie 2^-9 | 2^-8 -> code 2 */
        {0.0146484375f, 0x08},/* 7.5 * 2^-9: tie subnormal 7 | smallest normal -> 0x08 */
        {0.0136718750f, 0x07},/* 7 * 2^-9 exactly */
        {448.0f, 0x7E},
        {449.0f, 0x7E},       /* satfinite */
        {464.0f, 0x7E},       /* would round to 480 (NaN code) without satfinite */
        {1e6f, 0x7E},
        {-1e30f, 0xFE},
        {INFINITY, 0x7E},
        {-INFINITY, 0xFE},
        {0.0f, 0x00},
        {-0.0f, 0x80},
        {1e-30f, 0x00},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t got = sage_f32_to_e4m3(cases[i].x);
        CHECK_MSG(got == cases[i].want, "e4m3(%.9g) = 0x%02X, want 0x%02X", (double)cases[i].x, got, cases[i].want);
    }
    CHECK(sage_f32_to_e4m3(NAN) == 0x7F);
    /* just above / below a tie go to the nearer code */
    CHECK(sage_f32_to_e4m3(nextafterf(1.0625f, 2.0f)) == 0x39);
    CHECK(sage_f32_to_e4m3(nextafterf(1.1875f, 0.0f)) == 0x39);

    /* every midpoint between neighbouring codes, +-1 ulp around it, and random values, against
     * the brute-force nearest code */
    for (int c = 0; c < 0x7E; c++) {
        float lo = sage_e4m3_to_f32((uint8_t)c), hi = sage_e4m3_to_f32((uint8_t)(c + 1));
        float mid = (float)(((double)lo + (double)hi) / 2.0);
        float xs[3] = {mid, nextafterf(mid, 0.0f), nextafterf(mid, 1000.0f)};
        for (int k = 0; k < 3; k++)
            for (int s = 0; s < 2; s++) {
                float x = s ? -xs[k] : xs[k];
                CHECK_MSG(sage_f32_to_e4m3(x) == e4m3_nearest(x), "e4m3(%.9g) = 0x%02X, want 0x%02X", (double)x,
                          sage_f32_to_e4m3(x), e4m3_nearest(x));
            }
    }
    {
        tc_rng r;
        int bad = 0;
        tc_rng_seed(&r, 7);
        for (int i = 0; i < 100000 && bad < 5; i++) {
            float x = (float)(ldexp(tc_rng_uniform(&r) * 2.0 - 1.0, (int)(tc_rng_u64(&r) % 24) - 13));
            if (sage_f32_to_e4m3(x) != e4m3_nearest(x)) {
                bad++;
                CHECK_MSG(0, "e4m3(%.9g) = 0x%02X, want 0x%02X", (double)x, sage_f32_to_e4m3(x), e4m3_nearest(x));
            }
        }
    }
}

TEST(cpu_int8_rounds_half_to_even_and_clamps) {
    struct { float x; int want; } cases[] = {
        {0.5f, 0}, {1.5f, 2}, {2.5f, 2}, {3.5f, 4}, {-0.5f, 0}, {-1.5f, -2}, {-2.5f, -2}, {126.5f, 126},
        {125.5f, 126}, {0.49999997f, 0}, {0.50000006f, 1}, {127.0f, 127}, {127.49f, 127}, {127.5f, 127},
        {128.0f, 127}, {1e9f, 127}, {-127.5f, -127}, {-128.0f, -127}, {-1e30f, -127}, {INFINITY, 127},
        {-INFINITY, -127}, {0.0f, 0}, {-0.0f, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int got = sage_int8_rne(cases[i].x);
        CHECK_MSG(got == cases[i].want, "int8(%.9g) = %d, want %d", (double)cases[i].x, got, cases[i].want);
    }
    CHECK(sage_int8_rne(NAN) == 0);
    {
        tc_rng r;
        tc_rng_seed(&r, 11);
        for (int i = 0; i < 200000; i++) {
            /* values on the half-integer grid hit ties often */
            float x = (i & 1) ? (float)((double)((int64_t)(tc_rng_u64(&r) % 521) - 260) * 0.5)
                              : (float)((tc_rng_uniform(&r) * 2.0 - 1.0) * 140.0);
            float rr = rintf(x); /* default rounding mode: to nearest even */
            int want = rr > 127.0f ? 127 : rr < -127.0f ? -127 : (int)rr;
            if (sage_int8_rne(x) != want) {
                CHECK_MSG(0, "int8(%.9g) = %d, want %d", (double)x, sage_int8_rne(x), want);
                break;
            }
        }
    }
}

static double fp16_def(uint16_t h) {
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 31) return m ? NAN : (s ? -INFINITY : INFINITY);
    v = e == 0 ? ldexp((double)m, -24) : ldexp((double)(1024 + m), e - 25);
    return s ? -v : v;
}

TEST(cpu_fp16_all_codes_and_ties) {
    for (int c = 0; c < 65536; c++) {
        const uint16_t h = (uint16_t)c;
        const float f = sage_fp16_to_f32(h);
        const double want = fp16_def(h);
        if (isnan(want)) {
            CHECK_MSG(isnan(f), "fp16 0x%04X should be NaN", c);
            CHECK_MSG((sage_f32_to_fp16(f) & 0x7C00) == 0x7C00 && (sage_f32_to_fp16(f) & 0x3FF),
                      "fp16 NaN 0x%04X lost", c);
            continue;
        }
        if (!((double)f == want && !signbit(f) == !signbit(want)) || sage_f32_to_fp16(f) != h) {
            CHECK_MSG(0, "fp16 0x%04X: decode %.9g want %.9g, re-encode 0x%04X", c, (double)f, want,
                      sage_f32_to_fp16(f));
            break;
        }
    }
    struct { float x; uint16_t want; } cases[] = {
        {1.00048828125f, 0x3C00},  /* 1 + 2^-11: tie -> 1.0 */
        {1.00146484375f, 0x3C02},  /* 1 + 3 * 2^-11: tie -> 1 + 2^-9 */
        {65504.0f, 0x7BFF},
        {65519.99f, 0x7BFF},
        {65520.0f, 0x7C00},        /* tie 65504 | 65536 -> even -> Inf */
        {1e10f, 0x7C00},
        {-INFINITY, 0xFC00},
        {2.98023223876953125e-08f, 0x0000}, /* 2^-25: tie 0 | 2^-24 -> 0 */
        {8.94069671630859375e-08f, 0x0002}, /* 3 * 2^-25: tie -> 2 * 2^-24 */
        {6.1005353927612305e-05f, 0x0400},   /* (1023.5) * 2^-24: tie max subnormal | min normal -> 0x0400 */
        {-0.0f, 0x8000},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t got = sage_f32_to_fp16(cases[i].x);
        CHECK_MSG(got == cases[i].want, "fp16(%.9g) = 0x%04X, want 0x%04X", (double)cases[i].x, got, cases[i].want);
    }
    CHECK((sage_f32_to_fp16(NAN) & 0x7FFF) > 0x7C00);
    /* random values: the result is the nearer neighbour, ties even */
    {
        tc_rng r;
        tc_rng_seed(&r, 3);
        for (int i = 0; i < 100000; i++) {
            float x = (float)ldexp(tc_rng_uniform(&r) * 2.0 - 1.0, (int)(tc_rng_u64(&r) % 44) - 26);
            uint16_t h = sage_f32_to_fp16(x);
            double got = fp16_def(h), lo = fp16_def((uint16_t)(h - 1)), hi = fp16_def((uint16_t)(h + 1));
            double dg = fabs(got - x);
            int ok = fabs((double)x) >= 65520.0 ? (h & 0x7FFF) == 0x7C00 /* past the last midpoint: Inf */
                   : (h & 0x7FFF) == 0 ? fabs((double)x) <= ldexp(1.0, -25)
                                       : dg <= fabs(lo - x) && dg <= fabs(hi - x) &&
                                             (dg < fabs(lo - x) || (h & 1) == 0) && (dg < fabs(hi - x) || (h & 1) == 0);
            if (!ok) {
                CHECK_MSG(0, "fp16(%.9g) = 0x%04X is not the nearest-even", (double)x, h);
                break;
            }
        }
    }
}

TEST(cpu_bf16_all_codes_and_ties) {
    for (int c = 0; c < 65536; c++) {
        const uint16_t h = (uint16_t)c;
        const float f = sage_bf16_to_f32(h);
        if (isnan(f)) {
            CHECK_MSG(isnan(sage_bf16_to_f32(sage_f32_to_bf16(f))), "bf16 NaN 0x%04X lost", c);
            continue;
        }
        if (sage_f32_to_bf16(f) != h) {
            CHECK_MSG(0, "bf16 0x%04X does not round-trip (0x%04X)", c, sage_f32_to_bf16(f));
            break;
        }
    }
    struct { float x; uint16_t want; } cases[] = {
        {1.00390625f, 0x3F80},   /* 1 + 2^-8: tie -> 1.0 */
        {1.01171875f, 0x3F82},   /* 1 + 3 * 2^-8: tie -> 1 + 2^-6 */
        {1.0078125f, 0x3F81},    /* exact */
        {FLT_MAX, 0x7F80},       /* above the last midpoint: Inf */
        {-INFINITY, 0xFF80},
        {1e-40f, 0x0001},        /* subnormal: 1e-40 = 0x000116C2 -> 0x0001 */
        {-0.0f, 0x8000},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t got = sage_f32_to_bf16(cases[i].x);
        CHECK_MSG(got == cases[i].want, "bf16(%.9g) = 0x%04X, want 0x%04X", (double)cases[i].x, got, cases[i].want);
    }
    CHECK(isnan(sage_bf16_to_f32(sage_f32_to_bf16(NAN))));
    CHECK(isnan(sage_bf16_to_f32(sage_f32_to_bf16(sage_bits_f32(0x7F800001u))))); /* a NaN whose top bits are 0 */
}

TEST(cpu_dtype_load_store) {
    uint16_t h[3];
    float f[3];
    sage_store_f32(h, 1, SAGE_DTYPE_FP16, 1.5f);
    CHECK(h[1] == 0x3E00 && sage_load_f32(h, 1, SAGE_DTYPE_FP16) == 1.5f);
    sage_store_f32(h, 2, SAGE_DTYPE_BF16, -2.0f);
    CHECK(h[2] == 0xC000 && sage_load_f32(h, 2, SAGE_DTYPE_BF16) == -2.0f);
    sage_store_f32(f, 0, SAGE_DTYPE_FP32, 0.1f);
    CHECK(f[0] == 0.1f && sage_load_f32(f, 0, SAGE_DTYPE_FP32) == 0.1f);
    CHECK(sage_round_pv16(1.0f + 1.0f / 1024.0f, SAGE_DTYPE_FP16) == 1.0f + 1.0f / 1024.0f);
    CHECK(sage_round_pv16(1.0f + 1.0f / 1024.0f, SAGE_DTYPE_FP32) == 1.0f); /* fp32 inputs: bf16 */
    CHECK(sage_round_pv16(1.0f + 1.0f / 1024.0f, SAGE_DTYPE_BF16) == 1.0f);
}
