/// @file latency_shards.hpp
/// @brief A latency histogram kept in a few shards, each recorded by its own threads under its
///        own small lock, and folded into one summary only when stats() asks.
///
/// Recording a latency touches a few cache lines of an 8 KiB histogram. Under the queue's lock
/// those lines would travel with the lock from worker to worker on every task; in a shard they
/// stay with the threads that record into it. stats() is rare, submit and finish are hot: the
/// folding work is on the rare side.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>

#include "../stats.hpp"
#include "adaptive_mutex.hpp"

namespace btq::detail {

class latency_shards {
  public:
    void record(std::chrono::nanoseconds value) noexcept {
        shard& mine = (*shards_)[this_thread_index() % shard_count];
        std::lock_guard lock(mine.mutex);
        mine.histogram.record(value);
    }

    [[nodiscard]] latency_summary summary() const {
        auto folded = std::make_unique<latency_histogram>();
        for (const shard& each : *shards_) {
            std::lock_guard lock(each.mutex);
            folded->merge(each.histogram);
        }
        return folded->summary();
    }

  private:
    static constexpr std::size_t shard_count = 4;

    struct alignas(64) shard {
        mutable adaptive_mutex mutex;
        latency_histogram histogram;
    };

    /// A small number per thread, handed out in order: the workers of one pool, started one
    /// after another, record into different shards.
    static std::size_t this_thread_index() noexcept {
        static std::atomic<std::size_t> next{0};
        static thread_local const std::size_t index = next.fetch_add(1, std::memory_order_relaxed);
        return index;
    }

    // On the heap (about 32 KiB): a queue object stays small enough for any stack.
    std::unique_ptr<std::array<shard, shard_count>> shards_ =
        std::make_unique<std::array<shard, shard_count>>();
};

} // namespace btq::detail
