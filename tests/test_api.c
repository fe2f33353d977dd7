/* Public API: versions, statuses, every bad input of issue 2 item 4 (specific status, a message,
 * nothing written to o or lse), workspace rules, determinism and concurrent calls. */
#include "harness.h"
#include "sageattn.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { B = 2, HQ = 4, HKV = 2, NQ = 19, NK = 23, D = 40 };
#define POISON 0xA5

/* A valid fp32 problem with its own buffers; o and lse poisoned. */
typedef struct fixture {
    sage_args a;
    float *q, *k, *v, *o, *lse;
    void *ws;
    size_t ws_size;
} fixture;

static float frand(uint32_t *s) {
    *s = *s * 1664525u + 1013904223u;
    return (float)((*s >> 8) & 0xFFFF) / 32768.0f - 1.0f;
}

static void fixture_init(fixture *f) {
    memset(f, 0, sizeof *f);
    sage_args_init(&f->a);
    f->a.dtype = SAGE_DTYPE_FP32;
    f->a.batch = B; f->a.heads_q = HQ; f->a.heads_kv = HKV;
    f->a.seqlen_q = NQ; f->a.seqlen_kv = NK; f->a.head_dim = D;
    sage_set_contiguous_bhnd(&f->a);
    size_t nq = (size_t)B * HQ * NQ * D, nk = (size_t)B * HKV * NK * D;
    f->q = malloc(nq * sizeof(float));
    f->k = malloc(nk * sizeof(float));
    f->v = malloc(nk * sizeof(float));
    f->o = malloc(nq * sizeof(float));
    f->lse = malloc((size_t)B * HQ * NQ * sizeof(float));
    uint32_t seed = 1234;
    for (size_t i = 0; i < nq; i++) f->q[i] = frand(&seed);
    for (size_t i = 0; i < nk; i++) f->k[i] = frand(&seed), f->v[i] = frand(&seed);
    memset(f->o, POISON, nq * sizeof(float));
    memset(f->lse, POISON, (size_t)B * HQ * NQ * sizeof(float));
    f->a.q = f->q; f->a.k = f->k; f->a.v = f->v; f->a.o = f->o; f->a.lse = f->lse;
}

static void fixture_alloc_ws(fixture *f) {
    CHECK_EQ_INT(sage_workspace_size(&f->a, &f->ws_size, NULL, 0), SAGE_OK);
    f->ws = f->ws_size ? aligned_alloc(256, (f->ws_size + 255) / 256 * 256) : NULL;
}

static void fixture_free(fixture *f) {
    free(f->q); free(f->k); free(f->v); free(f->o); free(f->lse); free(f->ws);
}

static int untouched(const void *p, size_t bytes) {
    const unsigned char *c = p;
    for (size_t i = 0; i < bytes; i++)
        if (c[i] != POISON) return 0;
    return 1;
}

/* Run a bad args through all three entry points: each must return `want` with a message and
 * leave o and lse untouched. */
static void expect_error(fixture *f, const sage_args *a, sage_status want, const char *what) {
    char msg[256];
    size_t bytes = 12345;
    sage_plan plan;
    msg[0] = 'x'; msg[1] = '\0';
    sage_status st = sage_supported(a, &plan, msg, sizeof msg);
    CHECK_MSG(st == want, "%s: supported gave %d (%s), want %d", what, st, msg, want);
    CHECK_MSG(msg[0] != '\0' && strcmp(msg, "x") != 0, "%s: no message", what);
    st = sage_workspace_size(a, &bytes, msg, sizeof msg);
    CHECK_MSG(st == want, "%s: workspace_size gave %d", what, st);
    CHECK_MSG(bytes == 12345, "%s: bytes written on error", what);
    static char big_ws[1 << 16] __attribute__((aligned(256)));
    st = sage_forward(a, big_ws, sizeof big_ws, NULL, msg, sizeof msg);
    CHECK_MSG(st == want, "%s: forward gave %d (%s)", what, st, msg);
    CHECK_MSG(untouched(f->o, (size_t)B * HQ * NQ * D * sizeof(float)), "%s: o written", what);
    CHECK_MSG(untouched(f->lse, (size_t)B * HQ * NQ * sizeof(float)), "%s: lse written", what);
}

TEST(api_version_and_status_strings) {
    CHECK_EQ_INT(sage_version_number(), SAGE_VERSION_NUMBER);
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", SAGE_VERSION_MAJOR, SAGE_VERSION_MINOR, SAGE_VERSION_PATCH);
    CHECK(strcmp(sage_version_string(), want) == 0);
    for (int s = 0; s < SAGE_STATUS_COUNT_; s++) {
        const char *str = sage_status_string((sage_status)s);
        CHECK(str && *str && strcmp(str, "unknown status") != 0);
        for (int t = 0; t < s; t++) CHECK_MSG(strcmp(str, sage_status_string((sage_status)t)) != 0, "status %d duplicates %d", s, t);
    }
    CHECK(strcmp(sage_status_string((sage_status)999), "unknown status") == 0);
}

TEST(api_valid_fixture_is_supported) {
    fixture f;
    fixture_init(&f);
    char msg[256] = "";
    sage_plan plan;
    CHECK_MSG(sage_supported(&f.a, &plan, msg, sizeof msg) == SAGE_OK, "%s", msg);
    CHECK(plan.kernel && plan.qk_groups == SAGE_QK_PER_THREAD && plan.pv == SAGE_PV_16BIT);
    CHECK(plan.smooth_k == 1 && plan.smooth_q == 0 && plan.smooth_v == 0);
    fixture_free(&f);
}

TEST(api_null_pointers) {
    fixture f;
    fixture_init(&f);
    sage_args a;
    expect_error(&f, NULL, SAGE_ERR_NULL_POINTER, "args NULL");
    a = f.a; a.q = NULL; expect_error(&f, &a, SAGE_ERR_NULL_POINTER, "q NULL");
    a = f.a; a.k = NULL; expect_error(&f, &a, SAGE_ERR_NULL_POINTER, "k NULL");
    a = f.a; a.v = NULL; expect_error(&f, &a, SAGE_ERR_NULL_POINTER, "v NULL");
    a = f.a; a.o = NULL; expect_error(&f, &a, SAGE_ERR_NULL_POINTER, "o NULL");
    CHECK_EQ_INT(sage_workspace_size(&f.a, NULL, NULL, 0), SAGE_ERR_NULL_POINTER);
    fixture_free(&f);
}

TEST(api_struct_size) {
    fixture f;
    fixture_init(&f);
    sage_args a = f.a;
    a.struct_size = sizeof(sage_args) - 8;
    expect_error(&f, &a, SAGE_ERR_STRUCT_SIZE, "struct_size small");
    a.struct_size = 0;
    expect_error(&f, &a, SAGE_ERR_STRUCT_SIZE, "struct_size 0");
    fixture_free(&f);
}

TEST(api_sizes_heads_head_dim_scale) {
    fixture f;
    fixture_init(&f);
    sage_args a;
    int64_t *fields[] = {&a.batch, &a.heads_q, &a.heads_kv, &a.seqlen_q, &a.seqlen_kv, &a.head_dim};
    for (int i = 0; i < 6; i++) {
        a = f.a; *fields[i] = 0; expect_error(&f, &a, SAGE_ERR_INVALID_SIZE, "size 0");
        a = f.a; *fields[i] = -3; expect_error(&f, &a, SAGE_ERR_INVALID_SIZE, "size -3");
    }
    a = f.a; a.heads_kv = 3; expect_error(&f, &a, SAGE_ERR_HEADS_MISMATCH, "Hq % Hkv");
    a = f.a; a.head_dim = 257; a.q_stride_n = a.k_stride_n = a.v_stride_n = a.o_stride_n = 257;
    expect_error(&f, &a, SAGE_ERR_HEAD_DIM, "head_dim 257");
    a = f.a; a.sm_scale = -1.0f; expect_error(&f, &a, SAGE_ERR_INVALID_SCALE, "scale < 0");
    a = f.a; a.sm_scale = NAN; expect_error(&f, &a, SAGE_ERR_INVALID_SCALE, "scale NaN");
    a = f.a; a.sm_scale = INFINITY; expect_error(&f, &a, SAGE_ERR_INVALID_SCALE, "scale inf");
    a = f.a; a.cpu_threads = -1; expect_error(&f, &a, SAGE_ERR_INVALID_SIZE, "threads < 0");
    fixture_free(&f);
}

TEST(api_enums) {
    fixture f;
    fixture_init(&f);
    sage_args a;
    for (int bad = -1; bad <= 99; bad += 100) {
        a = f.a; a.dtype = (sage_dtype)bad; expect_error(&f, &a, SAGE_ERR_INVALID_ENUM, "dtype");
        a = f.a; a.causal = (sage_causal)bad; expect_error(&f, &a, SAGE_ERR_INVALID_ENUM, "causal");
        a = f.a; a.options.algorithm = (sage_algorithm)bad; expect_error(&f, &a, SAGE_ERR_INVALID_ENUM, "algorithm");
        a = f.a; a.options.qk_groups = (sage_qk_groups)bad; expect_error(&f, &a, SAGE_ERR_INVALID_ENUM, "qk_groups");
        a = f.a; a.options.pv = (sage_pv_type)bad; expect_error(&f, &a, SAGE_ERR_INVALID_ENUM, "pv");
        a = f.a; a.options.smooth_k = (sage_toggle)bad; expect_error(&f, &a, SAGE_ERR_INVALID_ENUM, "smooth_k");
        a = f.a; a.options.smooth_q = (sage_toggle)bad; expect_error(&f, &a, SAGE_ERR_INVALID_ENUM, "smooth_q");
        a = f.a; a.options.smooth_v = (sage_toggle)bad; expect_error(&f, &a, SAGE_ERR_INVALID_ENUM, "smooth_v");
        a = f.a; a.device = (sage_device)bad; expect_error(&f, &a, SAGE_ERR_INVALID_ENUM, "device");
    }
    fixture_free(&f);
}

TEST(api_strides) {
    fixture f;
    fixture_init(&f);
    sage_args a;
    a = f.a; a.k_stride_h = -1; expect_error(&f, &a, SAGE_ERR_INVALID_STRIDE, "negative stride");
    a = f.a; a.q_stride_n = D - 1; expect_error(&f, &a, SAGE_ERR_INVALID_STRIDE, "q rows overlap D");
    a = f.a; a.v_stride_n = 1; expect_error(&f, &a, SAGE_ERR_INVALID_STRIDE, "v D not contiguous");
    a = f.a; a.k_stride_b = INT64_MAX / 2; expect_error(&f, &a, SAGE_ERR_INVALID_STRIDE, "extent overflows int64");
    a = f.a; a.q_stride_h = INT64_MAX / 8; expect_error(&f, &a, SAGE_ERR_INVALID_STRIDE, "bytes overflow");
    a = f.a; a.o_stride_h = 0; expect_error(&f, &a, SAGE_ERR_OVERLAP, "o head stride 0");
    a = f.a; a.o_stride_h = D; /* heads step one row: head 1 token 0 = head 0 token 1 */
    expect_error(&f, &a, SAGE_ERR_OVERLAP, "o overlaps itself");
    /* broadcast inputs (stride 0) are fine */
    a = f.a; a.k_stride_b = 0; a.v_stride_b = 0;
    CHECK_EQ_INT(sage_supported(&a, NULL, NULL, 0), SAGE_OK);
    fixture_free(&f);
}

TEST(api_overlap) {
    fixture f;
    fixture_init(&f);
    sage_args a;
    a = f.a; a.o = f.q; expect_error(&f, &a, SAGE_ERR_OVERLAP, "o == q");
    a = f.a; a.o = f.v + 7; expect_error(&f, &a, SAGE_ERR_OVERLAP, "o inside v");
    a = f.a; a.lse = f.o + 3; expect_error(&f, &a, SAGE_ERR_OVERLAP, "lse inside o");
    a = f.a; a.lse = f.k; expect_error(&f, &a, SAGE_ERR_OVERLAP, "lse == k");
    a = f.a; a.q = f.k; a.k_stride_b = a.q_stride_b = 0; /* inputs may alias each other */
    CHECK_EQ_INT(sage_supported(&a, NULL, NULL, 0), SAGE_OK);
    fixture_free(&f);
}

TEST(api_workspace_rules) {
    fixture f;
    fixture_init(&f);
    fixture_alloc_ws(&f);
    char msg[256];
    CHECK(f.ws_size > 0); /* the quantized CPU path keeps its tensors in the workspace */
    CHECK_EQ_INT(sage_forward(&f.a, f.ws, f.ws_size - 1, NULL, msg, sizeof msg), SAGE_ERR_WORKSPACE_TOO_SMALL);
    CHECK_EQ_INT(sage_forward(&f.a, NULL, f.ws_size, NULL, msg, sizeof msg), SAGE_ERR_WORKSPACE_ALIGNMENT);
    CHECK_EQ_INT(sage_forward(&f.a, (char *)f.ws + 16, f.ws_size - 16, NULL, msg, sizeof msg),
                 SAGE_ERR_WORKSPACE_TOO_SMALL);
    CHECK_EQ_INT(sage_forward(&f.a, (char *)f.ws + 16, f.ws_size, NULL, msg, sizeof msg), SAGE_ERR_WORKSPACE_ALIGNMENT);
    CHECK(untouched(f.o, (size_t)B * HQ * NQ * D * sizeof(float)));
    CHECK_EQ_INT(sage_forward(&f.a, f.ws, f.ws_size, NULL, msg, sizeof msg), SAGE_OK);
    CHECK(!untouched(f.o, sizeof(float)));
    fixture_free(&f);
}

TEST(api_cuda_request_without_device) {
    fixture f;
    fixture_init(&f);
    sage_args a = f.a;
    a.device = SAGE_DEVICE_CUDA;
    a.device_ordinal = 4096; /* no machine has that many GPUs */
    char msg[256];
    sage_status st = sage_supported(&a, NULL, msg, sizeof msg);
#ifdef SAGE_TEST_CUDA
    CHECK_MSG(st == SAGE_ERR_NO_DEVICE, "got %d: %s", st, msg);
    expect_error(&f, &a, SAGE_ERR_NO_DEVICE, "cuda ordinal 4096");
#else
    CHECK_MSG(st == SAGE_ERR_NO_CUDA, "got %d: %s", st, msg);
    expect_error(&f, &a, SAGE_ERR_NO_CUDA, "cuda in a CPU build");
#endif
    a.device_ordinal = -1;
    st = sage_supported(&a, NULL, msg, sizeof msg);
    CHECK(st == SAGE_ERR_NO_DEVICE || st == SAGE_ERR_NO_CUDA);
    fixture_free(&f);
}

TEST(api_message_buffer_truncates_and_may_be_null) {
    fixture f;
    fixture_init(&f);
    sage_args a = f.a;
    a.heads_kv = 3;
    char msg[8];
    memset(msg, 'z', sizeof msg);
    CHECK_EQ_INT(sage_supported(&a, NULL, msg, sizeof msg), SAGE_ERR_HEADS_MISMATCH);
    CHECK(memchr(msg, '\0', sizeof msg) != NULL);
    CHECK_EQ_INT(sage_supported(&a, NULL, NULL, 0), SAGE_ERR_HEADS_MISMATCH);
    CHECK_EQ_INT(sage_supported(&a, NULL, msg, 0), SAGE_ERR_HEADS_MISMATCH);
    fixture_free(&f);
}

/* ---- determinism and concurrent calls --------------------------------------------------- */

typedef struct worker {
    const sage_args *a;
    void *o;
    void *ws;
    size_t ws_size;
    sage_status st;
} worker;

static void *run_worker(void *arg) {
    worker *w = arg;
    sage_args a = *w->a;
    a.o = w->o;
    a.lse = NULL;
    w->st = sage_forward(&a, w->ws, w->ws_size, NULL, NULL, 0);
    return NULL;
}

TEST(api_deterministic_and_thread_safe) {
    fixture f;
    fixture_init(&f);
    fixture_alloc_ws(&f);
    f.a.cpu_threads = 2;
    f.a.causal = SAGE_CAUSAL_BOTTOM_RIGHT;
    size_t obytes = (size_t)B * HQ * NQ * D * sizeof(float);
    CHECK_EQ_INT(sage_forward(&f.a, f.ws, f.ws_size, NULL, NULL, 0), SAGE_OK);
    enum { W = 4 };
    worker w[W];
    pthread_t th[W];
    for (int i = 0; i < W; i++) {
        w[i].a = &f.a;
        w[i].o = malloc(obytes);
        memset(w[i].o, POISON, obytes);
        w[i].ws_size = f.ws_size;
        w[i].ws = aligned_alloc(256, (f.ws_size + 255) / 256 * 256);
        pthread_create(&th[i], NULL, run_worker, &w[i]);
    }
    for (int i = 0; i < W; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ_INT(w[i].st, SAGE_OK);
        CHECK_MSG(memcmp(w[i].o, f.o, obytes) == 0, "worker %d differs from the single-threaded run", i);
        free(w[i].o);
        free(w[i].ws);
    }
    fixture_free(&f);
}

TEST(api_packed_qkv_accepted) {
    /* q, k, v interleaved in one [B, N, 3, H, D] buffer: token stride 3*H*D, head stride D. */
    enum { PB = 1, PH = 2, PN = 9, PD = 16 };
    static float qkv[PB * PN * 3 * PH * PD];
    static float out[PB * PN * PH * PD];
    sage_args a;
    sage_args_init(&a);
    a.dtype = SAGE_DTYPE_FP32;
    a.batch = PB; a.heads_q = a.heads_kv = PH; a.seqlen_q = a.seqlen_kv = PN; a.head_dim = PD;
    a.q = qkv; a.k = qkv + PH * PD; a.v = qkv + 2 * PH * PD; a.o = out;
    a.q_stride_b = a.k_stride_b = a.v_stride_b = PN * 3 * PH * PD;
    a.q_stride_n = a.k_stride_n = a.v_stride_n = 3 * PH * PD;
    a.q_stride_h = a.k_stride_h = a.v_stride_h = PD;
    a.o_stride_b = PN * PH * PD; a.o_stride_n = PH * PD; a.o_stride_h = PD; /* "NHD" output */
    char msg[256] = "";
    CHECK_MSG(sage_supported(&a, NULL, msg, sizeof msg) == SAGE_OK, "%s", msg);
}
