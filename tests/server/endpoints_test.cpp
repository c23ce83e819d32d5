// Every endpoint of schedule_server in both modes with the sample data, /api/queue-stats against
// the seed's example, and keep-alive connections.
#include "support.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <regex>
#include <set>

using namespace srv_test;

namespace {

bool starts_with(const std::string& text, std::string_view prefix) {
    return text.rfind(prefix, 0) == 0;
}

} // namespace

TEST_CASE("every endpoint answers with the sample data in pool and spawn mode", "[server]") {
    const std::string mode = GENERATE(as<std::string>{}, "pool", "spawn");
    CAPTURE(mode);
    server_config config;
    config.mode = mode;
    server_process server(config);

    {
        const http_response response = server.get("/api/playlists");
        REQUIRE(response.status == 200);
        CHECK(starts_with(response.header("Content-Type"), "application/json"));
        const json::object body = json_body(response);
        CHECK(text_of(body, "status") == "success");
        CHECK(int_of(body, "count") == 3);
        std::set<std::string> names;
        for (const auto& playlist : body.at("playlists").as_array()) {
            names.insert(text_of(playlist.as_object(), "name"));
        }
        CHECK(names == std::set<std::string>{"campus-news", "lectures", "music-videos"});
    }
    {
        const http_response response = server.get("/api/infowars-videos?offset=5&limit=3");
        REQUIRE(response.status == 200);
        const json::object body = json_body(response);
        CHECK(text_of(body, "status") == "success");
        CHECK(int_of(body, "total") == 40);
        CHECK(int_of(body, "offset") == 5);
        CHECK(int_of(body, "limit") == 3);
        CHECK(body.at("videos").as_array().size() == 3);
    }

    std::int64_t id = 0;
    {
        const http_response response =
            server.post_json("/api/schedule-playlist", schedule_playlist_body);
        INFO(response.body);
        REQUIRE(response.status == 200);
        const json::object body = json_body(response);
        CHECK(text_of(body, "status") == "success");
        id = int_of(body, "id");
        CHECK(id >= 1);
    }
    const std::string id_text = std::to_string(id);
    {
        const http_response response = server.get("/api/schedules");
        REQUIRE(response.status == 200);
        const json::object body = json_body(response);
        CHECK(int_of(body, "count") == 1);
        const auto& schedules = body.at("schedules").as_array();
        REQUIRE(schedules.size() == 1);
        CHECK(int_of(schedules[0].as_object(), "id") == id);
        CHECK(text_of(schedules[0].as_object(), "name") == "campus-news");
        CHECK(text_of(schedules[0].as_object(), "channel") == "campus-tv");
        CHECK(int_of(schedules[0].as_object(), "item_count") == 8);
    }
    {
        const http_response response = server.get("/api/export-schedule-json?id=" + id_text);
        REQUIRE(response.status == 200);
        CHECK(starts_with(response.header("Content-Type"), "application/json"));
        const json::object body = json_body(response);
        CHECK(text_of(body, "status") == "success");
        const json::object& schedule = body.at("schedule").as_object();
        CHECK(int_of(schedule, "id") == id);
        CHECK(text_of(schedule, "channel") == "campus-tv");
        CHECK(schedule.at("items").as_array().size() == 8);
    }
    std::string exported_xml;
    {
        const http_response response = server.get("/api/export-schedule-xml?id=" + id_text);
        INFO(response.body);
        REQUIRE(response.status == 200);
        CHECK(starts_with(response.header("Content-Type"), "application/xml"));
        CHECK(starts_with(response.body, "<?xml"));
        CHECK(contains(response.body, "<programme"));
        CHECK(contains(response.body, "Morning Bulletin"));
        exported_xml = response.body;
    }
    {
        const http_response response = server.get("/api/export-all-schedules-xml");
        REQUIRE(response.status == 200);
        CHECK(starts_with(response.header("Content-Type"), "application/xml"));
        CHECK(starts_with(response.body, "<?xml"));
        CHECK(contains(response.body, "<programme"));
        CHECK(contains(response.body, "campus-tv"));
    }
    {
        const http_response response =
            server.post_json("/api/import-schedule", import_body("Monday"));
        INFO(response.body);
        REQUIRE(response.status == 200);
        const json::object body = json_body(response);
        CHECK(text_of(body, "status") == "success");
        CHECK(int_of(body, "id") > id);
        CHECK(text_of(body.at("schedule").as_object(), "name") == "Monday");
    }
    {
        const http_response response = request(server.port(), "POST", "/api/import-schedule",
                                               xmltv_body, {{"Content-Type", "application/xml"}});
        INFO(response.body);
        REQUIRE(response.status == 200);
        const json::object body = json_body(response);
        CHECK(text_of(body, "status") == "success");
        const json::object& schedule = body.at("schedule").as_object();
        CHECK(text_of(schedule, "name") == "Radio X");
        CHECK(text_of(schedule, "channel") == "radio-x");
        CHECK(schedule.at("items").as_array().size() == 2);
    }
    {
        // The server's own XMLTV export goes back in (text/xml, name and channel in the query).
        const http_response response =
            request(server.port(), "POST", "/api/import-schedule?name=Again&channel=campus-tv",
                    exported_xml, {{"Content-Type", "text/xml; charset=utf-8"}});
        INFO(response.body);
        REQUIRE(response.status == 200);
        const json::object body = json_body(response);
        CHECK(text_of(body.at("schedule").as_object(), "name") == "Again");
        CHECK(body.at("schedule").as_object().at("items").as_array().size() == 8);
    }
    CHECK(schedule_count(server) == 4);
    {
        // The queue frees a slot just after its answer is out: the counters may lag a moment.
        json::object body;
        const bool idle = wait_until(
            [&] {
                const http_response response = server.get("/api/queue-stats");
                body = json_body(response);
                const json::object& pool = body.at("processPool").as_object();
                return response.status == 200 && int_of(pool, "activeProcesses") == 0 &&
                       int_of(pool, "totalProcessed") == 11;
            },
            2s);
        INFO(json::serialize(body));
        CHECK(idle);
        CHECK(text_of(body, "status") == "success");
        CHECK(int_of(body.at("processPool").as_object(), "maxConcurrency") == 4);
    }
    {
        const http_response response = server.get("/api/system-info");
        REQUIRE(response.status == 200);
        const json::object body = json_body(response);
        CHECK(text_of(body, "status") == "success");
        CHECK(body.at("system").is_object());
        CHECK(text_of(body.at("server").as_object(), "mode") == mode);
        CHECK(int_of(body.at("server").as_object(), "pid") == server.pid());
    }
    {
        const http_response response = server.get("/metrics");
        REQUIRE(response.status == 200);
        CHECK(starts_with(response.header("Content-Type"), "text/plain"));
        CHECK(contains(response.body, "\nbtq_queue_active 0\n"));
        CHECK(contains(response.body, "btq_queue_wait_seconds_bucket{le="));
        CHECK(contains(response.body, "btq_rejections_total{reason=\"queue_full\"} 0\n"));
        CHECK(contains(response.body, "# TYPE btq_queue_wait_seconds histogram"));
    }
    {
        const http_response response = server.get("/healthz");
        REQUIRE(response.status == 200);
        CHECK(json_body(response).at("healthy").as_bool());
    }
    {
        const http_response response = server.get("/readyz");
        REQUIRE(response.status == 200);
        CHECK(json_body(response).at("ready").as_bool());
    }
    // The access log has a line per request with its status and times.
    CHECK(log_count(server, "POST /api/schedule-playlist 200 wait_ms=", 1) == 1);
    CHECK(log_count(server, "GET /api/infowars-videos 200 wait_ms=", 1) == 1);
}

TEST_CASE("queue-stats has the seed's keys in the seed's order with number types", "[server]") {
    // The example answer of the seed document ("Queue Stats Endpoint").
    const json::object seed = parse_json(R"({
        "status": "success",
        "processPool": {
            "totalProcessed": 0,
            "totalQueued": 0,
            "totalErrors": 0,
            "peakActive": 0,
            "peakQueueSize": 0,
            "activeProcesses": 0,
            "queuedTasks": 0,
            "maxConcurrency": 4,
            "utilizationPercent": 0
        },
        "timestamp": "2025-11-23T..."
    })")
                                  .as_object();

    server_process server(server_config{});
    // One request first, so the counters are not all zero (they may lag its answer a moment).
    REQUIRE(server.get("/api/playlists").status == 200);
    REQUIRE(wait_until(
        [&] {
            const json::object pool = server.pool_stats();
            return int_of(pool, "totalProcessed") == 1 && int_of(pool, "activeProcesses") == 0;
        },
        2s));
    const http_response response = server.get("/api/queue-stats");
    REQUIRE(response.status == 200);
    CHECK(starts_with(response.header("Content-Type"), "application/json"));
    const json::object stats = json_body(response);
    INFO(response.body);

    // Top level: the seed's keys, in the seed's order; others only beside them.
    std::vector<std::string> seed_keys;
    for (const auto& entry : seed) {
        seed_keys.emplace_back(entry.key());
    }
    std::vector<std::string> shared_keys;
    for (const auto& entry : stats) {
        if (seed.contains(entry.key())) {
            shared_keys.emplace_back(entry.key());
        }
    }
    CHECK(shared_keys == seed_keys);
    CHECK(text_of(stats, "status") == "success");
    REQUIRE(stats.at("timestamp").is_string());
    const std::string timestamp(stats.at("timestamp").get_string());
    CAPTURE(timestamp);
    CHECK(std::regex_match(
        timestamp,
        std::regex(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2}))")));

    // processPool: exactly the seed's nine keys, in its order, numbers (integers but the
    // utilization).
    const json::object& seed_pool = seed.at("processPool").as_object();
    REQUIRE(stats.at("processPool").is_object());
    const json::object& pool = stats.at("processPool").as_object();
    std::vector<std::string> seed_pool_keys;
    for (const auto& entry : seed_pool) {
        seed_pool_keys.emplace_back(entry.key());
    }
    std::vector<std::string> pool_keys;
    for (const auto& entry : pool) {
        pool_keys.emplace_back(entry.key());
    }
    CHECK(seed_pool_keys.size() == 9);
    CHECK(pool_keys == seed_pool_keys);
    for (const auto& entry : pool) {
        CAPTURE(std::string(entry.key()));
        if (entry.key() == "utilizationPercent") {
            CHECK(entry.value().is_number());
            CHECK(entry.value().to_number<double>() >= 0.0);
            CHECK(entry.value().to_number<double>() <= 100.0);
        } else {
            CHECK((entry.value().is_int64() || entry.value().is_uint64()));
            CHECK(entry.value().to_number<std::int64_t>() >= 0);
        }
    }
    CHECK(int_of(pool, "maxConcurrency") == 4);
    CHECK(int_of(pool, "totalProcessed") == 1);
    CHECK(int_of(pool, "peakActive") == 1);
    CHECK(int_of(pool, "activeProcesses") == 0);
    CHECK(int_of(pool, "queuedTasks") == 0);
}

TEST_CASE("keep-alive answers 20 requests on one connection and honours Connection close",
          "[server]") {
    server_process server(server_config{});

    {
        http_connection connection(server.port());
        for (int i = 0; i < 20; ++i) {
            CAPTURE(i);
            const std::string target = i % 2 == 0 ? "/api/playlists" : "/healthz";
            const http_response response = connection.send("GET", target);
            REQUIRE(response.status == 200);
            CHECK(text_of(json_body(response), "status") == "success");
            CHECK(response.header("Connection") != "close");
        }
        // Still open after the 20th.
        CHECK_FALSE(connection.closed_by_server(200ms));
    }
    // 20 requests from that one connection, and they are in the access log.
    CHECK(log_count(server, "GET /api/playlists 200", 10) == 10);
    CHECK(log_count(server, "GET /healthz 200", 10) == 10);

    SECTION("Connection close is answered with Connection close and the server closes") {
        http_connection connection(server.port());
        REQUIRE(connection.send("GET", "/healthz").status == 200);
        const http_response response =
            connection.send("GET", "/api/playlists", "", {{"Connection", "close"}});
        REQUIRE(response.status == 200);
        CHECK(response.header("Connection") == "close");
        CHECK(connection.closed_by_server(5s));
    }
    SECTION("raw HTTP/1.1 request with Connection close: one answer, then end of stream") {
        const raw_answer answer = send_raw(server.port(),
                                           "GET /healthz HTTP/1.1\r\nHost: x\r\n"
                                           "Connection: close\r\n\r\n",
                                           5s);
        CHECK(answer.closed);
        CHECK(starts_with(answer.received, "HTTP/1.1 200"));
    }
    SECTION("HTTP/1.0 without keep-alive is closed after its answer") {
        const raw_answer answer =
            send_raw(server.port(), "GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n", 5s);
        CHECK(answer.closed);
        CHECK(starts_with(answer.received, "HTTP/1.0 200"));
    }
    SECTION("two pipelined requests on one connection both get answers") {
        const raw_answer answer = send_raw(server.port(),
                                           "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                                           "GET /readyz HTTP/1.1\r\nHost: x\r\n"
                                           "Connection: close\r\n\r\n",
                                           5s);
        CHECK(answer.closed);
        CHECK(contains(answer.received, "\"healthy\":true"));
        CHECK(contains(answer.received, "\"ready\":true"));
    }
}
