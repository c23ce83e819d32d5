/// @file recent_errors.hpp
/// @brief The last server errors (responses with a status of 500 or more), for /api/queue-stats'
///        `recentErrors` and the dashboard's table: a bounded ring behind a mutex.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <mutex>
#include <string>
#include <vector>

namespace schedule_server {

/// One response with a status of 500 or more.
struct recent_error {
    std::chrono::system_clock::time_point time;
    std::string method;
    std::string path; ///< the request target without its query
    unsigned status = 0;
    std::string message; ///< the response's `message`, or empty
};

/// @brief The last `limit` errors; thread-safe. Adding costs a lock and a few short strings,
///        and only errors are added, so the lock is not on the path of a successful request.
class recent_errors {
  public:
    static constexpr std::size_t limit = 20;

    /// Keeps `error`, forgetting the oldest once `limit` are kept.
    void add(recent_error error);

    /// What is kept, newest first.
    [[nodiscard]] std::vector<recent_error> newest_first() const;

  private:
    mutable std::mutex lock_;
    std::array<recent_error, limit> ring_{};
    std::size_t next_ = 0;  ///< where the next one goes
    std::size_t count_ = 0; ///< how many are kept (at most limit)
};

} // namespace schedule_server
