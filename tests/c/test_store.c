/* C ABI tests of the store of named variables: round trip, dynamic shapes, versions held across
 * publications, bad input, one writer, read-only views (a forked child writing through one dies
 * of SIGSEGV), gc. Run by scripts/test-c.sh.
 * Usage: test_store DIR   (DIR: an empty private directory; left empty) */
#define _POSIX_C_SOURCE 200809L
#include "shmpool.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

static int dir_is_empty(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    int empty = 1;
    if (!d) return 0;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) empty = 0;
    closedir(d);
    return empty;
}

/* Publishes `rows` rows of 4 floats, each value `rows + i`. */
static void publish(shmpool_store *store, size_t rows) {
    shmpool_store_writer *w = NULL;
    size_t shape[2] = {rows, 4};
    uint64_t version = 0;
    float *data;
    size_t i;
    CHECK_OK(shmpool_store_write(store, "image", 1000, &w));
    CHECK_OK(shmpool_store_writer_set_shape(w, shape, 2));
    CHECK(shmpool_store_writer_len(w) == rows * 4 * sizeof(float), "writer length follows the shape");
    data = (float *)shmpool_store_writer_data(w);
    for (i = 0; i < rows * 4; i++) data[i] = (float)(rows + i);
    CHECK_OK(shmpool_store_writer_commit(&w, &version));
    CHECK(w == NULL && version > 0, "commit clears the handle and gives a version");
}

static int holds_rows(const shmpool_store_version *v, size_t rows) {
    size_t ndims = 0, i;
    const size_t *shape = shmpool_store_version_shape(v, &ndims);
    const float *data = (const float *)shmpool_store_version_data(v);
    if (ndims != 2 || shape[0] != rows || shape[1] != 4) return 0;
    if (shmpool_store_version_len(v) != rows * 4 * sizeof(float)) return 0;
    for (i = 0; i < rows * 4; i++)
        if (data[i] != (float)(rows + i)) return 0;
    return 1;
}

static void test_round_trip(shmpool_store *store) {
    const int64_t dims[2] = {-1, 4};
    shmpool_store_version *first = NULL, *next = NULL;
    CHECK_OK(shmpool_store_declare(store, "image", SHMPOOL_KIND_ARRAY, SHMPOOL_DTYPE_F32, dims, 2, 10 * 4 * 4));
    publish(store, 3);
    CHECK_OK(shmpool_store_read(store, "image", 0, 1000, &first));
    CHECK(shmpool_store_version_number(first) == 1, "first version is 1");
    CHECK(shmpool_store_version_dtype(first) == SHMPOOL_DTYPE_F32, "dtype");
    CHECK(holds_rows(first, 3), "first version's payload");
    CHECK_ERR(shmpool_store_read(store, "image", 1, 20, &next), SHMPOOL_TIMEOUT, "timed out");
    publish(store, 7);
    publish(store, 2);
    CHECK_OK(shmpool_store_read(store, "image", 1, 1000, &next));
    CHECK(shmpool_store_version_number(next) == 3 && holds_rows(next, 2), "latest version, dynamic shape");
    CHECK(holds_rows(first, 3), "a held version is undisturbed by later ones");
    shmpool_store_version_release(&first);
    shmpool_store_version_release(&next);
    CHECK(first == NULL && next == NULL, "release clears the handle");
    shmpool_store_version_release(&first); /* twice: ignored */
}

static void test_bad_input(const char *dir, shmpool_store *store) {
    const int64_t dims[1] = {-1};
    size_t too_big[2] = {11, 4}, wrong[2] = {1, 5};
    shmpool_store_writer *w = NULL;
    shmpool_store_version *v = NULL;
    shmpool_store *other = NULL;
    CHECK_ERR(shmpool_store_declare(store, "bad name", SHMPOOL_KIND_I64, 0, NULL, 0, 0),
              SHMPOOL_INVALID_ARGUMENT, "name");
    CHECK_ERR(shmpool_store_declare(store, "x", 99, 0, NULL, 0, 0), SHMPOOL_INVALID_ARGUMENT, "kind");
    CHECK_ERR(shmpool_store_declare(store, "x", SHMPOOL_KIND_ARRAY, 999, dims, 1, 8), SHMPOOL_INVALID_ARGUMENT,
              "dtype");
    CHECK_ERR(shmpool_store_declare(store, "x", SHMPOOL_KIND_ARRAY, SHMPOOL_DTYPE_U8, NULL, 1, 8),
              SHMPOOL_INVALID_ARGUMENT, "NULL");
    CHECK_ERR(shmpool_store_declare(store, "image", SHMPOOL_KIND_ARRAY, SHMPOOL_DTYPE_U8, dims, 1, 8),
              SHMPOOL_INVALID_ARGUMENT, "already declared");
    CHECK_ERR(shmpool_store_write(store, "undeclared", 0, &w), SHMPOOL_INVALID_ARGUMENT, "not declared");
    CHECK_ERR(shmpool_store_read(NULL, "image", 0, 0, &v), SHMPOOL_INVALID_ARGUMENT, "NULL");
    CHECK_OK(shmpool_store_write(store, "image", 1000, &w));
    CHECK_ERR(shmpool_store_writer_set_shape(w, too_big, 2), SHMPOOL_INVALID_ARGUMENT, "capacity");
    CHECK_ERR(shmpool_store_writer_set_shape(w, wrong, 2), SHMPOOL_INVALID_ARGUMENT, "does not match");
    shmpool_store_writer_discard(&w);
    CHECK(w == NULL, "discard clears the handle");
    /* A second handle is a second writer: refused while the first lives. */
    CHECK_OK(shmpool_store_open("job", dir, &other));
    CHECK_ERR(shmpool_store_write(other, "image", 0, &w), SHMPOOL_ALREADY_EXISTS, "already has a writer");
    CHECK_OK(shmpool_store_read(other, "image", 0, 0, &v));
    CHECK(shmpool_store_version_number(v) == 3, "the discarded write published nothing");
    shmpool_store_version_release(&v);
    shmpool_store_free(other);
}

static void test_read_only(shmpool_store *store) {
    shmpool_store_version *v = NULL;
    pid_t child;
    int status = 0;
    CHECK_OK(shmpool_store_read(store, "image", 0, 1000, &v));
    fflush(NULL);
    child = fork();
    if (child == 0) {
        /* Deliberately writes through the read-only view: the MMU must stop it. */
        volatile float *p = (volatile float *)(uintptr_t)shmpool_store_version_data(v);
        p[0] = 42.0f;
        _exit(0);
    }
    CHECK(child > 0 && waitpid(child, &status, 0) == child, "fork and wait");
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV, "a write through a view dies of SIGSEGV");
    CHECK(holds_rows(v, 2), "the value is unchanged");
    /* Removed while held: the view stays valid; the name is free again. */
    CHECK_OK(shmpool_store_remove(store, "image"));
    CHECK(holds_rows(v, 2), "a held version survives the removal");
    CHECK_ERR(shmpool_store_remove(store, "image"), SHMPOOL_INVALID_ARGUMENT, "not declared");
    shmpool_store_version_release(&v);
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : NULL;
    shmpool_store *store = NULL;
    size_t removed = 99;
    if (!dir) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    CHECK_OK(shmpool_store_open("job", dir, &store));
    test_round_trip(store);
    test_bad_input(dir, store);
    test_read_only(store);
    CHECK_OK(shmpool_store_gc(dir, &removed));
    CHECK(removed == 0, "gc keeps a store in use");
    shmpool_store_free(store);
    CHECK_OK(shmpool_store_gc(dir, &removed));
    CHECK(removed == 1, "gc removes a store nobody has open");
    CHECK(dir_is_empty(dir), "nothing left behind");
    printf("test_store (C): %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
