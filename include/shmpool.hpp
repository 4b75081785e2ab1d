// shmpool.hpp: header-only C++17 wrapper of the shmpool C API (shmpool.h).
//
//   auto pool = shmpool::Pool::create("frames", shmpool::Config(4, 1 << 20).directory("/tmp/x"));
//   auto producer = pool.producer();
//   auto consumer = pool.consumer();
//   auto buf = producer.acquire(std::chrono::seconds(1));
//   std::memcpy(buf.data(), "hello", 5);
//   buf.set_size(5);
//   buf.publish();
//   auto got = consumer.recv(std::chrono::seconds(1));   // got.data(), got.size(), got.user_meta()
//
// Handles are move-only RAII objects; errors throw shmpool::Error (status + message). A WriteBuf
// not published is aborted by its destructor; a ReadBuf is released by its destructor. Buffers
// must not outlive the Producer / Consumer they came from (destroying those aborts / releases
// what is still outstanding).
#ifndef SHMPOOL_HPP
#define SHMPOOL_HPP

#include "shmpool.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#if __has_include(<version>)
#include <version>
#endif
#if defined(__cpp_lib_span)
#include <span>
#endif

namespace shmpool {

/// An error of the C API: the status code and the library's message.
class Error : public std::runtime_error {
public:
    Error(shmpool_status status, const std::string &message)
        : std::runtime_error(std::string(shmpool_status_name(status)) + ": " + message), status_(status) {}
    shmpool_status status() const noexcept { return status_; }
    bool timed_out() const noexcept { return status_ == SHMPOOL_TIMEOUT; }
    bool closed() const noexcept { return status_ == SHMPOOL_CLOSED; }

private:
    shmpool_status status_;
};

namespace detail {
inline void check(shmpool_status status) {
    if (status != SHMPOOL_OK) throw Error(status, shmpool_last_error_message());
}

template <typename T, void (*Free)(T *)>
class Handle {
public:
    Handle() noexcept = default;
    explicit Handle(T *p) noexcept : p_(p) {}
    Handle(const Handle &) = delete;
    Handle &operator=(const Handle &) = delete;
    Handle(Handle &&o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
    Handle &operator=(Handle &&o) noexcept {
        if (this != &o) {
            reset();
            p_ = std::exchange(o.p_, nullptr);
        }
        return *this;
    }
    ~Handle() { reset(); }
    void reset() noexcept {
        if (p_) Free(std::exchange(p_, nullptr));
    }
    T *get() const noexcept { return p_; }
    explicit operator bool() const noexcept { return p_ != nullptr; }

private:
    T *p_ = nullptr;
};
}  // namespace detail

/// Timeouts: any std::chrono duration; `forever` waits without limit.
using Timeout = std::chrono::milliseconds;
inline constexpr Timeout forever{SHMPOOL_FOREVER};

inline uint32_t to_ms(Timeout t) noexcept {
    if (t.count() < 0) return 0;
    if (t.count() >= static_cast<Timeout::rep>(SHMPOOL_FOREVER)) return SHMPOOL_FOREVER;
    return static_cast<uint32_t>(t.count());
}

enum class Mode : uint32_t { Broadcast = SHMPOOL_MODE_BROADCAST, WorkQueue = SHMPOOL_MODE_WORK_QUEUE };
enum class Overflow : uint32_t { Block = SHMPOOL_OVERFLOW_BLOCK, DropOldest = SHMPOOL_OVERFLOW_DROP_OLDEST };
enum class DType : uint32_t {
    Bytes = SHMPOOL_DTYPE_BYTES,
    U8 = SHMPOOL_DTYPE_U8,
    U16 = SHMPOOL_DTYPE_U16,
    U32 = SHMPOOL_DTYPE_U32,
    U64 = SHMPOOL_DTYPE_U64,
    I8 = SHMPOOL_DTYPE_I8,
    I16 = SHMPOOL_DTYPE_I16,
    I32 = SHMPOOL_DTYPE_I32,
    I64 = SHMPOOL_DTYPE_I64,
    F16 = SHMPOOL_DTYPE_F16,
    BF16 = SHMPOOL_DTYPE_BF16,
    F32 = SHMPOOL_DTYPE_F32,
    F64 = SHMPOOL_DTYPE_F64,
};

inline const char *dtype_name(DType d) noexcept { return shmpool_dtype_name(static_cast<uint32_t>(d)); }
inline std::size_t dtype_size(DType d) noexcept { return shmpool_dtype_size(static_cast<uint32_t>(d)); }
inline const char *version() noexcept { return shmpool_version(); }

/// Creation parameters; unset fields keep the library defaults.
class Config {
public:
    Config(uint32_t slots, std::size_t slot_size) : slots_(slots), slot_size_(slot_size) {}
    Config &mode(Mode m) { mode_ = m; return *this; }
    Config &overflow(Overflow o) { overflow_ = o; return *this; }
    Config &meta_bytes(std::size_t n) { meta_bytes_ = n; return *this; }
    Config &directory(std::string dir) { directory_ = std::move(dir); return *this; }
    Config &permissions(uint32_t mode) { permissions_ = mode; return *this; }
    Config &lease(Timeout t) { lease_ms_ = to_ms(t); return *this; }

    /// A C configuration with these values (for shmpool_pool_create).
    detail::Handle<shmpool_config, shmpool_config_free> make() const {
        shmpool_config *raw = nullptr;
        detail::check(shmpool_config_new(slots_, slot_size_, &raw));
        detail::Handle<shmpool_config, shmpool_config_free> c(raw);
        if (mode_) detail::check(shmpool_config_set_mode(raw, static_cast<uint32_t>(*mode_)));
        if (overflow_) detail::check(shmpool_config_set_overflow(raw, static_cast<uint32_t>(*overflow_)));
        if (meta_bytes_) detail::check(shmpool_config_set_meta_bytes(raw, *meta_bytes_));
        if (directory_) detail::check(shmpool_config_set_directory(raw, directory_->c_str()));
        if (permissions_) detail::check(shmpool_config_set_permissions(raw, *permissions_));
        if (lease_ms_) detail::check(shmpool_config_set_lease_ms(raw, *lease_ms_));
        return c;
    }

private:
    uint32_t slots_;
    std::size_t slot_size_;
    std::optional<Mode> mode_;
    std::optional<Overflow> overflow_;
    std::optional<std::size_t> meta_bytes_;
    std::optional<std::string> directory_;
    std::optional<uint32_t> permissions_;
    std::optional<uint32_t> lease_ms_;
};

/// A shape: up to 8 dimensions.
using Shape = std::vector<uint64_t>;

/// A slot being written. Publish it with publish(); destroying it unpublished aborts it.
class WriteBuf {
public:
    WriteBuf(WriteBuf &&o) noexcept
        : owner_(std::exchange(o.owner_, nullptr)), buf_(std::exchange(o.buf_, nullptr)) {}
    WriteBuf &operator=(WriteBuf &&o) noexcept {
        if (this != &o) {
            abort_quietly();
            owner_ = std::exchange(o.owner_, nullptr);
            buf_ = std::exchange(o.buf_, nullptr);
        }
        return *this;
    }
    WriteBuf(const WriteBuf &) = delete;
    WriteBuf &operator=(const WriteBuf &) = delete;
    ~WriteBuf() { abort_quietly(); }

    /// Whether this still holds a slot (false after publish/abort or a move).
    explicit operator bool() const noexcept { return buf_ != nullptr; }

    uint8_t *data() noexcept { return shmpool_write_buf_data(buf_); }
    /// Bytes the slot can hold.
    std::size_t capacity() const noexcept { return shmpool_write_buf_capacity(buf_); }
    /// Bytes that will be published (default: the capacity).
    std::size_t size() const noexcept { return shmpool_write_buf_len(buf_); }
    std::size_t slot_index() const noexcept { return shmpool_write_buf_slot_index(buf_); }
#if defined(__cpp_lib_span)
    std::span<uint8_t> span() noexcept { return {data(), capacity()}; }
#endif

    WriteBuf &set_size(std::size_t n) { detail::check(shmpool_write_buf_set_len(buf_, n)); return *this; }
    WriteBuf &set_timestamp(uint64_t t) { detail::check(shmpool_write_buf_set_timestamp(buf_, t)); return *this; }
    WriteBuf &set_dtype(DType d) {
        detail::check(shmpool_write_buf_set_dtype(buf_, static_cast<uint32_t>(d)));
        return *this;
    }
    WriteBuf &set_shape(const Shape &shape) {
        detail::check(shmpool_write_buf_set_shape(buf_, shape.data(), shape.size()));
        return *this;
    }
    WriteBuf &set_user_meta(std::string_view meta) {
        detail::check(shmpool_write_buf_set_user_meta(
            buf_, reinterpret_cast<const uint8_t *>(meta.data()), meta.size()));
        return *this;
    }

    /// Publishes the first size() bytes. Returns the sequence number, or nullopt if a broadcast
    /// pool had no consumer (the buffer was discarded). The buffer is spent afterwards, also when
    /// this throws.
    std::optional<uint64_t> publish() {
        uint64_t seq = SHMPOOL_NO_SEQUENCE;
        detail::check(shmpool_producer_publish(owner_, &buf_, &seq));
        if (seq == SHMPOOL_NO_SEQUENCE) return std::nullopt;
        return seq;
    }

    /// Returns the slot to the pool unpublished.
    void discard() { detail::check(shmpool_producer_discard(owner_, &buf_)); }

private:
    friend class Producer;
    WriteBuf(const shmpool_producer *owner, shmpool_write_buf *buf) noexcept : owner_(owner), buf_(buf) {}
    void abort_quietly() noexcept {
        if (buf_) shmpool_producer_discard(owner_, &buf_);
    }
    const shmpool_producer *owner_;
    shmpool_write_buf *buf_;
};

/// A received slot, read in place; destroying it releases the slot.
class ReadBuf {
public:
    ReadBuf(ReadBuf &&o) noexcept
        : owner_(std::exchange(o.owner_, nullptr)), buf_(std::exchange(o.buf_, nullptr)) {}
    ReadBuf &operator=(ReadBuf &&o) noexcept {
        if (this != &o) {
            release_quietly();
            owner_ = std::exchange(o.owner_, nullptr);
            buf_ = std::exchange(o.buf_, nullptr);
        }
        return *this;
    }
    ReadBuf(const ReadBuf &) = delete;
    ReadBuf &operator=(const ReadBuf &) = delete;
    ~ReadBuf() { release_quietly(); }

    explicit operator bool() const noexcept { return buf_ != nullptr; }

    const uint8_t *data() const noexcept { return shmpool_read_buf_data(buf_); }
    std::size_t size() const noexcept { return shmpool_read_buf_len(buf_); }
    uint64_t seq() const noexcept { return shmpool_read_buf_seq(buf_); }
    uint64_t timestamp() const noexcept { return shmpool_read_buf_timestamp(buf_); }
    DType dtype() const noexcept { return static_cast<DType>(shmpool_read_buf_dtype(buf_)); }
    std::size_t slot_index() const noexcept { return shmpool_read_buf_slot_index(buf_); }
    Shape shape() const {
        std::size_t n = 0;
        const uint64_t *dims = shmpool_read_buf_shape(buf_, &n);
        return dims ? Shape(dims, dims + n) : Shape();
    }
    /// The user metadata bytes (valid while the buffer is held).
    std::string_view user_meta() const noexcept {
        std::size_t n = 0;
        const uint8_t *p = shmpool_read_buf_user_meta(buf_, &n);
        return p ? std::string_view(reinterpret_cast<const char *>(p), n) : std::string_view();
    }
#if defined(__cpp_lib_span)
    std::span<const uint8_t> span() const noexcept { return {data(), size()}; }
#endif

    /// Releases the slot now (the destructor does it otherwise).
    void release() { detail::check(shmpool_consumer_release(owner_, &buf_)); }

    /// Gives up ownership: the caller must pass the result to shmpool_consumer_release (e.g. from
    /// a GStreamer destroy notify). Returns the handle; this object becomes empty.
    shmpool_read_buf *detach() noexcept { return std::exchange(buf_, nullptr); }

private:
    friend class Consumer;
    ReadBuf(const shmpool_consumer *owner, shmpool_read_buf *buf) noexcept : owner_(owner), buf_(buf) {}
    void release_quietly() noexcept {
        if (buf_) shmpool_consumer_release(owner_, &buf_);
    }
    const shmpool_consumer *owner_;
    shmpool_read_buf *buf_;
};

/// Publishes buffers into a pool. May be shared between threads.
class Producer {
public:
    /// Takes a free slot, waiting up to `timeout`. Throws Error (SHMPOOL_TIMEOUT, _CLOSED, ...).
    WriteBuf acquire(Timeout timeout = forever) const {
        shmpool_write_buf *buf = nullptr;
        detail::check(shmpool_producer_acquire(h_.get(), to_ms(timeout), &buf));
        return WriteBuf(h_.get(), buf);
    }
    /// A free slot if there is one now.
    std::optional<WriteBuf> try_acquire() const {
        shmpool_write_buf *buf = nullptr;
        shmpool_status s = shmpool_producer_try_acquire(h_.get(), &buf);
        if (s == SHMPOOL_WOULD_BLOCK) return std::nullopt;
        detail::check(s);
        return WriteBuf(h_.get(), buf);
    }
    uint64_t published() const noexcept { return shmpool_producer_published(h_.get()); }
    void set_spin(std::chrono::microseconds spin) {
        detail::check(shmpool_producer_set_spin_us(h_.get(), static_cast<uint32_t>(spin.count())));
    }
    shmpool_producer *c_handle() const noexcept { return h_.get(); }

private:
    friend class Pool;
    explicit Producer(shmpool_producer *p) noexcept : h_(p) {}
    detail::Handle<shmpool_producer, shmpool_producer_free> h_;
};

/// Receives buffers from a pool. Receive on one thread at a time; buffers may be released anywhere.
class Consumer {
public:
    /// The next buffer, waiting up to `timeout`. Throws Error (SHMPOOL_TIMEOUT, SHMPOOL_CLOSED
    /// once the pool is closed and drained, ...).
    ReadBuf recv(Timeout timeout = forever) const {
        shmpool_read_buf *buf = nullptr;
        detail::check(shmpool_consumer_recv(h_.get(), to_ms(timeout), &buf));
        return ReadBuf(h_.get(), buf);
    }
    /// Like recv, but nullopt once the pool is closed and drained: `while (auto b = c.next()) ...`
    std::optional<ReadBuf> next(Timeout timeout = forever) const {
        shmpool_read_buf *buf = nullptr;
        shmpool_status s = shmpool_consumer_recv(h_.get(), to_ms(timeout), &buf);
        if (s == SHMPOOL_CLOSED) return std::nullopt;
        detail::check(s);
        return ReadBuf(h_.get(), buf);
    }
    /// A buffer if one is published now.
    std::optional<ReadBuf> try_recv() const {
        shmpool_read_buf *buf = nullptr;
        shmpool_status s = shmpool_consumer_try_recv(h_.get(), &buf);
        if (s == SHMPOOL_WOULD_BLOCK) return std::nullopt;
        detail::check(s);
        return ReadBuf(h_.get(), buf);
    }
    uint64_t received() const noexcept { return shmpool_consumer_received(h_.get()); }
    uint64_t dropped() const noexcept { return shmpool_consumer_dropped(h_.get()); }
    void set_spin(std::chrono::microseconds spin) {
        detail::check(shmpool_consumer_set_spin_us(h_.get(), static_cast<uint32_t>(spin.count())));
    }
    shmpool_consumer *c_handle() const noexcept { return h_.get(); }

private:
    friend class Pool;
    explicit Consumer(shmpool_consumer *c) noexcept : h_(c) {}
    detail::Handle<shmpool_consumer, shmpool_consumer_free> h_;
};

using Stats = shmpool_stats;

/// A pool handle. The creating handle closes and removes the pool when destroyed (unless persist()).
class Pool {
public:
    static Pool create(const std::string &name, const Config &config) {
        auto c = config.make();
        shmpool_pool *p = nullptr;
        detail::check(shmpool_pool_create(name.c_str(), c.get(), &p));
        return Pool(p);
    }
    /// Opens an existing pool, waiting up to `timeout` for it to appear (0: not at all); an empty
    /// directory means $SHMPOOL_DIR or /dev/shm.
    static Pool open(const std::string &name, const std::string &directory = "", Timeout timeout = Timeout(0)) {
        shmpool_pool *p = nullptr;
        detail::check(shmpool_pool_open_timeout(name.c_str(), directory.empty() ? nullptr : directory.c_str(),
                                                to_ms(timeout), &p));
        return Pool(p);
    }
    static void remove(const std::string &name, const std::string &directory = "") {
        detail::check(shmpool_pool_remove(name.c_str(), directory.empty() ? nullptr : directory.c_str()));
    }

    Producer producer() const {
        shmpool_producer *p = nullptr;
        detail::check(shmpool_pool_producer(h_.get(), &p));
        return Producer(p);
    }
    Consumer consumer() const {
        shmpool_consumer *c = nullptr;
        detail::check(shmpool_pool_consumer(h_.get(), &c));
        return Consumer(c);
    }

    /// Closes the pool for everyone (consumers drain first).
    void shutdown() const { detail::check(shmpool_pool_shutdown(h_.get())); }
    void persist() const { detail::check(shmpool_pool_persist(h_.get())); }
    Stats stats() const {
        Stats s{};
        s.struct_size = sizeof s;
        detail::check(shmpool_pool_stats(h_.get(), &s));
        return s;
    }
    std::size_t reap() const {
        std::size_t n = 0;
        detail::check(shmpool_pool_reap(h_.get(), &n));
        return n;
    }
    std::string name() const { return shmpool_pool_name(h_.get()); }
    std::string path() const { return shmpool_pool_path(h_.get()); }
    uint32_t slots() const noexcept { return shmpool_pool_slots(h_.get()); }
    std::size_t slot_size() const noexcept { return shmpool_pool_slot_size(h_.get()); }
    std::size_t meta_bytes() const noexcept { return shmpool_pool_meta_bytes(h_.get()); }
    Mode mode() const noexcept { return static_cast<Mode>(shmpool_pool_mode(h_.get())); }
    Overflow overflow() const noexcept { return static_cast<Overflow>(shmpool_pool_overflow(h_.get())); }
    bool is_closed() const noexcept { return shmpool_pool_is_closed(h_.get()); }
    shmpool_pool *c_handle() const noexcept { return h_.get(); }

private:
    explicit Pool(shmpool_pool *p) noexcept : h_(p) {}
    detail::Handle<shmpool_pool, shmpool_pool_free> h_;
};

// ---- The store of named variables -------------------------------------------------------------
//
//   auto store = shmpool::Store::open("job", "/tmp/x");
//   store.declare_array("image", shmpool::DType::F32, {-1, 512, 512}, 64 << 20);
//   auto w = store.write("image");
//   w.set_shape({3, 512, 512});
//   std::memset(w.data(), 0, w.size());
//   w.commit();
//   auto v = store.read("image", 0, std::chrono::seconds(5));   // v.number(), v.data() (read-only)

enum class Kind : uint32_t {
    Array = SHMPOOL_KIND_ARRAY,
    String = SHMPOOL_KIND_STRING,
    I64 = SHMPOOL_KIND_I64,
    F64 = SHMPOOL_KIND_F64,
    Bool = SHMPOOL_KIND_BOOL,
};

/// A new version of a variable; commit() publishes it, the destructor discards it if not.
class StoreWriter {
public:
    StoreWriter(StoreWriter &&o) noexcept : w_(std::exchange(o.w_, nullptr)) {}
    StoreWriter &operator=(StoreWriter &&o) noexcept {
        if (this != &o) {
            shmpool_store_writer_discard(&w_);
            w_ = std::exchange(o.w_, nullptr);
        }
        return *this;
    }
    StoreWriter(const StoreWriter &) = delete;
    StoreWriter &operator=(const StoreWriter &) = delete;
    ~StoreWriter() { shmpool_store_writer_discard(&w_); }

    void set_shape(const std::vector<std::size_t> &shape) {
        detail::check(shmpool_store_writer_set_shape(w_, shape.data(), shape.size()));
    }
    uint8_t *data() noexcept { return shmpool_store_writer_data(w_); }
    std::size_t size() noexcept { return shmpool_store_writer_len(w_); }
    /// Publishes; returns the version number.
    uint64_t commit() {
        uint64_t version = 0;
        detail::check(shmpool_store_writer_commit(&w_, &version));
        return version;
    }

private:
    explicit StoreWriter(shmpool_store_writer *w) noexcept : w_(w) {}
    shmpool_store_writer *w_;
    friend class Store;
};

/// A held, read-only version of a variable; released by the destructor.
class StoreVersion {
public:
    StoreVersion(StoreVersion &&o) noexcept : v_(std::exchange(o.v_, nullptr)) {}
    StoreVersion &operator=(StoreVersion &&o) noexcept {
        if (this != &o) {
            shmpool_store_version_release(&v_);
            v_ = std::exchange(o.v_, nullptr);
        }
        return *this;
    }
    StoreVersion(const StoreVersion &) = delete;
    StoreVersion &operator=(const StoreVersion &) = delete;
    ~StoreVersion() { shmpool_store_version_release(&v_); }

    uint64_t number() const noexcept { return shmpool_store_version_number(v_); }
    const uint8_t *data() const noexcept { return shmpool_store_version_data(v_); }
    std::size_t size() const noexcept { return shmpool_store_version_len(v_); }
    DType dtype() const noexcept { return static_cast<DType>(shmpool_store_version_dtype(v_)); }
    std::vector<std::size_t> shape() const {
        std::size_t n = 0;
        const std::size_t *dims = shmpool_store_version_shape(v_, &n);
        return std::vector<std::size_t>(dims, dims + n);
    }

private:
    explicit StoreVersion(shmpool_store_version *v) noexcept : v_(v) {}
    shmpool_store_version *v_;
    friend class Store;
};

/// The store of named variables of a job.
class Store {
public:
    /// Opens (creating if missing) the store of `job` in `directory` (empty: the default).
    static Store open(const std::string &job, const std::string &directory = "") {
        shmpool_store *s = nullptr;
        detail::check(shmpool_store_open(job.c_str(), directory.empty() ? nullptr : directory.c_str(), &s));
        return Store(s);
    }
    void declare_array(const std::string &name, DType dtype, const std::vector<int64_t> &dims, uint64_t capacity = 0) {
        detail::check(shmpool_store_declare(s_.get(), name.c_str(), SHMPOOL_KIND_ARRAY, static_cast<uint32_t>(dtype),
                                            dims.data(), dims.size(), capacity));
    }
    /// Declares a string (`capacity` bytes) or a scalar (I64, F64, Bool) variable.
    void declare(const std::string &name, Kind kind, uint64_t capacity = 0) {
        detail::check(shmpool_store_declare(s_.get(), name.c_str(), static_cast<uint32_t>(kind), 0, nullptr, 0,
                                            capacity));
    }
    StoreWriter write(const std::string &name, Timeout timeout = forever) {
        shmpool_store_writer *w = nullptr;
        detail::check(shmpool_store_write(s_.get(), name.c_str(), to_ms(timeout), &w));
        return StoreWriter(w);
    }
    /// The latest version newer than `newer_than` (0: any), waiting up to `timeout`.
    StoreVersion read(const std::string &name, uint64_t newer_than = 0, Timeout timeout = forever) {
        shmpool_store_version *v = nullptr;
        detail::check(shmpool_store_read(s_.get(), name.c_str(), newer_than, to_ms(timeout), &v));
        return StoreVersion(v);
    }

private:
    explicit Store(shmpool_store *s) noexcept : s_(s) {}
    detail::Handle<shmpool_store, shmpool_store_free> s_;
};

}  // namespace shmpool

#endif  // SHMPOOL_HPP
