/// @file deadline_timer.hpp
/// @brief The queue's timer: one thread, started by the first deadline, that wakes at the
///        earliest armed time and hands what is due back to the queue.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <map>
#include <thread>
#include <utility>
#include <vector>

#include "../options.hpp"

namespace btq::detail {

/// Entries (`Entry`, e.g. a node and what its deadline is for) ordered by time. Every member but
/// the destructor is called with the owner's lock held; the thread takes that same lock.
template <class Entry>
class deadline_timer {
  public:
    using handle = typename std::multimap<clock::time_point, Entry>::iterator;

    deadline_timer() = default;
    deadline_timer(const deadline_timer&) = delete;
    deadline_timer& operator=(const deadline_timer&) = delete;
    deadline_timer(deadline_timer&&) = delete;
    deadline_timer& operator=(deadline_timer&&) = delete;
    /// The owner calls stop() and join() first.
    ~deadline_timer() = default;

    /// Arms `entry` for `at`. The first call starts the thread, which runs
    /// `on_due(lock, now)` (with the owner's lock held in `lock`) whenever the earliest entry is
    /// due; on_due removes the due entries (take_due) and may unlock while it answers them.
    template <class Mutex, class OnDue>
    handle arm(clock::time_point at, Entry entry, Mutex& mutex, OnDue on_due) {
        handle position;
        if (!spare_.empty()) { // reuse a node of an entry that left: no allocation here
            auto recycled = std::move(spare_.back());
            spare_.pop_back();
            recycled.key() = at;
            recycled.mapped() = std::move(entry);
            position = entries_.insert(std::move(recycled));
        } else {
            position = entries_.emplace(at, std::move(entry));
        }
        if (position == entries_.begin()) {
            if (!thread_.joinable()) {
                thread_ = std::thread([this, &mutex, on_due] { run(mutex, on_due); });
            }
            changed_.notify_one();
        }
        return position;
    }

    void disarm(handle position) noexcept { recycle(entries_.extract(position)); }

    /// Removes and returns the earliest entry if it is due at `now`.
    [[nodiscard]] bool take_due(clock::time_point now, Entry& out) noexcept {
        if (entries_.empty() || entries_.begin()->first > now) {
            return false;
        }
        out = std::move(entries_.begin()->second);
        recycle(entries_.extract(entries_.begin()));
        return true;
    }

    /// Asks the thread to end (with the owner's lock held); then call join() without it.
    void stop() noexcept {
        stopping_ = true;
        changed_.notify_all();
    }
    void join() {
        if (thread_.joinable()) {
            thread_.join();
        }
    }

    /// True on the timer's own thread (where the owner's expiry answers run).
    [[nodiscard]] bool is_timer_thread() const noexcept {
        return thread_.get_id() == std::this_thread::get_id();
    }

  private:
    using node_handle = typename std::multimap<clock::time_point, Entry>::node_type;
    static constexpr std::size_t spare_limit = 1024;

    /// Keeps the node of an entry that left for the next arm() (the queue arms and disarms a
    /// deadline per task that has one: this keeps the allocator out of its lock).
    void recycle(node_handle&& node) noexcept {
        if (spare_.size() < spare_limit) {
            try {
                spare_.push_back(std::move(node));
            } catch (...) { // NOLINT(bugprone-empty-catch): no room; the node is freed
            }
        }
    }

    template <class Mutex, class OnDue>
    void run(Mutex& mutex, OnDue& on_due) {
        std::unique_lock lock(mutex);
        while (!stopping_) {
            if (entries_.empty()) {
                changed_.wait(lock);
                continue;
            }
            const clock::time_point earliest = entries_.begin()->first; // a copy: the entry may
            const clock::time_point now = clock::now();                 // be erased meanwhile
            if (now < earliest) {
                changed_.wait_until(lock, earliest);
                continue;
            }
            on_due(lock, now);
        }
    }

    std::multimap<clock::time_point, Entry> entries_;
    std::vector<node_handle> spare_;
    std::condition_variable_any changed_;
    std::thread thread_;
    bool stopping_ = false;
};

} // namespace btq::detail
