// The connection limit (--max-connections: beyond it 503 with Retry-After, then close) and the
// accept loop when descriptors run out (EMFILE: it neither spins nor dies, and recovers).
#include "support.hpp"

#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <vector>

using namespace srv_test;

TEST_CASE("beyond --max-connections a new connection is answered 503 with Retry-After and "
          "closed, and is served again once a connection closes",
          "[server]") {
    server_config config;
    config.extra_arguments = {"--max-connections", "2"};
    server_process server(config);
    CHECK(contains(server.log(), "at most 2 connections"));

    auto first = std::make_unique<http_connection>(server.port());
    REQUIRE(first->send("GET", "/healthz").status == 200);
    http_connection second(server.port());
    REQUIRE(second.send("GET", "/healthz").status == 200);

    const http_response refused = try_request(server.port(), "GET", "/api/schedules");
    INFO(refused.body);
    REQUIRE(refused.status == 503);
    CHECK(refused.header("Retry-After") == "1");
    CHECK(refused.header("Connection") == "close");
    CHECK(contains(refused.header("Content-Type"), "application/json"));
    CHECK(contains(text_of(json_body(refused), "message"), "--max-connections"));

    // A request with a large body gets the same answer, not a reset: the server reads the
    // header, answers, and drops the rest until the client closes.
    const std::string big(std::size_t{1} << 20, 'x');
    for (int i = 0; i < 3; ++i) {
        const http_response post = try_request(server.port(), "POST", "/api/import-schedule", big,
                                               {{"Content-Type", "application/json"}});
        INFO(post.body);
        CHECK(post.status == 503);
    }

    // The connections already open are served as before.
    CHECK(second.send("GET", "/healthz").status == 200);

    first.reset();
    CHECK(wait_until([&] { return try_request(server.port(), "GET", "/healthz").status == 200; },
                     10s, 50ms));
    // (Counted once each answer is written, which the client may read first.)
    CHECK(wait_until(
        [&] {
            const http_response metrics = second.send("GET", "/metrics");
            return metric_value(metrics.body, "btq_http_connections_refused_total") >= 4;
        },
        5s, 20ms));
    CHECK(log_count(server, "503 refused: 2 connections open", 4) >= 4);
}

TEST_CASE("the server refuses a --max-connections of 0 or not a number like other bad flags",
          "[server]") {
    const auto [usual, usual_log] = start_refused({"--pool-size", "0"});
    INFO(usual_log);
    REQUIRE(usual > 0);
    check_refused_at_start({"--max-connections", "0"}, "--max-connections", usual);
    check_refused_at_start({"--max-connections", "many"}, "--max-connections", usual);
}

TEST_CASE("a server out of descriptors (EMFILE) neither spins nor dies, says so once, and "
          "answers again once descriptors free up",
          "[server]") {
    server_config config;
    config.pool_size = 1;
    config.descriptor_limit = 64;
    config.extra_arguments = {"--max-connections", "1000", "--threads", "1"};
    server_process server(config);
    CHECK(contains(server.log(), "accept may run out of descriptors"));

    http_connection kept(server.port());
    REQUIRE(kept.send("GET", "/healthz").status == 200);

    // More connections than the server has descriptors: the kernel's backlog holds the rest.
    std::vector<std::unique_ptr<raw_connection>> clients;
    for (int i = 0; i < 100; ++i) {
        clients.push_back(std::make_unique<raw_connection>(server.port()));
    }
    REQUIRE(server.wait_for_log("accept failed: Too many open files", 10s));

    // Out of descriptors, with connections waiting: the accept loop waits between tries.
    const double before = cpu_seconds(server.pid());
    std::this_thread::sleep_for(2s);
    const double used = cpu_seconds(server.pid()) - before;
    CAPTURE(used);
    CHECK(used >= 0);
    CHECK(used < 0.3);
    // It still serves the connections it has, and says it is out of descriptors once.
    CHECK(kept.send("GET", "/healthz").status == 200);
    CHECK(log_lines_with(server.log(), "accept failed").size() == 1);

    clients.clear();
    CHECK(wait_until(
        [&] { return try_request(server.port(), "GET", "/healthz", "", {}, 2s).status == 200; },
        15s, 100ms));
    CHECK(server.wait_for_log("accept works again after", 5s));
    CHECK(kept.send("GET", "/healthz").status == 200);
}
