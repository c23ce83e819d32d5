// The pieces of btq::redis_permits that need no server: the URL parser and the lease
// arithmetic, driven with time points the test picks.
#include <btq/redis/redis_permits.hpp>
#include <btq/redis/redis_url.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <stdexcept>
#include <string>

using namespace std::chrono_literals;

TEST_CASE("redis URL: host, port and key prefix are parsed", "[redis][url]") {
    const btq::redis_endpoint where = btq::parse_redis_url("redis://127.0.0.1:6390/btq-imports");
    CHECK(where.host == "127.0.0.1");
    CHECK(where.port == 6390);
    CHECK(where.key_prefix == "btq-imports");
    CHECK(btq::to_url(where) == "redis://127.0.0.1:6390/btq-imports");
}

TEST_CASE("redis URL: the port defaults to 6379 and the prefix to btq", "[redis][url]") {
    const btq::redis_endpoint bare = btq::parse_redis_url("redis://cache.internal");
    CHECK(bare.host == "cache.internal");
    CHECK(bare.port == 6379);
    CHECK(bare.key_prefix == "btq");
    CHECK(btq::parse_redis_url("redis://cache:7000/").key_prefix == "btq");
}

TEST_CASE("redis URL: malformed URLs are refused with a message naming the problem",
          "[redis][url]") {
    using Catch::Matchers::Contains;
    CHECK_THROWS_WITH(btq::parse_redis_url("http://127.0.0.1/x"), Contains("redis://"));
    CHECK_THROWS_WITH(btq::parse_redis_url("redis:///x"), Contains("no host"));
    CHECK_THROWS_WITH(btq::parse_redis_url("redis://h:0/x"), Contains("port"));
    CHECK_THROWS_WITH(btq::parse_redis_url("redis://h:65536/x"), Contains("port"));
    CHECK_THROWS_WITH(btq::parse_redis_url("redis://h:12ab/x"), Contains("port"));
    CHECK_THROWS_WITH(btq::parse_redis_url("redis://h:/x"), Contains("port"));
    CHECK_THROWS_WITH(btq::parse_redis_url("redis://user:pw@h/x"), Contains("passwords"));
    CHECK_THROWS_WITH(btq::parse_redis_url("redis://[::1]:6379/x"), Contains("IPv6"));
    CHECK_THROWS_WITH(btq::parse_redis_url("redis://h/3"), Contains("database number"));
    CHECK_THROWS_WITH(btq::parse_redis_url("redis://h/x?db=1"), Contains("queries"));
    CHECK_THROWS_WITH(btq::parse_redis_url("redis://h/a b"), Contains("key prefix"));
    CHECK_THROWS_WITH(btq::parse_redis_url("redis://h/{x}"), Contains("braces"));
    CHECK_THROWS_WITH(btq::parse_redis_url("redis://h*st/x"), Contains("host"));
    CHECK_THROWS_AS(btq::parse_redis_url("redis://h:99999"), btq::redis_url_error);
    CHECK_THROWS_AS(btq::parse_redis_url("redis://h:99999"), std::invalid_argument);
}

TEST_CASE("lease timing: the defaults are ttl/3, ttl/5 and min(1 s, ttl/4)", "[redis][lease]") {
    const auto timing = btq::redis_lease_timing::make(900ms, 0ms, 0ms, 0ms);
    CHECK(timing.ttl == 900ms);
    CHECK(timing.renew_interval == 300ms);
    CHECK(timing.safety_margin == 180ms);
    CHECK(timing.io_timeout == 225ms);
    CHECK(btq::redis_lease_timing::make(60s, 0ms, 0ms, 0ms).io_timeout == 1s);
}

TEST_CASE("lease timing: the client's deadline is the send time + ttl - margin", "[redis][lease]") {
    const auto timing = btq::redis_lease_timing::make(1000ms, 250ms, 200ms, 100ms);
    const std::chrono::steady_clock::time_point sent{std::chrono::seconds(1234)};
    CHECK(timing.deadline_after(sent) == sent + 800ms);
    // A renewal acknowledged later moves the deadline from its own send time, not the reply's.
    const auto renewal_sent = sent + 250ms;
    CHECK(timing.deadline_after(renewal_sent) == sent + 1050ms);
    // The server's expiry is (its clock when it ran the command) + ttl: at least sent + ttl in
    // real time, so the client gives up `margin` before Redis can hand the permit to another.
    CHECK(timing.deadline_after(sent) + timing.safety_margin == sent + timing.ttl);
}

TEST_CASE("lease timing: settings that would lose a lease before its renewal are refused",
          "[redis][lease]") {
    CHECK_THROWS_AS(btq::redis_lease_timing::make(10ms, 0ms, 0ms, 0ms), std::invalid_argument);
    CHECK_THROWS_AS(btq::redis_lease_timing::make(1000ms, 0ms, 1000ms, 0ms), std::invalid_argument);
    // renew 600 + io 300 >= 1000 - 200
    CHECK_THROWS_AS(btq::redis_lease_timing::make(1000ms, 600ms, 200ms, 300ms),
                    std::invalid_argument);
    CHECK_NOTHROW(btq::redis_lease_timing::make(1000ms, 400ms, 200ms, 300ms));
}
