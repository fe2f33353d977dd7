/* Test runner: runs every registered case (or those whose name contains argv[1]). */
#include "harness.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TESTS 1024

static struct { const char *name; sage_test_fn fn; } g_tests[MAX_TESTS];
static int g_count;
static int g_failures;
static int g_skipped;

void sage_test_register(const char *name, sage_test_fn fn) {
    if (g_count < MAX_TESTS) {
        g_tests[g_count].name = name;
        g_tests[g_count].fn = fn;
        g_count++;
    }
}

void sage_test_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    if (g_failures < 10) { /* the first few of a case are enough to debug */
        fprintf(stdout, "    %s:%d: ", file, line);
        va_start(ap, fmt);
        vfprintf(stdout, fmt, ap);
        va_end(ap);
        fputc('\n', stdout);
    }
    g_failures++;
}

void sage_test_skip(const char *fmt, ...) {
    va_list ap;
    fputs("    skip: ", stdout);
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    g_skipped = 1;
}

int sage_test_failures(void) { return g_failures; }

static int by_name(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int main(int argc, char **argv) {
    const char *filter = argc > 1 ? argv[1] : NULL;
    int passed = 0, failed = 0, skipped = 0, ran = 0;
    /* Registration order depends on the linker: sort by name for a stable report. */
    qsort(g_tests, (size_t)g_count, sizeof g_tests[0], by_name);
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 0; i < g_count; i++) {
        if (filter && !strstr(g_tests[i].name, filter)) continue;
        g_failures = 0;
        g_skipped = 0;
        printf("[ RUN  ] %s\n", g_tests[i].name);
        g_tests[i].fn();
        ran++;
        if (g_failures) {
            printf("[ FAIL ] %s (%d checks failed)\n", g_tests[i].name, g_failures);
            failed++;
        } else if (g_skipped) {
            printf("[ SKIP ] %s\n", g_tests[i].name);
            skipped++;
        } else {
            printf("[  OK  ] %s\n", g_tests[i].name);
            passed++;
        }
    }
    if (ran == 0) {
        printf("no tests collected%s%s\n", filter ? " for filter " : "", filter ? filter : "");
        printf("0 passed, 1 failed\n");
        return 1;
    }
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed ? 1 : 0;
}
