/// @file metrics.hpp
/// @brief Counters and latency histograms for /metrics (Prometheus text format).
#pragma once

#include <btq/stats.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

namespace schedule_server {

/// A Prometheus histogram with fixed buckets (seconds), lock-free to record.
class latency_histogram {
  public:
    static constexpr std::array<double, 14> bounds{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                   0.1,    0.25,  0.5,    1,     2.5,  5,     10};

    void record(std::chrono::nanoseconds elapsed) noexcept;
    /// Appends the `_bucket`, `_sum` and `_count` lines of metric `name`.
    void write(std::string& out, const std::string& name, const std::string& help) const;

  private:
    std::array<std::atomic<std::uint64_t>, bounds.size() + 1> buckets_{}; // last: +Inf
    std::atomic<std::uint64_t> sum_nanoseconds_{0};
};

/// What the server counts about the requests it answered.
struct request_metrics {
    /// Responses by status class: index 1..5 for 1xx..5xx.
    std::array<std::atomic<std::uint64_t>, 6> responses_by_class{};
    latency_histogram wait; ///< queue wait of the queued endpoints
    latency_histogram run;  ///< schedule_worker run time of the queued endpoints
};

/// Writes `value` as the shortest decimal that reads back the same (integers without ".0").
void append_number(std::string& out, double value);
void append_number(std::string& out, std::uint64_t value);

} // namespace schedule_server
