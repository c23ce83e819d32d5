// btq_bench_redis: btq::redis_permits (a bounded_task_queue gated by it, as in README.md,
// "Cluster-wide limit (Redis)") against one redis-server on loopback. Prints one JSON object on
// stdout with the fields that bench/redis/node/redis_semaphore_bench.js prints for the npm
// redis-semaphore package; bench/redis/run_redis_bench.sh runs both and
// bench/redis/summarize_redis.py makes the table.
//
//   btq_bench_redis --port P [--host 127.0.0.1] [--samples 2000] [--processes 4]
//                   [--waiters 64] [--duration-ms 5000] [--wake-rounds 150] [--hold-ms 5]
//                   [--kills 5] [--kill-ttl-ms 1000]
//
// A plain program, not Google Benchmark: the figures are percentiles of single events (one
// grant, one release, one wake-up), several scenarios need several processes (forked, with
// shared memory for the samples and the hand-off times) and one kills a holder with SIGKILL,
// none of which fits a benchmark loop; and the JSON must match the Node side's.
//
// Scenarios (times from std::chrono::steady_clock, CLOCK_MONOTONIC, shared by every process):
// - uncontended: one process, one queue (max_concurrency 1), one task at a time.
//   acquire = submit() -> the task's first instruction; release = the task's last instruction ->
//   the release's PUBLISH arriving at a subscriber of the pool's wake channel (so: the permit is
//   off the server's set); cycle = submit -> release. Round trips from the gate's stats, split at
//   the task's start (the gate's count of commands sent: one command, one reply); the server's
//   commands (INFO commandstats: those run inside its functions included) and CPU time (INFO cpu)
//   per grant.
// - contended: `processes` processes, each a gate and a queue (max_concurrency 16) with `waiters`
//   tasks in flight (a closed loop: a task's callback lets the driver submit the next), empty
//   tasks, for `duration-ms`, N = 1 and N = 16. acquire = submit -> start (queueing for the
//   permit included); grants per second; server commands per grant; grants per process.
// - wake: two processes, N = 1, strict alternation: the holder's task sleeps `hold-ms`, stamps t0
//   as its last instruction and returns; the other process's task, waiting meanwhile, stamps t1
//   as its first. wake = t1 - t0 (release, PUBLISH, the waiter's acquire, its queue's start).
// - recovery: N = 1, lease TTL `kill-ttl-ms`: a holder process takes the permit and keeps it, a
//   waiter process waits for it, the holder gets SIGKILL; recovery = kill -> the waiter's task
//   starts. The lease's time left on the server at the kill is read just before it.
#include <btq/bounded_task_queue.hpp>
#include <btq/redis/redis_permits.hpp>

#include <hiredis/hiredis.h>

#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <future>
#include <map>
#include <memory>
#include <semaphore>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;
using queue_type =
    btq::bounded_task_queue<btq::fenced_task<void>, btq::thread_executor, btq::redis_permits>;

std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               clock_type::now().time_since_epoch())
        .count();
}

struct settings {
    std::string host = "127.0.0.1";
    int port = 0;
    std::size_t samples = 2000;
    std::size_t processes = 4;
    std::size_t waiters = 64;
    std::size_t queue_concurrency = 16;
    std::chrono::milliseconds duration{5000};
    std::size_t wake_rounds = 150;
    std::chrono::milliseconds hold{5};
    std::size_t kills = 5;
    std::chrono::milliseconds kill_ttl{1000};
};

btq::redis_endpoint endpoint(const settings& config, const std::string& pool) {
    return btq::parse_redis_url("redis://" + config.host + ":" + std::to_string(config.port) + "/" +
                                pool);
}

// ---- JSON and percentiles --------------------------------------------------------------------

/// Nearest-rank percentiles of samples in nanoseconds, written in microseconds.
std::string summary_us(std::vector<std::int64_t> samples) {
    if (samples.empty()) {
        return "null";
    }
    std::sort(samples.begin(), samples.end());
    const auto rank = [&samples](double q) {
        const auto at = static_cast<std::size_t>(q * static_cast<double>(samples.size()));
        return static_cast<double>(samples[std::min(at, samples.size() - 1)]) / 1000.0;
    };
    double sum = 0;
    for (const std::int64_t one : samples) {
        sum += static_cast<double>(one);
    }
    char text[256];
    std::snprintf(text, sizeof text,
                  "{\"n\": %zu, \"p50\": %.1f, \"p99\": %.1f, \"p999\": %.1f, \"mean\": %.1f, "
                  "\"max\": %.1f}",
                  samples.size(), rank(0.50), rank(0.99), rank(0.999),
                  sum / static_cast<double>(samples.size()) / 1000.0,
                  static_cast<double>(samples.back()) / 1000.0);
    return text;
}

std::string number(double value) {
    char text[64];
    std::snprintf(text, sizeof text, "%.3f", value);
    return text;
}

template <class T>
std::string list(const std::vector<T>& values) {
    std::ostringstream out;
    out << "[";
    for (std::size_t at = 0; at < values.size(); ++at) {
        out << (at == 0 ? "" : ", ") << values[at];
    }
    out << "]";
    return out.str();
}

// ---- the server's side: INFO commandstats, the pool's sorted set -------------------------------

struct server_counts {
    std::uint64_t commands = 0;
    double cpu_seconds = 0;

    server_counts operator-(const server_counts& before) const {
        return {commands - before.commands, cpu_seconds - before.cpu_seconds};
    }
    /// The JSON fields, per grant.
    [[nodiscard]] std::string per(double grants) const {
        char text[160];
        std::snprintf(text, sizeof text,
                      "\"server_commands_per_grant\": %.3f, \"server_cpu_us_per_grant\": %.2f",
                      static_cast<double>(commands) / grants, cpu_seconds * 1e6 / grants);
        return text;
    }
};

/// A hiredis connection of the harness's own (not the gate's).
class probe {
  public:
    explicit probe(const settings& config) {
        const timeval limit{5, 0};
        context_ = redisConnectWithTimeout(config.host.c_str(), config.port, limit);
        if (context_ == nullptr || context_->err != 0) {
            throw std::runtime_error("cannot connect to redis-server");
        }
    }
    probe(const probe&) = delete;
    probe& operator=(const probe&) = delete;
    ~probe() { redisFree(context_); }

    /// The server's counters so far: calls of every command (those run inside functions and
    /// scripts included; INFO, the probe's own, excluded) and its CPU time.
    [[nodiscard]] server_counts counts() {
        server_counts out;
        std::istringstream lines(text("INFO commandstats") + text("INFO cpu"));
        std::string line;
        while (std::getline(lines, line)) {
            if (line.rfind("used_cpu_sys:", 0) == 0 || line.rfind("used_cpu_user:", 0) == 0) {
                out.cpu_seconds += std::stod(line.substr(line.find(':') + 1));
            }
            if (line.rfind("cmdstat_", 0) != 0 || line.rfind("cmdstat_info:", 0) == 0) {
                continue;
            }
            const auto at = line.find("calls=");
            if (at != std::string::npos) {
                out.commands += std::stoull(line.substr(at + 6));
            }
        }
        return out;
    }

    /// Milliseconds until the earliest lease of `pool` expires on the server (-1: none).
    [[nodiscard]] double lease_left_ms(const std::string& pool) {
        redisAppendCommand(context_, "TIME");
        const std::string key = "{" + pool + "}:holders";
        redisAppendCommand(context_, "ZRANGE %s 0 0 WITHSCORES", key.c_str());
        auto* time = static_cast<redisReply*>(next());
        auto* first = static_cast<redisReply*>(next());
        double left = -1;
        if (time->type == REDIS_REPLY_ARRAY && first->type == REDIS_REPLY_ARRAY &&
            first->elements == 2) {
            const double server_ms = std::stod(time->element[0]->str) * 1000.0 +
                                     std::stod(time->element[1]->str) / 1000.0;
            left = std::stod(first->element[1]->str) - server_ms;
        }
        freeReplyObject(time);
        freeReplyObject(first);
        return left;
    }

    /// SUBSCRIBE to `channel`; then wait_message() blocks for the next message.
    void subscribe(const std::string& channel) {
        freeReplyObject(redisCommand(context_, "SUBSCRIBE %s", channel.c_str()));
    }
    void wait_message() { freeReplyObject(next()); }

  private:
    std::string text(const char* command) {
        auto* reply = static_cast<redisReply*>(redisCommand(context_, command));
        if (reply == nullptr || reply->type != REDIS_REPLY_STRING) {
            throw std::runtime_error(std::string("redis-server: ") + command + " failed");
        }
        std::string out(reply->str, reply->len);
        freeReplyObject(reply);
        return out;
    }
    void* next() {
        void* reply = nullptr;
        if (redisGetReply(context_, &reply) != REDIS_OK || reply == nullptr) {
            throw std::runtime_error("redis-server: no reply");
        }
        return reply;
    }

    redisContext* context_ = nullptr;
};

// ---- processes and shared memory ---------------------------------------------------------------

template <class T>
T* shared_array(std::size_t count) {
    void* memory = ::mmap(nullptr, sizeof(T) * count, PROT_READ | PROT_WRITE,
                          MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED) {
        throw std::runtime_error("mmap failed");
    }
    T* first = static_cast<T*>(memory);
    std::uninitialized_value_construct_n(first, count);
    return first;
}

template <class T>
void shared_free(T* memory, std::size_t count) {
    ::munmap(memory, sizeof(T) * count);
}

/// Forks a child that runs `body` and exits (1 on an exception); it dies with the harness. The
/// harness has no thread of its own when it forks (every gate it made is destroyed by then).
template <class Body>
pid_t fork_child(Body body) {
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) {
        throw std::runtime_error("fork failed");
    }
    if (pid == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) {
            ::_exit(1);
        }
        int code = 0;
        try {
            body();
        } catch (const std::exception& error) {
            std::fprintf(stderr, "btq_bench_redis child: %s\n", error.what());
            code = 1;
        }
        std::fflush(nullptr);
        ::_exit(code);
    }
    return pid;
}

void reap(pid_t pid) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        throw std::runtime_error("a child process failed");
    }
}

void wait_until(const std::atomic<std::int64_t>& value, std::int64_t at_least,
                std::chrono::milliseconds timeout = 30s) {
    const auto until = clock_type::now() + timeout;
    while (value.load(std::memory_order_acquire) < at_least) {
        if (clock_type::now() > until) {
            throw std::runtime_error("timed out waiting for another process");
        }
        std::this_thread::sleep_for(20us);
    }
}

// ---- uncontended -------------------------------------------------------------------------------

std::string uncontended(const settings& config) {
    const std::string pool = "bench-uncontended";
    probe server(config);
    probe wake(config);
    wake.subscribe("{" + pool + "}:wake");

    std::vector<std::int64_t> acquire;
    std::vector<std::int64_t> release;
    std::vector<std::int64_t> cycle;
    std::uint64_t acquire_trips = 0;
    std::uint64_t release_trips = 0;
    server_counts used;
    const std::size_t warm_up = 50;
    {
        btq::redis_permits permits({.endpoint = endpoint(config, pool), .limit = 16});
        queue_type queue(permits, {.max_concurrency = 1, .capacity = 1});
        server_counts used_before;
        for (std::size_t round = 0; round < warm_up + config.samples; ++round) {
            if (round == warm_up) {
                used_before = server.counts();
            }
            const auto before = permits.stats();
            std::int64_t started = 0;
            std::int64_t ended = 0;
            std::uint64_t trips_at_start = 0;
            const std::int64_t submitted = now_ns();
            queue
                .submit(btq::fenced_task<void>([&](const btq::redis_permit_info&, std::stop_token) {
                    started = now_ns();
                    trips_at_start = permits.stats().round_trips;
                    ended = now_ns();
                }))
                .get();
            wake.wait_message(); // the release's PUBLISH: the permit is off the server's set
            const std::int64_t released = now_ns();
            // The gate counts the release once its reply is read: wait for it, untimed.
            while (permits.stats().releases == before.releases) {
                std::this_thread::sleep_for(10us);
            }
            if (round >= warm_up) {
                acquire.push_back(started - submitted);
                release.push_back(released - ended);
                cycle.push_back(released - submitted);
                acquire_trips += trips_at_start - before.round_trips;
                release_trips += permits.stats().round_trips - trips_at_start;
            }
        }
        used = server.counts() - used_before;
    }
    const double tasks = static_cast<double>(config.samples);
    return "{\"samples\": " + std::to_string(config.samples) +
           ", \"acquire_us\": " + summary_us(acquire) + ", \"release_us\": " + summary_us(release) +
           ", \"cycle_us\": " + summary_us(cycle) +
           ", \"round_trips_per_acquire\": " + number(static_cast<double>(acquire_trips) / tasks) +
           ", \"round_trips_per_release\": " + number(static_cast<double>(release_trips) / tasks) +
           ", " + used.per(tasks) + "}";
}

// ---- contended and saturation ------------------------------------------------------------------

struct contended_shared {
    std::atomic<std::int64_t> ready{0};
    std::atomic<std::int64_t> go_at{0}; // start of the measured window (ns), 0 = not yet
    std::atomic<std::int64_t> done{0};
};

struct process_result {
    std::atomic<std::int64_t> count{0}; // samples written
    std::uint64_t grants = 0;           // the gate's grants during the run
    std::uint64_t round_trips = 0;      // the gate's round trips during the run
    std::uint64_t in_window = 0;        // tasks started inside the measured window
};

void contended_child(const settings& config, const std::string& pool, std::size_t limit,
                     contended_shared* shared, process_result* result, std::int64_t* samples,
                     std::size_t capacity) {
    btq::redis_permits permits({.endpoint = endpoint(config, pool), .limit = limit});
    std::counting_semaphore<> free_places(0);
    std::atomic<std::uint64_t> in_window{0};
    std::int64_t window_end = 0;
    {
        queue_type queue(permits,
                         {.max_concurrency = config.queue_concurrency, .capacity = config.waiters});
        queue.submit(btq::fenced_task<void>([](const btq::redis_permit_info&, std::stop_token) {}))
            .get(); // connected, functions loaded
        const auto before = permits.stats();
        shared->ready.fetch_add(1, std::memory_order_acq_rel);
        wait_until(shared->go_at, 1);
        const std::int64_t window_start = shared->go_at.load();
        window_end = window_start + std::chrono::nanoseconds(config.duration).count();
        free_places.release(static_cast<std::ptrdiff_t>(config.waiters));
        for (;;) {
            free_places.acquire();
            const std::int64_t submitted = now_ns();
            if (submitted >= window_end) {
                break;
            }
            queue.submit(
                btq::fenced_task<void>(
                    [&, submitted](const btq::redis_permit_info&, std::stop_token) {
                        const std::int64_t started = now_ns();
                        if (started < window_end) {
                            in_window.fetch_add(1, std::memory_order_relaxed);
                            const auto at = static_cast<std::size_t>(
                                result->count.fetch_add(1, std::memory_order_relaxed));
                            if (at < capacity) {
                                samples[at] = started - submitted;
                            }
                        }
                    }),
                [&free_places](btq::task_result<void>) noexcept { free_places.release(); });
        }
        queue.drain();
        const auto after = permits.stats();
        result->grants = after.grants - before.grants;
        result->round_trips = after.round_trips - before.round_trips;
        result->in_window = in_window.load();
    }
    shared->done.fetch_add(1, std::memory_order_acq_rel);
}

std::string contended(const settings& config, std::size_t limit) {
    const std::string pool = "bench-contended-" + std::to_string(limit);
    const std::size_t capacity = 2'000'000;
    auto* shared = shared_array<contended_shared>(1);
    auto* results = shared_array<process_result>(config.processes);
    auto* samples = shared_array<std::int64_t>(capacity * config.processes);
    std::vector<pid_t> children;
    std::string out;
    try {
        for (std::size_t at = 0; at < config.processes; ++at) {
            children.push_back(fork_child([&, at] {
                contended_child(config, pool, limit, shared, &results[at], samples + at * capacity,
                                capacity);
            }));
        }
        probe server(config);
        wait_until(shared->ready, static_cast<std::int64_t>(config.processes));
        const server_counts used_before = server.counts();
        shared->go_at.store(now_ns() + std::chrono::nanoseconds(20ms).count());
        wait_until(shared->done, static_cast<std::int64_t>(config.processes),
                   config.duration + 60s);
        const server_counts used = server.counts() - used_before;
        for (const pid_t child : children) {
            reap(child);
        }
        children.clear();

        std::vector<std::int64_t> acquire;
        std::vector<std::uint64_t> per_process;
        std::uint64_t grants = 0;
        std::uint64_t trips = 0;
        std::uint64_t in_window = 0;
        for (std::size_t at = 0; at < config.processes; ++at) {
            const auto count =
                std::min<std::size_t>(capacity, static_cast<std::size_t>(results[at].count.load()));
            acquire.insert(acquire.end(), samples + at * capacity, samples + at * capacity + count);
            per_process.push_back(results[at].in_window);
            grants += results[at].grants;
            trips += results[at].round_trips;
            in_window += results[at].in_window;
        }
        const double seconds = std::chrono::duration<double>(config.duration).count();
        out = "{\"limit\": " + std::to_string(limit) +
              ", \"processes\": " + std::to_string(config.processes) +
              ", \"waiters_per_process\": " + std::to_string(config.waiters) +
              ", \"duration_s\": " + number(seconds) + ", \"grants\": " + std::to_string(grants) +
              ", \"grants_per_s\": " + number(static_cast<double>(in_window) / seconds) +
              ", \"acquire_us\": " + summary_us(std::move(acquire)) + ", \"release_us\": null" +
              ", " + used.per(static_cast<double>(grants)) +
              ", \"client_round_trips_per_grant\": " +
              number(static_cast<double>(trips) / static_cast<double>(grants)) +
              ", \"grants_per_process\": " + list(per_process) + "}";
    } catch (...) {
        for (const pid_t child : children) {
            ::kill(child, SIGKILL);
            ::waitpid(child, nullptr, 0);
        }
        throw;
    }
    shared_free(samples, capacity * config.processes);
    shared_free(results, config.processes);
    shared_free(shared, 1);
    return out;
}

// ---- wake latency ------------------------------------------------------------------------------

struct wake_shared {
    std::atomic<std::int64_t> ready{0};
    std::atomic<std::int64_t> go{0};
    std::atomic<std::int64_t> started{0}; // grants started so far (they alternate processes)
    std::atomic<std::int64_t> released_at{0};
    std::uint64_t round_trips[2] = {0, 0};
};

void wake_child(const settings& config, std::size_t self, wake_shared* shared, std::int64_t* wake) {
    btq::redis_permits permits({.endpoint = endpoint(config, "bench-wake"), .limit = 1});
    {
        queue_type queue(permits, {.max_concurrency = 1, .capacity = 1});
        queue.submit(btq::fenced_task<void>([](const btq::redis_permit_info&, std::stop_token) {}))
            .get();
        const std::uint64_t trips_before = permits.stats().round_trips;
        shared->ready.fetch_add(1);
        wait_until(shared->go, 1);
        for (std::size_t round = 0; round < config.wake_rounds; ++round) {
            const auto grant = static_cast<std::int64_t>(2 * round + self);
            wait_until(shared->started, grant); // the previous grant (the other's) has started
            queue
                .submit(btq::fenced_task<void>(
                    [&, grant](const btq::redis_permit_info&, std::stop_token) {
                        const std::int64_t started = now_ns();
                        if (grant > 0) {
                            wake[grant] = started - shared->released_at.load();
                        }
                        shared->started.store(grant + 1, std::memory_order_release);
                        std::this_thread::sleep_for(config.hold);
                        shared->released_at.store(now_ns());
                    }))
                .get();
        }
        // The last release reaches the server before the count is read.
        while (permits.stats().releases < permits.stats().grants) {
            std::this_thread::sleep_for(100us);
        }
        shared->round_trips[self] = permits.stats().round_trips - trips_before;
    }
}

std::string wake_latency(const settings& config) {
    const std::size_t grants = 2 * config.wake_rounds;
    auto* shared = shared_array<wake_shared>(1);
    auto* wake = shared_array<std::int64_t>(grants);
    std::vector<pid_t> children;
    std::string out;
    try {
        for (std::size_t self = 0; self < 2; ++self) {
            children.push_back(fork_child([&, self] { wake_child(config, self, shared, wake); }));
        }
        probe server(config);
        wait_until(shared->ready, 2);
        const server_counts used_before = server.counts();
        shared->go.store(1);
        for (const pid_t child : children) {
            reap(child);
        }
        children.clear();
        const server_counts used = server.counts() - used_before;
        const std::vector<std::int64_t> samples(wake + 1, wake + grants);
        out = "{\"hold_ms\": " + std::to_string(config.hold.count()) +
              ", \"wake_us\": " + summary_us(samples) + ", " +
              used.per(static_cast<double>(grants)) + ", \"client_round_trips_per_grant\": " +
              number(static_cast<double>(shared->round_trips[0] + shared->round_trips[1]) /
                     static_cast<double>(grants)) +
              "}";
    } catch (...) {
        for (const pid_t child : children) {
            ::kill(child, SIGKILL);
            ::waitpid(child, nullptr, 0);
        }
        throw;
    }
    shared_free(wake, grants);
    shared_free(shared, 1);
    return out;
}

// ---- recovery after a holder's SIGKILL ---------------------------------------------------------

struct recovery_shared {
    std::atomic<std::int64_t> holding{0};
    std::atomic<std::int64_t> waiting{0};
    std::atomic<std::int64_t> recovered_at{0};
};

std::string recovery(const settings& config) {
    const std::string pool = "bench-recovery";
    auto* shared = shared_array<recovery_shared>(1);
    std::vector<double> recovery_ms;
    std::vector<double> left_ms;
    std::vector<double> after_expiry_ms;
    pid_t holder = -1;
    pid_t waiter = -1;
    try {
        probe server(config);
        for (std::size_t round = 0; round < config.kills; ++round) {
            new (shared) recovery_shared();
            holder = fork_child([&] {
                btq::redis_permits permits(
                    {.endpoint = endpoint(config, pool), .limit = 1, .lease_ttl = config.kill_ttl});
                queue_type queue(permits, {.max_concurrency = 1, .capacity = 1});
                queue
                    .submit(
                        btq::fenced_task<void>([&](const btq::redis_permit_info&, std::stop_token) {
                            shared->holding.store(1);
                            for (;;) { // until SIGKILL (its lease is renewed meanwhile)
                                std::this_thread::sleep_for(1s);
                            }
                        }))
                    .get();
            });
            wait_until(shared->holding, 1);
            waiter = fork_child([&] {
                btq::redis_permits permits(
                    {.endpoint = endpoint(config, pool), .limit = 1, .lease_ttl = config.kill_ttl});
                queue_type queue(permits, {.max_concurrency = 1, .capacity = 1});
                auto done = queue.submit(
                    btq::fenced_task<void>([&](const btq::redis_permit_info&, std::stop_token) {
                        shared->recovered_at.store(now_ns());
                    }));
                shared->waiting.store(1);
                done.get();
            });
            wait_until(shared->waiting, 1);
            // Kill at different points of the holder's renewal period (ttl / 3).
            std::this_thread::sleep_for(config.kill_ttl / 2 + config.kill_ttl * round / 7);
            const double left = server.lease_left_ms(pool);
            const std::int64_t killed = now_ns();
            ::kill(holder, SIGKILL);
            ::waitpid(holder, nullptr, 0);
            holder = -1;
            wait_until(shared->recovered_at, 1, config.kill_ttl * 5);
            reap(waiter);
            waiter = -1;
            const double took =
                static_cast<double>(shared->recovered_at.load() - killed) / 1'000'000.0;
            recovery_ms.push_back(took);
            left_ms.push_back(left);
            after_expiry_ms.push_back(took - left);
        }
    } catch (...) {
        for (const pid_t child : {holder, waiter}) {
            if (child > 0) {
                ::kill(child, SIGKILL);
                ::waitpid(child, nullptr, 0);
            }
        }
        throw;
    }
    shared_free(shared, 1);
    std::vector<double> sorted = recovery_ms;
    std::sort(sorted.begin(), sorted.end());
    std::vector<double> late = after_expiry_ms;
    std::sort(late.begin(), late.end());
    const auto text = [](const std::vector<double>& values) {
        std::vector<std::string> out;
        for (const double value : values) {
            out.push_back(number(value));
        }
        return list(out);
    };
    return "{\"ttl_ms\": " + std::to_string(config.kill_ttl.count()) +
           ", \"kills\": " + std::to_string(config.kills) +
           ", \"recovery_ms\": " + text(recovery_ms) +
           ", \"median_ms\": " + number(sorted[sorted.size() / 2]) +
           ", \"max_ms\": " + number(sorted.back()) +
           ", \"lease_left_at_kill_ms\": " + text(left_ms) +
           ", \"after_expiry_ms\": " + text(after_expiry_ms) +
           ", \"after_expiry_median_ms\": " + number(late[late.size() / 2]) + "}";
}

// ---- main --------------------------------------------------------------------------------------

settings parse(int argc, char** argv) {
    settings config;
    std::map<std::string, std::string> given;
    for (int at = 1; at + 1 < argc; at += 2) {
        given[argv[at]] = argv[at + 1];
    }
    if (argc % 2 != 1 || !given.contains("--port")) {
        throw std::invalid_argument("usage: btq_bench_redis --port P [--host H] [--samples K] "
                                    "[--processes P] [--waiters W] [--duration-ms D] "
                                    "[--wake-rounds R] [--hold-ms H] [--kills K] "
                                    "[--kill-ttl-ms T]");
    }
    const auto size = [&given](const char* name, std::size_t fallback) {
        return given.contains(name) ? std::stoul(given[name]) : fallback;
    };
    config.host = given.contains("--host") ? given["--host"] : config.host;
    config.port = std::stoi(given["--port"]);
    config.samples = size("--samples", config.samples);
    config.processes = size("--processes", config.processes);
    config.waiters = size("--waiters", config.waiters);
    config.duration = std::chrono::milliseconds(size("--duration-ms", 5000));
    config.wake_rounds = size("--wake-rounds", config.wake_rounds);
    config.hold = std::chrono::milliseconds(size("--hold-ms", 5));
    config.kills = size("--kills", config.kills);
    config.kill_ttl = std::chrono::milliseconds(size("--kill-ttl-ms", 1000));
    return config;
}

int run(int argc, char** argv) {
    const settings config = parse(argc, argv);
    std::string out =
        "{\"library\": \"btq::redis_permits\", \"settings\": {\"samples\": " +
        std::to_string(config.samples) + ", \"processes\": " + std::to_string(config.processes) +
        ", \"waiters_per_process\": " + std::to_string(config.waiters) +
        ", \"queue_max_concurrency\": " + std::to_string(config.queue_concurrency) +
        ", \"duration_ms\": " + std::to_string(config.duration.count()) +
        ", \"lease_ttl_ms\": 10000, \"kill_ttl_ms\": " + std::to_string(config.kill_ttl.count()) +
        "}";
    std::fprintf(stderr, "btq: uncontended\n");
    out += ", \"uncontended\": " + uncontended(config);
    std::fprintf(stderr, "btq: contended, N = 1\n");
    out += ", \"contended\": [" + contended(config, 1);
    std::fprintf(stderr, "btq: contended, N = 16\n");
    out += ", " + contended(config, 16) + "]";
    std::fprintf(stderr, "btq: wake latency\n");
    out += ", \"wake\": " + wake_latency(config);
    std::fprintf(stderr, "btq: recovery after SIGKILL\n");
    out += ", \"recovery\": " + recovery(config) + "}";
    std::printf("%s\n", out.c_str());
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception& error) {
        std::fprintf(stderr, "btq_bench_redis: %s\n", error.what());
        return 1;
    }
}
