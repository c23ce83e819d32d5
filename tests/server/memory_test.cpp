// Memory as the bound: the memory probe (--enable-memory-probe), the per-task memory limit
// (--task-memory-limit, 507 at the limit), the memory gate (--min-available-memory,
// --max-memory-pressure) and what /api/queue-stats and /metrics say of them, in both modes.
// No request asks for more than 512 MiB, and the tests that ask for that much run under a
// 64 MiB limit.
#include "support.hpp"

#include <catch2/catch.hpp>

using namespace srv_test;

namespace {

constexpr std::int64_t mebibyte = std::int64_t{1} << 20;

bool contains(const std::string& text, std::string_view part) {
    return text.find(part) != std::string::npos;
}

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
    // Queued like the other worker endpoints.
    CHECK(int_of(server.pool_stats(), "totalProcessed") == 1);

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
