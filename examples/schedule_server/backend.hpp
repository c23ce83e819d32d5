/// @file backend.hpp
/// @brief The server's queue of schedule_worker runs, in either mode: a process per request
///        (btq::subprocess_executor) or persistent workers (btq::worker_pool_executor).
#pragma once

#include <btq/btq.hpp>
#include <btq/executors/worker_pool_types.hpp>
#include <btq/redis/redis_url.hpp>

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>

namespace schedule_server {

/// How the eight queued endpoints run schedule_worker.
enum class run_mode {
    spawn, ///< one process per request (the seed's design, bounded)
    pool,  ///< persistent workers speaking the btq worker protocol
};

/// What the server needs to start schedule_worker and bound it.
struct backend_options {
    run_mode mode = run_mode::pool;
    std::filesystem::path worker_program;
    std::filesystem::path data_dir;
    /// Where the workers keep the schedules (--database or SCHEDULE_DATABASE, checked by
    /// schedule::parse_database_url); empty: each worker's default, sqlite:DATA_DIR/schedules.db.
    /// It reaches the workers as SCHEDULE_DATABASE in their environment, so that a password in
    /// it never shows on a command line.
    std::string database;
    std::size_t pool_size = 4;
    std::size_t queue_capacity = 256;
    std::chrono::milliseconds queue_timeout{30'000};
    std::chrono::milliseconds task_timeout{30'000};
    /// Most memory one run of schedule_worker may use (--task-memory-limit): each child in spawn
    /// mode (command::memory_limit), each worker in pool mode (worker_pool_options::memory_limit).
    std::optional<std::uint64_t> task_memory_limit;
    /// The memory gate's floor of available memory (--min-available-memory) and its most memory
    /// pressure, PSI some avg10 in percent (--max-memory-pressure). The queue has a
    /// btq::memory_gate when either is set, and no gate otherwise.
    std::optional<std::uint64_t> min_available_memory;
    std::optional<double> max_memory_pressure;
    /// The cluster-wide limit (--redis, --global-concurrency): with an endpoint, the queue has a
    /// btq::redis_permits gate of `global_concurrency` permits (pool_size still bounds this
    /// host); with the memory gate's flags too, a btq::gate_chain of both, memory first.
    std::optional<btq::redis_endpoint> redis;
    std::size_t global_concurrency = 0;
    /// The lease of a running request's permit (--redis-lease-ttl-ms): a server that dies
    /// frees its permits after this.
    std::chrono::milliseconds redis_lease_ttl{10'000};
    /// While Redis is unreachable, fail waiting requests (503) instead of holding them
    /// (--redis-unavailable fail-fast).
    bool redis_fail_fast = false;
    /// Most requests of one client running at once (--max-per-client; 0: no limit but
    /// pool_size) and waiting at once (--capacity-per-client; 0: no limit but queue_capacity):
    /// btq's queue_options::max_per_key and capacity_per_key.
    std::size_t max_per_client = 0;
    std::size_t capacity_per_client = 0;
};

/// Whose a queued request is and how much of the pool it takes: its submit_options::key (the
/// client, see --fairness-key) and submit_options::weight (--import-weight, --schedule-weight).
struct request_share {
    btq::task_key key;
    std::size_t weight = 1;
};

/// What the Redis gate reports, for /api/queue-stats, /metrics and /readyz (a copy of the
/// btq::redis_permits_stats the server shows, so this header needs no hiredis).
struct redis_gate_stats {
    std::string url;              ///< the pool, as redis://host:port/prefix
    std::size_t limit = 0;        ///< N, cluster-wide
    std::size_t permits_held = 0; ///< leases of requests running here now
    std::size_t waiters = 0;      ///< requests here a slot was free for, waiting for a permit
    std::uint64_t grants = 0;     ///< leases granted by Redis, in total
    std::uint64_t lease_renewals = 0;
    std::uint64_t leases_lost = 0; ///< running requests whose lease was lost (they were stopped)
    std::uint64_t redis_errors = 0;
    std::uint64_t reconnects = 0;
    bool healthy = false; ///< connected, and the last command succeeded
    std::string last_error;
};

/// The workers' --database: `options.database`, or their default sqlite:DATA_DIR/schedules.db.
[[nodiscard]] inline std::string store_url(const backend_options& options) {
    return options.database.empty() ? "sqlite:" + (options.data_dir / "schedules.db").string()
                                    : options.database;
}

/// True when this server was built with btq::redis (hiredis found): --redis works.
[[nodiscard]] bool redis_available() noexcept;

/// What the backend saw of its runs' memory, for /api/queue-stats and /metrics.
struct memory_stats {
    /// Runs stopped at task_memory_limit: spawn mode counts the children that ended with
    /// btq::process_ending::memory_limit; pool mode reports
    /// worker_pool_stats::memory_limit_kills.
    std::uint64_t stopped_at_limit = 0;
    /// The largest peak resident size seen, in bytes. Spawn mode: the largest
    /// process_result::peak_resident_bytes of any child. Pool mode: the largest VmHWM of a
    /// worker read after it answered a request (a worker's peak since it started; the pool keeps
    /// no peak per request, and a worker killed at its limit is not read again).
    std::uint64_t peak_resident_bytes = 0;
    /// Requests a slot was free for, held back now by the memory gate (with --redis too: those
    /// whose start the memory gate refused last; the Redis gate's are redis_gate_stats::waiters).
    std::size_t held_for_memory = 0;
    /// Times a request began to be held back by the memory gate.
    std::uint64_t memory_holds_total = 0;
};

/// How one queued request ended, in the terms the HTTP layer answers with.
struct run_outcome {
    enum class kind {
        answered,      ///< the worker answered; `body` is its JSON (success or error)
        not_run,       ///< refused, expired, cleared or shut down before it started (503)
        timed_out,     ///< ran past the task timeout and was stopped (504)
        worker_failed, ///< the worker crashed, could not start or answered garbage (502)
        memory_limit,  ///< it went above the task memory limit and was stopped (507)
        client_gone,   ///< the client disconnected: cancelled while waiting (it never ran) or
                       ///< stopped while running
        lease_lost,    ///< its cluster-wide permit's lease was lost while it ran: stopped (503)
    };
    kind result = kind::answered;
    std::string body;    ///< answered: the worker's JSON
    std::string message; ///< otherwise: why
    std::chrono::nanoseconds wait_time{0};
    std::chrono::nanoseconds run_time{0};
};

/// @brief The queue in front of schedule_worker. Thread-safe.
class backend {
  public:
    virtual ~backend() = default;
    backend() = default;
    backend(const backend&) = delete;
    backend& operator=(const backend&) = delete;
    backend(backend&&) = delete;
    backend& operator=(backend&&) = delete;

    /// Runs `operation` with the request JSON `body` (moved from) when a slot is free; never
    /// throws. `stop` is the request's stop token (submit_options::stop), requested by the HTTP
    /// layer when the client goes away: a waiting request is then answered at once and never
    /// starts, a running one is stopped; either way the outcome is client_gone. Coroutine
    /// parameters are references throughout the server: GCC 12 copies by-value coroutine
    /// arguments into the frame byte by byte in some cases, which breaks std::string's
    /// short-string pointer; the caller's variables outlive the co_await.
    [[nodiscard]] virtual boost::asio::awaitable<run_outcome> run(const std::string& operation,
                                                                  std::string& body,
                                                                  const std::stop_token& stop,
                                                                  const request_share& share) = 0;

    [[nodiscard]] virtual btq::queue_stats stats() const = 0;
    /// stats(), with the `top_keys` busiest clients (btq's stats(top_keys)).
    [[nodiscard]] virtual btq::queue_stats stats(std::size_t top_keys) const = 0;
    /// Not const: the counters are read from the queue's executor.
    [[nodiscard]] virtual memory_stats memory() = 0;
    [[nodiscard]] virtual const backend_options& options() const noexcept = 0;
    /// The Redis gate's counters; empty when the queue has no Redis gate.
    [[nodiscard]] virtual std::optional<redis_gate_stats> redis() const = 0;
    /// The persistent workers' counters (pool mode), for /metrics; empty in spawn mode, which
    /// has none. Not const: they are read from the queue's executor.
    [[nodiscard]] virtual std::optional<btq::worker_pool_stats> workers() { return std::nullopt; }

    /// Shutdown, step 1: refuse new requests and answer every waiting one with
    /// btq::queue_cleared(reason). Returns how many were waiting.
    virtual std::size_t close_and_clear(const std::string& reason) = 0;
    /// Shutdown, step 2: waits up to `grace` for running requests; true if they all finished.
    /// Blocks: call it off the I/O threads.
    [[nodiscard]] virtual bool drain(std::chrono::milliseconds grace) = 0;
    /// Shutdown, step 3: stops whatever still runs and the workers.
    virtual void stop() = 0;
};

/// Builds the backend for `options.mode`.
/// @throws std::invalid_argument for bad options (a Redis endpoint in a server built without
///         btq::redis, lease timings btq::redis_permits refuses)
[[nodiscard]] std::unique_ptr<backend> make_backend(const backend_options& options);

} // namespace schedule_server
