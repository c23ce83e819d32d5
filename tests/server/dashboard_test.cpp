// The dashboard (GET / and its files, embedded in the server), the event stream of
// /api/queue-stats (GET /api/queue-stats/stream: its limits and its end at shutdown), and what
// /api/queue-stats gained for them (recentErrors, workers).
#include "support.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <memory>
#include <regex>
#include <string>
#include <vector>

using namespace srv_test;

namespace {

constexpr std::string_view stream_request = "GET /api/queue-stats/stream HTTP/1.1\r\n"
                                            "Host: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n";

/// The value of header `name` in a raw response's header ("" when absent).
std::string raw_header(const std::string& head, const std::string& name) {
    const std::regex field("\r\n" + name + ": ([^\r]*)\r\n", std::regex::icase);
    std::smatch found;
    return std::regex_search(head, found, field) ? found[1].str() : std::string();
}

/// Whether `a` and `b` have the same shape: objects with the same keys (each of the same
/// shape), or values of the same kind (numbers of any type alike; arrays not looked into).
bool same_shape(const json::value& a, const json::value& b) {
    if (a.is_number() && b.is_number()) {
        return true;
    }
    if (a.kind() != b.kind()) {
        return false;
    }
    if (!a.is_object()) {
        return true;
    }
    const json::object& x = a.get_object();
    const json::object& y = b.get_object();
    if (x.size() != y.size()) {
        return false;
    }
    for (const auto& [key, value] : x) {
        const json::value* other = y.if_contains(key);
        if (other == nullptr || !same_shape(value, *other)) {
            return false;
        }
    }
    return true;
}

/// The JSON of one event (`data: {...}\n\n`) read from an open stream within `limit`.
json::value read_event(raw_connection& stream, std::chrono::milliseconds limit) {
    const std::string event = stream.read_until("\n\n", limit);
    REQUIRE(event.starts_with("data: {"));
    REQUIRE(std::count(event.begin(), event.end(), '\n') == 2); // one line of data
    return parse_json(std::string_view(event).substr(6, event.size() - 8));
}

/// Opens a stream: its header, checked, then its `retry:` line.
void open_stream(raw_connection& stream) {
    stream.send(stream_request);
    const std::string head = stream.read_until("\r\n\r\n", 5s);
    INFO(head);
    REQUIRE(head.starts_with("HTTP/1.1 200 "));
    CHECK(raw_header(head, "Content-Type") == "text/event-stream");
    CHECK(raw_header(head, "Cache-Control") == "no-cache");
    CHECK(raw_header(head, "Content-Length").empty());
    REQUIRE(stream.read_until("\n\n", 5s) == "retry: 1000\n\n");
}

} // namespace

TEST_CASE("GET / serves the dashboard page, which links its files; each is served with its "
          "type, revalidated by its ETag",
          "[server]") {
    server_process server(server_config{});
    const http_response page = server.get("/");
    REQUIRE(page.status == 200);
    CHECK(page.header("Content-Type") == "text/html; charset=utf-8");
    CHECK(page.header("Cache-Control") == "no-cache");
    CHECK(page.header("Content-Security-Policy") == "default-src 'self'");
    CHECK_FALSE(page.header("ETag").empty());
    CHECK(contains(page.body, "<!doctype html>"));
    for (const char* id : {"id=\"running\"", "id=\"waiting\"", "id=\"throughput\"",
                           "id=\"rejected\"", "id=\"errors\"", "id=\"connection-state\""}) {
        CHECK(contains(page.body, id));
    }
    // Nothing from elsewhere: every link is to the server's own files.
    CHECK_FALSE(contains(page.body, "http://"));
    CHECK_FALSE(contains(page.body, "https://"));

    const std::vector<std::pair<std::string, std::string>> files{
        {"/dashboard/dashboard.css", "text/css; charset=utf-8"},
        {"/dashboard/dashboard.js", "text/javascript; charset=utf-8"},
        {"/dashboard/favicon.svg", "image/svg+xml"}};
    for (const auto& [path, type] : files) {
        CAPTURE(path);
        CHECK(contains(page.body, "\"" + path + "\""));
        const http_response file = server.get(path);
        REQUIRE(file.status == 200);
        CHECK(file.header("Content-Type") == type);
        CHECK(file.header("Cache-Control") == "no-cache");
        CHECK_FALSE(file.body.empty());
        const std::string etag = file.header("ETag");
        REQUIRE(etag.size() > 2);
        CHECK(etag != page.header("ETag"));

        const http_response again =
            request(server.port(), "GET", path, "", {{"If-None-Match", "\"other\", " + etag}});
        CHECK(again.status == 304);
        CHECK(again.body.empty());
        CHECK(again.header("ETag") == etag);
        CHECK(request(server.port(), "GET", path, "", {{"If-None-Match", "\"other\""}}).status ==
              200);
    }
}

TEST_CASE("HEAD on the dashboard's files and the stream gives their headers without a body; "
          "other methods get 405, unknown files 404",
          "[server]") {
    server_process server(server_config{});
    const http_response page = server.get("/");
    for (const std::string path : {"/", "/dashboard/dashboard.js"}) {
        CAPTURE(path);
        const raw_answer answer = send_raw(
            server.port(),
            "HEAD " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", 5s);
        INFO(answer.received);
        REQUIRE(answer.closed);
        REQUIRE(answer.received.starts_with("HTTP/1.1 200 "));
        const std::size_t end = answer.received.find("\r\n\r\n");
        REQUIRE(end != std::string::npos);
        CHECK(end + 4 == answer.received.size()); // no body
        if (path == "/") {
            CHECK(raw_header(answer.received, "Content-Length") ==
                  std::to_string(page.body.size()));
            CHECK(raw_header(answer.received, "Content-Type") == "text/html; charset=utf-8");
            CHECK(raw_header(answer.received, "ETag") == page.header("ETag"));
        }
    }
    const raw_answer stream = send_raw(
        server.port(), "HEAD /api/queue-stats/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 5s);
    INFO(stream.received);
    CHECK(stream.closed);
    CHECK(stream.received.starts_with("HTTP/1.1 200 "));
    CHECK(raw_header(stream.received, "Content-Type") == "text/event-stream");
    CHECK(stream.received.ends_with("\r\n\r\n"));

    for (const char* path : {"/", "/dashboard/dashboard.css", "/api/queue-stats/stream"}) {
        CAPTURE(path);
        const http_response refused =
            request(server.port(), "POST", path, "{}", {{"Content-Type", "application/json"}});
        CHECK(refused.status == 405);
        CHECK(refused.header("Allow") == "GET, HEAD");
    }
    for (const char* path : {"/dashboard/nope.js", "/dashboard/", "/index.html", "/dashboard"}) {
        CAPTURE(path);
        const http_response missing = server.get(path);
        CHECK(missing.status == 404);
        CHECK(text_of(json_body(missing), "status") == "error");
    }
}

TEST_CASE("the event stream sends retry, then the JSON of /api/queue-stats once a second",
          "[server]") {
    server_process server(server_config{});
    raw_connection stream(server.port());
    open_stream(stream);
    const json::value stats = parse_json(server.get("/api/queue-stats").body);
    const auto started = std::chrono::steady_clock::now();
    std::vector<std::string> timestamps;
    for (int i = 0; i < 3; ++i) {
        const json::value event = read_event(stream, 3s);
        INFO(json::serialize(event));
        CHECK(same_shape(event, stats));
        timestamps.push_back(text_of(event.as_object(), "timestamp"));
    }
    // The first at once, then one a second: the third about 2 s after the first.
    const auto elapsed = std::chrono::steady_clock::now() - started;
    CHECK(elapsed > 1500ms);
    CHECK(elapsed < 3500ms);
    CHECK(timestamps[0] < timestamps[1]);
    CHECK(timestamps[1] < timestamps[2]);
    // A stream takes no place in the queue and blocks nothing.
    CHECK(server.get("/api/playlists").status == 200);
    CHECK(int_of(server.queue_stats(), "submitted") == 1);
}

TEST_CASE("beyond --max-event-streams a stream is answered 503 with Retry-After: 5; after "
          "--event-stream-seconds the server ends a stream",
          "[server]") {
    server_config config;
    config.extra_arguments = {"--max-event-streams", "1", "--event-stream-seconds", "2"};
    server_process server(config);

    auto first = std::make_unique<raw_connection>(server.port());
    const auto started = std::chrono::steady_clock::now();
    open_stream(*first);
    const http_response refused = server.get("/api/queue-stats/stream");
    INFO(refused.body);
    CHECK(refused.status == 503);
    CHECK(refused.header("Retry-After") == "5");
    CHECK(contains(refused.header("Content-Type"), "application/json"));
    CHECK(contains(text_of(json_body(refused), "message"), "--max-event-streams"));

    // Events at 0 and 1 s, then the end at 2 s: the server closes the connection.
    read_event(*first, 3s);
    read_event(*first, 3s);
    std::size_t after = 0;
    CHECK(first->closed_within(3s, &after));
    const auto lasted = std::chrono::steady_clock::now() - started;
    CHECK(lasted > 1500ms);
    CHECK(lasted < 3500ms);
    CHECK(after == 0); // no third event
    first.reset();

    // Its place is free again.
    CHECK(wait_until(
        [&] {
            raw_connection again(server.port());
            again.send(stream_request);
            return again.read_until("\r\n\r\n", 2s).starts_with("HTTP/1.1 200 ");
        },
        3s, 100ms));
    CHECK(log_count(server, "event stream: 2 events", 1) == 1);
}

TEST_CASE("SIGTERM with an event stream open: the stream ends at once and the server exits 0 "
          "well within its grace",
          "[server]") {
    server_config config;
    config.shutdown_grace_ms = 10'000;
    server_process server(config);
    auto stream = std::make_unique<raw_connection>(server.port());
    open_stream(*stream);
    read_event(*stream, 3s);

    const auto signalled = std::chrono::steady_clock::now();
    server.signal(SIGTERM);
    CHECK(stream->closed_within(2s));
    CHECK(std::chrono::steady_clock::now() - signalled < 1s);
    stream.reset(); // as a browser does at the end of a stream
    const auto status = server.wait_exit(8s * time_scale());
    const auto took = std::chrono::steady_clock::now() - signalled;
    INFO(server.log());
    REQUIRE(status.has_value());
    CHECK(WIFEXITED(*status));
    CHECK(WEXITSTATUS(*status) == 0);
    CHECK(took < 5s * time_scale());
}

TEST_CASE("/api/queue-stats lists the last 20 server errors, newest first, and the workers of "
          "pool mode (null in spawn mode)",
          "[server]") {
    SECTION("recentErrors") {
        temp_dir scripts;
        const fs::path worker = scripts.path() / "crashing_worker.sh";
        write_file(worker, "#!/bin/sh\nkill -SEGV $$\nsleep 5\n");
        fs::permissions(worker,
                        fs::perms::owner_all | fs::perms::group_read | fs::perms::others_read);
        server_config config;
        config.mode = "spawn";
        config.worker = worker.string();
        server_process server(config);

        CHECK(json_body(server.get("/api/queue-stats")).at("recentErrors").as_array().empty());
        for (int i = 0; i < 21; ++i) {
            REQUIRE(server.get("/api/playlists").status == 502);
        }
        REQUIRE(server.get("/api/infowars-videos?offset=0&limit=2").status == 502);
        const json::object stats = json_body(server.get("/api/queue-stats"));
        INFO(json::serialize(stats));
        const json::array& errors = stats.at("recentErrors").as_array();
        REQUIRE(errors.size() == 20);
        const json::object& newest = errors.at(0).as_object();
        CHECK(text_of(newest, "method") == "GET");
        CHECK(text_of(newest, "path") == "/api/infowars-videos");
        CHECK(int_of(newest, "status") == 502);
        CHECK_FALSE(text_of(newest, "message").empty());
        CHECK(std::regex_match(text_of(newest, "time"),
                               std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")));
        CHECK(text_of(errors.at(1).as_object(), "path") == "/api/playlists");
        CHECK(text_of(errors.at(1).as_object(), "time") <= text_of(newest, "time"));
        CHECK(stats.at("workers").is_null());
        // Answers below 500 are not errors of the server.
        CHECK(server.get("/api/nothing-here").status == 404);
        CHECK(json_body(server.get("/api/queue-stats")).at("recentErrors").as_array().size() == 20);
    }
    SECTION("workers") {
        server_config config;
        config.pool_size = 2;
        server_process server(config);
        REQUIRE(server.get("/api/playlists").status == 200);
        json::object stats;
        // Both workers are started at once; on a loaded machine the second may still be
        // starting when the first has answered.
        const bool both_ready = wait_until(
            [&] {
                stats = json_body(server.get("/api/queue-stats"));
                return int_of(stats.at("workers").as_object(), "ready") == 2;
            },
            10s, 20ms);
        INFO(json::serialize(stats));
        CHECK(both_ready);
        const json::object& workers = stats.at("workers").as_object();
        CHECK(int_of(workers, "starts") >= 2);
        for (const char* key : {"startFailures", "crashes", "timeouts", "protocolErrors",
                                "recycles", "memoryLimitKills", "startFailuresInARow"}) {
            CAPTURE(key);
            CHECK(int_of(workers, key) == 0);
        }
        CHECK(stats.at("recentErrors").as_array().empty());
    }
}
