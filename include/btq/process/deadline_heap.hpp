/// @file deadline_heap.hpp
/// @brief deadline_heap: the deadlines of a process executor's event thread (run timeouts, kill
///        graces, memory checks, restarts), earliest first, and the poller timeout to the next.
#pragma once

#include <chrono>
#include <cstddef>
#include <queue>
#include <vector>

namespace btq::process {

/// The timeout for poller::wait() until `at`: milliseconds, rounded up; 0 when it is due.
inline int milliseconds_until(std::chrono::steady_clock::time_point at) noexcept {
    const auto left = at - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) {
        return 0;
    }
    return static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(left).count());
}

/// @brief Deadlines, earliest first: each names what it is for (`Key`: a child's id, a worker's
///        slot and generation) and what to do then (`Kind`: an enum of the owner's).
///
/// Entries are never removed early: an owner whose key has gone, or moved on, skips the entry
/// when it comes due (or drops it from the top with timeout_ms(is_stale)), which keeps push()
/// at O(log n) and needs no handle per entry.
///
/// @par Thread Safety
/// None: the event thread alone uses it.
template <class Key, class Kind>
class deadline_heap {
  public:
    using clock_type = std::chrono::steady_clock; ///< the clock of every deadline

    /// Adds the deadline `at` for `key`, of kind `kind`.
    void push(clock_type::time_point at, Key key, Kind kind) { entries_.push({at, key, kind}); }

    /// The timeout for poller::wait() until the earliest deadline: -1 (no limit) when there is
    /// none, 0 when it is due.
    [[nodiscard]] int timeout_ms() const noexcept {
        return entries_.empty() ? -1 : milliseconds_until(entries_.top().at);
    }

    /// timeout_ms(), after dropping the earliest entries whose key `is_stale(key)` says are
    /// gone: a deadline of a child that has ended never wakes the poller.
    template <class Stale>
    [[nodiscard]] int timeout_ms(Stale is_stale) {
        while (!entries_.empty() && is_stale(entries_.top().key)) {
            entries_.pop();
        }
        return timeout_ms();
    }

    /// Removes every entry due at `now` and calls `on_due(key, kind)` for each, earliest first.
    /// `on_due` may push: a new entry due at `now` or earlier is handled in the same call.
    template <class OnDue>
    void pop_due(clock_type::time_point now, OnDue on_due) {
        while (!entries_.empty() && entries_.top().at <= now) {
            const entry due = entries_.top();
            entries_.pop();
            on_due(due.key, due.kind);
        }
    }

    /// @brief True when no deadline is held.
    [[nodiscard]] bool empty() const noexcept { return entries_.empty(); }
    /// @brief How many deadlines are held (stale ones included).
    [[nodiscard]] std::size_t size() const noexcept { return entries_.size(); }

  private:
    struct entry {
        clock_type::time_point at;
        Key key;
        Kind kind;
    };
    struct later {
        bool operator()(const entry& a, const entry& b) const noexcept { return a.at > b.at; }
    };

    std::priority_queue<entry, std::vector<entry>, later> entries_;
};

} // namespace btq::process
