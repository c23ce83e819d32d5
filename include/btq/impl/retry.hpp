/// @file impl/retry.hpp
/// @brief bounded_task_queue's retries (submit_options::retry), in the order a task travels:
///        it failed and may be tried again → it gives its slot back and waits its back-off
///        (counted as waiting, in no list but the back-off list) → the timer puts it back in
///        the waiting list at its priority. Included by bounded_task_queue.hpp; not a header of
///        its own.
#pragma once

#include <random>

namespace btq {

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
void bounded_task_queue<Task, Executor, Gate>::check_retry(const retry_policy& policy) {
    if constexpr (!std::is_copy_constructible_v<Task>) {
        throw std::invalid_argument("btq: submit_options::retry needs a copyable task: each "
                                    "attempt runs a copy");
    }
    if (policy.attempts == 0) {
        throw std::invalid_argument("btq: retry_policy::attempts must be at least 1");
    }
    if (policy.attempts > std::numeric_limits<std::uint32_t>::max()) {
        throw std::invalid_argument("btq: retry_policy::attempts is too large");
    }
    if (policy.backoff < clock::duration::zero() || policy.max_backoff < clock::duration::zero()) {
        throw std::invalid_argument("btq: retry_policy back-offs must not be negative");
    }
    if (!(policy.multiplier >= 1.0) || !(policy.jitter >= 0.0 && policy.jitter <= 1.0)) {
        throw std::invalid_argument(
            "btq: retry_policy::multiplier must be at least 1 and jitter within 0 to 1");
    }
}

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
bool bounded_task_queue<Task, Executor, Gate>::retry_wanted(
    const task_extras& extras, const std::exception_ptr& error) const noexcept {
    const retry_policy& policy = *extras.retry;
    if (extras.attempt >= policy.attempts || extras.caller_stop.stop_requested() || is_closed()) {
        return false;
    }
    try {
        std::rethrow_exception(error);
    } catch (const task_not_run&) {
        return false; // it never ran: nothing to try again
    } catch (...) {   // NOLINT(bugprone-empty-catch): any other failure may be retried
    }
    if (!policy.retry_on) {
        return true;
    }
    try {
        return policy.retry_on(error);
    } catch (...) {
        return false; // a predicate that throws says no
    }
}

/// The wait before the retry that follows attempt `attempt` (1: the first retry).
template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
clock::duration bounded_task_queue<Task, Executor, Gate>::backoff_after(const retry_policy& policy,
                                                                        std::uint32_t attempt) {
    double wait = std::chrono::duration<double>(policy.backoff).count();
    for (std::uint32_t i = 1; i < attempt; ++i) {
        wait *= std::max(1.0, policy.multiplier);
    }
    wait = std::min(wait, std::chrono::duration<double>(policy.max_backoff).count());
    const double jitter = std::clamp(policy.jitter, 0.0, 1.0);
    if (jitter > 0) {
        thread_local std::minstd_rand random(std::random_device{}());
        const double draw = std::uniform_real_distribution<double>(0.0, jitter)(random);
        wait *= 1.0 - draw;
    }
    return std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(wait));
}

/// Attempt `extras->attempt` failed and is to be tried again: the node gives its slot back and
/// waits its back-off, still counted as waiting (and its key as having it waiting).
template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
template <class Node>
void bounded_task_queue<Task, Executor, Gate>::retry_later(Node* node) noexcept {
    const std::uint64_t now = detail::tick_clock::now();
    const std::uint64_t started = node->stamp;
    task_extras* extras = extras_of(node);
    const clock::duration wait = backoff_after(*extras->retry, extras->attempt);
    permit_holder permit{};
    if constexpr (gated) {
        if (node->permit) {
            permit.emplace(std::move(*node->permit));
            node->permit.reset();
        }
    }
    if (observer_) {
        observer_->on_retrying(info_of(node), extras->attempt, wait);
    }
    counters_.run_times.record(detail::tick_clock::between(started, now));
    const std::size_t weight = node->weight;
    release_slot(weight, now, permit, [&]() noexcept {
        if (extras->timer_armed) { // its run timeout
            timer_.disarm(extras->timer_position);
            extras->timer_armed = false;
        }
        extras->claim.store(detail::unclaimed, std::memory_order_relaxed);
        if (extras->run_stop.stop_possible() && extras->run_stop.stop_requested()) {
            extras->run_stop =
                std::stop_source(); // a lost permit's stop: the next attempt's is new
        }
        ++extras->attempt;
        extras->state = node_state::backing_off;
        if (extras->record != nullptr) { // the key keeps it as waiting, not running
            --extras->record->running;
            ++extras->record->waiting;
        }
        admission_.fetch_add(1, std::memory_order_seq_cst); // waiting again: it keeps its place
        ++counters_.retries;
        ++counters_.retrying;
        retrying_.push(node);
        try {
            arm_timer_locked(node, *extras, clock::now() + wait, false, true);
        } catch (...) {
            // No memory for its timer entry: it waits no back-off (retry_due_locked now).
            retry_due_locked(node);
        }
    });
}

/// The back-off is over: back into the waiting list at its priority, behind the tasks waiting
/// there. False if its queue deadline passed meanwhile: then it is answered as expired (the
/// caller puts it in `expired`).
template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
bool bounded_task_queue<Task, Executor, Gate>::retry_due_locked(detail::queue_node* node) {
    task_extras* extras = extras_of(node);
    retrying_.erase(node);
    --counters_.retrying;
    if (extras->deadline && *extras->deadline <= clock::now()) {
        leave_waiting_locked(node, false);
        extras->state = node_state::left;
        leave_unstarted_locked(counters_.expired);
        return false;
    }
    extras->state = node_state::waiting;
    node->stamp = detail::tick_clock::now(); // this attempt's wait starts now
    if (extras->record != nullptr) {
        extras->lane = &extras->record->lane_for(node->priority);
    }
    if (extras->id != 0) {
        ids_.emplace(extras->id, node);
    }
    waiting_.push_back(node);
    if (extras->deadline) {
        try {
            arm_timer_locked(node, *extras, *extras->deadline, false);
        } catch (...) { // NOLINT(bugprone-empty-catch)
            // Without memory for its deadline's entry it waits without one; it starts anyway.
        }
    }
    return true;
}

} // namespace btq
