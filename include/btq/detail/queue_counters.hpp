/// @file queue_counters.hpp
/// @brief What a queue counts, all guarded by its lock, and how a snapshot is filled from it.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "../stats.hpp"
#include "latency_shards.hpp"

namespace btq::detail {

/// Counters the queue's lock guards (the latency histograms keep their own shards). Everything a
/// task does after admission (start, finish, leave the queue unstarted) is counted here, under the
/// same lock that decides it, so a snapshot taken under the lock sees every task in exactly one
/// state.
struct queue_counters {
    std::size_t active = 0;
    std::size_t active_weight = 0; ///< the running tasks' weights (submit_options::weight)
    std::size_t peak_active = 0;
    std::size_t overrunning = 0;
    std::uint64_t processed = 0;
    std::uint64_t errors = 0;
    std::uint64_t timed_out = 0;
    std::uint64_t total_queued = 0;
    std::uint64_t displaced = 0;
    std::uint64_t cleared = 0;
    std::uint64_t expired = 0;
    std::uint64_t cancelled = 0;
    std::size_t held_by_gate = 0; ///< waiting nodes marked queue_node::held_by_gate
    std::uint64_t gate_holds = 0; ///< nodes ever marked so
    std::uint64_t rate_holds = 0; ///< times the first in line waited for a rate token
    std::size_t retrying = 0;     ///< backing off before a retry (counted as waiting)
    std::uint64_t retries = 0;    ///< attempts begun again
    latency_shards wait_times;    ///< recorded outside the lock, as a task starts
    latency_shards run_times;     ///< recorded outside the lock, before the task's slot is freed

    void take_slot(std::size_t weight) noexcept {
        ++active;
        active_weight += weight;
        peak_active = std::max(peak_active, active);
    }
    void free_slot(std::size_t weight) noexcept {
        --active;
        active_weight -= weight;
    }

    /// Fills `out` from these counters, `queued` (admitted, not yet started or answered) and
    /// `refused` (refused at admission). `submitted` is the sum of every outcome, so the identity
    /// `submitted == total_processed + active + queued + rejected + cleared + expired +
    /// cancelled` holds in every snapshot; what makes it meaningful is that each term is read
    /// at one instant (see bounded_task_queue::stats()).
    void fill(queue_stats& out, std::size_t queued, std::uint64_t refused) const noexcept {
        out.total_processed = processed;
        out.total_queued = total_queued;
        out.total_errors = errors;
        out.peak_active = peak_active;
        out.active = active;
        out.queued = queued;
        out.rejected = refused + displaced;
        out.displaced = displaced;
        out.cleared = cleared;
        out.expired = expired;
        out.cancelled = cancelled;
        out.timed_out = timed_out;
        out.overrunning = overrunning;
        out.held_by_gate = held_by_gate;
        out.gate_holds_total = gate_holds;
        out.active_weight = active_weight;
        out.rate_holds_total = rate_holds;
        out.retrying = retrying;
        out.retries_total = retries;
        out.submitted = processed + active + queued + out.rejected + cleared + expired + cancelled;
        out.wait_time = wait_times.summary();
        out.run_time = run_times.summary();
    }
};

} // namespace btq::detail
