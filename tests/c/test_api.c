/* C ABI tests: round trip, bad arguments (NULL handles, zero sizes, double publish/release, wrong
 * consumer/producer), timeouts, close. Run by scripts/test-c.sh, also under valgrind.
 * Usage: test_api DIR   (DIR: an empty private directory for the pools; left empty) */
#define _POSIX_C_SOURCE 200809L
#include "shmpool.h"

#include <stddef.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

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

static shmpool_pool *make_pool(const char *dir, const char *name, uint32_t slots, uint32_t mode) {
    shmpool_config *config = NULL;
    shmpool_pool *pool = NULL;
    CHECK_OK(shmpool_config_new(slots, 4096, &config));
    CHECK_OK(shmpool_config_set_directory(config, dir));
    CHECK_OK(shmpool_config_set_mode(config, mode));
    CHECK_OK(shmpool_config_set_meta_bytes(config, 64));
    CHECK_OK(shmpool_pool_create(name, config, &pool));
    shmpool_config_free(config);
    return pool;
}

static void test_round_trip(const char *dir) {
    shmpool_pool *pool = make_pool(dir, "c-round-trip", 4, SHMPOOL_MODE_BROADCAST);
    shmpool_producer *producer = NULL;
    shmpool_consumer *consumer = NULL;
    shmpool_write_buf *wb = NULL;
    shmpool_read_buf *rb = NULL;
    shmpool_stats stats = {.struct_size = sizeof stats};
    uint64_t seq = 42, dims[3] = {2, 3, 4};
    const uint64_t *shape;
    const uint8_t *meta;
    size_t ndim = 0, meta_len = 0, i;
    float *f;
    int same = 1;

    CHECK(pool != NULL, "pool created");
    if (!pool) return;
    CHECK(strcmp(shmpool_pool_name(pool), "c-round-trip") == 0, "pool name");
    CHECK(strstr(shmpool_pool_path(pool), dir) == shmpool_pool_path(pool), "pool lives in DIR");
    CHECK(shmpool_pool_slots(pool) == 4, "slots");
    CHECK(shmpool_pool_slot_size(pool) == 4096, "slot size");
    CHECK(shmpool_pool_meta_bytes(pool) == 64, "meta bytes");
    CHECK(shmpool_pool_mode(pool) == SHMPOOL_MODE_BROADCAST, "mode");
    CHECK(shmpool_pool_overflow(pool) == SHMPOOL_OVERFLOW_BLOCK, "overflow");
    CHECK(!shmpool_pool_is_closed(pool), "not closed");

    CHECK_OK(shmpool_pool_producer(pool, &producer));
    CHECK_OK(shmpool_pool_consumer(pool, &consumer));
    CHECK_OK(shmpool_producer_acquire(producer, 1000, &wb));
    CHECK(wb != NULL, "acquired");
    CHECK(shmpool_write_buf_capacity(wb) == 4096, "capacity");
    CHECK(shmpool_write_buf_len(wb) == 4096, "default length is the capacity");
    CHECK(shmpool_write_buf_slot_index(wb) < 4, "slot index");
    f = (float *)(void *)shmpool_write_buf_data(wb);
    for (i = 0; i < 24; i++) f[i] = (float)i * 0.5f;
    CHECK_OK(shmpool_write_buf_set_len(wb, 24 * sizeof(float)));
    CHECK_OK(shmpool_write_buf_set_dtype(wb, SHMPOOL_DTYPE_F32));
    CHECK_OK(shmpool_write_buf_set_shape(wb, dims, 3));
    CHECK_OK(shmpool_write_buf_set_user_meta(wb, (const uint8_t *)"hello", 5));
    CHECK_OK(shmpool_write_buf_set_timestamp(wb, 123456789));
    CHECK_OK(shmpool_pool_stats(pool, &stats));
    CHECK(stats.writing == 1 && stats.free == 3 && stats.producers == 1 && stats.consumers == 1, "stats while writing");
    CHECK_OK(shmpool_producer_publish(producer, &wb, &seq));
    CHECK(wb == NULL, "publish NULLs the buffer variable");
    CHECK(seq == 0, "first sequence is 0");
    CHECK(shmpool_producer_published(producer) == 1, "published counter");

    CHECK_OK(shmpool_consumer_recv(consumer, 1000, &rb));
    CHECK(rb != NULL, "received");
    CHECK(shmpool_read_buf_len(rb) == 24 * sizeof(float), "length");
    CHECK(shmpool_read_buf_seq(rb) == 0, "sequence");
    CHECK(shmpool_read_buf_timestamp(rb) == 123456789, "timestamp");
    CHECK(shmpool_read_buf_dtype(rb) == SHMPOOL_DTYPE_F32, "dtype");
    CHECK(shmpool_dtype_size(shmpool_read_buf_dtype(rb)) == 4, "dtype size");
    CHECK(strcmp(shmpool_dtype_name(shmpool_read_buf_dtype(rb)), "f32") == 0, "dtype name");
    shape = shmpool_read_buf_shape(rb, &ndim);
    CHECK(ndim == 3 && shape && shape[0] == 2 && shape[1] == 3 && shape[2] == 4, "shape");
    meta = shmpool_read_buf_user_meta(rb, &meta_len);
    CHECK(meta_len == 5 && memcmp(meta, "hello", 5) == 0, "user metadata");
    f = (float *)(void *)shmpool_read_buf_data(rb);
    for (i = 0; i < 24; i++) same &= f[i] == (float)i * 0.5f;
    CHECK(same, "payload");
    CHECK(shmpool_read_buf_slot_index(rb) < 4, "read slot index");
    CHECK_OK(shmpool_pool_stats(pool, &stats));
    CHECK(stats.reading == 1 && stats.published == 1, "stats while reading");
    CHECK_OK(shmpool_consumer_release(consumer, &rb));
    CHECK(rb == NULL, "release NULLs the buffer variable");
    CHECK(shmpool_consumer_received(consumer) == 1, "received counter");
    CHECK_OK(shmpool_pool_stats(pool, &stats));
    CHECK(stats.free == 4, "all slots free again");
    CHECK(stats.struct_size == sizeof stats, "the whole struct filled");
    CHECK(stats.waiters == 0 && stats.creator_alive && stats.producer_alive && !stats.persistent
              && !stats.orphaned,
          "waiters, wakes and liveness fields (appended)");
    {
        /* A caller built against an older, shorter shmpool_stats: only what fits is written. */
        shmpool_stats old;
        memset(&old, 0xAB, sizeof old);
        old.struct_size = offsetof(shmpool_stats, producers);
        CHECK_OK(shmpool_pool_stats(pool, &old));
        CHECK(old.struct_size == offsetof(shmpool_stats, producers) && old.slots == 4 && old.consumers == 1,
              "older struct: its fields filled");
        CHECK(old.producers == 0xABABABABu && old.published == 0xABABABABABABABABull, "older struct: nothing past it written");
        old.struct_size = 0;
        CHECK_ERR(shmpool_pool_stats(pool, &old), SHMPOOL_INVALID_ARGUMENT, "struct_size is not set");
    }

    /* abort returns the slot */
    CHECK_OK(shmpool_producer_try_acquire(producer, &wb));
    CHECK_OK(shmpool_producer_discard(producer, &wb));
    CHECK(wb == NULL, "abort NULLs the buffer variable");
    CHECK_ERR(shmpool_consumer_try_recv(consumer, &rb), SHMPOOL_WOULD_BLOCK, "nothing");
    CHECK(rb == NULL, "nothing received after abort");

    /* a buffer of zero bytes is fine */
    CHECK_OK(shmpool_producer_acquire(producer, SHMPOOL_FOREVER, &wb));
    CHECK_OK(shmpool_write_buf_set_len(wb, 0));
    CHECK_OK(shmpool_write_buf_set_shape(wb, NULL, 0));
    CHECK_OK(shmpool_write_buf_set_user_meta(wb, NULL, 0));
    CHECK_OK(shmpool_producer_publish(producer, &wb, NULL));
    CHECK_OK(shmpool_consumer_recv(consumer, SHMPOOL_FOREVER, &rb));
    CHECK(shmpool_read_buf_len(rb) == 0 && shmpool_read_buf_seq(rb) == 1, "empty buffer");
    shape = shmpool_read_buf_shape(rb, &ndim);
    CHECK(ndim == 0, "no shape");
    CHECK_OK(shmpool_consumer_release(consumer, &rb));

    shmpool_consumer_free(consumer);
    shmpool_producer_free(producer);
    shmpool_pool_free(pool);
}

static void test_bad_arguments(const char *dir) {
    shmpool_pool *pool = make_pool(dir, "c-bad-args", 2, SHMPOOL_MODE_BROADCAST);
    shmpool_pool *other = NULL;
    shmpool_config *config = NULL;
    shmpool_producer *producer = NULL, *producer2 = NULL;
    shmpool_consumer *consumer = NULL, *consumer2 = NULL;
    shmpool_write_buf *wb = NULL, *wb_copy;
    shmpool_read_buf *rb = NULL, *rb2 = NULL;
    shmpool_stats stats = {.struct_size = sizeof stats};
    uint64_t dims[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    uint8_t big[65];
    size_t n = 7;
    double t0;

    memset(big, 'x', sizeof big);
    if (!pool) return;

    /* NULL handles and out-parameters */
    CHECK_ERR(shmpool_config_new(1, 4096, NULL), SHMPOOL_INVALID_ARGUMENT, "NULL");
    CHECK_ERR(shmpool_config_set_slots(NULL, 4), SHMPOOL_INVALID_ARGUMENT, "config is NULL");
    CHECK_ERR(shmpool_pool_create(NULL, NULL, &other), SHMPOOL_INVALID_ARGUMENT, "name is NULL");
    CHECK_ERR(shmpool_pool_create("x", NULL, NULL), SHMPOOL_INVALID_ARGUMENT, "out is NULL");
    CHECK_ERR(shmpool_pool_open(NULL, dir, &other), SHMPOOL_INVALID_ARGUMENT, "name is NULL");
    CHECK_ERR(shmpool_pool_stats(NULL, &stats), SHMPOOL_INVALID_ARGUMENT, "pool is NULL");
    CHECK_ERR(shmpool_pool_stats(pool, NULL), SHMPOOL_INVALID_ARGUMENT, "out is NULL");
    CHECK_ERR(shmpool_pool_shutdown(NULL), SHMPOOL_INVALID_ARGUMENT, "pool is NULL");
    CHECK_ERR(shmpool_pool_producer(NULL, &producer), SHMPOOL_INVALID_ARGUMENT, "pool is NULL");
    CHECK_ERR(shmpool_pool_consumer(pool, NULL), SHMPOOL_INVALID_ARGUMENT, "out is NULL");
    CHECK_ERR(shmpool_producer_acquire(NULL, 0, &wb), SHMPOOL_INVALID_ARGUMENT, "producer is NULL");
    CHECK_ERR(shmpool_consumer_recv(NULL, 0, &rb), SHMPOOL_INVALID_ARGUMENT, "consumer is NULL");
    CHECK_ERR(shmpool_consumer_release(NULL, &rb), SHMPOOL_INVALID_ARGUMENT, "consumer is NULL");
    CHECK_ERR(shmpool_write_buf_set_len(NULL, 1), SHMPOOL_INVALID_ARGUMENT, "buf is NULL");
    CHECK(shmpool_pool_slots(NULL) == 0 && shmpool_pool_name(NULL) == NULL, "pool getters on NULL");
    CHECK(shmpool_write_buf_data(NULL) == NULL && shmpool_write_buf_capacity(NULL) == 0, "write getters on NULL");
    CHECK(shmpool_read_buf_data(NULL) == NULL && shmpool_read_buf_len(NULL) == 0, "read getters on NULL");
    CHECK(shmpool_read_buf_shape(NULL, &n) == NULL && n == 0, "shape of NULL");
    CHECK(shmpool_producer_published(NULL) == 0 && shmpool_consumer_received(NULL) == 0, "counters of NULL");
    shmpool_pool_free(NULL);
    shmpool_producer_free(NULL);
    shmpool_consumer_free(NULL);
    shmpool_config_free(NULL);

    /* zero sizes, out-of-range values */
    CHECK_OK(shmpool_config_new(0, 4096, &config));
    CHECK_OK(shmpool_config_set_directory(config, dir));
    CHECK_ERR(shmpool_pool_create("c-zero", config, &other), SHMPOOL_INVALID_ARGUMENT, "slots");
    CHECK_OK(shmpool_config_set_slots(config, 2));
    CHECK_OK(shmpool_config_set_slot_size(config, 0));
    CHECK_ERR(shmpool_pool_create("c-zero", config, &other), SHMPOOL_INVALID_ARGUMENT, "slot size");
    CHECK(other == NULL, "no pool on failure");
    CHECK_ERR(shmpool_config_set_mode(config, 7), SHMPOOL_INVALID_ARGUMENT, "mode 7");
    CHECK_ERR(shmpool_config_set_overflow(config, 2), SHMPOOL_INVALID_ARGUMENT, "overflow 2");
    CHECK_ERR(shmpool_config_set_permissions(config, 010000), SHMPOOL_INVALID_ARGUMENT, "permissions");
    CHECK_ERR(shmpool_config_set_lease_ms(config, 0), SHMPOOL_INVALID_ARGUMENT, "lease");
    CHECK_ERR(shmpool_config_set_directory(config, ""), SHMPOOL_INVALID_ARGUMENT, "empty");
    CHECK_OK(shmpool_config_set_slot_size(config, 1));
    CHECK_ERR(shmpool_pool_create("../escape", config, &other), SHMPOOL_INVALID_ARGUMENT, "pool name");
    CHECK_ERR(shmpool_pool_create("c-bad-args", config, &other), SHMPOOL_ALREADY_EXISTS, "already exists");
    shmpool_config_free(config);
    CHECK_ERR(shmpool_pool_open("c-missing", dir, &other), SHMPOOL_NOT_FOUND, "not found");
    CHECK(other == NULL, "no pool on failure");
    {
        double t0 = now_ms();
        CHECK_ERR(shmpool_pool_open_timeout("c-missing", dir, 40, &other), SHMPOOL_NOT_FOUND, "not found");
        CHECK(now_ms() - t0 >= 39 && now_ms() - t0 < 5000, "open_timeout waited about 40 ms");
        CHECK_OK(shmpool_pool_open_timeout("c-bad-args", dir, SHMPOOL_FOREVER, &other));
        CHECK(other != NULL, "an existing pool opens at once");
        shmpool_pool_free(other);
        other = NULL;
    }

    CHECK_OK(shmpool_pool_producer(pool, &producer));
    CHECK_OK(shmpool_pool_producer(pool, &producer2));
    CHECK_OK(shmpool_pool_consumer(pool, &consumer));
    CHECK_OK(shmpool_pool_consumer(pool, &consumer2));

    /* bad buffer settings */
    CHECK_OK(shmpool_producer_acquire(producer, 1000, &wb));
    CHECK_ERR(shmpool_write_buf_set_len(wb, 4097), SHMPOOL_INVALID_ARGUMENT, "exceeds");
    CHECK_ERR(shmpool_write_buf_set_dtype(wb, 99), SHMPOOL_INVALID_ARGUMENT, "dtype code 99");
    CHECK_ERR(shmpool_write_buf_set_shape(wb, dims, 9), SHMPOOL_INVALID_ARGUMENT, "9 dimensions");
    CHECK_ERR(shmpool_write_buf_set_shape(wb, NULL, 2), SHMPOOL_INVALID_ARGUMENT, "dims is NULL");
    CHECK_ERR(shmpool_write_buf_set_user_meta(wb, big, sizeof big), SHMPOOL_INVALID_ARGUMENT, "metadata");
    CHECK_ERR(shmpool_producer_publish(producer, NULL, NULL), SHMPOOL_INVALID_ARGUMENT, "buf is NULL");

    /* wrong producer, double publish */
    CHECK_ERR(shmpool_producer_publish(producer2, &wb, NULL), SHMPOOL_INVALID_ARGUMENT, "does not belong to this producer");
    CHECK(wb != NULL, "a rejected publish leaves the buffer");
    wb_copy = wb;
    CHECK_OK(shmpool_producer_publish(producer, &wb, NULL));
    CHECK_ERR(shmpool_producer_publish(producer, &wb, NULL), SHMPOOL_INVALID_ARGUMENT, "already published");
    CHECK_ERR(shmpool_producer_discard(producer, &wb), SHMPOOL_INVALID_ARGUMENT, "already published");
    /* a stale copy of the handle is detected too (until its slot is acquired again) */
    CHECK_ERR(shmpool_producer_publish(producer, &wb_copy, NULL), SHMPOOL_INVALID_ARGUMENT, "already published");
    CHECK(shmpool_write_buf_data(wb_copy) == NULL, "no data through a spent handle");
    CHECK(strstr(shmpool_last_error_message(), "already published") != NULL, "spent handle message");

    /* wrong consumer, double release */
    CHECK_OK(shmpool_consumer_recv(consumer, 1000, &rb));
    CHECK_OK(shmpool_consumer_recv(consumer2, 1000, &rb2));
    CHECK_ERR(shmpool_consumer_release(consumer2, &rb), SHMPOOL_INVALID_ARGUMENT, "does not belong to this consumer");
    CHECK(rb != NULL, "a rejected release leaves the buffer");
    {
        shmpool_read_buf *rb_copy = rb;
        CHECK_OK(shmpool_consumer_release(consumer, &rb));
        CHECK_ERR(shmpool_consumer_release(consumer, &rb), SHMPOOL_INVALID_ARGUMENT, "already released");
        CHECK_ERR(shmpool_consumer_release(consumer, &rb_copy), SHMPOOL_INVALID_ARGUMENT, "already released");
        CHECK(shmpool_read_buf_len(rb_copy) == 0, "no length through a spent handle");
        CHECK_ERR(shmpool_consumer_release(consumer, (shmpool_read_buf **)(void *)&producer), SHMPOOL_INVALID_ARGUMENT, "does not belong");
    }
    CHECK_OK(shmpool_consumer_release(consumer2, &rb2));
    CHECK_ERR(shmpool_consumer_release(consumer2, NULL), SHMPOOL_INVALID_ARGUMENT, "buf is NULL");

    /* timeouts and would-block, with bounded waits */
    CHECK_ERR(shmpool_consumer_try_recv(consumer, &rb), SHMPOOL_WOULD_BLOCK, "nothing published");
    t0 = now_ms();
    CHECK_ERR(shmpool_consumer_recv(consumer, 30, &rb), SHMPOOL_TIMEOUT, "timed out");
    CHECK(now_ms() - t0 >= 29 && now_ms() - t0 < 5000, "recv waited about 30 ms");
    CHECK_OK(shmpool_producer_acquire(producer, 0, &wb));
    CHECK_OK(shmpool_producer_acquire(producer2, 0, &wb_copy));
    {
        shmpool_write_buf *third = NULL;
        CHECK_ERR(shmpool_producer_try_acquire(producer, &third), SHMPOOL_WOULD_BLOCK, "no free slot");
        t0 = now_ms();
        CHECK_ERR(shmpool_producer_acquire(producer, 30, &third), SHMPOOL_TIMEOUT, "timed out");
        CHECK(third == NULL, "nothing acquired");
    }
    CHECK(now_ms() - t0 >= 29 && now_ms() - t0 < 5000, "acquire waited about 30 ms");
    CHECK_OK(shmpool_producer_discard(producer, &wb));
    CHECK_OK(shmpool_producer_discard(producer2, &wb_copy));

    /* publish with nobody listening (broadcast): discarded */
    shmpool_consumer_free(consumer);
    shmpool_consumer_free(consumer2);
    {
        uint64_t seq = 0;
        CHECK_OK(shmpool_producer_acquire(producer, 0, &wb));
        CHECK_OK(shmpool_producer_publish(producer, &wb, &seq));
        CHECK(seq == SHMPOOL_NO_SEQUENCE, "no consumer: discarded");
    }

    /* close: producers get CLOSED, consumers drain then get CLOSED */
    CHECK_OK(shmpool_pool_consumer(pool, &consumer));
    CHECK_OK(shmpool_producer_acquire(producer, 0, &wb));
    CHECK_OK(shmpool_producer_publish(producer, &wb, NULL));
    CHECK_OK(shmpool_pool_shutdown(pool));
    CHECK(shmpool_pool_is_closed(pool), "closed");
    CHECK_ERR(shmpool_producer_acquire(producer, 0, &wb), SHMPOOL_CLOSED, "closed");
    CHECK_OK(shmpool_consumer_recv(consumer, 1000, &rb));
    CHECK_OK(shmpool_consumer_release(consumer, &rb));
    CHECK_ERR(shmpool_consumer_recv(consumer, SHMPOOL_FOREVER, &rb), SHMPOOL_CLOSED, "closed");
    CHECK_ERR(shmpool_pool_producer(pool, &producer2), SHMPOOL_CLOSED, "closed");

    CHECK(strcmp(shmpool_status_name(SHMPOOL_TOO_MANY_PEERS), "SHMPOOL_TOO_MANY_PEERS") == 0, "status name");
    CHECK(strcmp(shmpool_status_name(1000), "SHMPOOL_UNKNOWN") == 0, "unknown status name");
    CHECK(shmpool_dtype_size(99) == 0 && strcmp(shmpool_dtype_name(99), "?") == 0, "unknown dtype");

    shmpool_consumer_free(consumer);
    shmpool_producer_free(producer);
    shmpool_producer_free(producer2);
    shmpool_pool_free(pool);
}

static void test_workqueue_and_peers(const char *dir) {
    shmpool_pool *pool = make_pool(dir, "c-workqueue", 4, SHMPOOL_MODE_WORK_QUEUE);
    shmpool_pool *opened = NULL;
    shmpool_consumer *consumers[25];
    shmpool_producer *producer = NULL;
    shmpool_write_buf *wb = NULL;
    shmpool_read_buf *rb = NULL;
    shmpool_stats stats = {.struct_size = sizeof stats};
    uint64_t seq = 0;
    size_t reaped = 99;
    int i, made = 0;

    if (!pool) return;
    CHECK(shmpool_pool_mode(pool) == SHMPOOL_MODE_WORK_QUEUE, "work queue mode");
    CHECK_OK(shmpool_pool_open("c-workqueue", dir, &opened));
    CHECK(shmpool_pool_mode(opened) == SHMPOOL_MODE_WORK_QUEUE, "opened sees the mode");
    CHECK_OK(shmpool_pool_producer(opened, &producer));
    for (i = 0; i < 25; i++) {
        consumers[i] = NULL;
        if (shmpool_pool_consumer(pool, &consumers[i]) == SHMPOOL_OK) made++;
    }
    CHECK(made == 24, "24 consumers fit");
    CHECK(consumers[24] == NULL, "the 25th does not");
    CHECK_ERR(shmpool_pool_consumer(pool, &consumers[24]), SHMPOOL_TOO_MANY_PEERS, "too many");
    CHECK_OK(shmpool_producer_acquire(producer, 0, &wb));
    CHECK_OK(shmpool_producer_publish(producer, &wb, &seq));
    CHECK(seq == 0, "published with a consumer");
    CHECK_OK(shmpool_consumer_recv(consumers[3], 1000, &rb));
    CHECK_OK(shmpool_consumer_release(consumers[3], &rb));
    CHECK_OK(shmpool_pool_reap(pool, &reaped));
    CHECK(reaped == 0, "nobody to reap");
    for (i = 0; i < 24; i++) shmpool_consumer_free(consumers[i]);
    CHECK_OK(shmpool_pool_stats(pool, &stats));
    CHECK(stats.consumers == 0 && stats.producers == 1 && stats.published == 1, "peers left");
    shmpool_producer_free(producer);
    shmpool_pool_free(opened);
    CHECK_OK(shmpool_pool_persist(pool));
    shmpool_pool_free(pool);
    CHECK(!dir_is_empty(dir), "a persisted pool stays");
    CHECK_OK(shmpool_pool_remove("c-workqueue", dir));
    CHECK_ERR(shmpool_pool_remove("c-workqueue", dir), SHMPOOL_NOT_FOUND, "not found");
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : NULL;
    if (!dir) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    CHECK(strlen(shmpool_version()) > 0, "version");
    CHECK(strcmp(shmpool_last_error_message(), "") == 0, "no error yet");
    test_round_trip(dir);
    test_bad_arguments(dir);
    test_workqueue_and_peers(dir);
    CHECK(dir_is_empty(dir), "no pool files left behind");
    printf("test_api (C %s): %d passed, %d failed\n", shmpool_version(), passed, failed);
    return failed ? 1 : 0;
}
