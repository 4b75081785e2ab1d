// C++ wrapper tests (include/shmpool.hpp): round trip, RAII, move semantics, exceptions carrying
// status and message, bad arguments. Run by scripts/test-c.sh. Usage: test_api_cpp DIR
#include "shmpool.hpp"

#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <string>
#include <type_traits>

#include "check.hpp"

// `expr` must throw shmpool::Error with `status` and a message containing `needle`.
#define CHECK_THROWS(expr, st, needle)                                                     \
    do {                                                                                   \
        bool thrown_ = false;                                                              \
        try {                                                                              \
            (void)(expr);                                                                  \
        } catch (const shmpool::Error &e_) {                                               \
            thrown_ = true;                                                                \
            CHECK(e_.status() == (st), #expr " status " #st);                              \
            CHECK(std::strstr(e_.what(), needle) != nullptr, #expr " message: " needle);   \
            if (!std::strstr(e_.what(), needle)) std::fprintf(stderr, "  got: %s\n", e_.what()); \
        }                                                                                  \
        CHECK(thrown_, #expr " throws");                                                   \
    } while (0)

static_assert(!std::is_copy_constructible_v<shmpool::Pool>, "Pool is move-only");
static_assert(!std::is_copy_constructible_v<shmpool::WriteBuf>, "WriteBuf is move-only");
static_assert(!std::is_copy_constructible_v<shmpool::ReadBuf>, "ReadBuf is move-only");
static_assert(std::is_nothrow_move_constructible_v<shmpool::ReadBuf>, "ReadBuf moves");

static bool dir_is_empty(const std::string &dir) {
    DIR *d = opendir(dir.c_str());
    if (!d) return false;
    bool empty = true;
    while (dirent *e = readdir(d))
        if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) empty = false;
    closedir(d);
    return empty;
}

static void round_trip(const std::string &dir) {
    using namespace std::chrono_literals;
    auto pool = shmpool::Pool::create("cpp-round-trip", shmpool::Config(4, 4096).directory(dir).meta_bytes(128));
    CHECK(pool.name() == "cpp-round-trip", "name");
    CHECK(pool.slots() == 4 && pool.slot_size() == 4096 && pool.meta_bytes() == 128, "geometry");
    CHECK(pool.mode() == shmpool::Mode::Broadcast && pool.overflow() == shmpool::Overflow::Block, "mode");
    auto producer = pool.producer();
    auto consumer = pool.consumer();
    {
        auto buf = producer.acquire(1s);
        CHECK(static_cast<bool>(buf) && buf.capacity() == 4096, "acquired");
        for (int i = 0; i < 6; i++) buf.data()[i] = static_cast<uint8_t>(i * 3);
        buf.set_size(6).set_dtype(shmpool::DType::U8).set_shape({2, 3}).set_user_meta("video/x-raw").set_timestamp(77);
#if defined(__cpp_lib_span)
        CHECK(buf.span().size() == 4096, "write span");
#endif
        shmpool::WriteBuf moved = std::move(buf);
        CHECK(!buf && static_cast<bool>(moved), "move leaves the source empty");
        auto seq = moved.publish();
        CHECK(seq && *seq == 0, "sequence 0");
        CHECK(!moved, "spent after publish");
        CHECK_THROWS(moved.publish(), SHMPOOL_INVALID_ARGUMENT, "");
    }
    {
        auto got = consumer.recv(1s);
        CHECK(got.size() == 6 && got.data()[5] == 15, "payload");
        CHECK(got.dtype() == shmpool::DType::U8, "dtype");
        CHECK(got.shape() == shmpool::Shape({2, 3}), "shape");
        CHECK(got.user_meta() == "video/x-raw", "user meta");
        CHECK(got.timestamp() == 77 && got.seq() == 0, "timestamp and seq");
#if defined(__cpp_lib_span)
        CHECK(got.span().size() == 6, "read span");
#endif
        CHECK(pool.stats().reading == 1, "held while alive");
        got.release();
        CHECK(!got, "spent after release");
        CHECK_THROWS(got.release(), SHMPOOL_INVALID_ARGUMENT, "");
    }
    CHECK(pool.stats().free == 4, "RAII returned every slot");
    {
        auto buf = producer.acquire();
        // destroyed unpublished: aborted
    }
    CHECK(pool.stats().free == 4, "unpublished buffer aborted by its destructor");
    CHECK(!consumer.try_recv(), "nothing to receive");
    CHECK_THROWS(consumer.recv(20ms), SHMPOOL_TIMEOUT, "timed out");
    {
        std::vector<shmpool::WriteBuf> held;
        while (auto b = producer.try_acquire()) held.push_back(std::move(*b));
        CHECK(held.size() == 4, "four slots");
        CHECK_THROWS(producer.acquire(20ms), SHMPOOL_TIMEOUT, "timed out");
    }
    {
        auto b = producer.acquire(1s);
        CHECK_THROWS(b.set_size(5000), SHMPOOL_INVALID_ARGUMENT, "exceeds");
        CHECK_THROWS(b.set_shape(shmpool::Shape(9, 1)), SHMPOOL_INVALID_ARGUMENT, "9 dimensions");
        CHECK_THROWS(b.set_user_meta(std::string(129, 'x')), SHMPOOL_INVALID_ARGUMENT, "metadata");
        CHECK_THROWS(b.set_dtype(static_cast<shmpool::DType>(42)), SHMPOOL_INVALID_ARGUMENT, "dtype code 42");
        b.publish();
    }
    pool.shutdown();
    {
        int drained = 0;
        while (auto b = consumer.next(1s)) drained++;
        CHECK(drained == 1, "drained what was published, then closed");
    }
    CHECK_THROWS(producer.acquire(0ms), SHMPOOL_CLOSED, "closed");
}

static void bad_arguments(const std::string &dir) {
    CHECK_THROWS(shmpool::Pool::create("cpp-zero", shmpool::Config(0, 4096).directory(dir)),
                 SHMPOOL_INVALID_ARGUMENT, "slots");
    CHECK_THROWS(shmpool::Pool::create("cpp-zero", shmpool::Config(2, 0).directory(dir)),
                 SHMPOOL_INVALID_ARGUMENT, "slot size");
    CHECK_THROWS(shmpool::Pool::open("cpp-missing", dir), SHMPOOL_NOT_FOUND, "not found");
    CHECK_THROWS(shmpool::Pool::create("bad/name", shmpool::Config(2, 4096).directory(dir)),
                 SHMPOOL_INVALID_ARGUMENT, "pool name");
    auto pool = shmpool::Pool::create("cpp-two", shmpool::Config(2, 4096).directory(dir));
    CHECK_THROWS(shmpool::Pool::create("cpp-two", shmpool::Config(2, 4096).directory(dir)),
                 SHMPOOL_ALREADY_EXISTS, "already exists");
    auto opened = shmpool::Pool::open("cpp-two", dir);
    auto p = opened.producer();
    auto c1 = pool.consumer();
    auto c2 = pool.consumer();
    p.acquire().publish();
    auto b1 = c1.recv();
    auto b2 = c2.recv();
    // A buffer handle given to the wrong consumer, through the C API.
    shmpool_read_buf *raw = b1.detach();
    CHECK(shmpool_consumer_release(c2.c_handle(), &raw) == SHMPOOL_INVALID_ARGUMENT, "wrong consumer");
    CHECK(raw != nullptr, "rejected release keeps the handle");
    CHECK(shmpool_consumer_release(c1.c_handle(), &raw) == SHMPOOL_OK && raw == nullptr, "right consumer");
    shmpool::Pool moved = std::move(opened);
    CHECK(moved.c_handle() != nullptr && opened.c_handle() == nullptr, "pool moves");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    std::string dir = argv[1];
    try {
        round_trip(dir);
        bad_arguments(dir);
    } catch (const std::exception &e) {
        failed++;
        std::fprintf(stderr, "FAIL: unexpected exception: %s\n", e.what());
    }
    CHECK(dir_is_empty(dir), "no pool files left behind");
    std::printf("test_api (C++ %s): %d passed, %d failed\n", shmpool::version(), passed, failed);
    return failed ? 1 : 0;
}
