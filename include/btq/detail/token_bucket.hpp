/// @file token_bucket.hpp
/// @brief The start rate limit of a queue (queue_options::rate): a token bucket kept as the
///        time its next token is due (the generic cell rate algorithm: one time point, no
///        refill loop).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <stdexcept>

#include "../options.hpp"

namespace btq::detail {

/// Not synchronized: the queue's lock guards it.
class token_bucket {
  public:
    /// @throws std::invalid_argument for 0 starts or an interval that is not above zero.
    explicit token_bucket(const rate_limit& rate, clock::time_point now = clock::now())
        : interval_(checked_interval(rate)),
          tolerance_(interval_ *
                     static_cast<clock::rep>((rate.burst == 0 ? rate.starts : rate.burst) - 1)),
          due_(now) {}

    /// True if a token is there at `now` (nothing taken).
    [[nodiscard]] bool ready(clock::time_point now) const noexcept {
        return now >= due_ - tolerance_;
    }

    /// Takes a token; call only after ready(now).
    void take(clock::time_point now) noexcept { due_ = std::max(due_, now) + interval_; }

    /// When the next token is there.
    [[nodiscard]] clock::time_point next_ready() const noexcept { return due_ - tolerance_; }

  private:
    static clock::duration checked_interval(const rate_limit& rate) {
        if (rate.starts == 0) {
            throw std::invalid_argument("btq: rate_limit::starts must be at least 1");
        }
        if (rate.per <= clock::duration::zero()) {
            throw std::invalid_argument("btq: rate_limit::per must be above zero");
        }
        const clock::duration interval = rate.per / static_cast<clock::rep>(rate.starts);
        return std::max(interval, clock::duration(1));
    }

    clock::duration interval_;  ///< one token's worth of time: per / starts
    clock::duration tolerance_; ///< (burst - 1) intervals: how far ahead a start may take tokens
    clock::time_point due_;     ///< when the bucket is empty again if nothing more is taken
};

} // namespace btq::detail
