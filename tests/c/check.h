/* The checks of the C ABI tests (test_api.c, test_store.c): count, and say what failed where, with
 * the library's last error message. Each test program defines `passed` and `failed` once by
 * including this header. */
#ifndef SHMPOOL_TEST_CHECK_H
#define SHMPOOL_TEST_CHECK_H

#include "shmpool.h"

#include <stdio.h>
#include <string.h>

static int passed, failed;

#define CHECK(cond, what)                                                      \
    do {                                                                       \
        if (cond) {                                                            \
            passed++;                                                          \
        } else {                                                               \
            failed++;                                                          \
            fprintf(stderr, "FAIL %s:%d: %s (last error: %s)\n", __FILE__,     \
                    __LINE__, what, shmpool_last_error_message());             \
        }                                                                      \
    } while (0)

/* A call that must fail with `status` and a message containing `needle`. */
#define CHECK_ERR(call, status, needle)                                        \
    do {                                                                       \
        shmpool_status s_ = (call);                                            \
        CHECK(s_ == (status), #call " -> " #status);                           \
        if (s_ != (status))                                                    \
            fprintf(stderr, "     got %s\n", shmpool_status_name(s_));         \
        CHECK(strstr(shmpool_last_error_message(), (needle)) != NULL,          \
              #call " message mentions \"" needle "\"");                       \
    } while (0)

#define CHECK_OK(call) CHECK((call) == SHMPOOL_OK, #call)

#endif
