/* C producer: creates a pool, waits for consumers, publishes test buffers, closes the pool.
 * Usage: producer NAME DIR [COUNT=100] [SIZE=4096] [CONSUMERS=1]
 * Payload of buffer k: an 8-byte little-endian k, then (k + i) % 251 for every byte i >= 8;
 * dtype u8, shape (SIZE), user metadata "c-producer", timestamp k + 1. */
#define _POSIX_C_SOURCE 200809L
#include "shmpool.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define TRY(call)                                                                         \
    do {                                                                                  \
        shmpool_status s_ = (call);                                                       \
        if (s_ != SHMPOOL_OK) {                                                           \
            fprintf(stderr, "producer: %s: %s: %s\n", #call, shmpool_status_name(s_),     \
                    shmpool_last_error_message());                                        \
            goto out;                                                                     \
        }                                                                                 \
    } while (0)

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    const char *name, *dir;
    unsigned long count, k, size, i;
    unsigned consumers;
    shmpool_config *config = NULL;
    shmpool_pool *pool = NULL;
    shmpool_producer *producer = NULL;
    shmpool_write_buf *buf = NULL;
    shmpool_stats stats = {.struct_size = sizeof stats};
    const uint8_t meta[] = "c-producer";
    double deadline;
    int rc = 1;

    if (argc < 3) {
        fprintf(stderr, "usage: %s NAME DIR [COUNT] [SIZE] [CONSUMERS]\n", argv[0]);
        return 2;
    }
    name = argv[1];
    dir = argv[2];
    count = argc > 3 ? strtoul(argv[3], NULL, 10) : 100;
    size = argc > 4 ? strtoul(argv[4], NULL, 10) : 4096;
    consumers = argc > 5 ? (unsigned)strtoul(argv[5], NULL, 10) : 1;
    if (size < 8) {
        fprintf(stderr, "producer: SIZE must be at least 8\n");
        return 2;
    }

    TRY(shmpool_config_new(4, size, &config));
    TRY(shmpool_config_set_directory(config, dir));
    TRY(shmpool_pool_create(name, config, &pool));
    /* Broadcast pools discard what is published while nobody listens: wait for the consumers. */
    deadline = now_s() + 10.0;
    for (;;) {
        struct timespec nap = {0, 2000000};
        TRY(shmpool_pool_stats(pool, &stats));
        if (stats.consumers >= consumers) break;
        if (now_s() > deadline) {
            fprintf(stderr, "producer: no %u consumer(s) within 10 s\n", consumers);
            goto out;
        }
        nanosleep(&nap, NULL);
    }
    TRY(shmpool_pool_producer(pool, &producer));
    for (k = 0; k < count; k++) {
        uint8_t *data;
        uint64_t shape = size;
        TRY(shmpool_producer_acquire(producer, 10000, &buf));
        data = shmpool_write_buf_data(buf);
        for (i = 0; i < 8; i++) data[i] = (uint8_t)(k >> (8 * i));
        for (i = 8; i < size; i++) data[i] = (uint8_t)((k + i) % 251);
        TRY(shmpool_write_buf_set_len(buf, size));
        TRY(shmpool_write_buf_set_dtype(buf, SHMPOOL_DTYPE_U8));
        TRY(shmpool_write_buf_set_shape(buf, &shape, 1));
        TRY(shmpool_write_buf_set_user_meta(buf, meta, sizeof meta - 1));
        TRY(shmpool_write_buf_set_timestamp(buf, k + 1));
        TRY(shmpool_producer_publish(producer, &buf, NULL));
    }
    TRY(shmpool_pool_shutdown(pool)); /* consumers drain what was published, then see CLOSED */
    printf("producer: published %lu\n", count);
    rc = 0;
out:
    if (buf) shmpool_producer_discard(producer, &buf);
    shmpool_producer_free(producer);
    shmpool_pool_free(pool);
    shmpool_config_free(config);
    return rc;
}
