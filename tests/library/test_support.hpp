// Small helpers shared by the library tests.
#pragma once

#include <btq/executor.hpp>
#include <btq/stats.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <random>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace btq_test {

/// A gate tasks wait on until the test opens it.
class gate {
  public:
    void open() {
        {
            std::lock_guard lock(mutex_);
            open_ = true;
        }
        changed_.notify_all();
    }
    void wait() {
        std::unique_lock lock(mutex_);
        changed_.wait(lock, [this] { return open_; });
    }

  private:
    std::mutex mutex_;
    std::condition_variable changed_;
    bool open_ = false;
};

/// The accounting identity every snapshot of a queue keeps.
inline bool identity_holds(const btq::queue_stats& s) {
    return s.submitted == s.total_processed + s.active + s.queued + s.rejected + s.cleared +
                              s.expired + s.cancelled;
}

/// Takes snapshots with `take()` for 400 ms and at least 50 of them (at most 10 s) while the
/// caller's threads work the queue; `broken(snapshot)` describes what a snapshot breaks ("" if
/// nothing). Returns the first description, or "" when every snapshot held.
template <class Take, class Broken>
std::string first_broken_snapshot(Take take, Broken broken) {
    const auto start = std::chrono::steady_clock::now();
    int snapshots = 0;
    while ((std::chrono::steady_clock::now() < start + std::chrono::milliseconds(400) ||
            snapshots < 50) &&
           std::chrono::steady_clock::now() < start + std::chrono::seconds(10)) {
        if (std::string why = broken(take()); !why.empty()) {
            return why;
        }
        ++snapshots;
        std::this_thread::yield();
    }
    return {};
}

/// Calls `disturb(random)` on a thread of its own every 0 to `pause_us` microseconds until
/// stop() (or destruction): the racing clear() and set_max_concurrency() of the stress tests.
class disturber {
  public:
    template <class Disturb>
    disturber(unsigned seed, unsigned pause_us, Disturb disturb)
        : thread_([this, seed, pause_us, disturb]() mutable {
              std::minstd_rand random(seed);
              while (running_.load()) {
                  disturb(random);
                  std::this_thread::sleep_for(std::chrono::microseconds(random() % pause_us));
              }
          }) {}
    disturber(const disturber&) = delete;
    disturber& operator=(const disturber&) = delete;
    disturber(disturber&&) = delete;
    disturber& operator=(disturber&&) = delete;
    ~disturber() { stop(); }
    void stop() {
        running_.store(false);
        if (thread_.joinable()) {
            thread_.join();
        }
    }

  private:
    std::atomic<bool> running_{true};
    std::thread thread_; // last: starts after running_ exists
};

/// A disturbance: one time in `clear_one_in` clear(), else set_max_concurrency() to a bound
/// from `lowest` to `lowest + span - 1`.
template <class Queue>
auto clear_or_resize(Queue& queue, unsigned clear_one_in, std::size_t lowest, std::size_t span) {
    return [&queue, clear_one_in, lowest, span](std::minstd_rand& random) {
        if (random() % clear_one_in == 0) {
            static_cast<void>(queue.clear("sweep"));
        } else {
            queue.set_max_concurrency(lowest + random() % span);
        }
    };
}

/// Joins every thread of `threads`.
inline void join_all(std::vector<std::thread>& threads) {
    for (std::thread& thread : threads) {
        thread.join();
    }
}

/// The order tasks started in, as each records its id when it runs.
template <class Id>
class start_log {
  public:
    void add(Id id) {
        std::lock_guard lock(mutex_);
        order_.push_back(std::move(id));
    }
    /// A task that records `id` when it runs.
    std::function<void()> task(Id id) {
        return [this, id = std::move(id)] { add(id); };
    }
    std::vector<Id> get() {
        std::lock_guard lock(mutex_);
        return order_;
    }

  private:
    std::mutex mutex_;
    std::vector<Id> order_;
};

/// Polls `condition` until it holds or `limit` passes; returns whether it held.
inline bool eventually(const std::function<bool()>& condition,
                       std::chrono::milliseconds limit = std::chrono::seconds(10)) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (!condition()) {
        if (std::chrono::steady_clock::now() > until) {
            return false;
        }
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    return true;
}

/// A completion that fulfils a promise with the outcome, `stop` as its stop token, and the
/// promise's future: for handing a task to an executor without a queue.
template <class R>
std::pair<btq::completion<R>, std::future<R>> promised_completion(std::stop_token stop = {}) {
    auto promise = std::make_shared<std::promise<R>>();
    std::future<R> future = promise->get_future();
    auto done = btq::completion<R>::from(
        [promise](btq::task_result<R> result) {
            if (result) {
                promise->set_value(std::move(*result));
            } else {
                promise->set_exception(result.error());
            }
        },
        std::move(stop));
    return {std::move(done), std::move(future)};
}

/// Tracks how many task bodies run at once and the most ever seen.
struct concurrency_probe {
    std::atomic<int> running{0};
    std::atomic<int> peak{0};

    void enter() {
        const int now = running.fetch_add(1) + 1;
        int seen = peak.load();
        while (now > seen && !peak.compare_exchange_weak(seen, now)) {
        }
    }
    void leave() { running.fetch_sub(1); }
};

} // namespace btq_test
