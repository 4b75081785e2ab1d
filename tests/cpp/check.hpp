// The checks of the C++ wrapper tests (test_api.cpp, test_store.cpp): count, and say what failed
// where. Each test program defines `passed` and `failed` once by including this header.
#ifndef SHMPOOL_TEST_CHECK_HPP
#define SHMPOOL_TEST_CHECK_HPP

#include <cstdio>

static int passed = 0, failed = 0;

#define CHECK(cond, what)                                                                  \
    do {                                                                                   \
        if (cond) {                                                                        \
            passed++;                                                                      \
        } else {                                                                           \
            failed++;                                                                      \
            std::fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, what);            \
        }                                                                                  \
    } while (0)

#endif
