/* sageattn-bench: time one attention shape and check its accuracy.
 *
 *   sageattn-bench [--device cuda|cpu] [-b B] [-H Hq] [--hkv Hkv] [-n N | --nq Nq --nk Nk] [-d D]
 *                  [--dtype fp16|bf16] [--causal none|tl|br] [--pv auto|fp8|16] [--groups auto|block|warp|thread]
 *                  [--kernel NAME] [--iters N] [--warmup N] [--no-validate] [--quant-only] [--csv]
 *
 * --quant-only: time only sage_cuda_quantize with the selected kernel's geometry (no validation, no
 * attention); run it under `ncu --clock-control none` for the time of each of its launches.
 * CUDA: validates first against the fp32 "cuda_reference" kernel (on batch 0 and at most 4 heads,
 * so long shapes stay quick), then times sage_forward with CUDA events (median of --iters runs,
 * inputs rotated over several buffer sets so L2 does not hold them), and the quantization pass
 * alone; attention = total - quantization (the Hopper kernel quantizes Q inside the attention
 * kernel, so its quantization pass is K and V only). TOPS = 4 B H Nq Nk D / time (halved when causal).
 * CPU: the same accuracy report against the CPU reference, and the wall time of sage_forward. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include "sageattn.h"
#include "cpu/numerics.h"
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef SAGE_BENCH_CUDA
#include "cuda/cuda_kernels.h"
#include "cuda/quant.h"
#include <cuda_runtime.h>
#endif

typedef struct opts {
    int cuda, validate, csv, iters, warmup, quant_only;
    int64_t B, Hq, Hkv, Nq, Nk, D;
    sage_dtype dtype;
    sage_causal causal;
    sage_pv_type pv;
    sage_qk_groups groups;
    const char *kernel;
} opts;

static void usage(void) {
    fprintf(stderr, "usage: sageattn-bench [--device cuda|cpu] [-b B] [-H Hq] [--hkv Hkv] [-n N | --nq Nq --nk Nk] "
                    "[-d D] [--dtype fp16|bf16] [--causal none|tl|br] [--pv auto|fp8|16] "
                    "[--groups auto|block|warp|thread] [--kernel NAME] [--iters N] [--warmup N] [--no-validate] [--quant-only] [--csv]\n");
    exit(2);
}

static int parse(int argc, char **argv, opts *o) {
    int n_set = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEXT() do { if (!v) usage(); i++; } while (0)
        if (!strcmp(a, "--device")) { NEXT(); o->cuda = !strcmp(v, "cuda"); }
        else if (!strcmp(a, "-b")) { NEXT(); o->B = atoll(v); }
        else if (!strcmp(a, "-H")) { NEXT(); o->Hq = atoll(v); }
        else if (!strcmp(a, "--hkv")) { NEXT(); o->Hkv = atoll(v); }
        else if (!strcmp(a, "-n")) { NEXT(); o->Nq = o->Nk = atoll(v); n_set = 1; }
        else if (!strcmp(a, "--nq")) { NEXT(); o->Nq = atoll(v); n_set = 1; }
        else if (!strcmp(a, "--nk")) { NEXT(); o->Nk = atoll(v); n_set = 1; }
        else if (!strcmp(a, "-d")) { NEXT(); o->D = atoll(v); }
        else if (!strcmp(a, "--dtype")) { NEXT(); o->dtype = !strcmp(v, "bf16") ? SAGE_DTYPE_BF16 : SAGE_DTYPE_FP16; }
        else if (!strcmp(a, "--causal")) {
            NEXT();
            o->causal = !strcmp(v, "tl") ? SAGE_CAUSAL_TOP_LEFT : !strcmp(v, "br") ? SAGE_CAUSAL_BOTTOM_RIGHT : SAGE_CAUSAL_NONE;
        } else if (!strcmp(a, "--pv")) {
            NEXT();
            o->pv = !strcmp(v, "fp8") ? SAGE_PV_FP8 : !strcmp(v, "16") ? SAGE_PV_16BIT : SAGE_PV_AUTO;
        } else if (!strcmp(a, "--groups")) {
            NEXT();
            o->groups = !strcmp(v, "block") ? SAGE_QK_PER_BLOCK : !strcmp(v, "warp") ? SAGE_QK_PER_WARP
                      : !strcmp(v, "thread") ? SAGE_QK_PER_THREAD : SAGE_QK_AUTO;
        } else if (!strcmp(a, "--kernel")) { NEXT(); o->kernel = v; }
        else if (!strcmp(a, "--iters")) { NEXT(); o->iters = atoi(v); }
        else if (!strcmp(a, "--warmup")) { NEXT(); o->warmup = atoi(v); }
        else if (!strcmp(a, "--no-validate")) o->validate = 0;
        else if (!strcmp(a, "--quant-only")) { o->quant_only = 1; o->validate = 0; }
        else if (!strcmp(a, "--csv")) o->csv = 1;
        else usage();
#undef NEXT
    }
    return n_set;
}

/* ---- inputs and metrics ----------------------------------------------------------------------- */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double randn(void) {
    /* splitmix64 + Box-Muller: inputs like torch.randn */
    double u[2];
    for (int i = 0; i < 2; i++) {
        uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        u[i] = ((double)(z >> 11) + 0.5) / 9007199254740992.0;
    }
    return sqrt(-2.0 * log(u[0])) * cos(6.283185307179586 * u[1]);
}
/* Big inputs: a pool of normals read at a moving odd stride, so filling 10^8 values costs
 * little and no two tensors are equal. */
#define POOL 1048573 /* prime */
static void fill_randn(uint16_t *x, size_t n, sage_dtype dt) {
    static uint16_t pool[2][POOL];
    static int ready = 0;
    static uint64_t call = 0;
    if (!ready) {
        for (size_t i = 0; i < POOL; i++) {
            float f = (float)randn();
            pool[0][i] = sage_f32_to_fp16(f);
            pool[1][i] = sage_f32_to_bf16(f);
        }
        ready = 1;
    }
    const uint16_t *p = pool[dt == SAGE_DTYPE_BF16];
    const size_t stride = 2 * (size_t)(call % 1000) + 1, off = (size_t)(call * 7919u % POOL);
    call++;
    size_t j = off;
    for (size_t i = 0; i < n; i++) {
        x[i] = p[j];
        j += stride;
        if (j >= POOL) j -= POOL;
    }
}

typedef struct metrics { double cos, rel_l1, rmse; int nonfinite; } metrics;
static metrics compare(const uint16_t *o, const uint16_t *r, size_t n, sage_dtype dt) {
    double dot = 0, no = 0, nr = 0, sa = 0, sr = 0, se = 0;
    metrics m = {0, 0, 0, 0};
    for (size_t i = 0; i < n; i++) {
        double x = sage_load_f32(o, (int64_t)i, dt), y = sage_load_f32(r, (int64_t)i, dt);
        if (!isfinite(x)) { m.nonfinite++; continue; }
        dot += x * y; no += x * x; nr += y * y; sa += fabs(x - y); sr += fabs(y); se += (x - y) * (x - y);
    }
    m.cos = no > 0 && nr > 0 ? dot / sqrt(no * nr) : 0;
    m.rel_l1 = sr > 0 ? sa / sr : sa;
    m.rmse = sqrt(se / (double)n);
    return m;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}


static double flops(const opts *o) {
    double f = 4.0 * (double)o->B * (double)o->Hq * (double)o->Nq * (double)o->Nk * (double)o->D;
    return o->causal != SAGE_CAUSAL_NONE ? f / 2 : f;
}

static void set_args(sage_args *a, const opts *o) {
    sage_args_init(a);
    a->dtype = o->dtype;
    a->batch = o->B; a->heads_q = o->Hq; a->heads_kv = o->Hkv;
    a->seqlen_q = o->Nq; a->seqlen_kv = o->Nk; a->head_dim = o->D;
    a->causal = o->causal;
    a->options.pv = o->pv;
    a->options.qk_groups = o->groups;
    a->device = o->cuda ? SAGE_DEVICE_CUDA : SAGE_DEVICE_CPU;
}

static void print_header(const opts *o, const char *kernel) {
    printf("shape B%lld Hq%lld Hkv%lld Nq%lld Nk%lld D%lld %s causal=%s kernel=%s\n", (long long)o->B,
           (long long)o->Hq, (long long)o->Hkv, (long long)o->Nq, (long long)o->Nk, (long long)o->D,
           o->dtype == SAGE_DTYPE_BF16 ? "bf16" : "fp16",
           o->causal == SAGE_CAUSAL_NONE ? "none" : o->causal == SAGE_CAUSAL_TOP_LEFT ? "top-left" : "bottom-right", kernel);
}

/* ---- CPU -------------------------------------------------------------------------------------- */
static int run_cpu(opts *o) {
    sage_args a;
    char msg[256];
    set_args(&a, o);
    const size_t nq = (size_t)(o->B * o->Hq * o->Nq * o->D), nk = (size_t)(o->B * o->Hkv * o->Nk * o->D);
    uint16_t *q = malloc(nq * 2), *k = malloc(nk * 2), *v = malloc(nk * 2), *out = malloc(nq * 2), *ref = malloc(nq * 2);
    fill_randn(q, nq, o->dtype); fill_randn(k, nk, o->dtype); fill_randn(v, nk, o->dtype);
    a.q = q; a.k = k; a.v = v; a.o = out;
    sage_set_contiguous_bhnd(&a);
    sage_plan plan;
    if (sage_supported(&a, &plan, msg, sizeof msg) != SAGE_OK) { fprintf(stderr, "unsupported: %s\n", msg); return 1; }
    void *ws = plan.workspace_size ? aligned_alloc(256, (plan.workspace_size + 255) / 256 * 256) : NULL;
    print_header(o, plan.kernel);
    double best = 1e30;
    for (int it = 0; it < (o->iters < 3 ? o->iters : 3); it++) {
        double t0 = now_s();
        if (sage_forward(&a, ws, plan.workspace_size, NULL, msg, sizeof msg) != SAGE_OK) { fprintf(stderr, "%s\n", msg); return 1; }
        double t = now_s() - t0;
        if (t < best) best = t;
    }
    sage_args r = a;
    r.o = ref;
    r.options.algorithm = SAGE_ALGO_REFERENCE;
    size_t rws = 0;
    sage_workspace_size(&r, &rws, msg, sizeof msg);
    void *rw = rws ? aligned_alloc(256, (rws + 255) / 256 * 256) : NULL;
    double t0 = now_s();
    if (sage_forward(&r, rw, rws, NULL, msg, sizeof msg) != SAGE_OK) { fprintf(stderr, "%s\n", msg); return 1; }
    double tref = now_s() - t0;
    metrics m = compare(out, ref, nq, o->dtype);
    printf("cpu %s: %.3f ms (%.3f TOPS), reference %.3f ms\n", plan.kernel, best * 1e3, flops(o) / best * 1e-12, tref * 1e3);
    printf("accuracy vs reference: cos %.6f relL1 %.5f rmse %.5f nonfinite %d\n", m.cos, m.rel_l1, m.rmse, m.nonfinite);
    free(q); free(k); free(v); free(out); free(ref); free(ws); free(rw);
    return m.nonfinite ? 1 : 0;
}

/* ---- CUDA ------------------------------------------------------------------------------------- */
#ifdef SAGE_BENCH_CUDA
static int cmp_f(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); exit(1); } } while (0)

/* Runs through sage_forward, or a forced kernel through the same problem sage_forward builds. */
static sage_status forward(const sage_args *a, const sage_kernel *forced, void *ws, size_t wsb, cudaStream_t st,
                           char *msg, size_t msz) {
    if (!forced) return sage_forward(a, ws, wsb, st, msg, msz);
    sage_problem p;
    const sage_kernel *k;
    sage_msg m = {msg, msz};
    sage_status s = sage_select_kernel(a, &p, &k, m);
    if (s != SAGE_OK) return s;
    return forced->run(forced, &p, ws, st, m);
}

static int run_cuda(opts *o) {
    char msg[256];
    sage_args a;
    set_args(&a, o);
    sage_set_contiguous_bhnd(&a);
    const size_t nq = (size_t)(o->B * o->Hq * o->Nq * o->D), nk = (size_t)(o->B * o->Hkv * o->Nk * o->D);
    const size_t set_bytes = (nq + 2 * nk) * 2;
    /* Enough input sets that one pass over them is >= 4x a 50-60 MB L2, at most 8. */
    int sets = (int)((256u << 20) / set_bytes) + 1;
    if (sets > 8) sets = 8;
    uint16_t *h = malloc((nq > nk ? nq : nk) * 2);
    void *q[8], *k[8], *v[8], *out, *ref;
    float *lse;
    for (int s = 0; s < sets; s++) {
        CK(cudaMalloc(&q[s], nq * 2)); CK(cudaMalloc(&k[s], nk * 2)); CK(cudaMalloc(&v[s], nk * 2));
        fill_randn(h, nq, o->dtype); CK(cudaMemcpy(q[s], h, nq * 2, cudaMemcpyHostToDevice));
        fill_randn(h, nk, o->dtype); CK(cudaMemcpy(k[s], h, nk * 2, cudaMemcpyHostToDevice));
        fill_randn(h, nk, o->dtype); CK(cudaMemcpy(v[s], h, nk * 2, cudaMemcpyHostToDevice));
    }
    CK(cudaMalloc(&out, nq * 2)); CK(cudaMalloc(&ref, nq * 2));
    CK(cudaMalloc((void **)&lse, (size_t)(o->B * o->Hq * o->Nq) * 4));
    a.q = q[0]; a.k = k[0]; a.v = v[0]; a.o = out;
    const sage_kernel *forced = NULL;
    if (o->kernel) {
        forced = sage_cuda_kernel_by_name(o->kernel);
        if (!forced) { fprintf(stderr, "kernel %s is not built into this library\n", o->kernel); return 1; }
    }
    sage_plan plan;
    if (sage_supported(&a, &plan, msg, sizeof msg) != SAGE_OK) { fprintf(stderr, "unsupported: %s\n", msg); return 1; }
    const char *kname = forced ? forced->name : plan.kernel;
    size_t wsb = plan.workspace_size;
    if (forced) {
        sage_problem p;
        const sage_kernel *kk;
        sage_msg m = {msg, sizeof msg};
        sage_select_kernel(&a, &p, &kk, m);
        wsb = forced->workspace_size(forced, &p);
    }
    void *ws = NULL;
    if (wsb) CK(cudaMalloc(&ws, wsb));
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    if (!o->csv) print_header(o, kname);

    /* ---- validation vs the fp32 GPU reference (batch 0, first heads) ---- */
    metrics m = {1, 0, 0, 0};
    if (o->validate) {
        sage_args va = a;
        va.batch = 1;
        const int64_t g = o->Hq / o->Hkv;
        va.heads_kv = o->Hkv < 4 ? o->Hkv : (4 + g - 1) / g;
        if (va.heads_kv < 1) va.heads_kv = 1;
        va.heads_q = va.heads_kv * g;
        const size_t vn = (size_t)(va.heads_q * o->Nq * o->D);
        CK(cudaMemset(out, 0xFF, nq * 2));
        va.lse = lse;
        if (forward(&va, forced, ws, wsb, st, msg, sizeof msg) != SAGE_OK) { fprintf(stderr, "run: %s\n", msg); return 1; }
        sage_args ra = va;
        ra.o = ref;
        ra.options.algorithm = SAGE_ALGO_REFERENCE;
        if (sage_forward(&ra, NULL, 0, st, msg, sizeof msg) != SAGE_OK) { fprintf(stderr, "reference: %s\n", msg); return 1; }
        CK(cudaStreamSynchronize(st));
        uint16_t *ho = malloc(vn * 2), *hr = malloc(vn * 2);
        CK(cudaMemcpy(ho, out, vn * 2, cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(hr, ref, vn * 2, cudaMemcpyDeviceToHost));
        m = compare(ho, hr, vn, o->dtype);
        free(ho); free(hr);
    }

    /* ---- timing: whole call, then the quantization pass alone ---- */
    const int iters = o->iters;
    float *t_all = malloc(sizeof(float) * (size_t)iters), *t_q = malloc(sizeof(float) * (size_t)iters);
    cudaEvent_t e0[64], e1[64];
    for (int i = 0; i < 64; i++) { CK(cudaEventCreate(&e0[i])); CK(cudaEventCreate(&e1[i])); }
    sage_problem p;
    const sage_kernel *kk;
    sage_msg sm = {msg, sizeof msg};
    sage_select_kernel(&a, &p, &kk, sm);
    if (forced) kk = forced;
    sage_cuda_quant_layout L;
    sage_cuda_kernel_quant_layout(kk, &p, &L);
    for (int pass = o->quant_only ? 1 : 0; pass < 2; pass++) {
        float *dst = pass ? t_q : t_all;
        for (int it = -o->warmup; it < iters;) {
            int batch = iters - it < 64 ? iters - it : 64;
            if (it < 0) batch = -it < 64 ? -it : 64;
            for (int j = 0; j < batch; j++) {
                const int s = ((it + j) % sets + sets) % sets;
                sage_args ta = a;
                ta.q = q[s]; ta.k = k[s]; ta.v = v[s];
                CK(cudaEventRecord(e0[j], st));
                sage_status rs;
                if (pass == 0) rs = forward(&ta, forced, ws, wsb, st, msg, sizeof msg);
                else {
                    sage_problem pt = p;
                    pt.a.q = ta.q; pt.a.k = ta.k; pt.a.v = ta.v;
                    sage_msg mm = {msg, sizeof msg};
                    rs = sage_cuda_quantize(&pt, kk->geometry, &L, ws, st, 0, NULL, mm);
                }
                if (rs != SAGE_OK) { fprintf(stderr, "run: %s\n", msg); return 1; }
                CK(cudaEventRecord(e1[j], st));
            }
            CK(cudaStreamSynchronize(st));
            if (it >= 0)
                for (int j = 0; j < batch; j++) CK(cudaEventElapsedTime(&dst[it + j], e0[j], e1[j]));
            it += batch;
        }
        qsort(dst, (size_t)iters, sizeof(float), cmp_f);
    }
    if (o->quant_only) {
        printf("quantization %.4f ms (median of %d, %d input sets)\n", t_q[iters / 2], iters, sets);
        for (int s = 0; s < sets; s++) { cudaFree(q[s]); cudaFree(k[s]); cudaFree(v[s]); }
        cudaFree(out); cudaFree(ref); cudaFree(lse); if (ws) cudaFree(ws);
        free(h); free(t_all); free(t_q);
        return 0;
    }
    const double ms = t_all[iters / 2], msq = t_q[iters / 2];
    const double tops = flops(o) / (ms * 1e-3) * 1e-12;
    if (o->csv)
        printf("%s,%lld,%lld,%lld,%lld,%lld,%s,%d,%.4f,%.4f,%.1f,%.6f,%.5f\n", kname, (long long)o->B, (long long)o->Hq,
               (long long)o->Nq, (long long)o->Nk, (long long)o->D, o->dtype == SAGE_DTYPE_BF16 ? "bf16" : "fp16",
               (int)o->causal, ms, msq, tops, m.cos, m.rel_l1);
    else {
        printf("time %.4f ms (median of %d, %d input sets)  %.1f TOPS\n", ms, iters, sets, tops);
        printf("split: quantization pass %.4f ms (%.0f%%; %s), attention %.4f ms\n", msq, 100.0 * msq / ms,
               L.q8 ? "Q, K, V" : "K, V: Q is quantized in the attention kernel", ms - msq);
        if (o->validate)
            printf("accuracy vs cuda_reference: cos %.6f relL1 %.5f rmse %.5f nonfinite %d\n", m.cos, m.rel_l1, m.rmse,
                   m.nonfinite);
    }
    for (int s = 0; s < sets; s++) { cudaFree(q[s]); cudaFree(k[s]); cudaFree(v[s]); }
    cudaFree(out); cudaFree(ref); cudaFree(lse); if (ws) cudaFree(ws);
    free(h); free(t_all); free(t_q);
    return m.nonfinite ? 1 : 0;
}
#endif

int main(int argc, char **argv) {
    opts o;
    memset(&o, 0, sizeof o);
#ifdef SAGE_BENCH_CUDA
    o.cuda = 1;
#endif
    o.validate = 1; o.iters = 50; o.warmup = 5;
    o.B = 4; o.Hq = 32; o.Hkv = 0; o.Nq = o.Nk = 4096; o.D = 128;
    o.dtype = SAGE_DTYPE_FP16;
    const int n_set = parse(argc, argv, &o);
    if (!o.cuda && !n_set) { /* a CPU demo should finish in seconds */
        o.Nq = o.Nk = 512;
        if (o.B == 4) o.B = 1;
        if (o.Hq == 32) o.Hq = 4;
    }
    if (o.Hkv == 0) o.Hkv = o.Hq;
    if (o.B < 1 || o.Hq < 1 || o.Hkv < 1 || o.Nq < 1 || o.Nk < 1 || o.D < 1 || o.Hq % o.Hkv) {
        fprintf(stderr, "sizes must be >= 1 and Hkv must divide Hq\n");
        return 2;
    }
    if (o.iters < 1) o.iters = 1;
    if (!o.cuda) return run_cpu(&o);
#ifdef SAGE_BENCH_CUDA
    return run_cuda(&o);
#else
    fprintf(stderr, "this build has no CUDA: use --device cpu\n");
    return 1;
#endif
}
