// The latency histogram behind queue_stats' summaries.
#include <btq/stats.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>

using btq::detail::latency_histogram;

TEST_CASE("an empty histogram summarises to zeros", "[stats]") {
    latency_histogram histogram;
    const auto s = histogram.summary();
    CHECK(s.count == 0);
    CHECK(s.max.count() == 0);
    CHECK(s.p99.count() == 0);
}

TEST_CASE("histogram buckets are monotonic and each value lies within 1/16 of its bucket's value",
          "[stats]") {
    std::size_t previous = 0;
    for (std::uint64_t v = 0; v < 5'000'000; v = v < 100 ? v + 1 : v + v / 37) {
        const std::size_t bucket = latency_histogram::bucket_of(v);
        CHECK(bucket >= previous);
        CHECK(bucket < latency_histogram::bucket_count);
        previous = bucket;
        const auto estimate = static_cast<double>(latency_histogram::bucket_value(bucket));
        CHECK(std::abs(estimate - static_cast<double>(v)) <= static_cast<double>(v) / 16.0 + 0.5);
    }
    CHECK(latency_histogram::bucket_of(UINT64_MAX) == latency_histogram::bucket_count - 1);
}

TEST_CASE("percentiles of 1..10000 microseconds are within 6.25% with exact count, mean and max",
          "[stats]") {
    latency_histogram histogram;
    for (int i = 1; i <= 10'000; ++i) {
        histogram.record(std::chrono::microseconds(i));
    }
    const auto s = histogram.summary();
    CHECK(s.count == 10'000);
    CHECK(s.max == std::chrono::microseconds(10'000));
    CHECK(s.mean == std::chrono::nanoseconds(5'000'500));
    auto near = [](std::chrono::nanoseconds got, double expected_us) {
        return std::abs(static_cast<double>(got.count()) / 1000.0 - expected_us) <=
               expected_us * 0.0625;
    };
    CHECK(near(s.p50, 5'000));
    CHECK(near(s.p90, 9'000));
    CHECK(near(s.p99, 9'900));
}

TEST_CASE("negative durations are recorded as zero", "[stats]") {
    latency_histogram histogram;
    histogram.record(std::chrono::nanoseconds(-5));
    CHECK(histogram.summary().max.count() == 0);
    CHECK(histogram.summary().count == 1);
}
