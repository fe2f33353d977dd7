/* Shared helpers of the CPU-path tests (tests/test_cpu_*.c): seeded inputs of every kind the
 * brief names, problems built by hand (so the spec functions can be called without the API),
 * runs of the spec / the API, and the accuracy metrics of brief §4. */
#ifndef SAGE_TEST_CPU_COMMON_H
#define SAGE_TEST_CPU_COMMON_H

#include "cpu/spec.h"
#include "harness.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- random numbers (splitmix64; Box-Muller normals) ----------------------------------------- */
typedef struct tc_rng {
    uint64_t s;
    int have;
    double spare;
} tc_rng;
void tc_rng_seed(tc_rng *r, uint64_t seed);
uint64_t tc_rng_u64(tc_rng *r);
double tc_rng_uniform(tc_rng *r); /* (0, 1) */
double tc_rng_normal(tc_rng *r);
double tc_rng_student(tc_rng *r, int nu);

/* ---- cases ------------------------------------------------------------------------------------ */
typedef enum tc_input {
    TC_RANDN = 0,    /* q, k, v ~ N(0, 1) */
    TC_KBIAS,        /* randn + a large per-channel K bias (N(0, 1) * 10 per (b, hkv, channel)) */
    TC_QOUTLIER,     /* randn, 1 in 16 Q channels x 10 (zero-mean outliers) */
    TC_STUDENT,      /* q, k, v ~ Student-t, 3 degrees of freedom */
    TC_QBIAS,        /* randn + a per-channel Q bias (N(0, 1) * 3 per (b, hq, channel)) */
    TC_VBIAS,        /* randn + a per-channel V bias (N(0, 1) * 5); scored on o - mean(v) */
    TC_INPUT_COUNT
} tc_input;
const char *tc_input_name(tc_input in);

typedef enum tc_layout {
    TC_BHND = 0,     /* contiguous [B, H, N, D] */
    TC_PACKED_QKV,   /* one buffer [B, N, 3, H, D] (needs Nq == Nk, Hq == Hkv) */
    TC_BNHD,         /* [B, N, H, D] per tensor */
} tc_layout;

typedef struct tc_case {
    sage_dtype dtype;
    int64_t B, Hq, Hkv, Nq, Nk, D;
    sage_causal causal;
    tc_layout layout;
    tc_input input;
    uint64_t seed;
    int threads;          /* cpu_threads (0 = all cores) */
} tc_case;

/* A case's inputs and the args that address them (o / lse not set). */
typedef struct tc_data {
    tc_case c;
    void *qkv_buf, *q_buf, *k_buf, *v_buf;
    sage_args a;
    double *v_mean;       /* [B, Hkv, D] channel means of v (for V-bias scoring) */
    size_t o_elems;       /* B * Hq * Nq * D */
} tc_data;

/* Default case: fp16, B1 H2 N256 D64, no mask, contiguous, randn. */
tc_case tc_case_default(void);
tc_data *tc_make(const tc_case *c);
void tc_free(tc_data *d);

/* Output buffers: o [B, Hq, Nq, D] contiguous in the dtype, lse [B, Hq, Nq]. */
typedef struct tc_out {
    void *o;
    float *lse;
} tc_out;
tc_out tc_out_alloc(const tc_data *d);
void tc_out_free(tc_out *o);

typedef struct tc_opts {
    sage_pv_type pv;          /* AUTO = 16-bit */
    sage_qk_groups groups;    /* AUTO = per-thread */
    int smooth_k, smooth_q, smooth_v; /* -1 = default (K on, Q off, V off) */
} tc_opts;
tc_opts tc_opts_default(void);

/* The problem sage_select_kernel would make (resolved by hand) for d with o, lse and opts. */
void tc_problem(const tc_data *d, const tc_out *o, tc_opts opts, sage_problem *p);

/* The CPU geometry (cta_q 128, cta_k 128, warps_q 4). */
sage_geometry tc_cpu_geometry(void);

/* Runs. Each writes out->o and out->lse. */
void tc_run_reference(const tc_data *d, tc_out *out);
void tc_run_floor(const tc_data *d, tc_out *out, tc_opts opts);
/* sage_spec_quantize + sage_spec_attention with the maps of geometry g. */
void tc_run_quantized(const tc_data *d, tc_out *out, tc_opts opts, sage_geometry g);
/* Through sage_forward (device CPU). Returns its status; kernel name in *kernel if not NULL. */
sage_status tc_run_api(const tc_data *d, tc_out *out, tc_opts opts, sage_algorithm algo, const char **kernel);

/* ---- metrics ------------------------------------------------------------------------------------ */
typedef struct tc_err {
    double rel_l1, cos, rmse, max_abs;
    double lse_max_abs;   /* over rows where both are finite */
    int lse_inf_mismatch; /* rows where exactly one is -inf (or either is NaN/+inf) */
    int nonfinite;        /* NaN / Inf elements of o */
} tc_err;
/* o vs ref (both o buffers of d's shape). center: subtract v's channel mean from both first. */
tc_err tc_compare(const tc_data *d, const tc_out *o, const tc_out *ref, int center);
float tc_o_at(const tc_data *d, const void *o, size_t i);
void tc_print_err(const char *label, tc_err e);

/* Seconds of a monotonic clock. */
double tc_now(void);
/* 1 when built with AddressSanitizer (keep cases small there). */
int tc_sanitized(void);

#ifdef __cplusplus
}
#endif
#endif
