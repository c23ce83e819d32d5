// btq::redis_permits against a real redis-server that each test starts on a free loopback port
// in its own folder (tests/common/redis_server.hpp). Safety is judged by an independent oracle the
// tasks update themselves (oracle.hpp), never by the gate's own counters; after every test the
// pool's free count, read on the server, returns to exactly N.
#include <btq/bounded_task_queue.hpp>
#include <btq/gates/gate_chain.hpp>
#include <btq/gates/memory_gate.hpp>
#include <btq/redis/redis_permits.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <future>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "../common/redis_server.hpp"
#include "oracle.hpp"

using namespace std::chrono_literals;
using btq_redis_test::eventually;
using btq_redis_test::oracle;
using btq_redis_test::redis_server;

namespace {

using fenced_queue =
    btq::bounded_task_queue<btq::fenced_task<void>, btq::thread_executor, btq::redis_permits>;

/// Live leases of the pool, counted by the server (N minus this is its free count).
std::size_t holders(const redis_server& server, const std::string& prefix) {
    return btq::redis_permits::count_holders(btq::parse_redis_url(server.url(prefix)), 2s);
}

btq::redis_permits_options options_for(const redis_server& server, const std::string& prefix,
                                       std::size_t limit, std::chrono::milliseconds ttl) {
    return {.endpoint = btq::parse_redis_url(server.url(prefix)), .limit = limit, .lease_ttl = ttl};
}

/// A memory gate that holds every task while `available` (what its readings say) is below
/// 256 MiB, strictly (no progress guarantee), and reads only when the test calls refresh().
btq::memory_gate_options low_memory_gate(const std::atomic<std::uint64_t>& available) {
    return {.min_available_bytes = 256ull << 20,
            .interval = std::chrono::hours(1),
            .progress_guarantee = false,
            .source = [&available] {
                btq::memory_reading reading;
                reading.mem_available = available.load();
                return reading;
            }};
}

/// Starts `count` holder processes of `mode`; kills any still running at the end.
struct holder_processes {
    std::vector<pid_t> pids;
    holder_processes(const redis_server& server, const std::string& mode, std::size_t count,
                     std::size_t limit, std::size_t tasks, int hold_ms, int ttl_ms,
                     const std::string& oracle_path) {
        for (std::size_t i = 0; i < count; ++i) {
            pids.push_back(btq_redis_test::spawn({BTQ_REDIS_HOLDER, mode, server.url("pool"),
                                                  std::to_string(limit), std::to_string(tasks),
                                                  std::to_string(hold_ms), std::to_string(ttl_ms),
                                                  oracle_path},
                                                 server.folder() + "/holder.log"));
        }
    }
    holder_processes(const holder_processes&) = delete;
    holder_processes& operator=(const holder_processes&) = delete;
    ~holder_processes() {
        for (const pid_t pid : pids) {
            btq_redis_test::signal_child(pid, SIGCONT);
            btq_redis_test::kill_and_reap(pid);
        }
    }
    /// Waits for every process to exit 0 within `timeout`; false otherwise.
    bool all_succeed(std::chrono::milliseconds timeout) {
        const auto until = std::chrono::steady_clock::now() + timeout;
        bool ok = true;
        for (pid_t& pid : pids) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                until - std::chrono::steady_clock::now());
            const std::optional<int> status = btq_redis_test::wait_exit(pid, std::max(left, 0ms));
            ok = ok && status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0;
            if (status) {
                pid = -1;
            }
        }
        return ok;
    }
};

/// A Redis, the oracle, and one holder process whose single task holds the pool's only permit
/// (lease `ttl`) until its stop token is requested.
struct one_holder {
    redis_server server;
    std::string oracle_path = server.folder() + "/oracle";
    oracle shared{oracle_path};
    holder_processes victim;
    std::uint64_t victim_token = 0;

    explicit one_holder(std::chrono::milliseconds ttl)
        : victim(server, "hold", 1, 1, 1, 0, static_cast<int>(ttl.count()), oracle_path) {
        REQUIRE(eventually([&] { return shared->holding.load() == 1; }));
        victim_token = shared->holding_token.load();
    }
};

} // namespace

TEST_CASE("redis permits: 4 processes x 64 waiters never hold more than N permits at once",
          "[redis][oracle]") {
    const std::size_t limit = GENERATE(1u, 3u, 16u);
    redis_server server;
    const std::string oracle_path = server.folder() + "/oracle";
    const oracle shared(oracle_path);
    constexpr std::size_t processes = 4;
    constexpr std::size_t tasks = 64;
    {
        // A TTL far above a task's 2 ms: no lease can run out under a loaded machine's delays.
        holder_processes holders_running(server, "contend", processes, limit, tasks, 2, 3000,
                                         oracle_path);
        REQUIRE(holders_running.all_succeed(90s));
    }
    INFO("N = " << limit << ", most inside at once: " << shared->max_inside.load());
    CHECK(shared->entries.load() == static_cast<std::int64_t>(processes * tasks));
    CHECK(shared->inside.load() == 0);
    CHECK(shared->max_inside.load() <= static_cast<std::int64_t>(limit));
    CHECK(shared->max_inside.load() >= 1);

    // Every grant has its own token; with one permit, tokens grow in the order tasks enter.
    const auto count = static_cast<std::size_t>(shared->token_count.load());
    std::vector<std::uint64_t> tokens;
    for (std::size_t i = 0; i < count; ++i) {
        tokens.push_back(shared->tokens[i].load());
    }
    CHECK(std::set<std::uint64_t>(tokens.begin(), tokens.end()).size() == tokens.size());
    CHECK(std::find(tokens.begin(), tokens.end(), 0u) == tokens.end());
    if (limit == 1) {
        CHECK(std::is_sorted(tokens.begin(), tokens.end()));
        CHECK(shared->rejected_writes.load() == 0);
    }
    CHECK(holders(server, "pool") == 0); // free count back to exactly N
}

TEST_CASE("redis permits: a holder SIGKILLed mid-task frees its permit within one TTL + margin",
          "[redis][fault]") {
    constexpr auto ttl = 1000ms;
    one_holder setup(ttl);
    redis_server& server = setup.server;
    holder_processes& victim = setup.victim;
    const std::uint64_t victim_token = setup.victim_token;

    btq::redis_permits permits(options_for(server, "pool", 1, ttl));
    fenced_queue queue(permits, {.max_concurrency = 1});
    btq_redis_test::signal_child(victim.pids[0], SIGKILL);
    const auto killed = std::chrono::steady_clock::now();
    std::promise<std::uint64_t> granted;
    auto token = granted.get_future();
    auto ran = queue.submit(
        btq::fenced_task<void>([&granted](const btq::redis_permit_info& permit, std::stop_token) {
            granted.set_value(permit.fencing_token);
        }));
    REQUIRE(token.wait_for(20s) == std::future_status::ready);
    const auto recovered = std::chrono::steady_clock::now() - killed;
    INFO("recovered after "
         << std::chrono::duration_cast<std::chrono::milliseconds>(recovered).count() << " ms");
    // Its lease expires on the server one TTL after its last renewal at the latest; the
    // waiter's timer is set to that expiry. 1 s of margin for a loaded machine.
    CHECK(recovered <= ttl + 1000ms);
    CHECK(token.get() > victim_token);
    ran.get();
    queue.drain();
    CHECK(eventually([&] { return holders(server, "pool") == 0; }));
}

TEST_CASE("redis permits: a holder SIGSTOPped past its TTL learns its lease is lost, and the "
          "next grant's token is higher",
          "[redis][fault]") {
    constexpr auto ttl = 600ms;
    one_holder setup(ttl);
    redis_server& server = setup.server;
    const oracle& shared = setup.shared;
    holder_processes& victim = setup.victim;
    const std::uint64_t victim_token = setup.victim_token;
    btq_redis_test::signal_child(victim.pids[0], SIGSTOP);

    // The pool hands the permit to someone else once the paused lease expires on the server.
    btq::redis_permits permits(options_for(server, "pool", 1, ttl));
    fenced_queue queue(permits, {.max_concurrency = 1});
    std::promise<std::uint64_t> granted;
    auto next_token = granted.get_future();
    std::atomic<bool> release{false};
    auto done = queue.submit(
        btq::fenced_task<void>([&](const btq::redis_permit_info& permit, std::stop_token) {
            CHECK(shared.write(permit.fencing_token)); // the resource takes the new holder
            granted.set_value(permit.fencing_token);
            while (!release.load()) {
                std::this_thread::sleep_for(5ms);
            }
        }));
    const bool granted_in_time = next_token.wait_for(20s) == std::future_status::ready;
    const btq::redis_permits_stats stats = permits.stats();
    INFO("grants " << stats.grants << ", round trips " << stats.round_trips << ", errors "
                   << stats.redis_errors << " (" << stats.last_error << "), waiters "
                   << stats.waiters << ", holders on the server " << holders(server, "pool"));
    REQUIRE(granted_in_time);
    const std::uint64_t new_token = next_token.get();
    CHECK(new_token > victim_token);

    const std::int64_t rejected_before = shared->rejected_writes.load();
    btq_redis_test::signal_child(victim.pids[0], SIGCONT);
    // Resumed: its watchdog finds the deadline passed, reports the loss and requests stop.
    REQUIRE(victim.all_succeed(20s));
    CHECK(shared->leases_lost.load() == 1);
    CHECK(shared->stop_seen.load() == 1);
    // Anything it wrote after resuming carried the stale token and was rejected by the fence.
    CHECK(shared->highest_token.load() == new_token);
    INFO("stale writes rejected: " << shared->rejected_writes.load() - rejected_before);
    release = true;
    done.get();
    queue.drain();
    CHECK(eventually([&] { return holders(server, "pool") == 0; }));
}

namespace {

/// Runs `rounds` batches of short tasks through a gate on `server` while `disturb` runs once in
/// the middle; checks that work continues afterwards and no permit leaks.
struct restart_outcome {
    std::uint64_t leases_lost = 0;
    std::uint64_t reconnects = 0;
    std::uint64_t library_loads = 0; // after the disturbance
    std::uint64_t token_before = 0;
    std::uint64_t token_after = 0;
};

template <class Disturb>
restart_outcome run_through(redis_server& server, std::chrono::milliseconds ttl, Disturb disturb) {
    constexpr std::size_t limit = 2;
    restart_outcome out;
    btq::redis_permits permits(options_for(server, "pool", limit, ttl));
    std::atomic<std::int64_t> inside{0};
    std::atomic<std::int64_t> most{0};
    std::atomic<std::int64_t> stopped{0};
    const auto task = [&](std::chrono::milliseconds hold) {
        return btq::fenced_task<void>(
            [&, hold](const btq::redis_permit_info&, std::stop_token stop) {
                btq_redis_test::raise_to(most, ++inside);
                const auto until = std::chrono::steady_clock::now() + hold;
                while (std::chrono::steady_clock::now() < until && !stop.stop_requested()) {
                    std::this_thread::sleep_for(2ms);
                }
                stopped += stop.stop_requested() ? 1 : 0;
                --inside;
            });
    };
    {
        fenced_queue queue(permits, {.max_concurrency = 8, .capacity = 1000});
        for (int i = 0; i < 8; ++i) {
            queue.submit(task(5ms)).get();
        }
        out.token_before = permits.stats().last_fencing_token;
        const std::uint64_t loads_before = permits.stats().library_loads; // the first load
        // Two long tasks hold both permits while Redis is disturbed.
        auto first = queue.submit(task(3 * ttl));
        auto second = queue.submit(task(3 * ttl));
        REQUIRE(eventually([&] { return permits.stats().permits_held == limit; }));
        disturb();
        first.get();
        second.get();
        // No stuck limit: new work gets permits again.
        std::vector<std::future<void>> after;
        for (int i = 0; i < 12; ++i) {
            after.push_back(queue.submit(task(5ms)));
        }
        for (auto& one : after) {
            REQUIRE(one.wait_for(30s) == std::future_status::ready);
            one.get();
        }
        queue.drain();
        const btq::redis_permits_stats stats = permits.stats();
        out.leases_lost = stats.leases_lost;
        out.reconnects = stats.reconnects;
        out.library_loads = stats.library_loads - loads_before;
        out.token_after = stats.last_fencing_token;
        CHECK(stats.permits_held == 0);
        CHECK(stats.healthy);
    }
    CHECK(most.load() <= static_cast<std::int64_t>(limit));
    CHECK(eventually([&] { return holders(server, "pool") == 0; }));
    return out;
}

} // namespace

TEST_CASE("redis permits: Redis SIGKILLed and restarted without persistence leaves no stuck "
          "limit; running leases are reported lost; tokens keep growing",
          "[redis][fault]") {
    redis_server server(false);
    const restart_outcome out = run_through(server, 800ms, [&] {
        server.kill_hard();
        std::this_thread::sleep_for(100ms);
        server.restart();
    });
    INFO("leases lost " << out.leases_lost << ", reconnects " << out.reconnects
                        << ", library loads " << out.library_loads);
    CHECK(out.reconnects >= 1);
    CHECK(out.library_loads >= 1);             // the restarted server had lost the functions
    CHECK(out.leases_lost == 2);               // it had lost the leases too: both tasks were told
    CHECK(out.token_after > out.token_before); // the counter was re-seeded above the old tokens
}

TEST_CASE("redis permits: Redis SIGKILLed and restarted with AOF keeps the leases, the "
          "functions and the counter",
          "[redis][fault]") {
    redis_server server(true);
    const restart_outcome out = run_through(server, 1500ms, [&] {
        server.kill_hard();
        server.restart();
    });
    INFO("leases lost " << out.leases_lost << ", reconnects " << out.reconnects
                        << ", library loads " << out.library_loads);
    CHECK(out.reconnects >= 1);
    CHECK(out.library_loads == 0);
    // The leases survive if the restart took less than the time left on them: measured, not
    // asserted (a loaded machine may restart slowly).
    CHECK(out.leases_lost <= 2);
    CHECK(out.token_after > out.token_before);
}

TEST_CASE("redis permits: Redis SIGSTOPped past the TTL: leases lost, stop requested, "
          "unhealthy meanwhile, work resumes afterwards",
          "[redis][fault]") {
    redis_server server;
    constexpr auto ttl = 600ms;
    std::atomic<int> lost_reports{0};
    auto options = options_for(server, "pool", 1, ttl);
    options.on_lease_lost = [&](const btq::redis_lease_lost&) { ++lost_reports; };
    btq::redis_permits permits(options);
    {
        fenced_queue queue(permits, {.max_concurrency = 2, .capacity = 10});
        std::atomic<bool> running{false};
        auto holder = queue.submit(
            btq::fenced_task<void>([&](const btq::redis_permit_info&, std::stop_token stop) {
                running = true;
                while (!stop.stop_requested()) {
                    std::this_thread::sleep_for(2ms);
                }
            }));
        REQUIRE(eventually([&] { return running.load(); }));
        server.pause();
        REQUIRE(holder.wait_for(10s) == std::future_status::ready); // stop was requested
        holder.get();
        CHECK(lost_reports.load() == 1);
        CHECK(eventually([&] { return !permits.healthy(); }, 10s));
        std::this_thread::sleep_for(ttl);
        server.resume();
        auto after = queue.submit(
            btq::fenced_task<void>([](const btq::redis_permit_info&, std::stop_token) {}));
        REQUIRE(after.wait_for(30s) == std::future_status::ready);
        after.get();
        queue.drain();
        CHECK(permits.stats().leases_lost == 1);
        CHECK(permits.healthy());
    }
    CHECK(eventually([&] { return holders(server, "pool") == 0; }));
}

TEST_CASE("redis permits: deadlines and clear() racing grants leak no permit", "[redis][leak]") {
    redis_server server;
    constexpr std::size_t limit = 2;
    btq::redis_permits permits(options_for(server, "pool", limit, 1000ms));
    std::atomic<std::int64_t> inside{0};
    std::atomic<std::int64_t> most{0};
    std::mt19937 random(7);
    std::size_t expired_at_submit = 0;
    {
        fenced_queue queue(permits, {.max_concurrency = 4, .capacity = 1000});
        std::vector<std::future<void>> futures;
        for (int round = 0; round < 10; ++round) {
            for (int i = 0; i < 30; ++i) {
                const auto deadline = std::chrono::microseconds(random() % 4000);
                try {
                    futures.push_back(queue.submit(
                        btq::fenced_task<void>([&](const btq::redis_permit_info&, std::stop_token) {
                            btq_redis_test::raise_to(most, ++inside);
                            std::this_thread::sleep_for(1ms);
                            --inside;
                        }),
                        btq::submit_options{.deadline =
                                                std::chrono::steady_clock::now() + deadline}));
                } catch (const btq::task_expired&) {
                    ++expired_at_submit; // its deadline passed before submit() looked
                }
            }
            std::this_thread::sleep_for(std::chrono::microseconds(random() % 3000));
            if (round % 3 == 1) {
                static_cast<void>(queue.clear("racing a grant"));
            }
        }
        std::size_t ran = 0;
        std::size_t not_run = 0;
        for (auto& one : futures) {
            REQUIRE(one.wait_for(30s) == std::future_status::ready);
            try {
                one.get();
                ++ran;
            } catch (const btq::task_not_run&) {
                ++not_run;
            }
        }
        INFO("ran " << ran << ", did not run " << not_run << ", expired at submit "
                    << expired_at_submit);
        CHECK(ran + not_run == futures.size());
        queue.drain();
        CHECK(permits.stats().permits_held == 0);
        // Granted permits nobody took any more are given back after unused_hold: no leak while
        // the gate lives on.
        CHECK(eventually([&] { return holders(server, "pool") == 0; }));
        CHECK(eventually([&] { return permits.stats().permits_unused == 0; }));
    }
    CHECK(most.load() <= static_cast<std::int64_t>(limit));
}

TEST_CASE("redis permits behind the memory gate: a queue waiting for memory holds no lease, and "
          "runs with fencing tokens once memory recovers",
          "[redis][chain]") {
    redis_server server;
    constexpr std::size_t limit = 2;
    std::atomic<std::uint64_t> available{64ull << 20};
    btq::memory_gate memory(low_memory_gate(available));
    btq::redis_permits permits(options_for(server, "pool", limit, 1000ms));
    using both_gates = btq::gate_chain<btq::memory_gate, btq::redis_permits>;
    both_gates chain(memory, permits);
    std::atomic<std::int64_t> inside{0};
    std::atomic<std::int64_t> most{0};
    std::mutex tokens_mutex;
    std::set<std::uint64_t> tokens;
    {
        btq::bounded_task_queue<btq::fenced_task<void>, btq::thread_executor, both_gates> queue(
            chain, {.max_concurrency = 4});
        std::vector<std::future<void>> futures;
        for (int i = 0; i < 12; ++i) {
            futures.push_back(queue.submit(
                btq::fenced_task<void>([&](const btq::redis_permit_info& permit, std::stop_token) {
                    btq_redis_test::raise_to(most, ++inside);
                    {
                        std::lock_guard lock(tokens_mutex);
                        tokens.insert(permit.fencing_token);
                    }
                    std::this_thread::sleep_for(5ms);
                    --inside;
                })));
        }
        std::this_thread::sleep_for(200ms); // longer than a fetch round trip and unused_hold
        CHECK(queue.stats().held_by_gate == 4);
        CHECK(permits.stats().waiters == 0); // held by memory: no demand on the pool
        CHECK(permits.stats().grants == 0);
        CHECK(holders(server, "pool") == 0);

        available = 1024ull << 20;
        memory.refresh();
        for (auto& one : futures) {
            REQUIRE(one.wait_for(20s) == std::future_status::ready);
            one.get();
        }
        REQUIRE(queue.drain(10s));
        CHECK(memory.permits_out() == 0);
        CHECK(permits.stats().permits_held == 0);
    }
    CHECK(most.load() <= static_cast<std::int64_t>(limit));
    CHECK(tokens.size() == 12); // every task had a grant of its own
    CHECK(eventually([&] { return holders(server, "pool") == 0; }));
}

TEST_CASE("redis permits before the memory gate: leases taken for a start that memory refuses go "
          "back unused, and nothing leaks",
          "[redis][chain]") {
    redis_server server;
    std::atomic<std::uint64_t> available{64ull << 20};
    btq::memory_gate memory(low_memory_gate(available));
    btq::redis_permits permits(options_for(server, "pool", 2, 1000ms));
    using both_gates = btq::gate_chain<btq::redis_permits, btq::memory_gate>;
    both_gates chain(permits, memory);
    {
        btq::bounded_task_queue<btq::fenced_task<void>, btq::thread_executor, both_gates> queue(
            chain, {.max_concurrency = 2});
        std::vector<std::future<void>> futures;
        for (int i = 0; i < 6; ++i) {
            futures.push_back(queue.submit(
                btq::fenced_task<void>([](const btq::redis_permit_info&, std::stop_token) {})));
        }
        // Redis grants, memory refuses: the leases go back to the gate unstarted, the demand
        // moves to memory, and the unused leases go back to Redis after unused_hold.
        REQUIRE(eventually([&] { return chain.blocker_of(&queue) == 1; }));
        CHECK(permits.stats().grants >= 1);
        CHECK(eventually([&] { return holders(server, "pool") == 0; }));
        CHECK(permits.stats().permits_held == 0);
        CHECK(permits.stats().permits_unused == 0);

        available = 1024ull << 20;
        memory.refresh();
        for (auto& one : futures) {
            REQUIRE(one.wait_for(20s) == std::future_status::ready);
            one.get();
        }
        REQUIRE(queue.drain(10s));
    }
    CHECK(memory.permits_out() == 0);
    CHECK(eventually([&] { return holders(server, "pool") == 0; }));
}

TEST_CASE("redis permits: unreachable Redis in fail-fast mode fails tasks with gate_unavailable "
          "naming it",
          "[redis][unreachable]") {
    const int port = btq_redis_test::free_port(); // nothing listens there
    btq::redis_permits permits(
        {.endpoint = btq::parse_redis_url("redis://127.0.0.1:" + std::to_string(port) + "/p"),
         .limit = 1,
         .lease_ttl = 500ms,
         .when_unreachable = btq::redis_unreachable::fail_fast});
    fenced_queue queue(permits, {.max_concurrency = 1});
    auto result = queue.submit(btq::fenced_task<void>(
        [](const btq::redis_permit_info&, std::stop_token) { FAIL("ran without a permit"); }));
    REQUIRE(result.wait_for(10s) == std::future_status::ready);
    try {
        result.get();
        FAIL("no error");
    } catch (const btq::gate_unavailable& error) {
        CHECK(error.reason() == btq::not_run_reason::gate_unavailable);
        CHECK(std::string(error.what()).find("127.0.0.1:" + std::to_string(port)) !=
              std::string::npos);
    }
    CHECK_FALSE(permits.healthy());
    CHECK(permits.stats().failed_fast >= 1);
}

TEST_CASE("redis permits: unreachable Redis in hold mode keeps tasks waiting until their "
          "deadline",
          "[redis][unreachable]") {
    const int port = btq_redis_test::free_port();
    btq::redis_permits permits(
        {.endpoint = btq::parse_redis_url("redis://127.0.0.1:" + std::to_string(port) + "/p"),
         .limit = 1,
         .lease_ttl = 500ms});
    fenced_queue queue(permits, {.max_concurrency = 1});
    auto result =
        queue.submit(btq::fenced_task<void>([](const btq::redis_permit_info&, std::stop_token) {
                         FAIL("ran without a permit");
                     }),
                     btq::submit_options{.deadline = std::chrono::steady_clock::now() + 300ms});
    REQUIRE(result.wait_for(10s) == std::future_status::ready);
    CHECK_THROWS_AS(result.get(), btq::task_expired);
    CHECK_FALSE(permits.healthy());
    CHECK(permits.stats().redis_errors >= 1);
}

TEST_CASE("redis permits: one round trip per acquire and one per release, uncontended",
          "[redis][round-trips]") {
    redis_server server;
    // A long TTL: no renewal falls inside the measurement.
    btq::redis_permits permits(options_for(server, "pool", 1, 30s));
    fenced_queue queue(permits, {.max_concurrency = 1});
    // The first task also pays for the subscription and the functions' first load.
    queue.submit(btq::fenced_task<void>([](const btq::redis_permit_info&, std::stop_token) {}))
        .get();
    REQUIRE(eventually([&] { return permits.stats().releases == 1; }));
    const btq::redis_permits_stats before = permits.stats();
    constexpr std::uint64_t tasks = 50;
    for (std::uint64_t i = 0; i < tasks; ++i) {
        queue.submit(btq::fenced_task<void>([](const btq::redis_permit_info&, std::stop_token) {}))
            .get();
        // The release is sent after the answer: wait for it, so the next acquire is alone.
        REQUIRE(eventually([&] { return permits.stats().releases == before.releases + i + 1; }));
    }
    const btq::redis_permits_stats after = permits.stats();
    INFO("round trips for " << tasks << " acquire + release pairs: "
                            << after.round_trips - before.round_trips);
    CHECK(after.grants - before.grants == tasks);
    CHECK(after.round_trips - before.round_trips == 2 * tasks);
    CHECK(after.lease_renewals == 0);
    queue.drain();
}
