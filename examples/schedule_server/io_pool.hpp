/// @file io_pool.hpp
/// @brief One io_context per I/O thread.
#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <atomic>
#include <cstddef>
#include <memory>
#include <thread>
#include <vector>

namespace schedule_server {

/// @brief `threads` io_contexts, each run by one thread. A connection is given one context and
///        stays on it, so its handlers never run concurrently (no strand needed) and no thread
///        has to wake another to run them — with a single shared io_context, the wake-ups and
///        strand hand-offs cost more CPU than the HTTP work of a small request.
class io_pool {
  public:
    explicit io_pool(std::size_t threads) {
        for (std::size_t i = 0; i < std::max<std::size_t>(threads, 1); ++i) {
            // Concurrency hint 1: each context is run by exactly one thread.
            contexts_.push_back(std::make_unique<boost::asio::io_context>(1));
            guards_.push_back(boost::asio::make_work_guard(*contexts_.back()));
        }
    }

    /// The first context: the acceptor, signals and timers live here (it serves connections
    /// too).
    [[nodiscard]] boost::asio::io_context& main() noexcept { return *contexts_.front(); }

    /// The context for a new connection (round robin).
    [[nodiscard]] boost::asio::io_context& next() noexcept {
        return *contexts_[next_.fetch_add(1, std::memory_order_relaxed) % contexts_.size()];
    }

    /// Runs every context, the first on the calling thread; returns once stop() has been called
    /// and every thread has returned.
    void run() {
        std::vector<std::thread> threads;
        for (std::size_t i = 1; i < contexts_.size(); ++i) {
            threads.emplace_back([context = contexts_[i].get()] { context->run(); });
        }
        contexts_.front()->run();
        for (std::thread& thread : threads) {
            thread.join();
        }
    }

    /// Stops every context; callable from any thread.
    void stop() {
        for (auto& guard : guards_) {
            guard.reset();
        }
        for (auto& context : contexts_) {
            context->stop();
        }
    }

  private:
    std::vector<std::unique_ptr<boost::asio::io_context>> contexts_;
    std::vector<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> guards_;
    std::atomic<std::size_t> next_{0};
};

} // namespace schedule_server
