/// @file impl/dispatch.hpp
/// @brief bounded_task_queue's dispatch and completion, in the order a task travels after
///        admission (impl/admission.hpp): take_startable → run_dispatch → finish; then what
///        answers a task that never starts (clear, expiry, cancellation) and the timer.
/// Included by bounded_task_queue.hpp; not a header of its own.
#pragma once

#include <thread>

namespace btq {

// ---- dispatch -----------------------------------------------------------------------------

template <class Task, class Executor>
    requires executor_for<Executor, Task>
bool bounded_task_queue<Task, Executor>::start_waiting() {
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

template <class Task, class Executor>
    requires executor_for<Executor, Task>
detail::queue_node* bounded_task_queue<Task, Executor>::take_startable_locked(
    std::uint64_t now, detail::node_chain& expired, bool& more, std::chrono::nanoseconds& waited) {
    more = false;
    while (!paused_.load(std::memory_order_relaxed) &&
           counters_.active < max_concurrency_.load(std::memory_order_relaxed)) {
        detail::queue_node* node = take_next_locked();
        if (node == nullptr) {
            return nullptr;
        }
        unreserve();
        ++counters_.total_queued;
        if (task_extras* extras = extras_of(node)) {
            if (extras->timer_armed) {
                timer_.disarm(extras->timer_position);
                extras->timer_armed = false;
            }
            if (extras->deadline && *extras->deadline <= clock::now()) {
                extras->state = node_state::left;
                ++counters_.expired;
                ++answering_;
                expired.push(node);
                continue;
            }
        }
        begin_running_locked(node);
        waited = detail::tick_clock::between(node->stamp, now);
        node->stamp = now;
        if (blocked_submitters_ > 0) {
            room_available_.notify_one();
        }
        more = counters_.active < max_concurrency_.load(std::memory_order_relaxed) &&
               (!waiting_.empty() || !inbox_.empty());
        return node;
    }
    return nullptr;
}

/// The task that starts next: the waiting list's first (highest priority), or the inbox's oldest
/// plain task (priority 0) when it ranks first: the list's best is below priority 0, or at 0 and
/// submitted later. Submission stamps order the two paths, so FIFO within priority 0 holds
/// without moving the inbox into the list.
template <class Task, class Executor>
    requires executor_for<Executor, Task>
detail::queue_node* bounded_task_queue<Task, Executor>::take_next_locked() {
    detail::queue_node* oldest_plain = inbox_.peek();
    if (waiting_.empty()) {
        return oldest_plain != nullptr ? inbox_.pop() : nullptr;
    }
    const detail::queue_node* best = waiting_.front();
    if (oldest_plain != nullptr &&
        (best->priority < 0 || (best->priority == 0 && oldest_plain->stamp < best->stamp))) {
        return inbox_.pop();
    }
    return waiting_.pop_front();
}

template <class Task, class Executor>
    requires executor_for<Executor, Task>
void bounded_task_queue<Task, Executor>::begin_running_locked(detail::queue_node* node) {
    counters_.take_slot();
    if (active_.load(std::memory_order_relaxed) != counters_.active) {
        active_.store(counters_.active, std::memory_order_seq_cst); // not when taking over a slot
    }
    if (task_extras* extras = extras_of(node)) {
        extras->state = node_state::running;
        if (extras->run_timeout) {
            arm_timer_locked(node, *extras, clock::now() + *extras->run_timeout, true);
        }
    }
}

template <class Task, class Executor>
    requires executor_for<Executor, Task>
void bounded_task_queue<Task, Executor>::run_dispatch(detail::queue_node* first,
                                                      std::chrono::nanoseconds waited, bool more) {
    detail::dispatch_frame frame{this, detail::innermost_dispatch_frame, false};
    detail::innermost_dispatch_frame = &frame;
    detail::node_chain expired;
    for (detail::queue_node* next = first; next != nullptr;) {
        frame.released = false;
        counters_.wait_times.record(waited);
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
template <class Task, class Executor>
    requires executor_for<Executor, Task>
template <class Node>
void bounded_task_queue<Task, Executor>::finish(Node* node, bool failed, bool timed_out) noexcept {
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
    delete node;
    counters_.run_times.record(detail::tick_clock::between(started, now)); // before drain() sees it

    detail::dispatch_frame* frame = detail::find_dispatch_frame(this);
    detail::node_chain expired;
    detail::queue_node* next = nullptr;
    bool more = false;
    std::chrono::nanoseconds waited{0};
    {
        std::lock_guard lock(mutex_);
        --counters_.active; // active_ is stored below, only if no task takes the slot over
        ++counters_.processed;
        if (overran) {
            --counters_.overrunning; // counted as a timed-out error when it was answered
        } else {
            counters_.errors += failed ? 1 : 0;
            counters_.timed_out += timed_out ? 1 : 0;
        }
        if (frame != nullptr) {
            active_.store(counters_.active, std::memory_order_seq_cst);
            frame->released = true;
        } else {
            next = take_startable_locked(now, expired, more, waited);
            if (next == nullptr) {
                // Publish the free slot, then look again: a plain submitter that pushed before
                // this store saw no free slot and left its task to whoever frees one.
                active_.store(counters_.active, std::memory_order_seq_cst);
                next = take_startable_locked(now, expired, more, waited);
            }
        }
        if (blocked_submitters_ > 0) {
            room_available_.notify_one();
        }
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

template <class Task, class Executor>
    requires executor_for<Executor, Task>
void bounded_task_queue<Task, Executor>::drain_inbox_locked() {
    while (detail::queue_node* node = inbox_.pop()) {
        waiting_.push_back(node);
    }
}

/// A node leaves the waiting list unstarted: its timer entry goes, its stop callback will see
/// `left`, its place is free.
template <class Task, class Executor>
    requires executor_for<Executor, Task>
void bounded_task_queue<Task, Executor>::forget_locked(detail::queue_node* node) noexcept {
    if (task_extras* extras = extras_of(node)) {
        if (extras->timer_armed) {
            timer_.disarm(extras->timer_position);
            extras->timer_armed = false;
        }
        extras->state = node_state::left;
    }
}

template <class Task, class Executor>
    requires executor_for<Executor, Task>
void bounded_task_queue<Task, Executor>::take_all_waiting_locked(detail::node_chain& out) {
    // Every admitted task not yet started or answered is counted in the admission word: with
    // the lock held nothing else leaves, so all of them are in the waiting list or the inbox,
    // or are plain submitters between their reservation and their push (a few instructions;
    // they take no lock). Wait for those too, so what stats() showed as waiting is cleared, and
    // a cleared, closed queue really is empty.
    const std::size_t expected = waiting_count();
    drain_inbox_locked();
    const std::size_t before = out.size;
    waiting_.take_all(out);
    std::size_t taken = out.size - before;
    for (detail::queue_node* node = out.head; node != nullptr; node = node->next) {
        forget_locked(node);
    }
    admission_.fetch_sub(taken, std::memory_order_seq_cst);
    while (taken < expected || (is_closed() && waiting_count() != 0)) {
        if (detail::queue_node* late = inbox_.pop()) {
            unreserve();
            out.push(late);
            ++taken;
        } else {
            std::this_thread::yield();
        }
    }
}

template <class Task, class Executor>
    requires executor_for<Executor, Task>
void bounded_task_queue<Task, Executor>::on_stop_requested(detail::queue_node* node) noexcept {
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
    case node_state::waiting: {
        waiting_.erase(node);
        forget_locked(node);
        unreserve();
        ++counters_.cancelled;
        ++counters_.total_queued;
        ++answering_;
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

template <class Task, class Executor>
    requires executor_for<Executor, Task>
void bounded_task_queue<Task, Executor>::answer_unstarted(
    detail::node_chain& chain, const std::exception_ptr& error) noexcept {
    const std::size_t count = chain.size;
    chain.fail_all(error);
    std::lock_guard lock(mutex_);
    answering_ -= count;
    notify_if_idle_locked();
}

// ---- the timer: queue deadlines and run timeouts ------------------------------------------

template <class Task, class Executor>
    requires executor_for<Executor, Task>
void bounded_task_queue<Task, Executor>::arm_timer_locked(detail::queue_node* node,
                                                          task_extras& extras, clock::time_point at,
                                                          bool run_deadline) {
    extras.timer_position = timer_.arm(at, timer_entry{node, run_deadline}, mutex_,
                                       [this](std::unique_lock<detail::adaptive_mutex>& lock,
                                              clock::time_point now) { on_timer_due(lock, now); });
    extras.timer_armed = true;
}

/// Fails waiting tasks past their queue deadline (even while paused or while every slot is
/// held by a long task), and answers running tasks past their run timeout with task_timeout
/// while they keep their slot until they return.
template <class Task, class Executor>
    requires executor_for<Executor, Task>
void bounded_task_queue<Task, Executor>::on_timer_due(
    std::unique_lock<detail::adaptive_mutex>& lock, clock::time_point now) {
    detail::node_chain expired;
    detail::queue_node* overdue = nullptr; // running nodes, chained through their free `next`
    timer_entry due;
    while (timer_.take_due(now, due)) {
        task_extras* extras = extras_of(due.node);
        extras->timer_armed = false;
        if (!due.run_deadline) {
            waiting_.erase(due.node);
            extras->state = node_state::left;
            unreserve();
            ++counters_.expired;
            ++counters_.total_queued;
            ++answering_;
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
    if (expired.size == 0 && overdue == nullptr) {
        return;
    }
    if (blocked_submitters_ > 0) {
        room_available_.notify_all();
    }
    lock.unlock();
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

} // namespace btq
