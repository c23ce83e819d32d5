// The server's error answers: 400, 401, 404, 405, 413, 415, 502, 503, 504, and refusing to
// start without a runnable worker.
#include "support.hpp"

#include <catch2/catch.hpp>

#include <sys/stat.h>

using namespace srv_test;

namespace {

/// The error body's message ("<missing>" if there is none).
std::string message_of(const http_response& response) {
    return text_of(json_body(response), "message");
}

/// A program that kills itself with SIGSEGV as soon as it starts.
fs::path crashing_worker(const fs::path& dir) {
    const fs::path script = dir / "crashing_worker.sh";
    write_file(script, "#!/bin/sh\nkill -SEGV $$\nsleep 5\n");
    fs::permissions(script, fs::perms::owner_all | fs::perms::group_read | fs::perms::others_read);
    return script;
}

} // namespace

TEST_CASE("400 for a bad JSON body passes on the worker's message and code in both modes",
          "[server]") {
    const std::string mode = GENERATE(as<std::string>{}, "pool", "spawn");
    CAPTURE(mode);
    server_config config;
    config.mode = mode;
    server_process server(config);

    const std::string bad = R"({"playlist":)";
    const http_response response = server.post_json("/api/schedule-playlist", bad);
    INFO(response.body);
    REQUIRE(response.status == 400);
    CHECK(contains(response.header("Content-Type"), "application/json"));
    const json::object body = json_body(response);
    CHECK(text_of(body, "status") == "error");
    CHECK(text_of(body, "code") == "invalid_input");
    // Exactly what schedule_worker itself answers to that request.
    const json::value worker_answer =
        parse_json(run_worker_once(server.data_dir(), "schedule-playlist", bad));
    CHECK(json::value(body) == worker_answer);

    // A field error keeps its field.
    const http_response field_error = server.post_json(
        "/api/schedule-playlist",
        R"({"playlist":"campus-news","channel":"campus-tv","start":"2026-11-30T08:00:00"})");
    INFO(field_error.body);
    CHECK(field_error.status == 400);
    CHECK(text_of(json_body(field_error), "code") == "invalid_input");
    CHECK(text_of(json_body(field_error), "field") == "start");
}

TEST_CASE("400 404 405 and 415 for bad requests", "[server]") {
    server_process server(server_config{});

    SECTION("unknown query parameter") {
        const http_response response = server.get("/api/schedules?colour=blue");
        CHECK(response.status == 400);
        CHECK(contains(message_of(response), "colour"));
    }
    SECTION("unknown query parameter next to known ones") {
        const http_response response = server.get("/api/infowars-videos?offset=1&skip=2");
        CHECK(response.status == 400);
        CHECK(contains(message_of(response), "skip"));
    }
    SECTION("bad percent-encoding in the query") {
        for (const char* target : {"/api/infowars-videos?offset=%zz", "/api/infowars-videos?%4",
                                   "/api/export-schedule-json?id=1%"}) {
            CAPTURE(target);
            const http_response response = server.get(target);
            CHECK(response.status == 400);
            CHECK(contains(message_of(response), "percent-encoding"));
        }
    }
    SECTION("a query value of the wrong type reaches the worker, which names the field") {
        const http_response response = server.get("/api/infowars-videos?limit=many");
        CHECK(response.status == 400);
        CHECK(text_of(json_body(response), "code") == "invalid_input");
        CHECK(text_of(json_body(response), "field") == "limit");
    }
    SECTION("malformed HTTP") {
        const raw_answer answer =
            send_raw(server.port(), "THIS IS NOT HTTP\r\n\r\n", std::chrono::seconds(5));
        CHECK(answer.received.rfind("HTTP/1.1 400", 0) == 0);
    }
    SECTION("unknown path") {
        const http_response response = server.get("/api/nothing-here");
        CHECK(response.status == 404);
        CHECK(text_of(json_body(response), "status") == "error");
        CHECK(contains(message_of(response), "/api/nothing-here"));
    }
    SECTION("unknown schedule id is the worker's not_found") {
        for (const char* target :
             {"/api/export-schedule-json?id=9999", "/api/export-schedule-xml?id=9999"}) {
            CAPTURE(target);
            const http_response response = server.get(target);
            CHECK(response.status == 404);
            CHECK(contains(response.header("Content-Type"), "application/json"));
            CHECK(text_of(json_body(response), "code") == "not_found");
        }
    }
    SECTION("POST on a GET endpoint") {
        for (const char* target :
             {"/api/schedules", "/api/playlists", "/api/queue-stats", "/metrics", "/healthz"}) {
            CAPTURE(target);
            const http_response response = request(server.port(), "POST", target, "{}",
                                                   {{"Content-Type", "application/json"}});
            CHECK(response.status == 405);
            CHECK(response.header("Allow") == "GET");
        }
    }
    SECTION("GET on a POST endpoint") {
        for (const char* target : {"/api/import-schedule", "/api/schedule-playlist"}) {
            CAPTURE(target);
            const http_response response = server.get(target);
            CHECK(response.status == 405);
            CHECK(response.header("Allow") == "POST");
        }
    }
    SECTION("DELETE is not allowed either") {
        const http_response response = request(server.port(), "DELETE", "/api/schedules");
        CHECK(response.status == 405);
        CHECK(response.header("Allow") == "GET");
    }
    SECTION("415 for a text/csv body") {
        const http_response response =
            request(server.port(), "POST", "/api/import-schedule", "name,channel\nx,y\n",
                    {{"Content-Type", "text/csv"}});
        CHECK(response.status == 415);
        CHECK(contains(message_of(response), "text/csv"));
    }
    SECTION("415 for an XML body on schedule-playlist") {
        const http_response response = request(server.port(), "POST", "/api/schedule-playlist",
                                               xmltv_body, {{"Content-Type", "application/xml"}});
        CHECK(response.status == 415);
    }
    // None of these reached the database.
    CHECK(schedule_count(server) == 0);
}

TEST_CASE("401 for POST without or with a wrong bearer token while GET needs none", "[server]") {
    server_config config;
    config.auth_token = "s3cret-token";
    server_process server(config);
    const std::string body = import_body("Authorized");

    const http_response missing = server.post_json("/api/import-schedule", body);
    CHECK(missing.status == 401);
    CHECK(missing.header("WWW-Authenticate") == "Bearer");

    const http_response wrong =
        server.post_json("/api/import-schedule", body, {{"Authorization", "Bearer s3cret-tokeX"}});
    CHECK(wrong.status == 401);
    const http_response longer = server.post_json("/api/import-schedule", body,
                                                  {{"Authorization", "Bearer s3cret-token-and"}});
    CHECK(longer.status == 401);
    const http_response basic =
        server.post_json("/api/import-schedule", body, {{"Authorization", "Basic s3cret-token"}});
    CHECK(basic.status == 401);

    CHECK(server.get("/api/schedules").status == 200);
    CHECK(server.get("/api/playlists").status == 200);
    CHECK(schedule_count(server) == 0);

    const http_response right =
        server.post_json("/api/import-schedule", body, {{"Authorization", "Bearer s3cret-token"}});
    INFO(right.body);
    CHECK(right.status == 200);
    CHECK(schedule_count(server) == 1);
}

TEST_CASE("413 for a body over the body limit", "[server]") {
    server_config config;
    config.body_limit = 1000;
    server_process server(config);

    const std::string small = import_body("Small");
    REQUIRE(small.size() < 1000);
    CHECK(server.post_json("/api/import-schedule", small).status == 200);

    const std::string large = R"({"name":")" + std::string(5000, 'x') + R"("})";
    const http_response response = server.post_json("/api/import-schedule", large);
    INFO(response.body);
    CHECK(response.status == 413);
    CHECK(contains(message_of(response), "1000"));
    CHECK(schedule_count(server) == 1);
}

TEST_CASE("503 with Retry-After when the queue is full", "[server]") {
    server_config config;
    config.pool_size = 1;
    config.queue_capacity = 1;
    config.worker_delay_ms = 400;
    server_process server(config);

    const auto answers = concurrent_requests(
        3, [&](std::size_t) { return try_request(server.port(), "GET", "/api/schedules"); });
    std::size_t ok = 0;
    std::size_t refused = 0;
    for (const auto& answer : answers) {
        INFO(answer.status << " " << answer.body);
        CHECK((answer.status == 200 || answer.status == 503));
        if (answer.status == 200) {
            ++ok;
        } else if (answer.status == 503) {
            ++refused;
            REQUIRE(answer.has_header("Retry-After"));
            CHECK(std::stol(answer.header("Retry-After")) >= 1);
            CHECK(text_of(json_body(answer), "status") == "error");
        }
    }
    CHECK(refused >= 1);
    CHECK(ok >= 1);
    const std::string metrics = server.get("/metrics").body;
    CHECK(contains(metrics, "btq_rejections_total{reason=\"queue_full\"} " +
                                std::to_string(refused) + "\n"));
}

TEST_CASE("503 when a request expired in the queue", "[server]") {
    server_config config;
    config.pool_size = 1;
    config.queue_timeout_ms = 100;
    config.worker_delay_ms = 600;
    server_process server(config);

    http_response first;
    std::thread running([&] { first = try_request(server.port(), "GET", "/api/schedules"); });
    const bool started =
        wait_until([&] { return int_of(server.pool_stats(), "activeProcesses") == 1; }, 5s);
    const auto sent = std::chrono::steady_clock::now();
    const http_response second = try_request(server.port(), "GET", "/api/playlists");
    const auto waited = std::chrono::steady_clock::now() - sent;
    running.join();
    REQUIRE(started);
    INFO(second.body);
    CHECK(first.status == 200);
    CHECK(second.status == 503);
    CHECK(second.has_header("Retry-After"));
    CHECK(waited < 2s);
    const json::object stats = json_body(server.get("/api/queue-stats"));
    CHECK(int_of(stats.at("queue").as_object(), "expired") == 1);
    CHECK(contains(server.get("/metrics").body, "btq_rejections_total{reason=\"expired\"} 1\n"));
}

TEST_CASE("504 when the worker runs past the task timeout in both modes", "[server]") {
    const std::string mode = GENERATE(as<std::string>{}, "pool", "spawn");
    CAPTURE(mode);
    server_config config;
    config.mode = mode;
    config.task_timeout_ms = 200;
    config.worker_delay_ms = 2000;
    server_process server(config);

    const auto sent = std::chrono::steady_clock::now();
    const http_response response = server.get("/api/playlists");
    const auto took = std::chrono::steady_clock::now() - sent;
    INFO(response.body);
    CHECK(response.status == 504);
    CHECK(text_of(json_body(response), "status") == "error");
    CHECK(took < 1500ms);
    CHECK(log_count(server, "GET /api/playlists 504", 1) == 1);
}

TEST_CASE("queue-stats and metrics count a 504 as timed out and a 502 as an error in both modes",
          "[server]") {
    const std::string mode = GENERATE(as<std::string>{}, "pool", "spawn");
    CAPTURE(mode);
    SECTION("504") {
        server_config config;
        config.mode = mode;
        config.task_timeout_ms = 200;
        config.worker_delay_ms = 2000;
        server_process server(config);
        REQUIRE(server.get("/api/playlists").status == 504);
        REQUIRE(
            wait_until([&] { return int_of(server.pool_stats(), "activeProcesses") == 0; }, 2s));
        const json::object stats = json_body(server.get("/api/queue-stats"));
        INFO(json::serialize(stats));
        CHECK(int_of(stats.at("queue").as_object(), "timedOut") == 1);
        CHECK(int_of(stats.at("processPool").as_object(), "totalErrors") == 1);
        const std::string metrics = server.get("/metrics").body;
        CHECK(contains(metrics, "btq_tasks_total{outcome=\"timed_out\"} 1\n"));
        CHECK(contains(metrics, "btq_tasks_total{outcome=\"succeeded\"} 0\n"));
        // Pool mode: the worker that ran too long was stopped (and replaced); spawn mode has no
        // persistent workers to report.
        CHECK(contains(metrics, "\nbtq_worker_timeouts_total 1\n") == (mode == "pool"));
        CHECK(contains(metrics, "\nbtq_worker_crashes_total 0\n") == (mode == "pool"));
    }
    SECTION("502") {
        temp_dir scripts;
        server_config config;
        config.mode = mode;
        config.worker = crashing_worker(scripts.path()).string();
        server_process server(config);
        REQUIRE(try_request(server.port(), "GET", "/api/playlists", "", {}, 15s).status == 502);
        REQUIRE(
            wait_until([&] { return int_of(server.pool_stats(), "activeProcesses") == 0; }, 2s));
        const json::object stats = json_body(server.get("/api/queue-stats"));
        INFO(json::serialize(stats));
        CHECK(int_of(stats.at("processPool").as_object(), "totalErrors") == 1);
        const std::string metrics = server.get("/metrics").body;
        CHECK(contains(metrics, "btq_tasks_total{outcome=\"succeeded\"} 0\n"));
        // Pool mode: the worker dies before its hello, again and again: failed starts, none of
        // them ready.
        CHECK(contains(metrics, "\nbtq_worker_start_failures_total ") == (mode == "pool"));
        CHECK(!contains(metrics, "\nbtq_worker_start_failures_total 0\n"));
        CHECK(contains(metrics, "\nbtq_workers_ready 0\n") == (mode == "pool"));
        CHECK(contains(metrics, "# TYPE btq_worker_starts_total counter\n") == (mode == "pool"));
    }
}

TEST_CASE("502 when the worker crashes with SIGSEGV in both modes", "[server]") {
    const std::string mode = GENERATE(as<std::string>{}, "pool", "spawn");
    CAPTURE(mode);
    temp_dir scripts;
    server_config config;
    config.mode = mode;
    config.pool_size = 2;
    config.worker = crashing_worker(scripts.path()).string();
    server_process server(config);

    for (const char* target : {"/api/playlists", "/api/schedules"}) {
        CAPTURE(target);
        const http_response response = try_request(server.port(), "GET", target, "", {}, 15s);
        INFO(response.body);
        CHECK(response.status == 502);
        if (response.status != 0) {
            CHECK(text_of(json_body(response), "status") == "error");
        }
    }
    // The server itself is still fine.
    CHECK(server.get("/healthz").status == 200);
    INFO(server.log());
    CHECK(log_count(server, " 502 ", 2) == 2);
}

TEST_CASE("the server refuses to start with a worker that is not executable", "[server]") {
    temp_dir scripts;
    const fs::path not_executable = scripts.path() / "not_a_program";
    write_file(not_executable, "#!/bin/sh\nexit 0\n");
    fs::permissions(not_executable, fs::perms::owner_read | fs::perms::owner_write |
                                        fs::perms::group_read | fs::perms::others_read);
    const fs::path missing = scripts.path() / "does-not-exist";

    for (const fs::path& worker : {not_executable, missing}) {
        CAPTURE(worker.string());
        server_config config;
        config.worker = worker.string();
        server_process server(config, false);
        const auto status = server.wait_exit(10s);
        REQUIRE(status.has_value());
        REQUIRE(WIFEXITED(*status));
        CHECK(WEXITSTATUS(*status) == 2);
        const std::string log = server.log();
        INFO(log);
        CHECK(contains(log, worker.string()));
        CHECK(contains(log, "is not an executable file"));
        CHECK_FALSE(contains(log, "listening on"));
    }
}
