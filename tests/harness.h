/* A small test runner: TEST(name) { ... } registers a case; CHECK* record failures and go on.
 * The runner prints one line per case and, last, "N passed, N failed, N skipped". */
#ifndef SAGE_TEST_HARNESS_H
#define SAGE_TEST_HARNESS_H

#include <math.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef void (*sage_test_fn)(void);
void sage_test_register(const char *name, sage_test_fn fn);
/* Record a failure of the running case (printed with file:line). */
void sage_test_fail(const char *file, int line, const char *fmt, ...);
/* Mark the running case skipped, with the reason printed. The case should return after it. */
void sage_test_skip(const char *fmt, ...);
/* Failures recorded so far in the running case. */
int sage_test_failures(void);

#define TEST(name)                                                                          \
    static void name(void);                                                                 \
    __attribute__((constructor)) static void name##_register(void) { sage_test_register(#name, name); } \
    static void name(void)

#define CHECK(cond)                                                                         \
    do { if (!(cond)) sage_test_fail(__FILE__, __LINE__, "CHECK(%s)", #cond); } while (0)
#define CHECK_MSG(cond, ...)                                                                \
    do { if (!(cond)) sage_test_fail(__FILE__, __LINE__, __VA_ARGS__); } while (0)
#define CHECK_EQ_INT(a, b)                                                                  \
    do { long long a_ = (long long)(a), b_ = (long long)(b);                                \
         if (a_ != b_) sage_test_fail(__FILE__, __LINE__, "%s == %s: %lld vs %lld", #a, #b, a_, b_); } while (0)

#ifdef __cplusplus
}
#endif
#endif
