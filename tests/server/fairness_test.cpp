// Clients take turns (--fairness-key), heavy operations weigh more (--import-weight,
// --schedule-weight), per-client limits (--max-per-client, --capacity-per-client), and
// /api/queue-stats' busiestKeys.
#include "support.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

using namespace srv_test;

namespace {

/// The busiestKeys array of /api/queue-stats.
json::array busiest_keys(const server_process& server) {
    return json_body(server.get("/api/queue-stats")).at("busiestKeys").as_array();
}

/// The entry of `key` in busiestKeys, or an empty object.
json::object key_entry(const json::array& keys, std::string_view key) {
    for (const auto& entry : keys) {
        if (entry.as_object().at("key").as_string() == key) {
            return entry.as_object();
        }
    }
    return {};
}

} // namespace

TEST_CASE("two clients by bearer token: the second's requests take turns with the first's "
          "backlog instead of waiting behind it, and busiestKeys shows them without the tokens",
          "[server]") {
    server_config config;
    config.pool_size = 1;
    config.queue_capacity = 50;
    config.worker_delay_ms = 250 * time_scale();
    config.extra_arguments = {"--fairness-key", "token"};
    server_process server(config);
    run_worker_once(server.data_dir(), "schedules", "{}");

    std::mutex mutex;
    std::vector<std::string> finished; // who, in the order the answers came
    const auto client = [&](const std::string& token) {
        const http_response answer = try_request(server.port(), "GET", "/api/schedules", "",
                                                 {{"Authorization", "Bearer " + token}}, 60s);
        std::lock_guard lock(mutex);
        finished.push_back(answer.status == 200 ? token : token + "-failed");
    };
    const auto waiting_of = [&](std::size_t rank) -> std::int64_t {
        const json::array keys = busiest_keys(server);
        return keys.size() > rank ? int_of(keys[rank].as_object(), "waiting") : 0;
    };
    std::vector<std::thread> clients;
    for (int i = 0; i < 12; ++i) {
        clients.emplace_back(client, "alpha-secret");
    }
    REQUIRE(wait_until([&] { return waiting_of(0) >= 7; }, 20s));
    for (int i = 0; i < 2; ++i) {
        clients.emplace_back(client, "beta-secret");
    }
    REQUIRE(wait_until([&] { return waiting_of(1) == 2; }, 20s));
    const json::array keys = busiest_keys(server);
    INFO(json::serialize(keys));
    REQUIRE(keys.size() == 2);
    CHECK(keys[0].as_object().at("key").as_string().starts_with("token:"));
    CHECK(keys[1].as_object().at("key").as_string().starts_with("token:"));
    CHECK_FALSE(contains(json::serialize(keys), "secret"));
    const std::int64_t alpha_waiting = int_of(keys[0].as_object(), "waiting");
    for (auto& each : clients) {
        each.join();
    }
    REQUIRE(finished.size() == 14);
    std::size_t alpha_after_beta = 0; // alpha's answers after beta's last
    for (const std::string& who : finished) {
        CHECK(who.find("failed") == std::string::npos);
        alpha_after_beta = who == "beta-secret" ? 0 : alpha_after_beta + 1;
    }
    INFO("finished: alpha had " << alpha_waiting << " waiting when beta's 2 came; "
                                << alpha_after_beta << " of alpha's came after beta's last");
    // Behind alpha's backlog, beta's would be the last answers; taking turns, beta's two start
    // within the next four starts, so at least alpha_waiting - 3 of alpha's come after them.
    CHECK(alpha_after_beta + 3 >= static_cast<std::size_t>(alpha_waiting));
    CHECK(alpha_after_beta >= 3);
    CHECK(busiest_keys(server).empty()); // idle clients are forgotten
}

TEST_CASE("an import weighs --import-weight: with a pool of 3 it leaves no slot for a listing "
          "while it runs",
          "[server]") {
    server_config config;
    config.pool_size = 3;
    config.worker_delay_ms = 600 * time_scale();
    config.extra_arguments = {"--import-weight", "3"};
    server_process server(config);
    run_worker_once(server.data_dir(), "schedules", "{}");
    // Catch's assertions are for the test's own thread: the clients only keep their statuses.
    unsigned import_status = 0;
    unsigned listing_status = 0;
    std::thread import([&] {
        import_status = server.post_json("/api/import-schedule", import_body("weighted")).status;
    });
    REQUIRE(wait_until([&] { return int_of(server.queue_stats(), "activeWeight") == 3; }, 10s));
    std::thread listing([&] { listing_status = server.get("/api/schedules").status; });
    REQUIRE(wait_until([&] { return int_of(server.pool_stats(), "queuedTasks") == 1; }, 5s));
    const json::object pool = server.pool_stats();
    CHECK(int_of(pool, "activeProcesses") == 1);
    CHECK(int_of(pool, "utilizationPercent") == 100);
    import.join();
    listing.join();
    CHECK(import_status == 200);
    CHECK(listing_status == 200);
}

TEST_CASE("without a token a request is keyed by the client's address, and "
          "--capacity-per-client refuses one client's surplus with 503 while another still gets in",
          "[server]") {
    server_config config;
    config.pool_size = 1;
    config.queue_capacity = 20;
    config.worker_delay_ms = 400 * time_scale();
    config.extra_arguments = {"--fairness-key", "auto", "--capacity-per-client", "2"};
    server_process server(config);
    run_worker_once(server.data_dir(), "schedules", "{}");
    std::vector<http_response> answers(3);
    std::vector<std::thread> clients;
    for (std::size_t i = 0; i < answers.size(); ++i) { // no token: keyed by 127.0.0.1
        clients.emplace_back([&, i] {
            answers[i] = try_request(server.port(), "GET", "/api/schedules", "", {}, 30s);
        });
    }
    REQUIRE(wait_until(
        [&] {
            const json::object peer = key_entry(busiest_keys(server), "peer:127.0.0.1");
            return !peer.empty() && int_of(peer, "running") == 1 && int_of(peer, "waiting") == 2;
        },
        10s));
    const http_response surplus = server.get("/api/schedules");
    CHECK(surplus.status == 503);
    CHECK(surplus.has_header("Retry-After"));
    const http_response other = try_request(server.port(), "GET", "/api/schedules", "",
                                            {{"Authorization", "Bearer someone-else"}}, 30s);
    CHECK(other.status == 200);
    for (auto& each : clients) {
        each.join();
    }
    for (const auto& answer : answers) {
        CHECK(answer.status == 200);
    }
    CHECK(int_of(server.queue_stats(), "rejected") == 1);
}

TEST_CASE("the server refuses a bad --fairness-key or weight like other bad flags", "[server]") {
    const auto [usual, usual_log] = start_refused({"--pool-size", "0"});
    INFO(usual_log);
    REQUIRE(usual > 0);
    check_refused_at_start({"--fairness-key", "bogus"}, "--fairness-key", usual);
    check_refused_at_start({"--import-weight", "0"}, "--import-weight", usual);
    check_refused_at_start({"--schedule-weight", "x"}, "--schedule-weight", usual);
}
