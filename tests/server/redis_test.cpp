// The cluster-wide limit of the example server (--redis, --global-concurrency): refusing bad
// combinations at start, and, with a redis-server the test starts on a free loopback port
// (tests/common/redis_server.hpp), one or two servers sharing one pool of permits.
#include "support.hpp"

#include <catch2/catch.hpp>

#if BTQ_SERVER_TESTS_REDIS
#include "../common/redis_server.hpp"
#endif

#include <algorithm>
#include <atomic>
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
/// it and one that started later must not be counted together).
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
        }
        return most_;
    }
    [[nodiscard]] std::size_t samples() const { return samples_; }

  private:
    void sample() {
        while (!done_) {
            std::vector<pid_t> seen;
            for (const process_info& info : list_processes()) {
                if (std::find(servers_.begin(), servers_.end(), info.parent) != servers_.end() &&
                    alive(info) && runs_worker(info)) {
                    seen.push_back(info.pid);
                }
            }
            std::size_t together = 0;
            for (const pid_t pid : seen) {
                const auto again = read_process(pid);
                together += again && alive(*again) ? 1 : 0;
            }
            most_ = std::max(most_.load(), together);
            ++samples_;
            std::this_thread::sleep_for(2ms);
        }
    }

    std::vector<pid_t> servers_;
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
          "the memory gate beside them, like other bad flags",
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
        {{"--redis", url, "--global-concurrency", "1", "--min-available-memory", "1K"},
         "cannot be combined yet"},
        {{"--redis", url, "--global-concurrency", "1", "--max-memory-pressure", "50"},
         "cannot be combined yet"},
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
    // Not peakActive: the queue gives a task's permit back (freeing its node) just before it
    // frees the task's slot, so the next task can start while the one that ended, its worker
    // already gone, is still counted active for a moment. The workers alive are what is bounded.
    CHECK(int_of(stats.at("processPool").as_object(), "peakActive") <= 2);
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
          "together and answer every request 200 or 503",
          "[server]") {
    btq_redis_test::redis_server redis;
    const std::string url = redis.url("btq-server-two");
    server_config config = redis_config(url, 3, 3);
    config.worker_delay_ms = 50;
    server_process first(config);
    server_process second(config);

    worker_sampler sampler({first.pid(), second.pid()});
    constexpr std::size_t requests = 120;
    const std::vector<http_response> answers = concurrent_requests(requests, [&](std::size_t i) {
        const unsigned short port = i % 2 == 0 ? first.port() : second.port();
        return try_request(port, "GET", "/api/playlists", "", {}, 20s);
    });
    const std::size_t most = sampler.stop();
    std::size_t ok = 0;
    std::size_t refused = 0;
    for (const http_response& answer : answers) {
        ok += answer.status == 200 ? 1 : 0;
        refused += answer.status == 503 ? 1 : 0;
    }
    INFO("200: " << ok << ", 503: " << refused << ", samples " << sampler.samples()
                 << ", most workers together " << most);
    CHECK(ok + refused == requests);
    CHECK(ok > 0);
    CHECK(most <= 3);
    CHECK(sampler.samples() > 0);
    for (server_process* server : {&first, &second}) {
        const json::object stats = json_body(server->get("/api/queue-stats"));
        INFO(json::serialize(stats));
        CHECK(int_of(stats.at("processPool").as_object(), "peakActive") <= 3);
        CHECK(int_of(stats.at("redis").as_object(), "leasesLost") == 0);
    }
}

#endif
