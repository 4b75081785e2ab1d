/* The acquire -> publish -> recv -> release loop in one thread (one producer, one consumer), the C
 * twin of examples/bench_loop.rs; scripts/bench-c.sh runs both and compares.
 * Usage: bench_loop [ITERATIONS] [ROUNDS]   (pools live in a private temporary directory) */
#define _POSIX_C_SOURCE 200809L
#include "shmpool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TRY(call)                                                                         \
    do {                                                                                  \
        shmpool_status s_ = (call);                                                       \
        if (s_ != SHMPOOL_OK) {                                                           \
            fprintf(stderr, "%s failed: %s: %s\n", #call, shmpool_status_name(s_),        \
                    shmpool_last_error_message());                                        \
            exit(1);                                                                      \
        }                                                                                 \
    } while (0)

/* CPU time of this thread: on a shared machine, time spent preempted is not counted. */
static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    unsigned long iterations = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000000UL;
    int rounds = argc > 2 ? atoi(argv[2]) : 5, round;
    char dir[] = "/tmp/shmpool-bench-loop-c-XXXXXX";
    double results[64];
    unsigned long i, sum = 0;
    shmpool_config *config;
    shmpool_pool *pool;
    shmpool_producer *producer;
    shmpool_consumer *consumer;

    if (rounds < 1 || rounds > 63 || iterations == 0) return 2;
    if (!mkdtemp(dir)) return 1;
    TRY(shmpool_config_new(4, 4096, &config));
    TRY(shmpool_config_set_directory(config, dir));
    TRY(shmpool_pool_create("bench-loop", config, &pool));
    shmpool_config_free(config);
    TRY(shmpool_pool_producer(pool, &producer));
    TRY(shmpool_pool_consumer(pool, &consumer));

    for (round = 0; round <= rounds; round++) {
        double start = now_ns();
        for (i = 0; i < iterations; i++) {
            shmpool_write_buf *wb;
            shmpool_read_buf *rb;
            TRY(shmpool_producer_acquire(producer, SHMPOOL_FOREVER, &wb));
            shmpool_write_buf_data(wb)[0] = (uint8_t)i;
            TRY(shmpool_write_buf_set_len(wb, 64));
            TRY(shmpool_producer_publish(producer, &wb, NULL));
            TRY(shmpool_consumer_recv(consumer, SHMPOOL_FOREVER, &rb));
            sum += shmpool_read_buf_data(rb)[0];
            TRY(shmpool_consumer_release(consumer, &rb));
        }
        if (round > 0) results[round - 1] = (now_ns() - start) / (double)iterations; /* round 0 warms up */
    }
    qsort(results, (size_t)rounds, sizeof results[0], cmp_double);
    printf("c loop: best %.1f ns/iter, median %.1f ns/iter (thread CPU time) (%lu iterations x %d rounds, checksum %lu)\n",
           results[0], results[rounds / 2], iterations, rounds, sum);

    shmpool_consumer_free(consumer);
    shmpool_producer_free(producer);
    shmpool_pool_free(pool);
    rmdir(dir);
    return 0;
}
