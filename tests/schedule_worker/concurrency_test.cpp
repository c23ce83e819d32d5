// Several worker processes writing one data folder at once, and workers killed (SIGKILL) in the
// middle of an import: nothing is lost, nothing is half-written, the database stays sound.
#include <catch2/catch.hpp>

#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <btq/btq.hpp>
#include <btq/executors/worker_pool_executor.hpp>

#include "support.hpp"

using namespace sw_test;
using namespace std::chrono_literals;

namespace {

/// Items in the schedule `p<process>-<run>`: 1 to 5.
std::size_t items_for(std::size_t process, std::size_t run) {
    return 1 + (process * 7 + run) % 5;
}

std::string name_for(std::size_t process, std::size_t run) {
    return "p" + std::to_string(process) + "-" + std::to_string(run);
}

/// Runs `processes` concurrent writers, each importing `runs` schedules one process at a time;
/// returns the failures (empty when every import succeeded).
std::vector<std::string> concurrent_imports(const fs::path& dir, std::size_t processes,
                                            std::size_t runs) {
    std::mutex mutex;
    std::vector<std::string> failures;
    std::atomic<std::size_t> ready{0};
    std::vector<std::thread> threads;
    for (std::size_t p = 0; p < processes; ++p) {
        threads.emplace_back([&, p] {
            // Start together.
            ready.fetch_add(1);
            while (ready.load() < processes) {
                std::this_thread::yield();
            }
            for (std::size_t r = 0; r < runs; ++r) {
                const run_result result = run_worker(
                    dir, "import-schedule", import_request(name_for(p, r), items_for(p, r)));
                if (result.exit_code != 0 || result.out.find("\"success\"") == std::string::npos) {
                    std::lock_guard lock(mutex);
                    failures.push_back(name_for(p, r) + ": exit " +
                                       std::to_string(result.exit_code) + " " + result.out +
                                       result.err);
                }
            }
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    return failures;
}

/// Checks the schedules listing against the names and item counts expected.
void check_listing(const fs::path& dir, std::size_t processes, std::size_t runs) {
    const answer a = cli(dir, "schedules", "{}");
    REQUIRE(a.status() == "success");
    CHECK(num(a.obj().at("count")) == static_cast<std::int64_t>(processes * runs));
    std::map<std::string, std::int64_t> seen;
    for (const auto& s : a.obj().at("schedules").as_array()) {
        seen[str(s.as_object().at("name"))] = num(s.as_object().at("item_count"));
    }
    REQUIRE(seen.size() == processes * runs);
    for (std::size_t p = 0; p < processes; ++p) {
        for (std::size_t r = 0; r < runs; ++r) {
            INFO(name_for(p, r));
            CHECK(seen[name_for(p, r)] == static_cast<std::int64_t>(items_for(p, r)));
        }
    }
    CHECK(database(dir).soundness() == "ok");
    CHECK(inconsistent_rows(dir) == "0|0");
}

} // namespace

TEST_CASE("8 concurrent worker processes importing 50 schedules each lose nothing") {
    temp_dir dir;
    // The folder is migrated once before.
    REQUIRE(schedule_count(dir.path()) == 0);
    const auto failures = concurrent_imports(dir.path(), 8, 50);
    for (const auto& f : failures) {
        UNSCOPED_INFO(f);
    }
    CHECK(failures.empty());
    check_listing(dir.path(), 8, 50);
}

TEST_CASE("8 worker processes starting at once on a new data folder all migrate and import") {
    for (int round = 0; round < 8; ++round) {
        INFO("round " << round);
        temp_dir dir;
        const auto failures = concurrent_imports(dir.path(), 8, 2);
        for (const auto& f : failures) {
            UNSCOPED_INFO(f);
        }
        CHECK(failures.empty());
        check_listing(dir.path(), 8, 2);
        CHECK(database(dir.path()).schema_version() == "1");
    }
}

TEST_CASE("workers killed with SIGKILL during imports leave a sound database") {
    temp_dir dir;
    const std::string request = import_request("big", 10000);
    (void)database_url(dir.path()); // a PostgreSQL server starts before the timing
    // How long one import takes here, to spread the kills over it.
    const auto started = std::chrono::steady_clock::now();
    REQUIRE(cli(dir.path(), "import-schedule", request).status() == "success");
    const auto full = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - started);

    const unsigned seed = std::random_device{}();
    std::printf("SIGKILL test: seed %u, one import takes %lld us\n", seed,
                static_cast<long long>(full.count()));
    std::mt19937 random(seed);
    std::uniform_int_distribution<long long> delay_us(0, full.count() + full.count() / 5);
    int killed = 0;
    int completed = 0;
    for (int round = 0; round < 20; ++round) {
        child worker(worker_command(dir.path(), {"import-schedule"}));
        std::thread io([&worker, &request] { (void)worker.exchange(request); });
        std::this_thread::sleep_for(std::chrono::microseconds(delay_us(random)));
        ::kill(worker.pid(), SIGKILL); // a zombie until waited for, so the pid is still ours
        io.join();
        const int status = worker.wait();
        if (WIFSIGNALED(status)) {
            ++killed;
        } else {
            CHECK(WEXITSTATUS(status) == 0);
            ++completed;
        }
    }
    std::printf("SIGKILL test: %d killed, %d completed\n", killed, completed);
    CHECK(killed > 0);

    CHECK(database(dir.path()).soundness() == "ok");
    const answer a = cli(dir.path(), "schedules", "{}");
    REQUIRE(a.status() == "success");
    const auto count = num(a.obj().at("count"));
    CHECK(count >= 1 + completed);
    CHECK(count <= 21);
    test_service svc(dir.path());
    for (const auto& s : a.obj().at("schedules").as_array()) {
        const auto& o = s.as_object();
        INFO("schedule " << num(o.at("id")));
        CHECK(num(o.at("item_count")) == 10000);
        const answer e = in_process(svc, "export-schedule-json",
                                    R"({"id":)" + std::to_string(num(o.at("id"))) + "}");
        REQUIRE(e.status() == "success");
        CHECK(e.obj().at("schedule").as_object().at("items").as_array().size() == 10000);
    }
    // The item rows in the database belong to complete schedules only.
    CHECK(inconsistent_rows(dir.path()) == "0|0");
    const std::string counts = table_counts(dir.path());
    INFO(counts);
    CHECK(counts.find("=" + std::to_string(count * 10000) + ";") != std::string::npos);

    // And the next import succeeds.
    const answer next = cli(dir.path(), "import-schedule", import_request("after", 3));
    CHECK(next.status() == "success");
    CHECK(schedule_count(dir.path()) == count + 1);
}

TEST_CASE("persistent workers killed with SIGKILL during imports leave a sound database") {
    temp_dir dir;
    const std::string request = import_request("big", 10000);
    (void)database_url(dir.path()); // a PostgreSQL server starts before the timing
    using pool_queue = btq::bounded_task_queue<btq::worker_request, btq::worker_pool_executor>;
    pool_queue queue(
        {.max_concurrency = 1, .capacity = 10},
        btq::worker_pool_options{
            .worker = btq::command{.program = worker_binary.string(),
                                   .arguments = worker_arguments(dir.path(), {"--serve"}),
                                   .kill_grace = 200ms},
            .workers = 1,
            .restart_backoff = 1ms,
            .max_restart_backoff = 10ms,
        });
    // One import, timed, tells the worker's pid and how long an import takes here.
    const auto started = std::chrono::steady_clock::now();
    btq::worker_response first =
        queue.submit(btq::worker_request{.operation = "import-schedule", .body = request}).get();
    const auto full = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - started);
    REQUIRE(first.body.find("\"success\"") != std::string::npos);

    const unsigned seed = std::random_device{}();
    std::printf("persistent SIGKILL test: seed %u, one import takes %lld us\n", seed,
                static_cast<long long>(full.count()));
    std::mt19937 random(seed);
    std::uniform_int_distribution<long long> delay_us(0, full.count());
    int killed = 0;
    int completed = 0;
    for (int round = 0; round < 12; ++round) {
        // The current worker's pid (a cheap request), then an import, then the kill.
        // (A worker killed while idle may still be handed this request: then ask again.)
        pid_t pid = 0;
        for (int attempt = 0; attempt < 5 && pid == 0; ++attempt) {
            try {
                pid = queue.submit(btq::worker_request{.operation = "schedules", .body = "{}"})
                          .get()
                          .worker_pid;
            } catch (const btq::worker_failure&) {
            }
        }
        REQUIRE(pid > 0);
        auto import =
            queue.submit(btq::worker_request{.operation = "import-schedule", .body = request});
        std::this_thread::sleep_for(std::chrono::microseconds(delay_us(random)));
        ::kill(pid, SIGKILL);
        try {
            const auto r = import.get();
            CHECK(r.body.find("\"success\"") != std::string::npos);
            ++completed;
        } catch (const btq::worker_failure&) {
            ++killed;
        }
    }
    std::printf("persistent SIGKILL test: %d killed, %d completed\n", killed, completed);
    CHECK(killed > 0);
    CHECK(database(dir.path()).soundness() == "ok");
    CHECK(inconsistent_rows(dir.path()) == "0|0");
    const answer a = cli(dir.path(), "schedules", "{}");
    REQUIRE(a.status() == "success");
    CHECK(num(a.obj().at("count")) >= 1 + completed);
    for (const auto& s : a.obj().at("schedules").as_array()) {
        CHECK(num(s.as_object().at("item_count")) == 10000);
    }
    // The pool's new worker imports.
    const auto after = queue
                           .submit(btq::worker_request{.operation = "import-schedule",
                                                       .body = import_request("after", 2)})
                           .get();
    CHECK(after.body.find("\"success\"") != std::string::npos);
}
