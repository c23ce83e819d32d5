/// @file impl/admission.hpp
/// @brief bounded_task_queue's admission, in the order a task travels: the lock-free path of a
///        plain task (reserve a place, push onto the inbox), then the locked path of everything
///        else (tasks with a deadline, a stop token, a priority or a run timeout; full queues).
/// Included by bounded_task_queue.hpp; not a header of its own.
#pragma once

namespace btq {

// ---- the lock-free path -------------------------------------------------------------------

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
template <class Sink>
auto bounded_task_queue<Task, Executor, Gate>::admit(Task& task, Sink&& sink,
                                                     const submit_options& options, bool may_block)
    -> admission {
    if (options.weight != 1) {
        check_weight(options.weight);
    }
    if (options.retry) {
        check_retry(*options.retry);
    }
    if (options.stop.stop_requested()) {
        std::lock_guard lock(mutex_);
        ++counters_.cancelled;
        return admission::refused_cancelled;
    }
    if (is_plain(options)) {
        if (slot_free() && start_at_once(task, sink)) {
            return admission::started;
        }
        switch (reserve()) {
        case reservation::made:
            return push_plain(task, std::forward<Sink>(sink));
        case reservation::closed:
            refused_.fetch_add(1, std::memory_order_relaxed);
            return admission::refused_closed;
        case reservation::full:
            if (overflow_ == overflow_policy::reject && !slot_free()) {
                refused_.fetch_add(1, std::memory_order_relaxed);
                return admission::refused_full;
            }
            break; // start at once, displace or block: decided under the lock
        }
    }
    return admit_locked(task, std::forward<Sink>(sink), options, may_block);
}

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
bool bounded_task_queue<Task, Executor, Gate>::fast_refusal(
    const submit_options& options) noexcept {
    if (overflow_ == overflow_policy::drop_oldest || !is_plain(options)) {
        return false;
    }
    const std::size_t word = admission_.load(std::memory_order_acquire);
    if ((word & closed_bit) == 0 && word < capacity_) {
        return false;
    }
    if ((word & closed_bit) == 0 && slot_free()) {
        return false; // may start at once: the full path decides
    }
    refused_.fetch_add(1, std::memory_order_relaxed);
    return true;
}

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
auto bounded_task_queue<Task, Executor, Gate>::reserve() noexcept -> reservation {
    std::size_t word = admission_.load(std::memory_order_relaxed);
    for (;;) {
        if ((word & closed_bit) != 0) {
            return reservation::closed;
        }
        if (word >= capacity_) {
            return reservation::full;
        }
        if (admission_.compare_exchange_weak(word, word + 1, std::memory_order_seq_cst,
                                             std::memory_order_relaxed)) {
            break;
        }
    }
    note_peak(word + 1);
    return reservation::made;
}

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
template <class Sink>
bool bounded_task_queue<Task, Executor, Gate>::start_at_once(Task& task, Sink& sink) {
    using node_type = task_node<std::decay_t<Sink>>;
    const std::uint64_t now = detail::tick_clock::now(); // before the lock, as dispatch does
    std::unique_lock lock(mutex_);
    if (admission_.load(std::memory_order_relaxed) != 0 ||
        paused_.load(std::memory_order_relaxed) ||
        counters_.active_weight >= max_concurrency_.load(std::memory_order_relaxed)) {
        return false; // someone waits (or closed), or the slot was taken meanwhile
    }
    if (rate_ && !rate_->ready(now)) {
        return false; // no token: it waits in the inbox, and the rate timer starts it
    }
    if constexpr (gated) {
        std::optional<permit_type> permit = ask_gate_locked(0);
        if (!permit) {
            return false; // queued instead: the gate is asked again in start order
        }
        if (rate_) {
            rate_->take(now);
        }
        node_type* node = nullptr;
        try {
            node = new node_type(this, std::move(task), std::forward<Sink>(sink));
        } catch (...) {
            lock.unlock();
            permit.reset(); // a permit is never released under the queue's lock
            throw;
        }
        begin_running_locked(node);
        seat_permit_locked(node, std::move(*permit));
        node->stamp = now;
        lock.unlock();
        run_dispatch(node, std::chrono::nanoseconds::zero(), false);
        return true;
    }
    if (rate_) {
        rate_->take(now);
    }
    auto* node = new node_type(this, std::move(task), std::forward<Sink>(sink));
    begin_running_locked(node);
    node->stamp = now;
    lock.unlock();
    run_dispatch(node, std::chrono::nanoseconds::zero(), false);
    return true;
}

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
template <class Sink>
auto bounded_task_queue<Task, Executor, Gate>::push_plain(Task& task, Sink&& sink) -> admission {
    using node_type = task_node<std::decay_t<Sink>>;
    node_type* node = nullptr;
    try {
        node = new node_type(this, std::move(task), std::forward<Sink>(sink));
    } catch (...) {
        std::lock_guard lock(mutex_);
        unreserve_locked();
        throw;
    }
    node->stamp = detail::tick_clock::now();
    inbox_.push(node);
    start_if_slot_free();
    return admission::queued;
}

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
void bounded_task_queue<Task, Executor, Gate>::start_if_slot_free() {
    if (slot_free()) {
        // A gated queue always asks here: a refusal then marks the held tasks at once (stats'
        // held_by_gate), rather than whenever an idle worker next looks.
        if constexpr (pulling_executor<Executor> && !gated) {
            if (executor_.idle_pulling()) {
                return; // a worker looking for work takes it
            }
        }
        start_waiting();
    }
}

// ---- admission under the lock -------------------------------------------------------------

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
template <class Sink>
auto bounded_task_queue<Task, Executor, Gate>::make_node(Task& task, Sink&& sink,
                                                         const submit_options& options,
                                                         std::optional<clock::time_point> deadline)
    -> std::unique_ptr<task_node<std::decay_t<Sink>>> {
    auto node = std::make_unique<task_node<std::decay_t<Sink>>>(this, std::move(task),
                                                                std::forward<Sink>(sink));
    node->priority = options.priority;
    node->weight = static_cast<std::uint16_t>(options.weight); // check_weight() bounded it
    const std::optional<clock::duration> run_timeout =
        options.run_timeout ? options.run_timeout : run_timeout_;
    if (deadline || options.stop.stop_possible() || run_timeout || revocable ||
        !options.key.empty() || options.id != 0 || options.retry) {
        auto extras = std::make_unique<task_extras>();
        extras->deadline = deadline;
        extras->run_timeout = run_timeout;
        extras->caller_stop = options.stop;
        extras->id = options.id;
        if (options.retry && options.retry->attempts > 1) {
            extras->retry = std::make_shared<const retry_policy>(*options.retry);
        }
        if (run_timeout || revocable) { // a revocable permit requests stop of its own task
            extras->run_stop = std::stop_source();
        }
        node->extras = extras.release();
    }
    node->stamp = detail::tick_clock::now();
    return node;
}

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
template <class Sink>
auto bounded_task_queue<Task, Executor, Gate>::admit_locked(Task& task, Sink&& sink,
                                                            const submit_options& options,
                                                            bool may_block) -> admission {
    using node_type = task_node<std::decay_t<Sink>>;
    const clock::time_point now = clock::now();
    std::optional<clock::time_point> deadline = options.deadline;
    if (!deadline && queue_timeout_) {
        deadline = now + *queue_timeout_;
    }
    std::optional<clock::time_point> block_limit;
    if (may_block && overflow_ == overflow_policy::block) {
        if (block_timeout_) {
            block_limit = now + *block_timeout_;
        }
        if (deadline && (!block_limit || *deadline < *block_limit)) {
            block_limit = deadline;
        }
    }
    // submit() consumes the task whatever happens, so its node is built before taking the lock;
    // try_submit() must leave a refused task untouched, so it builds under the lock.
    std::unique_ptr<node_type> node;
    if (may_block) {
        node = make_node(task, std::forward<Sink>(sink), options, deadline);
    }
    auto built = [&]() -> node_type* {
        if (!node) {
            node = make_node(task, std::forward<Sink>(sink), options, deadline);
        }
        return node.get();
    };

    detail::node_chain unstarted; // displaced by this task, or this task cancelled at once
    // The rate limit's stamp, read before the lock (again after a wait for room), as dispatch
    // does: no clock is read while the lock is held.
    std::uint64_t ticks = detail::tick_clock::now();
    std::unique_lock lock(mutex_);
    for (;;) {
        std::size_t word = admission_.load(std::memory_order_seq_cst);
        if ((word & closed_bit) != 0) {
            refused_.fetch_add(1, std::memory_order_relaxed);
            return admission::refused_closed;
        }
        if (deadline && *deadline <= (block_limit ? clock::now() : now)) {
            ++counters_.expired;
            return admission::refused_expired;
        }
        std::optional<permit_type> permit; // gated: the start at once needs the gate's yes
        detail::key_record* record = options.key.empty() ? nullptr : keys_.find(options.key);
        if (word == 0 && may_start_locked(options.weight, ticks) && keys_.may_start(record) &&
            (!gated || [&] {
                if (std::optional<permit_type> granted = ask_gate_locked(options.priority)) {
                    permit.emplace(std::move(*granted));
                    return true;
                }
                return false;
            }())) {
            // Nothing waits and a slot is free: start at once, without a place in the queue.
            detail::queue_node* started = nullptr;
            try {
                started = built();
            } catch (...) {
                lock.unlock();
                permit.reset(); // a permit is never released under the queue's lock
                throw;
            }
            if (!watch_stop_locked(started)) {
                extras_of(started)->state = node_state::left;
                ++counters_.cancelled;
                ++answering_;
                unstarted.push(node.release());
                lock.unlock();
                permit.reset();
                answer_unstarted(unstarted, std::make_exception_ptr(task_cancelled()));
                return admission::queued;
            }
            static_cast<void>(node.release());
            if (rate_) {
                rate_->take(ticks);
            }
            if (!options.key.empty()) {
                detail::key_record& own = keys_.record_for(options.key, options.priority);
                ++own.running;
                started->extras->record = &own;
            }
            begin_running_locked(started);
            if constexpr (gated) {
                seat_permit_locked(started, std::move(*permit));
            }
            started->stamp = detail::tick_clock::now();
            lock.unlock();
            run_dispatch(started, std::chrono::nanoseconds::zero(), false);
            return admission::started;
        }
        if (keys_.refuse_waiting(record)) {
            refused_.fetch_add(1, std::memory_order_relaxed);
            return admission::refused_full; // this key's share of the queue is full
        }
        if (word < capacity_) {
            if (!admission_.compare_exchange_strong(word, word + 1, std::memory_order_seq_cst)) {
                continue; // a plain submitter took the place first: decide again
            }
            note_peak(word + 1);
            detail::queue_node* queued = built();
            static_cast<void>(node.release());
            const bool admitted_now = enqueue_locked(queued, options.key, unstarted, record);
            lock.unlock();
            if (!admitted_now) {
                answer_unstarted(unstarted, std::make_exception_ptr(task_cancelled()));
                return admission::queued;
            }
            start_if_slot_free();
            return admission::queued;
        }
        if (overflow_ == overflow_policy::drop_oldest && capacity_ > 0 &&
            displace_locked(options.priority, unstarted)) {
            // The displaced waiter's place goes to this task: the count stays as it is.
            detail::queue_node* queued = built();
            static_cast<void>(node.release());
            detail::node_chain cancelled;
            const bool admitted_now = enqueue_locked(queued, options.key, cancelled);
            lock.unlock();
            answer_unstarted(unstarted, std::make_exception_ptr(task_displaced()));
            if (!admitted_now) {
                answer_unstarted(cancelled, std::make_exception_ptr(task_cancelled()));
            }
            return admission::queued;
        }
        if (overflow_ != overflow_policy::block || !may_block ||
            (block_limit && clock::now() >= *block_limit)) {
            refused_.fetch_add(1, std::memory_order_relaxed);
            return admission::refused_full;
        }
        ++blocked_submitters_;
        if (block_limit) {
            room_available_.wait_until(lock, *block_limit);
        } else {
            room_available_.wait(lock);
        }
        --blocked_submitters_;
        ticks = detail::tick_clock::now();
    }
}

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
bool bounded_task_queue<Task, Executor, Gate>::watch_stop_locked(detail::queue_node* node) {
    task_extras* extras = extras_of(node);
    if (extras == nullptr || !extras->caller_stop.stop_possible()) {
        return true;
    }
    registering_stop_ = node;
    extras->on_stop.emplace(extras->caller_stop, detail::stop_hook<bounded_task_queue>{this, node});
    registering_stop_ = nullptr;
    return extras->state != node_state::stop_seen;
}

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
bool bounded_task_queue<Task, Executor, Gate>::enqueue_locked(detail::queue_node* node,
                                                              const task_key& key,
                                                              detail::node_chain& cancelled,
                                                              detail::key_record* found) {
    if (!watch_stop_locked(node)) {
        leave_unstarted_locked(counters_.cancelled);
        extras_of(node)->state = node_state::left;
        cancelled.push(node);
        return false;
    }
    if (!key.empty()) {
        detail::key_record& record =
            found != nullptr ? *found : keys_.record_for(key, node->priority);
        ++record.waiting;
        node->extras->record = &record;
        node->extras->lane = &record.lane_for(node->priority);
    }
    if (node->extras != nullptr && node->extras->id != 0) {
        ids_.emplace(node->extras->id, node);
    }
    waiting_.push_back(node); // plain tasks in the inbox keep their place: see peek_next_locked()
    if (task_extras* extras = extras_of(node)) {
        extras->state = node_state::waiting;
        if (extras->deadline) {
            arm_timer_locked(node, *extras, *extras->deadline, false);
        }
    }
    return true;
}

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
bool bounded_task_queue<Task, Executor, Gate>::displace_locked(int newcomer_priority,
                                                               detail::node_chain& displaced) {
    // The oldest of the lowest priority: the list's, or the inbox's oldest plain task (priority
    // 0) when that ranks lower (ordered by submission stamps, as in take_next_locked()).
    merge_inbox_for_turns_locked();
    detail::queue_node* listed = waiting_.empty() ? nullptr : waiting_.lowest_oldest();
    detail::queue_node* oldest_plain = inbox_.peek();
    const bool from_inbox =
        oldest_plain != nullptr && (listed == nullptr || listed->priority > 0 ||
                                    (listed->priority == 0 && oldest_plain->stamp < listed->stamp));
    detail::queue_node* victim = from_inbox ? oldest_plain : listed;
    if (victim == nullptr || victim->priority > newcomer_priority) {
        return false;
    }
    if (from_inbox) {
        static_cast<void>(inbox_.pop());
    } else {
        waiting_.erase(victim);
        forget_locked(victim);
        unhold_locked(victim);
    }
    ++counters_.displaced; // its place passes to the newcomer: the count stays as it is
    ++counters_.total_queued;
    ++answering_;
    displaced.push(victim);
    return true;
}

} // namespace btq
