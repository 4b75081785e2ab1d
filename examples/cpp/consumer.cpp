// C++ consumer (include/shmpool.hpp): opens a pool (waiting up to 10 s for it), receives until
// COUNT buffers arrived or the pool is closed and drained, checks the test payload of
// examples/c/producer.c and examples/rust_producer.rs, and prints what it saw.
// Usage: consumer_cpp NAME DIR [COUNT]
#include "shmpool.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

int main(int argc, char **argv) try {
    using namespace std::chrono_literals;
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s NAME DIR [COUNT]\n", argv[0]);
        return 2;
    }
    const long want = argc > 3 ? std::strtol(argv[3], nullptr, 10) : -1;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    std::optional<shmpool::Pool> pool;
    while (!pool) {
        try {
            pool = shmpool::Pool::open(argv[1], argv[2]);
        } catch (const shmpool::Error &e) {
            if (e.status() != SHMPOOL_NOT_FOUND || std::chrono::steady_clock::now() > deadline) throw;
            std::this_thread::sleep_for(5ms);
        }
    }
    auto consumer = pool->consumer();
    long received = 0;
    std::string meta;
    while (want < 0 || received < want) {
        auto buf = consumer.next(20s);
        if (!buf) break;  // closed and drained
        const uint8_t *data = buf->data();
        const std::size_t len = buf->size();
        uint64_t k = 0;
        for (std::size_t i = 0; i < 8 && i < len; i++) k |= uint64_t(data[i]) << (8 * i);
        bool ok = len >= 8 && k == uint64_t(received) && buf->shape() == shmpool::Shape{len} &&
                  buf->dtype() == shmpool::DType::U8 && buf->timestamp() == k + 1;
        for (std::size_t i = 8; ok && i < len; i++) ok = data[i] == uint8_t((k + i) % 251);
        if (!ok) {
            std::fprintf(stderr, "consumer_cpp: buffer %ld: bad payload or metadata\n", received);
            return 1;
        }
        meta = std::string(buf->user_meta());
        received++;
    }
    std::printf("consumer_cpp: received %ld (last metadata \"%s\")\n", received, meta.c_str());
    return (want < 0 || received == want) ? 0 : 1;
} catch (const std::exception &e) {
    std::fprintf(stderr, "consumer_cpp: %s\n", e.what());
    return 1;
}
