// Persistent mode (--serve): driven by btq::worker_pool_executor inside a
// btq::bounded_task_queue, every operation answers the JSON the once mode prints, errors
// included (as result frames, not error frames).
#include <catch2/catch.hpp>

#include <btq/btq.hpp>
#include <btq/executors/worker_pool_executor.hpp>

#include <chrono>
#include <future>
#include <string>
#include <utility>
#include <vector>

#include "support.hpp"

using namespace sw_test;
using namespace std::chrono_literals;

namespace {

using pool_queue = btq::bounded_task_queue<btq::worker_request, btq::worker_pool_executor>;

btq::worker_pool_options pool_options(const fs::path& dir, std::size_t workers,
                                      std::vector<std::string> extra = {}) {
    extra.emplace_back("--serve");
    std::vector<std::string> arguments = worker_arguments(dir, extra);
    return btq::worker_pool_options{
        .worker = btq::command{.program = worker_binary.string(),
                               .arguments = std::move(arguments),
                               .kill_grace = 500ms},
        .workers = workers,
        .task_timeout = 30'000ms,
    };
}

std::string strip_newline(std::string text) {
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) {
        text.pop_back();
    }
    return text;
}

} // namespace

TEST_CASE("persistent mode answers every operation with the JSON of the once mode") {
    temp_dir dir;
    copy_sample_data(dir.path());
    REQUIRE(cli(dir.path(), "import-schedule", import_request("first", 4, "one")).status() ==
            "success");
    pool_queue queue({.max_concurrency = 1, .capacity = 100}, pool_options(dir.path(), 1));
    const auto ask = [&queue](const std::string& op, const std::string& body) {
        auto future = queue.submit(btq::worker_request{.operation = op, .body = body});
        REQUIRE(future.wait_for(30s) == std::future_status::ready);
        return future.get().body;
    };

    // Read-only operations: byte for byte the once mode's answer.
    const std::vector<std::pair<std::string, std::string>> reads = {
        {"schedules", "{}"},
        {"schedules", ""},
        {"playlists", "{}"},
        {"export-schedule-xml", R"({"id":1})"},
        {"export-schedule-json", R"({"id":1})"},
        {"export-all-schedules-xml", "{}"},
        {"infowars-videos", R"({"offset":1,"limit":2})"},
        // errors too
        {"export-schedule-json", R"({"id":424242})"},
        {"export-schedule-xml", R"({"id":"x"})"},
        {"schedules", "{"},
        {"infowars-videos", R"({"limit":0})"},
        {"schedule-playlist",
         R"({"playlist":"../x","channel":"c","start":"2026-11-30T08:00:00Z"})"},
        {"import-schedule", R"({"name":"n"})"},
    };
    for (const auto& [op, body] : reads) {
        INFO(op << " " << body);
        const std::string pooled = ask(op, body);
        const run_result once = run_worker(dir.path(), op, body);
        CHECK(strip_newline(pooled) == strip_newline(once.out));
        const auto v = parse_json(pooled);
        if (once.exit_code != 0) {
            CHECK(str(v.as_object().at("status")) == "error");
        }
    }

    // Writes: the same answer but for id and created_at.
    const auto without_ids = [](const std::string& text) {
        auto v = parse_json(text).as_object();
        v.erase("id");
        if (auto* s = v.if_contains("schedule")) {
            s->as_object().erase("id");
            s->as_object().erase("created_at");
        }
        return v;
    };
    const std::vector<std::pair<std::string, std::string>> writes = {
        {"import-schedule", import_request("pooled", 3, "two")},
        {"schedule-playlist",
         R"({"m3u":"#EXTM3U\n#EXTINF:10,a\nhttp://a\nhttp://b\n","channel":"c",
             "start":"2026-11-30T08:00:00+01:00"})"},
    };
    for (const auto& [op, body] : writes) {
        INFO(op);
        const std::string pooled = ask(op, body);
        const run_result once = run_worker(dir.path(), op, body);
        CHECK(without_ids(pooled) == without_ids(once.out));
        CHECK(str(parse_json(pooled).as_object().at("status")) == "success");
    }
    // Both writes of each kind are stored, whoever made them.
    CHECK(num(parse_json(ask("schedules", "{}")).as_object().at("count")) == 5);
    CHECK(schedule_count(dir.path()) == 5);
    CHECK(queue.executor().stats().crashes == 0);
    CHECK(queue.executor().stats().protocol_errors == 0);
}

TEST_CASE("persistent mode answers errors with a result frame, and an 8 MiB request works") {
    temp_dir dir;
    pool_queue queue({.max_concurrency = 2, .capacity = 100}, pool_options(dir.path(), 2));
    auto bad = queue.submit(btq::worker_request{.operation = "import-schedule", .body = "{"});
    REQUIRE(bad.wait_for(30s) == std::future_status::ready);
    btq::worker_response response;
    REQUIRE_NOTHROW(response = bad.get());
    const auto v = parse_json(response.body);
    CHECK(str(v.as_object().at("status")) == "error");
    CHECK(str(v.as_object().at("code")) == "invalid_input");

    auto missing = queue.submit(
        btq::worker_request{.operation = "export-schedule-json", .body = R"({"id":5})"});
    REQUIRE_NOTHROW(response = missing.get());
    CHECK(str(parse_json(response.body).as_object().at("code")) == "not_found");

    const std::size_t limit = std::size_t{8} << 20;
    std::string big = import_request("big", 10000);
    big += std::string(limit - big.size(), ' ');
    auto ok = queue.submit(btq::worker_request{.operation = "import-schedule", .body = big});
    REQUIRE_NOTHROW(response = ok.get());
    CHECK(str(parse_json(response.body).as_object().at("status")) == "success");
    auto over =
        queue.submit(btq::worker_request{.operation = "import-schedule", .body = big + " "});
    REQUIRE_NOTHROW(response = over.get());
    CHECK(str(parse_json(response.body).as_object().at("code")) == "invalid_input");

    // Many requests on two workers, all answered in order per request.
    std::vector<std::future<btq::worker_response>> futures;
    for (int i = 0; i < 40; ++i) {
        // (std::string's append, not "n" + std::to_string(i): GCC 12 at -O3 reports a false
        // -Wstringop-overflow in that operator+.)
        std::string name = "n";
        name.append(std::to_string(i));
        futures.push_back(queue.submit(
            btq::worker_request{.operation = "import-schedule", .body = import_request(name, 2)}));
    }
    for (auto& f : futures) {
        CHECK(str(parse_json(f.get().body).as_object().at("status")) == "success");
    }
    CHECK(schedule_count(dir.path()) == 41);
    CHECK(queue.executor().stats().crashes == 0);
}

TEST_CASE("persistent mode: an unknown operation fails the task, the worker goes on") {
    temp_dir dir;
    pool_queue queue({.max_concurrency = 1, .capacity = 10}, pool_options(dir.path(), 1));
    auto unknown = queue.submit(btq::worker_request{.operation = "frobnicate", .body = "{}"});
    REQUIRE(unknown.wait_for(30s) == std::future_status::ready);
    // Either an error frame (btq::worker_error) or an error answer; never a dead worker.
    try {
        const auto r = unknown.get();
        CHECK(str(parse_json(r.body).as_object().at("status")) == "error");
    } catch (const btq::worker_error&) {
        SUCCEED("error frame");
    }
    auto after = queue.submit(btq::worker_request{.operation = "schedules", .body = "{}"});
    CHECK(num(parse_json(after.get().body).as_object().at("count")) == 0);
    CHECK(queue.executor().stats().crashes == 0);
    CHECK(queue.executor().stats().starts == 1);
}
