// Small helpers shared by the library tests.
#pragma once

#include <btq/executor.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <stop_token>
#include <thread>
#include <utility>

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
