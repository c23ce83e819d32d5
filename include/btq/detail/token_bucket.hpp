/// @file token_bucket.hpp
/// @brief The start rate limit of a queue (queue_options::rate): a token bucket kept as the
///        time its next token is due (the generic cell rate algorithm: one time point, no
///        refill loop), in tick_clock stamps, which the queue takes anyway when a task starts.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>

#include "../options.hpp"
#include "tick_clock.hpp"

namespace btq::detail {

/// Not synchronized: the queue's lock guards it. Times are tick_clock::now() stamps; an
/// interval is rounded to a whole tick (well under 1% for intervals above 100 ns).
class token_bucket {
  public:
    /// @throws std::invalid_argument for 0 starts or an interval that is not above zero.
    explicit token_bucket(const rate_limit& rate, std::uint64_t now = tick_clock::now())
        : interval_(checked_interval(rate)),
          tolerance_(tolerance_for(interval_, rate.burst == 0 ? rate.starts : rate.burst)),
          due_(now) {}

    /// True if a token is there at `now` (nothing taken).
    [[nodiscard]] bool ready(std::uint64_t now) const noexcept { return now + tolerance_ >= due_; }

    /// Takes a token; call only after ready(now).
    void take(std::uint64_t now) noexcept { due_ = std::max(due_, now) + interval_; }

    /// How long after `now` the next token is there (zero: it is).
    [[nodiscard]] std::chrono::nanoseconds until_ready(std::uint64_t now) const noexcept {
        return due_ > tolerance_ ? tick_clock::between(now, due_ - tolerance_)
                                 : std::chrono::nanoseconds::zero();
    }

  private:
    static std::uint64_t checked_interval(const rate_limit& rate) {
        if (rate.starts == 0) {
            throw std::invalid_argument("btq: rate_limit::starts must be at least 1");
        }
        if (rate.per <= clock::duration::zero()) {
            throw std::invalid_argument("btq: rate_limit::per must be above zero");
        }
        const double ticks =
            tick_clock::ticks_in(std::chrono::duration_cast<std::chrono::nanoseconds>(rate.per)) /
            static_cast<double>(rate.starts);
        return std::max<std::uint64_t>(1, static_cast<std::uint64_t>(std::llround(ticks)));
    }

    /// (burst - 1) intervals, capped far beyond any real burst so that sums cannot overflow.
    static std::uint64_t tolerance_for(std::uint64_t interval, std::size_t burst) noexcept {
        constexpr std::uint64_t most = std::uint64_t{1} << 62U;
        const std::uint64_t extra = burst - 1;
        return extra > most / interval ? most : interval * extra;
    }

    std::uint64_t interval_;  ///< one token's worth of ticks: per / starts
    std::uint64_t tolerance_; ///< (burst - 1) intervals: how far ahead a start may take tokens
    std::uint64_t due_;       ///< when the bucket is empty again if nothing more is taken
};

} // namespace btq::detail
