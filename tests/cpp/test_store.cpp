// C++ wrapper of the store of named variables: RAII writer/version, versions held across
// publications, a discarded write, errors as exceptions. Run by scripts/test-c.sh.
// Usage: test_store_cpp DIR   (DIR: an empty private directory; left empty)
#include "shmpool.h"
#include "shmpool.hpp"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <type_traits>

#include "check.hpp"

static_assert(!std::is_copy_constructible_v<shmpool::StoreWriter>, "StoreWriter is move-only");
static_assert(!std::is_copy_constructible_v<shmpool::StoreVersion>, "StoreVersion is move-only");

static uint64_t publish(shmpool::Store &store, std::size_t n, uint32_t value) {
    auto w = store.write("xs", std::chrono::seconds(1));
    w.set_shape({n});
    auto *data = reinterpret_cast<uint32_t *>(w.data());
    for (std::size_t i = 0; i < n; i++) data[i] = value;
    return w.commit();
}

static bool holds(const shmpool::StoreVersion &v, std::size_t n, uint32_t value) {
    if (v.shape() != std::vector<std::size_t>{n} || v.size() != n * 4) return false;
    const auto *data = reinterpret_cast<const uint32_t *>(v.data());
    for (std::size_t i = 0; i < n; i++)
        if (data[i] != value) return false;
    return true;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    const std::string dir = argv[1];
    {
        auto store = shmpool::Store::open("job", dir);
        store.declare_array("xs", shmpool::DType::U32, {-1}, 64);
        store.declare("count", shmpool::Kind::I64);
        CHECK(publish(store, 3, 7) == 1, "first version");
        auto first = store.read("xs", 0, std::chrono::seconds(1));
        CHECK(first.number() == 1 && first.dtype() == shmpool::DType::U32 && holds(first, 3, 7), "read back");
        {
            auto w = store.write("xs");
            w.set_shape({16});
        }  // discarded
        CHECK(publish(store, 16, 9) == 2, "the discarded write took no version number");
        auto second = store.read("xs", first.number(), std::chrono::seconds(1));
        CHECK(second.number() == 2 && holds(second, 16, 9), "newer version");
        CHECK(holds(first, 3, 7), "the held version is unchanged");
        try {
            store.read("xs", 2, std::chrono::milliseconds(10));
            CHECK(false, "no newer version: throws");
        } catch (const shmpool::Error &e) {
            CHECK(e.timed_out(), "timeout");
        }
        try {
            auto w = store.write("xs");
            w.set_shape({17});
            CHECK(false, "over capacity: throws");
        } catch (const shmpool::Error &e) {
            CHECK(e.status() == SHMPOOL_INVALID_ARGUMENT && std::strstr(e.what(), "capacity"), "over capacity");
        }
        try {
            auto other = shmpool::Store::open("job", dir);
            other.write("xs");
            CHECK(false, "second writer: throws");
        } catch (const shmpool::Error &e) {
            CHECK(e.status() == SHMPOOL_ALREADY_EXISTS, "second writer refused");
        }
    }
    size_t removed = 0;
    CHECK(shmpool_store_gc(dir.c_str(), &removed) == SHMPOOL_OK && removed == 1, "gc after the last handle");
    CHECK(std::filesystem::is_empty(dir), "nothing left behind");
    std::printf("test_store_cpp: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
