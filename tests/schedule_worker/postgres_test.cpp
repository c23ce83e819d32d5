// The PostgreSQL store's own behaviour, beyond the suite every store passes (the pg.* tests run
// the whole suite on PostgreSQL): a pool of persistent workers while the server is stopped and
// started again, and several connections sharing one database. Run only as pg.* tests; in the
// SQLite run they pass at once.
#include <catch2/catch.hpp>

#include <btq/btq.hpp>
#include <btq/executors/worker_pool_executor.hpp>

#include <chrono>
#include <future>
#include <string>
#include <vector>

#include "support.hpp"

using namespace sw_test;
using namespace std::chrono_literals;

#if SCHEDULE_TESTS_POSTGRES

namespace {

using pool_queue = btq::bounded_task_queue<btq::worker_request, btq::worker_pool_executor>;

/// An answer of the pool and how long it took.
struct timed_answer {
    answer got;
    std::chrono::milliseconds took{};
};

timed_answer ask(pool_queue& queue, const std::string& operation, const std::string& body) {
    const auto started = std::chrono::steady_clock::now();
    auto future = queue.submit(btq::worker_request{.operation = operation, .body = body});
    REQUIRE(future.wait_for(30s) == std::future_status::ready);
    const std::string text = future.get().body;
    answer got{parse_json(text), 0, text};
    return {got, std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::steady_clock::now() - started)};
}

} // namespace

TEST_CASE("a pool on PostgreSQL answers a clear error while the server is down, then recovers") {
    if (tested_store() != store_kind::postgresql) {
        SUCCEED("PostgreSQL only");
        return;
    }
    temp_dir dir;
    copy_sample_data(dir.path());
    pool_queue queue(
        {.max_concurrency = 2, .capacity = 100},
        btq::worker_pool_options{
            .worker = btq::command{.program = worker_binary.string(),
                                   .arguments = worker_arguments(dir.path(), {"--serve"}),
                                   .kill_grace = 500ms},
            .workers = 2,
            .task_timeout = 30'000ms,
        });
    REQUIRE(ask(queue, "import-schedule", import_request("before", 3)).got.status() == "success");
    REQUIRE(ask(queue, "schedules", "{}").got.status() == "success");

    postgres().stop();
    // Every request gets the store's error at once: a database error, naming the cause.
    for (int round = 0; round < 6; ++round) {
        INFO("round " << round);
        const timed_answer down = ask(queue, round % 2 == 0 ? "schedules" : "import-schedule",
                                      round % 2 == 0 ? "{}" : import_request("lost", 2));
        INFO(down.got.text);
        CHECK(down.got.status() == "error");
        CHECK(down.got.code() == "internal");
        CHECK(down.got.text.find("\"message\":\"database: ") != std::string::npos);
        CHECK(down.got.text.find("127.0.0.1") != std::string::npos);
        CHECK(down.took < 3s);
    }
    // Files are not the database's: the pool still answers them.
    CHECK(ask(queue, "playlists", "{}").got.status() == "success");

    postgres().start();
    // The workers reconnect by themselves (back-off at most 2 s): soon every request succeeds.
    const auto until = std::chrono::steady_clock::now() + 15s;
    int successes_in_a_row = 0;
    while (successes_in_a_row < 6 && std::chrono::steady_clock::now() < until) {
        const timed_answer up = ask(queue, "schedules", "{}");
        successes_in_a_row = up.got.status() == "success" ? successes_in_a_row + 1 : 0;
        if (successes_in_a_row == 0) {
            std::this_thread::sleep_for(50ms);
        }
    }
    REQUIRE(successes_in_a_row == 6);
    const answer listed = ask(queue, "schedules", "{}").got;
    CHECK(num(listed.obj().at("count")) == 1); // the imports during the outage stored nothing
    const answer after = ask(queue, "import-schedule", import_request("after", 2)).got;
    CHECK(after.status() == "success");
    CHECK(num(after.obj().at("id")) == 2);
    CHECK(schedule_count(dir.path()) == 2);
}

TEST_CASE("two services on one PostgreSQL database see each other's imports at once") {
    if (tested_store() != store_kind::postgresql) {
        SUCCEED("PostgreSQL only");
        return;
    }
    temp_dir dir;
    temp_dir other_dir; // another instance's data folder, the same database
    test_service first(dir.path());
    schedule::service second(other_dir.path(), "feed.m3u", database_url(dir.path()));
    CHECK(num(in_process(second, "schedules", "{}").obj().at("count")) == 0);
    REQUIRE(in_process(first, "import-schedule", import_request("one", 2)).status() == "success");
    // The second's cached listing is stale: the version row tells it.
    const answer listed = in_process(second, "schedules", "{}");
    REQUIRE(num(listed.obj().at("count")) == 1);
    CHECK(in_process(second, "export-schedule-json", R"({"id":1})").status() == "success");
    REQUIRE(in_process(second, "import-schedule", import_request("two", 2)).status() == "success");
    CHECK(in_process(first, "schedules", "{}").text == in_process(second, "schedules", "{}").text);
    CHECK(database(dir.path()).text("SELECT data_version FROM schedule_store") == "2");
}

#else

TEST_CASE("the PostgreSQL store's tests need libpq") {
    SUCCEED("built without PostgreSQL");
}

#endif
