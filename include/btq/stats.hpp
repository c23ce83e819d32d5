/// @file stats.hpp
/// @brief queue_stats: a consistent snapshot of what a queue is doing and has done.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "task_key.hpp"

namespace btq {

/// @brief Summary of a latency distribution. Percentiles come from a log-linear histogram with
///        16 buckets per power of two, so they are within 1/16 (6.25%) of the true value;
///        `count`, `mean` and `max` are exact.
struct latency_summary {
    std::uint64_t count = 0;          ///< values recorded
    std::chrono::nanoseconds mean{0}; ///< their mean (exact)
    std::chrono::nanoseconds p50{0};  ///< the median
    std::chrono::nanoseconds p90{0};  ///< the 90th percentile
    std::chrono::nanoseconds p99{0};  ///< the 99th percentile
    std::chrono::nanoseconds max{0};  ///< the largest value (exact)
};

/// @brief How many tasks wait at one priority (queue_stats::waiting_by_priority).
struct priority_count {
    int priority = 0;        ///< the priority
    std::size_t waiting = 0; ///< tasks waiting at it
    /// @brief Same priority and count.
    friend bool operator==(const priority_count&, const priority_count&) = default;
};

/// @brief A snapshot of a bounded_task_queue, taken under the queue's lock: every field is as of
///        the same instant, so the accounting identity
///        `submitted == total_processed + active + queued + rejected + cleared + expired +
///        cancelled`
///        holds in every snapshot, however busy the queue is.
///
/// A task's answer (future, callback) is delivered just before its slot is released and it is
/// counted in `total_processed`; call drain() first for settled counts.
///
/// The first nine fields are the seed service's `getStats()` under C++ names:
/// totalProcessed, totalQueued, totalErrors, peakActive, peakQueueSize, activeProcesses,
/// queuedTasks, maxConcurrency, utilizationPercent.
struct queue_stats {
    std::uint64_t total_processed = 0; ///< tasks that ran to completion, successfully or not
    std::uint64_t total_queued = 0;  ///< tasks that had to wait for a slot (did not start at once)
    std::uint64_t total_errors = 0;  ///< tasks that ran and failed (exception or error result)
    std::size_t peak_active = 0;     ///< most tasks ever running at once
    std::size_t peak_queue_size = 0; ///< most tasks ever waiting at once
    std::size_t active = 0;          ///< tasks running now (inside the executor)
    std::size_t queued = 0;          ///< tasks waiting now
    std::size_t max_concurrency = 0; ///< the running bound now
    double utilization_percent = 0;  ///< 100 * active_weight / max_concurrency

    std::size_t capacity = 0;    ///< the waiting bound
    std::uint64_t submitted = 0; ///< every submit/try_submit that reached a decision
    std::uint64_t rejected = 0;  ///< refused (full, closed, block timeout) or displaced
    std::uint64_t displaced = 0; ///< of `rejected`: admitted, then displaced by drop_oldest
    std::uint64_t cleared = 0;   ///< failed by clear(), shutdown() or the destructor
    std::uint64_t expired = 0;   ///< still waiting at their queue deadline; never started
    std::uint64_t cancelled = 0; ///< stop requested while waiting (submit_options::stop)
    std::uint64_t timed_out = 0; ///< of `total_errors`: failed with btq::task_timeout
    /// Running tasks already answered with btq::task_timeout (run timeout) that have not
    /// returned yet: they still hold their slot, and are counted in `active`.
    std::size_t overrunning = 0;
    /// Waiting tasks held back by the queue's start gate (btq::start_gate, e.g. btq::memory_gate):
    /// a slot was free for each, and the gate refused to start it. Counted in `queued`; always 0
    /// without a gate. A task stops being held when it starts or leaves (cleared, expired,
    /// cancelled, displaced).
    std::size_t held_by_gate = 0;
    /// Tasks ever held back by the start gate: each counted once, when first held (a held task
    /// overtaken by a higher priority one and held again later is counted again).
    std::uint64_t gate_holds_total = 0;
    /// The running tasks' weights added up (submit_options::weight; equal to `active` when every
    /// task weighs 1): what `max_concurrency` bounds, and what `utilization_percent` is of.
    std::size_t active_weight = 0;
    /// Waiting tasks that a free slot was there for but that wait for the rate limit's next
    /// token (queue_options::rate), at the instant of the snapshot; always 0 without a rate.
    /// Counted in `queued`.
    std::size_t held_by_rate = 0;
    /// Times a task first in line had to wait for a rate token (queue_options::rate).
    std::uint64_t rate_holds_total = 0;
    /// Failed tasks waiting out their back-off before another attempt (submit_options::retry).
    /// Counted in `queued`: a retrying task keeps its waiting place.
    std::size_t retrying = 0;
    /// Attempts begun again after a failure (submit_options::retry); the attempts before a
    /// task's last are not counted in total_processed or total_errors.
    std::uint64_t retries_total = 0;
    bool closed = false; ///< close() or shutdown() has been called
    bool paused = false; ///< pause() is in effect

    latency_summary wait_time; ///< submission to start, for every task that started
    latency_summary run_time;  ///< start to completion, for every task that ran

    /// Filled by stats(top_keys) only (empty from stats()): the waiting tasks per priority,
    /// highest first, priorities with none left out.
    std::vector<priority_count> waiting_by_priority;
    /// Filled by stats(top_keys) only: the `top_keys` keys (submit_options::key) with the most
    /// tasks waiting and running, busiest first. A queue tracks only keys that have tasks
    /// waiting or running, so this is bounded by them; a key's `rejected` counts since it last
    /// had none.
    std::vector<key_stats> keys;
};

namespace detail {

/// Log-linear histogram of nanosecond values: exact below 32 ns, then 16 buckets per power of
/// two. Fixed size (about 8 KiB), no allocation; not synchronized (see detail::latency_shards).
class latency_histogram {
  public:
    void record(std::chrono::nanoseconds value) noexcept {
        const auto ns = static_cast<std::uint64_t>(std::max<std::int64_t>(value.count(), 0));
        ++buckets_[bucket_of(ns)];
        ++count_;
        sum_ += ns;
        max_ = std::max(max_, ns);
    }

    /// Adds every value recorded in `other` to this histogram.
    void merge(const latency_histogram& other) noexcept {
        for (std::size_t i = 0; i < bucket_count; ++i) {
            buckets_[i] += other.buckets_[i];
        }
        count_ += other.count_;
        sum_ += other.sum_;
        max_ = std::max(max_, other.max_);
    }

    [[nodiscard]] latency_summary summary() const noexcept {
        latency_summary out;
        out.count = count_;
        if (count_ == 0) {
            return out;
        }
        out.mean = std::chrono::nanoseconds(static_cast<std::int64_t>(sum_ / count_));
        out.max = std::chrono::nanoseconds(static_cast<std::int64_t>(max_));
        out.p50 = percentile(0.50);
        out.p90 = percentile(0.90);
        out.p99 = percentile(0.99);
        return out;
    }

    static constexpr std::size_t exact_below = 32;
    static constexpr std::size_t sub_buckets = 16;
    static constexpr std::size_t bucket_count = exact_below + (64 - 5) * sub_buckets;

    [[nodiscard]] static std::size_t bucket_of(std::uint64_t ns) noexcept {
        if (ns < exact_below) {
            return static_cast<std::size_t>(ns);
        }
        const auto exponent = static_cast<std::size_t>(std::bit_width(ns) - 1); // >= 5
        const auto sub = static_cast<std::size_t>((ns >> (exponent - 4)) & (sub_buckets - 1));
        return exact_below + (exponent - 5) * sub_buckets + sub;
    }

    /// Midpoint of a bucket's range: the estimate reported for values in it.
    [[nodiscard]] static std::uint64_t bucket_value(std::size_t index) noexcept {
        if (index < exact_below) {
            return index;
        }
        const std::size_t exponent = (index - exact_below) / sub_buckets + 5;
        const std::size_t sub = (index - exact_below) % sub_buckets;
        const std::uint64_t width = std::uint64_t{1} << (exponent - 4);
        return ((sub_buckets + sub) * width) + (width / 2);
    }

  private:
    [[nodiscard]] std::chrono::nanoseconds percentile(double fraction) const noexcept {
        const auto rank = std::max<std::uint64_t>(
            1, static_cast<std::uint64_t>(fraction * static_cast<double>(count_) + 0.999999));
        std::uint64_t seen = 0;
        for (std::size_t i = 0; i < bucket_count; ++i) {
            seen += buckets_[i];
            if (seen >= rank) {
                return std::chrono::nanoseconds(
                    static_cast<std::int64_t>(std::min(bucket_value(i), max_)));
            }
        }
        return std::chrono::nanoseconds(static_cast<std::int64_t>(max_));
    }

    std::array<std::uint64_t, bucket_count> buckets_{};
    std::uint64_t count_ = 0;
    std::uint64_t sum_ = 0;
    std::uint64_t max_ = 0;
};

} // namespace detail
} // namespace btq
