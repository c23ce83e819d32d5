/// @file impl/dispatch.hpp
/// @brief bounded_task_queue's dispatch and completion, in the order a task travels after
///        admission (impl/admission.hpp): take_startable → run_dispatch → finish; then what
///        answers a task that never starts (clear, expiry, cancellation) and the timer.
/// Included by bounded_task_queue.hpp; not a header of its own.
#pragma once

#include <thread>

namespace btq {

// ---- dispatch -----------------------------------------------------------------------------

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
bool bounded_task_queue<Task, Executor, Gate>::start_waiting() {
    detail::node_chain expired;
    detail::queue_node* next = nullptr;
    bool more = false;
    std::chrono::nanoseconds waited{0};
    const std::uint64_t now = detail::tick_clock::now();
    {
        std::lock_guard lock(mutex_);
        next = take_startable_locked(now, expired, more, waited);
        notify_if_idle_locked();
    }
    if (expired.size > 0) {
        answer_unstarted(expired, std::make_exception_ptr(task_expired()));
    }
    if (next == nullptr) {
        return false;
    }
    run_dispatch(next, waited, more);
    return true;
}

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
detail::queue_node* bounded_task_queue<Task, Executor, Gate>::take_startable_locked(
    std::uint64_t now, detail::node_chain& expired, bool& more, std::chrono::nanoseconds& waited) {
    more = false;
    const std::size_t bound = max_concurrency_.load(std::memory_order_relaxed);
    while (!paused_.load(std::memory_order_relaxed) && counters_.active_weight < bound) {
        bool from_inbox = false;
        // The inbox's oldest as the peek saw it: a submitter may push onto an empty inbox
        // meanwhile (without the lock), and the take below must choose as the peek did.
        detail::queue_node* const outside = inbox_.peek();
        detail::queue_node* node = peek_next_locked(outside, from_inbox);
        if (node == nullptr) {
            return nullptr;
        }
        const task_extras* found = extras_of(node);
        const bool stale = found != nullptr && found->deadline && *found->deadline <= clock::now();
        std::optional<permit_type> permit; // gated: asked for only if the task will start
        // The rate limit's clock is `now`, the stamp taken before the lock: no time is read while
        // the lock is held (a start then counts from when it was sought, a few ns earlier).
        if (!stale) {
            // The first in line keeps its place until it fits: nothing behind it overtakes it.
            if (counters_.active_weight + effective_weight(node->weight) > bound) {
                return nullptr;
            }
            if (rate_ && !rate_->ready(now)) {
                hold_for_rate_locked(node, now);
                return nullptr; // the rate timer starts it when its token is there
            }
            // (the token is taken below, once the task surely starts)
            if constexpr (gated) {
                if (std::optional<permit_type> granted = ask_gate_locked(node->priority)) {
                    permit.emplace(std::move(*granted)); // permits need not be assignable
                } else {
                    hold_locked();
                    return nullptr; // it keeps its place; the gate's wake-up asks again
                }
            }
        }
        if (waiting_.has_lanes()) { // the turn passes, wherever the task came from
            static_cast<void>(waiting_.pop_front(eligible(), outside));
            if (from_inbox) {
                static_cast<void>(inbox_.pop());
            }
        } else {
            static_cast<void>(from_inbox ? inbox_.pop() : waiting_.pop_front(eligible()));
        }
        leave_waiting_locked(node, !stale);
        unhold_locked(node);
        unreserve_locked();
        ++counters_.total_queued;
        if (task_extras* extras = extras_of(node)) {
            if (extras->timer_armed) {
                timer_.disarm(extras->timer_position);
                extras->timer_armed = false;
            }
            if (stale) {
                extras->state = node_state::left;
                ++counters_.expired;
                ++answering_;
                expired.push(node);
                continue;
            }
        }
        if (rate_) {
            rate_->take(now);
        }
        begin_running_locked(node);
        if constexpr (gated) {
            seat_permit_locked(node, std::move(*permit));
        }
        waited = detail::tick_clock::between(node->stamp, now);
        node->stamp = now;
        if (blocked_submitters_ > 0) {
            room_available_.notify_one();
        }
        more = counters_.active_weight < bound && (!waiting_.empty() || !inbox_.empty());
        return node;
    }
    return nullptr;
}

/// The first in line waits for a rate token: count the hold once, and have the timer start it.
template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
void bounded_task_queue<Task, Executor, Gate>::hold_for_rate_locked(detail::queue_node* node,
                                                                    std::uint64_t now) {
    if (!node->held_by_rate) {
        node->held_by_rate = true;
        ++counters_.rate_holds;
    }
    if (!rate_timer_armed_) {
        static_cast<void>(timer_.arm(clock::now() + rate_->until_ready(now),
                                     timer_entry{nullptr, false}, mutex_,
                                     [this](std::unique_lock<detail::adaptive_mutex>& lock,
                                            clock::time_point at) { on_timer_due(lock, at); }));
        rate_timer_armed_ = true;
    }
}

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
void bounded_task_queue<Task, Executor, Gate>::begin_running_locked(detail::queue_node* node) {
    // The weight it takes now is the one it gives back (max_concurrency may change meanwhile).
    node->weight = static_cast<std::uint16_t>(effective_weight(node->weight));
    node->held_by_rate = false;
    counters_.take_slot(node->weight);
    if (active_.load(std::memory_order_relaxed) != counters_.active_weight) {
        // not when taking over a slot
        active_.store(counters_.active_weight, std::memory_order_seq_cst);
    }
    if (task_extras* extras = extras_of(node)) {
        extras->state = node_state::running;
        if (extras->run_timeout) {
            arm_timer_locked(node, *extras, clock::now() + *extras->run_timeout, true);
        }
    }
}

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
void bounded_task_queue<Task, Executor, Gate>::run_dispatch(detail::queue_node* first,
                                                            std::chrono::nanoseconds waited,
                                                            bool more) {
    detail::dispatch_frame frame{this, detail::innermost_dispatch_frame, false};
    detail::innermost_dispatch_frame = &frame;
    detail::node_chain expired;
    for (detail::queue_node* next = first; next != nullptr;) {
        frame.released = false;
        counters_.wait_times.record(waited);
        if (observer_) {
            observer_->on_started(info_of(next), waited);
        }
        next->start(waited);
        if (!more && !frame.released) {
            break;
        }
        const std::uint64_t now = detail::tick_clock::now();
        std::lock_guard lock(mutex_);
        next = take_startable_locked(now, expired, more, waited);
        notify_if_idle_locked();
    }
    detail::innermost_dispatch_frame = frame.outer;
    if (expired.size > 0) {
        answer_unstarted(expired, std::make_exception_ptr(task_expired()));
    }
}

// ---- completion ---------------------------------------------------------------------------

/// A task's outcome has been delivered: free its node and its slot, and start what may start.
template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
template <class Node>
void bounded_task_queue<Task, Executor, Gate>::finish(Node* node, bool failed,
                                                      bool timed_out) noexcept {
    const std::uint64_t now = detail::tick_clock::now();
    const std::uint64_t started = node->stamp;
    bool overran = false;
    if (task_extras* extras = extras_of(node); extras != nullptr && extras->run_timeout) {
        // Its run timer may still name the node: retire it under the lock before freeing it.
        // (A stop callback running meanwhile is waited for by the node's destruction, and
        // finds the task running, which changes nothing.)
        std::lock_guard lock(mutex_);
        if (extras->timer_armed) {
            timer_.disarm(extras->timer_position);
            extras->timer_armed = false;
        }
        extras->state = node_state::left;
        overran = extras->overran;
    }
    // A gated task's permit is given back after its slot is free, so the gate never sees a
    // task more than the queue counts running (a start it grants always finds the slot free).
    // Until then the queue does not count as idle: drain() must not return before the release.
    permit_holder permit{};
    if constexpr (gated) {
        if (node->permit) {
            permit.emplace(std::move(*node->permit));
        }
    }
    const std::size_t weight = node->weight;
    detail::key_record* const key = node->extras != nullptr ? node->extras->record : nullptr;
    if (observer_) {
        const task_outcome outcome = overran || timed_out ? task_outcome::timed_out
                                     : failed             ? task_outcome::failed
                                                          : task_outcome::succeeded;
        observer_->on_finished(info_of(node), outcome, detail::tick_clock::between(started, now));
    }
    delete node;
    counters_.run_times.record(detail::tick_clock::between(started, now)); // before drain() sees it
    release_slot(weight, now, permit, [&]() noexcept {
        if (key != nullptr) {
            keys_.finished(key);
        }
        ++counters_.processed;
        if (overran) {
            --counters_.overrunning; // counted as a timed-out error when it was answered
        } else {
            counters_.errors += failed ? 1 : 0;
            counters_.timed_out += timed_out ? 1 : 0;
        }
    });
}

/// A task (or an attempt of one) has returned: free its slot, count what `under_lock` counts,
/// give its permit back, and start what may start now.
template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
template <class UnderLock>
void bounded_task_queue<Task, Executor, Gate>::release_slot(std::size_t weight, std::uint64_t now,
                                                            permit_holder& permit,
                                                            UnderLock under_lock) noexcept {
    detail::dispatch_frame* frame = detail::find_dispatch_frame(this);
    detail::node_chain expired;
    detail::queue_node* next = nullptr;
    bool more = false;
    std::chrono::nanoseconds waited{0};
    {
        std::lock_guard lock(mutex_);
        counters_.free_slot(weight); // active_ is stored below, only if no task takes it over
        under_lock();
        if (frame != nullptr) {
            active_.store(counters_.active_weight, std::memory_order_seq_cst);
            frame->released = true;
        } else {
            next = take_startable_locked(now, expired, more, waited);
            if (next == nullptr) {
                // Publish the free slot, then look again: a plain submitter that pushed before
                // this store saw no free slot and left its task to whoever frees one.
                active_.store(counters_.active_weight, std::memory_order_seq_cst);
                next = take_startable_locked(now, expired, more, waited);
            }
        }
        if (blocked_submitters_ > 0) {
            room_available_.notify_one();
        }
        if constexpr (gated) {
            ++answering_; // the permit's release is still to come
        } else {
            notify_if_idle_locked();
        }
    }
    if constexpr (gated) {
        permit.reset(); // may wake queues: never under the lock
        std::lock_guard lock(mutex_);
        --answering_;
        notify_if_idle_locked();
    }
    if (expired.size > 0) {
        answer_unstarted(expired, std::make_exception_ptr(task_expired()));
    }
    if (next != nullptr) {
        const void* outer_handoff = std::exchange(detail::handoff_target, &executor_);
        run_dispatch(next, waited, more);
        detail::handoff_target = outer_handoff;
    }
}

// ---- tasks that never start ---------------------------------------------------------------

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
void bounded_task_queue<Task, Executor, Gate>::drain_inbox_locked() {
    while (detail::queue_node* node = inbox_.pop()) {
        waiting_.push_back(node);
    }
}

/// A node leaves the waiting list unstarted: its timer entry goes, its stop callback will see
/// `left`, its place is free.
template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
void bounded_task_queue<Task, Executor, Gate>::forget_locked(detail::queue_node* node) noexcept {
    leave_waiting_locked(node, false);
    if (task_extras* extras = extras_of(node)) {
        if (extras->timer_armed) {
            timer_.disarm(extras->timer_position);
            extras->timer_armed = false;
        }
        extras->state = node_state::left;
    }
}

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
void bounded_task_queue<Task, Executor, Gate>::take_all_waiting_locked(detail::node_chain& out) {
    // Every admitted task not yet started or answered is counted in the admission word: with
    // the lock held nothing else leaves, so all of them are in the waiting list or the inbox,
    // or are plain submitters between their reservation and their push (a few instructions;
    // they take no lock). Wait for those too, so what stats() showed as waiting is cleared, and
    // a cleared, closed queue really is empty.
    const std::size_t expected = waiting_count();
    drain_inbox_locked();
    const std::size_t before = out.size;
    waiting_.take_all(out);
    while (detail::queue_node* retrying = retrying_.pop()) { // backing off: waiting too
        --counters_.retrying;
        out.push(retrying);
    }
    std::size_t taken = out.size - before;
    for (detail::queue_node* node = out.head; node != nullptr; node = node->next) {
        forget_locked(node);
        unhold_locked(node);
    }
    admission_.fetch_sub(taken, std::memory_order_seq_cst);
    while (taken < expected || (is_closed() && waiting_count() != 0)) {
        if (detail::queue_node* late = inbox_.pop()) {
            unreserve_locked();
            out.push(late);
            ++taken;
        } else {
            std::this_thread::yield();
        }
    }
}

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
void bounded_task_queue<Task, Executor, Gate>::on_stop_requested(
    detail::queue_node* node) noexcept {
    task_extras* extras = extras_of(node);
    if (registering_stop_ == node) { // invoked inline by watch_stop_locked(), lock held
        extras->state = node_state::stop_seen;
        return;
    }
    std::unique_lock lock(mutex_);
    switch (extras->state) {
    case node_state::admitting:
        extras->state = node_state::stop_seen;
        return;
    case node_state::waiting:
    case node_state::backing_off: { // in the waiting list, or waiting out a retry's back-off
        if (extras->state == node_state::waiting) {
            waiting_.erase(node);
        } else {
            retrying_.erase(node);
            --counters_.retrying;
        }
        forget_locked(node);
        unhold_locked(node);
        leave_unstarted_locked(counters_.cancelled);
        lock.unlock();
        room_available_.notify_all();
        detail::node_chain cancelled;
        cancelled.push(node);
        answer_unstarted(cancelled, std::make_exception_ptr(task_cancelled()));
        return;
    }
    case node_state::running:
        if (extras->run_stop.stop_possible()) {
            std::stop_source source = extras->run_stop;
            lock.unlock();
            source.request_stop(); // the task's own token, handed to the executor
        }
        return;
    default:
        return;
    }
}

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
void bounded_task_queue<Task, Executor, Gate>::answer_unstarted(
    detail::node_chain& chain, const std::exception_ptr& error) noexcept {
    const std::size_t count = chain.size;
    if (observer_ && count > 0) {
        not_run_reason reason = not_run_reason::queue_cleared;
        try {
            std::rethrow_exception(error);
        } catch (const task_not_run& not_run) {
            reason = not_run.reason();
        } catch (...) { // NOLINT(bugprone-empty-catch): every error here is a task_not_run
        }
        for (const detail::queue_node* node = chain.head; node != nullptr; node = node->next) {
            observer_->on_not_started(info_of(node), reason);
        }
    }
    chain.fail_all(error);
    std::lock_guard lock(mutex_);
    answering_ -= count;
    notify_if_idle_locked();
}

// ---- the start gate -----------------------------------------------------------------------

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
void bounded_task_queue<Task, Executor, Gate>::on_gate_wake(void* context) noexcept {
    auto* self = static_cast<bounded_task_queue*>(context);
    if (detail::dispatch_frame* frame = detail::find_dispatch_frame(self)) {
        frame->released = true; // the dispatch loop on this thread's stack asks again
        return;
    }
    // Nothing waits, or no slot is free: whoever admits a task or frees a slot asks the gate.
    if (self->waiting_count() == 0 || !self->slot_free()) {
        return;
    }
    try {
        while (self->start_waiting()) {
            if (self->waiting_count() == 0 || !self->slot_free()) {
                break;
            }
        }
    } catch (...) { // NOLINT(bugprone-empty-catch)
        // Only a failure to arm a timer can throw here; the next wake-up or finish asks again.
    }
}

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
auto bounded_task_queue<Task, Executor, Gate>::ask_gate_locked(int priority) noexcept
    -> std::optional<permit_type> {
    if constexpr (gated) {
        const start_request request{.priority = priority,
                                    .running = counters_.active,
                                    .waiting = waiting_count(),
                                    .queue = this};
        try {
            return gate_->try_acquire(request);
        } catch (...) {
            return std::nullopt; // a gate that throws refuses; its next wake-up asks again
        }
    } else {
        return permit_type{};
    }
}

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
detail::queue_node*
bounded_task_queue<Task, Executor, Gate>::peek_next_locked(detail::queue_node* oldest_plain,
                                                           bool& from_inbox) {
    from_inbox = false;
    if (waiting_.has_lanes()) {
        // Keys take turns: the inbox's oldest is the keyless tasks' head at priority 0 when it
        // is older than the list's, without moving the inbox into the list.
        if (oldest_plain != nullptr) {
            waiting_.ensure_level(0);
        }
        detail::queue_node* next = waiting_.front(eligible(), oldest_plain);
        from_inbox = next != nullptr && next == oldest_plain;
        return next;
    }
    if (waiting_.empty()) {
        from_inbox = oldest_plain != nullptr;
        return oldest_plain;
    }
    detail::queue_node* best = waiting_.front(eligible());
    if (best == nullptr) {
        return nullptr; // every waiting task's key is at its limit
    }
    if (oldest_plain != nullptr &&
        (best->priority < 0 || (best->priority == 0 && oldest_plain->stamp < best->stamp))) {
        from_inbox = true;
        return oldest_plain;
    }
    return best;
}

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
void bounded_task_queue<Task, Executor, Gate>::merge_inbox_for_turns_locked() {
    if (waiting_.has_lanes()) {
        while (detail::queue_node* plain = inbox_.pop()) {
            waiting_.insert_by_stamp(plain);
        }
    }
}

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
void bounded_task_queue<Task, Executor, Gate>::hold_locked() {
    if constexpr (gated) {
        // Plain tasks join the list in submission order, so the held ones can be marked in
        // start order (this path only runs while the gate refuses).
        while (detail::queue_node* plain = inbox_.pop()) {
            waiting_.insert_by_stamp(plain);
        }
        const std::size_t active = counters_.active_weight;
        const std::size_t bound = max_concurrency_.load(std::memory_order_relaxed);
        const std::size_t free_slots = active < bound ? bound - active : 0;
        // The first `free_slots` in start order are held now. Tasks held before and overtaken
        // since (a higher priority arrived) lie just behind them: they are no longer held.
        const std::size_t before = counters_.held_by_gate;
        waiting_.visit_front(
            free_slots + before,
            [&](detail::queue_node* node, std::size_t at) {
                if (at < free_slots && !node->held_by_gate) {
                    node->held_by_gate = true;
                    ++counters_.held_by_gate;
                    ++counters_.gate_holds;
                } else if (at >= free_slots && node->held_by_gate) {
                    node->held_by_gate = false;
                    --counters_.held_by_gate;
                }
            },
            eligible());
        if (counters_.held_by_gate != before) {
            tell_demand_locked();
        }
    }
}

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
void bounded_task_queue<Task, Executor, Gate>::unhold_locked(
    [[maybe_unused]] detail::queue_node* node) noexcept {
    if constexpr (gated) {
        if (node->held_by_gate) {
            node->held_by_gate = false;
            --counters_.held_by_gate;
            tell_demand_locked();
        }
    }
}

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
void bounded_task_queue<Task, Executor, Gate>::tell_demand_locked() noexcept {
    if constexpr (requires(Gate& gate, const start_gate_waker& who, std::size_t held) {
                      gate.demand(who, held);
                  }) {
        try {
            gate_->demand(waker(), counters_.held_by_gate);
        } catch (...) { // NOLINT(bugprone-empty-catch)
            // A hint only.
        }
    }
}

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
void bounded_task_queue<Task, Executor, Gate>::seat_permit_locked(
    [[maybe_unused]] detail::queue_node* node, [[maybe_unused]] permit_type&& permit) noexcept {
    if constexpr (gated) {
        auto* holder = static_cast<node_base*>(node);
        holder->permit.emplace(std::move(permit));
        if constexpr (revocable) {
            // Every task of a queue with revocable permits has extras with its own stop source.
            holder->permit->bind_stop(extras_of(node)->run_stop);
        }
    }
}

// ---- the timer: queue deadlines and run timeouts ------------------------------------------

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
void bounded_task_queue<Task, Executor, Gate>::arm_timer_locked(detail::queue_node* node,
                                                                task_extras& extras,
                                                                clock::time_point at,
                                                                bool run_deadline, bool retry) {
    extras.timer_position = timer_.arm(at, timer_entry{node, run_deadline, retry}, mutex_,
                                       [this](std::unique_lock<detail::adaptive_mutex>& lock,
                                              clock::time_point now) { on_timer_due(lock, now); });
    extras.timer_armed = true;
}

/// Fails waiting tasks past their queue deadline (even while paused or while every slot is
/// held by a long task), and answers running tasks past their run timeout with task_timeout
/// while they keep their slot until they return.
template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
void bounded_task_queue<Task, Executor, Gate>::on_timer_due(
    std::unique_lock<detail::adaptive_mutex>& lock, clock::time_point now) {
    detail::node_chain expired;
    detail::queue_node* overdue = nullptr; // running nodes, chained through their free `next`
    timer_entry due;
    bool token_due = false; // the rate limit's next token is there
    while (timer_.take_due(now, due)) {
        if (due.node == nullptr) {
            rate_timer_armed_ = false;
            token_due = true;
            continue;
        }
        task_extras* extras = extras_of(due.node);
        extras->timer_armed = false;
        if (due.retry) {
            if (retry_due_locked(due.node)) {
                token_due = true; // it waits again: start what may start
            } else {
                expired.push(due.node);
            }
            continue;
        }
        if (!due.run_deadline) {
            waiting_.erase(due.node);
            leave_waiting_locked(due.node, false);
            unhold_locked(due.node);
            extras->state = node_state::left;
            leave_unstarted_locked(counters_.expired);
            expired.push(due.node);
            continue;
        }
        std::uint8_t expected = detail::unclaimed;
        if (extras->claim.compare_exchange_strong(expected, detail::timer_answering,
                                                  std::memory_order_acq_rel)) {
            extras->overran = true;
            ++counters_.overrunning;
            ++counters_.errors;
            ++counters_.timed_out;
            due.node->next = overdue;
            overdue = due.node;
        }
    }
    if (expired.size == 0 && overdue == nullptr && !token_due) {
        return;
    }
    if (blocked_submitters_ > 0) {
        room_available_.notify_all();
    }
    lock.unlock();
    if (token_due) {
        start_on_timer();
    }
    answer_unstarted(expired, std::make_exception_ptr(task_expired()));
    while (overdue != nullptr) {
        detail::queue_node* node = overdue;
        overdue = node->next;
        task_extras* extras = extras_of(node);
        extras->run_stop.request_stop();
        node->answer_error(
            std::make_exception_ptr(task_timeout("btq: task exceeded its run timeout")));
        // From here on the task may return and free its node.
        extras->claim.store(detail::timer_answered, std::memory_order_release);
    }
    lock.lock();
}

/// Starts what the rate limit held, on the timer's thread (as a gate's wake-up starts on the
/// gate's), until the next refusal.
template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
void bounded_task_queue<Task, Executor, Gate>::start_on_timer() noexcept {
    try {
        while (waiting_count() > 0 && slot_free() && start_waiting()) {
        }
    } catch (...) { // NOLINT(bugprone-empty-catch)
        // Only a failure to arm the timer can throw here; the next finish or submit tries again.
    }
}

} // namespace btq
