// Memory as the bound: the memory probe (--enable-memory-probe), the per-task memory limit
// (--task-memory-limit, 507 at the limit), the memory gate (--min-available-memory,
// --max-memory-pressure) and what /api/queue-stats and /metrics say of them, in both modes.
// No request asks for more than 512 MiB, and the tests that ask for that much run under a
// 64 MiB limit.
#include "support.hpp"

#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using namespace srv_test;

namespace {

constexpr std::int64_t mebibyte = std::int64_t{1} << 20;

server_config probe_config(const std::string& mode, std::vector<std::string> extra = {}) {
    server_config config;
    config.mode = mode;
    config.extra_arguments = {"--enable-memory-probe"};
    config.extra_arguments.insert(config.extra_arguments.end(), extra.begin(), extra.end());
    return config;
}

} // namespace

TEST_CASE("the memory probe touches the MiB it is asked for in both modes", "[server]") {
    const std::string mode = GENERATE(as<std::string>{}, "pool", "spawn");
    CAPTURE(mode);
    server_process server(probe_config(mode));

    const http_response response = server.get("/api/memory-probe?mb=16&hold_ms=50&step_mb=4");
    INFO(response.body);
    REQUIRE(response.status == 200);
    const json::object body = json_body(response);
    CHECK(text_of(body, "status") == "success");
    CHECK(int_of(body, "touchedBytes") == 16 * mebibyte);
    CHECK(int_of(body, "peakResidentBytes") >= 16 * mebibyte);
    // Queued like the other worker endpoints (counted once its slot is free, just after the
    // answer).
    CHECK(wait_until([&] { return int_of(server.pool_stats(), "totalProcessed") == 1; }, 2s));

    const http_response nothing = server.get("/api/memory-probe?mb=0");
    INFO(nothing.body);
    CHECK(nothing.status == 200);
    CHECK(int_of(json_body(nothing), "touchedBytes") == 0);
}

TEST_CASE("the memory probe answers 400 for bad parameters and 404 unless enabled", "[server]") {
    {
        server_process server(probe_config("pool"));
        for (const char* target :
             {"/api/memory-probe", "/api/memory-probe?mb=2049", "/api/memory-probe?mb=-1",
              "/api/memory-probe?mb=abc", "/api/memory-probe?mb=16&hold_ms=60001",
              "/api/memory-probe?mb=16&step_mb=0", "/api/memory-probe?mb=16&step_ms=x",
              "/api/memory-probe?mb=16&size=3", "/api/memory-probe?mb=99999999999999999999"}) {
            CAPTURE(target);
            const http_response response = server.get(target);
            INFO(response.body);
            CHECK(response.status == 400);
            CHECK(text_of(json_body(response), "status") == "error");
        }
        const http_response too_much = server.get("/api/memory-probe?mb=4096");
        CHECK(text_of(json_body(too_much), "field") == "mb");
        CHECK(contains(text_of(json_body(too_much), "message"), "0 to 2048"));
        CHECK(server.post_json("/api/memory-probe?mb=1", "{}").status == 405);
        // None of them reached the queue.
        CHECK(int_of(server.queue_stats(), "submitted") == 0);
    }
    server_config plain;
    server_process server(plain);
    const http_response response = server.get("/api/memory-probe?mb=1");
    INFO(response.body);
    CHECK(response.status == 404);
}

TEST_CASE("a run above --task-memory-limit answers 507 naming the limit and the server goes on "
          "in both modes",
          "[server]") {
    const std::string mode = GENERATE(as<std::string>{}, "pool", "spawn");
    CAPTURE(mode);
    server_process server(probe_config(mode, {"--task-memory-limit", "64M"}));

    const http_response small = server.get("/api/memory-probe?mb=16&hold_ms=100");
    INFO(small.body);
    REQUIRE(small.status == 200);
    CHECK(int_of(json_body(small), "touchedBytes") == 16 * mebibyte);

    const http_response large = server.get("/api/memory-probe?mb=512");
    INFO(large.body);
    REQUIRE(large.status == 507);
    CHECK(contains(large.header("Content-Type"), "application/json"));
    const json::object error = json_body(large);
    CHECK(text_of(error, "status") == "error");
    CHECK(text_of(error, "message") == "the task went above its memory limit (64 MiB)");

    // The next request is served as usual.
    const http_response after = server.get("/api/playlists");
    INFO(after.body);
    CHECK(after.status == 200);
    CHECK(text_of(json_body(after), "status") == "success");
    CHECK(log_count(server, "GET /api/memory-probe 507", 1) == 1);

    REQUIRE(wait_until([&] { return int_of(server.pool_stats(), "activeProcesses") == 0; }, 2s));
    const json::object stats = json_body(server.get("/api/queue-stats"));
    INFO(json::serialize(stats));
    const json::object& queue = stats.at("queue").as_object();
    CHECK(int_of(queue, "stoppedAtMemoryLimit") == 1);
    CHECK(int_of(queue, "peakTaskResidentBytes") >= 16 * mebibyte);
    CHECK(int_of(queue, "heldForMemory") == 0);
    CHECK(int_of(queue, "heldForMemoryTotal") == 0);
    CHECK(int_of(stats.at("processPool").as_object(), "totalErrors") == 1);
    CHECK(int_of(stats.at("processPool").as_object(), "totalProcessed") == 3);

    const std::string metrics = server.get("/metrics").body;
    INFO(metrics);
    CHECK(contains(metrics, "# TYPE btq_task_memory_limit_stops_total counter\n"
                            "btq_task_memory_limit_stops_total 1\n"));
    CHECK(contains(metrics, "# TYPE btq_task_peak_resident_bytes gauge\n"));
    CHECK(metric_value(metrics, "btq_task_peak_resident_bytes") ==
          static_cast<double>(int_of(queue, "peakTaskResidentBytes")));
    CHECK(
        contains(metrics, "# TYPE btq_queue_held_for_memory gauge\nbtq_queue_held_for_memory 0\n"));
    CHECK(contains(
        metrics, "# TYPE btq_queue_memory_holds_total counter\nbtq_queue_memory_holds_total 0\n"));
    CHECK(contains(metrics, "btq_tasks_total{outcome=\"failed\"} 1\n"));
}

TEST_CASE("the server refuses bad memory flag values at start like other bad flags", "[server]") {
    // A bad value of an existing flag, for the exit status CLI11 gives every bad flag value.
    const auto [usual, usual_log] = start_refused({"--pool-size", "0"});
    INFO(usual_log);
    REQUIRE(usual > 0);

    const std::vector<std::pair<std::vector<std::string>, std::string>> cases{
        {{"--task-memory-limit", "0"}, "is 0"},
        {{"--task-memory-limit=-64M"}, "is not a size"},
        {{"--task-memory-limit", "lots"}, "is not a size"},
        {{"--task-memory-limit", "1.5G"}, "is not a size"},
        {{"--task-memory-limit", "64MB"}, "is not a size"},
        {{"--task-memory-limit", "99999999999999999999G"}, "too large"},
        {{"--task-memory-limit", "17179869184G"}, "too large"},
        {{"--min-available-memory", "0"}, "is 0"},
        {{"--min-available-memory", "ten"}, "is not a size"},
        {{"--max-memory-pressure", "101"}, "outside 0 to 100"},
        {{"--max-memory-pressure=-1"}, "outside 0 to 100"},
        {{"--max-memory-pressure", "high"}, "is not a percentage"},
        {{"--max-memory-pressure", "nan"}, "is not a percentage"},
    };
    for (const auto& [flags, message] : cases) {
        const std::string log = check_refused_at_start(flags, message, usual);
        CHECK(contains(log, flags.front().substr(0, flags.front().find('=')))); // the flag named
    }
}

TEST_CASE("an unreachable --min-available-memory still runs one request at a time and "
          "queue-stats shows the others held for memory in both modes",
          "[server]") {
    const std::string mode = GENERATE(as<std::string>{}, "pool", "spawn");
    CAPTURE(mode);
    server_config config = probe_config(mode, {"--min-available-memory", "1000G"});
    config.pool_size = 4;
    server_process server(config);

    constexpr auto hold = 400ms;
    std::atomic<std::int64_t> most_held{0};
    std::atomic<std::size_t> most_children{0};
    std::thread watcher([&] {
        // Until the four requests are done: the most held for memory at once and, in spawn mode,
        // the most schedule_worker processes alive at once.
        wait_until(
            [&] {
                if (mode == "spawn") {
                    most_children = std::max(most_children.load(), worker_children(server.pid()));
                }
                const json::object stats = json_body(server.get("/api/queue-stats"));
                most_held = std::max(most_held.load(),
                                     int_of(stats.at("queue").as_object(), "heldForMemory"));
                return int_of(stats.at("processPool").as_object(), "totalProcessed") == 4;
            },
            20s, 5ms);
    });
    const auto sent = std::chrono::steady_clock::now();
    const std::vector<http_response> answers = concurrent_requests(4, [&](std::size_t) {
        return try_request(server.port(), "GET",
                           "/api/memory-probe?mb=1&hold_ms=" + std::to_string(hold.count()), "", {},
                           20s);
    });
    const auto took = std::chrono::steady_clock::now() - sent;
    watcher.join();
    for (const http_response& answer : answers) {
        INFO(answer.body);
        CHECK(answer.status == 200);
    }
    const json::object stats = json_body(server.get("/api/queue-stats"));
    INFO(json::serialize(stats));
    // The floor holds every start; the progress guarantee starts one whenever none runs: four
    // slots, yet the runs come one after another.
    CHECK(took >= 4 * hold);
    if (mode == "spawn") {
        CHECK(most_children.load() == 1);
    }
    CHECK(most_held.load() > 0);
    CHECK(int_of(stats.at("queue").as_object(), "heldForMemoryTotal") == 3);
    CHECK(int_of(stats.at("queue").as_object(), "heldForMemory") == 0);
    const std::string metrics = server.get("/metrics").body;
    CHECK(metric_value(metrics, "btq_queue_memory_holds_total") == 3);
}

TEST_CASE("a reachable memory gate lets requests run side by side", "[server]") {
    // 1 KiB available and pressure up to 100 %: the gate admits every start.
    server_config config =
        probe_config("pool", {"--min-available-memory", "1K", "--max-memory-pressure", "100"});
    config.pool_size = 2;
    server_process server(config);
    const std::vector<http_response> answers = concurrent_requests(2, [&](std::size_t) {
        return try_request(server.port(), "GET", "/api/memory-probe?mb=1&hold_ms=500", "", {}, 20s);
    });
    for (const http_response& answer : answers) {
        INFO(answer.body);
        CHECK(answer.status == 200);
    }
    const json::object stats = json_body(server.get("/api/queue-stats"));
    INFO(json::serialize(stats));
    CHECK(int_of(stats.at("processPool").as_object(), "peakActive") == 2);
    CHECK(int_of(stats.at("queue").as_object(), "heldForMemoryTotal") == 0);
}
