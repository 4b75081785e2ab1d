// C++ producer (include/shmpool.hpp): creates a pool, waits for consumers, publishes test buffers
// (the payload of examples/c/producer.c), closes the pool.
// Usage: producer_cpp NAME DIR [COUNT=100] [SIZE=4096] [CONSUMERS=1]
#include "shmpool.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

int main(int argc, char **argv) try {
    using namespace std::chrono_literals;
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s NAME DIR [COUNT] [SIZE] [CONSUMERS]\n", argv[0]);
        return 2;
    }
    const unsigned long count = argc > 3 ? std::strtoul(argv[3], nullptr, 10) : 100;
    const std::size_t size = argc > 4 ? std::strtoul(argv[4], nullptr, 10) : 4096;
    const unsigned consumers = argc > 5 ? static_cast<unsigned>(std::strtoul(argv[5], nullptr, 10)) : 1;
    if (size < 8) throw std::runtime_error("SIZE must be at least 8");

    auto pool = shmpool::Pool::create(argv[1], shmpool::Config(4, size).directory(argv[2]));
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (pool.stats().consumers < consumers) {
        if (std::chrono::steady_clock::now() > deadline) throw std::runtime_error("no consumer within 10 s");
        std::this_thread::sleep_for(2ms);
    }
    auto producer = pool.producer();
    for (unsigned long k = 0; k < count; k++) {
        auto buf = producer.acquire(10s);
        uint8_t *data = buf.data();
        for (std::size_t i = 0; i < 8; i++) data[i] = static_cast<uint8_t>(k >> (8 * i));
        for (std::size_t i = 8; i < size; i++) data[i] = static_cast<uint8_t>((k + i) % 251);
        buf.set_size(size).set_dtype(shmpool::DType::U8).set_shape({size}).set_user_meta("cpp-producer").set_timestamp(k + 1);
        buf.publish();
    }
    pool.shutdown();
    std::printf("producer_cpp: published %lu\n", count);
    return 0;
} catch (const std::exception &e) {
    std::fprintf(stderr, "producer_cpp: %s\n", e.what());
    return 1;
}
