// The cluster-wide limit of the example server (--redis, --global-concurrency): refusing bad
// combinations at start, and, with a redis-server the test starts on a free loopback port
// (tests/common/redis_server.hpp), one or two servers sharing one pool of permits.
#include "support.hpp"

#include <catch2/catch.hpp>

#if BTQ_SERVER_TESTS_REDIS
#include "../common/redis_server.hpp"

#include <btq/redis/redis_permits.hpp>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using namespace srv_test;

namespace {

#if BTQ_SERVER_TESTS_REDIS

/// The most schedule_worker processes of `servers` alive at one instant, sampled from /proc
/// until `done`: a worker counts only if it is still alive when re-read after the whole scan,
/// so every counted one was alive at the scan's end (a scan is not atomic: one that ended during
/// it and one that started later must not be counted together). children_of() reads the
/// servers' children from /proc/SERVER/task/TID/children: a sample takes well under a
/// millisecond.
class worker_sampler {
  public:
    explicit worker_sampler(std::vector<pid_t> servers)
        : servers_(std::move(servers)), thread_([this] { sample(); }) {}
    worker_sampler(const worker_sampler&) = delete;
    worker_sampler& operator=(const worker_sampler&) = delete;
    ~worker_sampler() { stop(); }

    std::size_t stop() {
        done_ = true;
        if (thread_.joinable()) {
            thread_.join();
            stopped_ = std::chrono::steady_clock::now();
        }
        return most_;
    }
    [[nodiscard]] std::size_t samples() const { return samples_; }
    /// Samples per second between the start and stop().
    [[nodiscard]] double rate() const {
        const std::chrono::duration<double> took = stopped_ - started_;
        return took.count() > 0 ? static_cast<double>(samples_) / took.count() : 0.0;
    }

  private:
    void sample() {
        while (!done_) {
            std::vector<pid_t> seen;
            for (const pid_t server : servers_) {
                for (const process_info& info : children_of(server)) {
                    if (alive(info) && runs_worker(info)) {
                        seen.push_back(info.pid);
                    }
                }
            }
            std::size_t together = 0;
            for (const pid_t pid : seen) {
                const auto again = read_process(pid);
                together += again && alive(*again) ? 1 : 0;
            }
            most_ = std::max(most_.load(), together);
            ++samples_;
            std::this_thread::sleep_for(1ms);
        }
    }

    std::vector<pid_t> servers_;
    std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
    std::chrono::steady_clock::time_point stopped_ = started_;
    std::atomic<bool> done_{false};
    std::atomic<std::size_t> most_{0};
    std::atomic<std::size_t> samples_{0};
    std::thread thread_;
};

/// A spawn-mode server in the pool `url` of `limit` permits, `pool_size` slots of its own.
server_config redis_config(const std::string& url, unsigned limit, unsigned pool_size) {
    server_config config;
    config.mode = "spawn";
    config.pool_size = pool_size;
    config.queue_capacity = 1000;
    config.queue_timeout_ms = 15'000;
    config.extra_arguments = {"--redis", url, "--global-concurrency", std::to_string(limit),
                              "--no-access-log"};
    return config;
}

#endif

} // namespace

TEST_CASE("the server refuses --redis and --global-concurrency alone, N below 1, a bad URL and "
          "the lease flags without --redis or out of range, like other bad flags",
          "[server]") {
    const auto [usual, usual_log] = start_refused({"--pool-size", "0"});
    INFO(usual_log);
    REQUIRE(usual > 0);

    const std::string url = "redis://127.0.0.1:1/btq-imports"; // never connected to
    const std::vector<std::pair<std::vector<std::string>, std::string>> cases{
        {{"--redis", url}, "go together"},
        {{"--global-concurrency", "3"}, "go together"},
        {{"--redis", url, "--global-concurrency", "0"}, "at least 1"},
        {{"--redis", url, "--global-concurrency", "-2"}, "at least 1"},
        {{"--redis", "http://127.0.0.1/x", "--global-concurrency", "1"}, "bad Redis URL"},
        {{"--redis", "redis://127.0.0.1:99999/x", "--global-concurrency", "1"}, "bad Redis URL"},
        {{"--redis-lease-ttl-ms", "5000"}, "only means something with --redis"},
        {{"--redis-unavailable", "fail-fast"}, "only means something with --redis"},
        {{"--redis", url, "--global-concurrency", "1", "--redis-lease-ttl-ms", "50"},
         "--redis-lease-ttl-ms"},
        {{"--redis", url, "--global-concurrency", "1", "--redis-unavailable", "sometimes"},
         "--redis-unavailable"},
    };
    for (const auto& [flags, message] : cases) {
        check_refused_at_start(flags, message, usual);
    }
#if !BTQ_SERVER_TESTS_REDIS
    check_refused_at_start({"--redis", url, "--global-concurrency", "1"}, "built without Redis",
                           usual);
#endif
}

#if BTQ_SERVER_TESTS_REDIS

TEST_CASE(
    "a server with --global-concurrency 1 runs concurrent requests one at a time and queue-stats, "
    "/metrics and /readyz show the Redis gate",
    "[server]") {
    btq_redis_test::redis_server redis;
    server_config config = redis_config(redis.url("btq-server-one"), 1, 4);
    config.worker_delay_ms = 200;
    server_process server(config);

    worker_sampler sampler({server.pid()});
    const std::vector<http_response> answers = concurrent_requests(4, [&](std::size_t) {
        return try_request(server.port(), "GET", "/api/playlists", "", {}, 20s);
    });
    const std::size_t most = sampler.stop();
    for (const http_response& answer : answers) {
        INFO(answer.body);
        CHECK(answer.status == 200);
    }
    INFO("samples " << sampler.samples());
    CHECK(most <= 1);

    REQUIRE(wait_until([&] { return int_of(server.pool_stats(), "activeProcesses") == 0; }, 5s));
    const json::object stats = json_body(server.get("/api/queue-stats"));
    INFO(json::serialize(stats));
    // The queue gives a permit back only after its task's slot is free: one at a time.
    CHECK(int_of(stats.at("processPool").as_object(), "peakActive") == 1);
    REQUIRE(stats.contains("redis"));
    const json::object& gate = stats.at("redis").as_object();
    CHECK(text_of(gate, "url") == redis.url("btq-server-one"));
    CHECK(int_of(gate, "globalConcurrency") == 1);
    CHECK(int_of(gate, "permitsHeld") == 0);
    CHECK(int_of(gate, "waiters") == 0);
    CHECK(int_of(gate, "grants") >= 4);
    CHECK(int_of(gate, "leasesLost") == 0);
    CHECK(gate.contains("leaseRenewals"));
    CHECK(gate.at("healthy") == true);

    const std::string metrics = server.get("/metrics").body;
    INFO(metrics);
    CHECK(contains(metrics, "# TYPE btq_redis_permits_held gauge\nbtq_redis_permits_held 0\n"));
    CHECK(contains(metrics, "# TYPE btq_redis_waiters gauge\n"));
    CHECK(contains(metrics, "# TYPE btq_redis_lease_renewals_total counter\n"));
    CHECK(contains(metrics, "# TYPE btq_redis_leases_lost_total counter\n"
                            "btq_redis_leases_lost_total 0\n"));
    CHECK(contains(metrics, "# TYPE btq_redis_healthy gauge\nbtq_redis_healthy 1\n"));
    CHECK(server.get("/readyz").status == 200);

    // Redis gone: /readyz reports not ready.
    redis.kill_hard();
    const bool unready = wait_until(
        [&] {
            // A request makes the gate talk to Redis, in case it only notices then.
            (void)try_request(server.port(), "GET", "/api/playlists", "", {}, 2s);
            return server.get("/readyz").status == 503;
        },
        15s, 50ms);
    CHECK(unready);
    CHECK(contains(server.get("/readyz").body, "Redis"));
}

TEST_CASE("two servers on one Redis with --global-concurrency 3 never run more than 3 workers "
          "together (sampled at 100 Hz or more) and answer each of 300 requests 200 or 503",
          "[server]") {
    btq_redis_test::redis_server redis;
    const std::string url = redis.url("btq-server-two");
    server_config config = redis_config(url, 3, 3);
    config.worker_delay_ms = 30;
    config.queue_timeout_ms = 30'000;
    server_process first(config);
    server_process second(config);

    worker_sampler sampler({first.pid(), second.pid()});
    constexpr std::size_t requests = 300;
    const std::vector<http_response> answers = concurrent_requests(requests, [&](std::size_t i) {
        const unsigned short port = i % 2 == 0 ? first.port() : second.port();
        return try_request(port, "GET", "/api/playlists", "", {}, 20s * time_scale());
    });
    const std::size_t most = sampler.stop();
    const auto answered = [&](unsigned status) {
        return static_cast<std::size_t>(
            std::count_if(answers.begin(), answers.end(), [status](const http_response& answer) {
                return answer.status == status;
            }));
    };
    std::size_t ok = 0;
    std::size_t refused = 0;
    for (const http_response& answer : answers) {
        ok += answer.status == 200 ? 1 : 0;
        refused += answer.status == 503 ? 1 : 0;
    }
    INFO("200: " << ok << ", 503: " << refused << ", samples " << sampler.samples() << " ("
                 << sampler.rate() << " Hz), most workers together " << most);
    CHECK(ok + refused == requests);
    CHECK(answered(200) + answered(503) == requests);
    CHECK(ok > 0);
    CHECK(most <= 3);
    CHECK(most >= 1);
    CHECK(sampler.rate() >= 100.0);
    for (server_process* server : {&first, &second}) {
        const json::object stats = json_body(server->get("/api/queue-stats"));
        INFO(json::serialize(stats));
        CHECK(int_of(stats.at("processPool").as_object(), "peakActive") <= 3);
        CHECK(int_of(stats.at("redis").as_object(), "leasesLost") == 0);
    }
}

TEST_CASE("two pool-mode servers on one Redis with --global-concurrency 2 run at most 2 requests "
          "at once between them",
          "[server]") {
    btq_redis_test::redis_server redis;
    const std::string url = redis.url("btq-server-pool");
    server_config config = redis_config(url, 2, 3);
    config.mode = "pool";
    config.worker_delay_ms = 100;
    server_process first(config);
    server_process second(config);

    constexpr std::size_t requests = 40;
    const auto started = std::chrono::steady_clock::now();
    const std::vector<http_response> answers = concurrent_requests(requests, [&](std::size_t i) {
        const unsigned short port = i % 2 == 0 ? first.port() : second.port();
        return try_request(port, "GET", "/api/playlists", "", {}, 30s);
    });
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - started;
    for (const http_response& answer : answers) {
        INFO(answer.body);
        CHECK(answer.status == 200);
    }
    // Six workers could run 40 requests of 100 ms in under 0.7 s; two permits need 2 s at least.
    INFO("took " << took.count() << " s");
    CHECK(took.count() >= 1.9);
    std::uint64_t grants = 0;
    for (server_process* server : {&first, &second}) {
        const json::object stats = json_body(server->get("/api/queue-stats"));
        INFO(json::serialize(stats));
        CHECK(int_of(stats.at("processPool").as_object(), "peakActive") <= 2);
        const json::object& gate = stats.at("redis").as_object();
        CHECK(int_of(gate, "leasesLost") == 0);
        grants += static_cast<std::uint64_t>(int_of(gate, "grants"));
    }
    CHECK(grants >= requests);
}

TEST_CASE("with the memory gate too, a server chains both: a request waiting for memory holds no "
          "cluster permit, and every request is answered",
          "[server]") {
    btq_redis_test::redis_server redis;
    const std::string url = redis.url("btq-server-chain");
    server_config config = redis_config(url, 3, 4);
    config.worker_delay_ms = 100;
    // Far more than any machine has: the memory gate holds every request but one at a time
    // (its progress guarantee), so it is what holds the queue, not Redis.
    config.extra_arguments.insert(config.extra_arguments.end(),
                                  {"--min-available-memory", "1048576G"});
    server_process server(config);

    worker_sampler sampler({server.pid()});
    std::atomic<bool> sampling{true};
    std::atomic<long> most_waiters{0};
    std::atomic<long> most_held_for_memory{0};
    std::thread watcher([&] {
        while (sampling) {
            const json::object stats = json_body(server.get("/api/queue-stats"));
            const long waiters = int_of(stats.at("redis").as_object(), "waiters");
            const long held = int_of(stats.at("queue").as_object(), "heldForMemory");
            most_waiters = std::max(most_waiters.load(), waiters);
            most_held_for_memory = std::max(most_held_for_memory.load(), held);
            std::this_thread::sleep_for(10ms);
        }
    });
    const std::vector<http_response> answers = concurrent_requests(6, [&](std::size_t) {
        return try_request(server.port(), "GET", "/api/playlists", "", {}, 20s);
    });
    sampling = false;
    watcher.join();
    const std::size_t most = sampler.stop();
    for (const http_response& answer : answers) {
        INFO(answer.body);
        CHECK(answer.status == 200);
    }
    CHECK(most <= 1); // one at a time: memory's progress guarantee
    CHECK(most_held_for_memory.load() >= 1);
    CHECK(most_waiters.load() <= 1); // the cluster pool is asked for one permit at a time
    const json::object stats = json_body(server.get("/api/queue-stats"));
    INFO(json::serialize(stats));
    CHECK(int_of(stats.at("queue").as_object(), "heldForMemoryTotal") >= 1);
    CHECK(int_of(stats.at("redis").as_object(), "grants") >= 6);
    CHECK(int_of(stats.at("redis").as_object(), "permitsHeld") == 0);
    CHECK(wait_until(
        [&] { return btq::redis_permits::count_holders(btq::parse_redis_url(url), 2s) == 0; }, 5s));
}

TEST_CASE("Redis unreachable: --redis-unavailable fail-fast answers 503 at once, hold waits for "
          "the queue timeout",
          "[server]") {
    const std::string url =
        "redis://127.0.0.1:" + std::to_string(btq_redis_test::free_port()) + "/btq-gone";
    server_config config = redis_config(url, 2, 2);
    config.queue_timeout_ms = 1500;
    {
        server_config fail_fast = config;
        fail_fast.extra_arguments.insert(fail_fast.extra_arguments.end(),
                                         {"--redis-unavailable", "fail-fast"});
        server_process server(fail_fast);
        // The gate learns that Redis is unreachable on its first connect.
        REQUIRE(wait_until([&] { return server.get("/readyz").status == 503; }, 10s));
        const auto sent = std::chrono::steady_clock::now();
        const http_response answer =
            try_request(server.port(), "GET", "/api/playlists", "", {}, 10s);
        const auto took = std::chrono::steady_clock::now() - sent;
        INFO(answer.body);
        CHECK(answer.status == 503);
        CHECK(contains(answer.body, "cluster permits unavailable"));
        CHECK(took < 1000ms);
    }
    {
        server_process server(config); // hold, the default
        REQUIRE(wait_until([&] { return server.get("/readyz").status == 503; }, 10s));
        const auto sent = std::chrono::steady_clock::now();
        const http_response answer =
            try_request(server.port(), "GET", "/api/playlists", "", {}, 10s);
        const auto took = std::chrono::steady_clock::now() - sent;
        INFO(answer.body);
        CHECK(answer.status == 503);
        CHECK(took >= 1400ms); // it waited for the queue timeout
    }
}

TEST_CASE("a request whose lease is lost while it runs (Redis paused past the lease) is stopped "
          "and answered 503",
          "[server]") {
    btq_redis_test::redis_server redis;
    for (const std::string mode : {"spawn", "pool"}) {
        CAPTURE(mode);
        server_config config = redis_config(redis.url("btq-server-lost-" + mode), 1, 1);
        config.mode = mode;
        config.worker_delay_ms = 4000;
        config.extra_arguments.insert(config.extra_arguments.end(),
                                      {"--redis-lease-ttl-ms", "600"});
        server_process server(config);
        std::thread pauser([&] {
            wait_until([&] { return int_of(server.pool_stats(), "activeProcesses") == 1; }, 10s);
            redis.pause();
            std::this_thread::sleep_for(1200ms); // twice the lease
            redis.resume();
        });
        const auto sent = std::chrono::steady_clock::now();
        const http_response answer =
            try_request(server.port(), "GET", "/api/playlists", "", {}, 20s);
        const auto took = std::chrono::steady_clock::now() - sent;
        pauser.join();
        INFO(answer.body);
        CHECK(answer.status == 503);
        CHECK(contains(answer.body, "cluster-wide permit was lost"));
        CHECK(took < 3500ms); // stopped, not run to its end
        const json::object stats = json_body(server.get("/api/queue-stats"));
        INFO(json::serialize(stats));
        CHECK(int_of(stats.at("redis").as_object(), "leasesLost") == 1);
        // Redis is back: ready again.
        CHECK(wait_until([&] { return server.get("/readyz").status == 200; }, 10s));
    }
}

#endif
