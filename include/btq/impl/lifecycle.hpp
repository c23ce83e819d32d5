/// @file impl/lifecycle.hpp
/// @brief bounded_task_queue's members for its life and its look: close, clear, drain and
///        shutdown, the bound and pause, waiting for room, stats, and what admission tells the
///        observer. Included by bounded_task_queue.hpp; not a header of its own.
#pragma once

namespace btq {

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
void bounded_task_queue<Task, Executor, Gate>::close() noexcept {
    {
        std::lock_guard lock(mutex_);
        admission_.fetch_or(closed_bit, std::memory_order_seq_cst);
    }
    room_available_.notify_all();
}

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
std::size_t bounded_task_queue<Task, Executor, Gate>::clear(const std::string& reason) {
    detail::node_chain taken;
    {
        std::lock_guard lock(mutex_);
        take_all_waiting_locked(taken);
        notify_size_locked();
        counters_.cleared += taken.size;
        counters_.total_queued += taken.size;
        answering_ += taken.size;
    }
    room_available_.notify_all();
    answer_unstarted(taken, std::make_exception_ptr(queue_cleared(reason)));
    return taken.size;
}

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
bool bounded_task_queue<Task, Executor, Gate>::drain(clock::duration timeout) {
    throw_if_inside();
    std::unique_lock lock(mutex_);
    ++drain_waiters_;
    const bool idle = became_idle_.wait_for(lock, timeout, [this] { return is_idle_locked(); });
    --drain_waiters_;
    return idle;
}

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
shutdown_result
bounded_task_queue<Task, Executor, Gate>::shutdown(const std::string& reason,
                                                   std::optional<clock::duration> timeout) {
    throw_if_inside();
    close();
    shutdown_result result;
    result.cleared = clear(reason);
    if (timeout) {
        result.drained = drain(*timeout);
    } else {
        drain();
        result.drained = true;
    }
    return result;
}

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
void bounded_task_queue<Task, Executor, Gate>::set_max_concurrency(std::size_t max_concurrency) {
    checked_concurrency(max_concurrency);
    if constexpr (concurrency_aware_executor<Executor>) {
        executor_.reserve_concurrency(max_concurrency);
    }
    {
        std::lock_guard lock(mutex_);
        max_concurrency_.store(max_concurrency, std::memory_order_seq_cst);
    }
    room_available_.notify_all();
    start_waiting();
}

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
void bounded_task_queue<Task, Executor, Gate>::pause() noexcept {
    std::lock_guard lock(mutex_);
    paused_.store(true, std::memory_order_seq_cst);
}

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
void bounded_task_queue<Task, Executor, Gate>::resume() {
    {
        std::lock_guard lock(mutex_);
        paused_.store(false, std::memory_order_seq_cst);
    }
    room_available_.notify_all();
    start_waiting();
}

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
queue_stats bounded_task_queue<Task, Executor, Gate>::stats(std::size_t top_keys) const {
    queue_stats out = stats_with([&](queue_stats& filled) {
        waiting_.count_by_priority(filled.waiting_by_priority);
        const std::size_t listed = waiting_.size();
        if (filled.queued > listed) { // plain tasks still in the inbox, all of priority 0
            add_waiting_at_zero(filled.waiting_by_priority, filled.queued - listed);
        }
        filled.keys.reserve(std::min(top_keys, keys_.size()));
        keys_.visit([&](const task_key& key, const detail::key_record& record) {
            filled.keys.push_back(key_stats{.key = key,
                                            .waiting = record.waiting,
                                            .running = record.running,
                                            .rejected = record.rejected});
        });
    });
    const auto busier = [](const key_stats& a, const key_stats& b) {
        return a.waiting + a.running > b.waiting + b.running;
    };
    if (out.keys.size() > top_keys) {
        std::partial_sort(out.keys.begin(),
                          out.keys.begin() + static_cast<std::ptrdiff_t>(top_keys), out.keys.end(),
                          busier);
        out.keys.resize(top_keys);
    } else {
        std::sort(out.keys.begin(), out.keys.end(), busier);
    }
    return out;
}

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
template <class More>
queue_stats bounded_task_queue<Task, Executor, Gate>::stats_with(More more) const {
    std::lock_guard lock(mutex_);
    queue_stats out;
    const std::size_t waiting = waiting_count();
    counters_.fill(out, waiting, refused_.load(std::memory_order_relaxed));
    out.total_queued += waiting; // the waiting ones are counted for good when they leave
    out.peak_queue_size = peak_queued_.load(std::memory_order_relaxed);
    out.max_concurrency = max_concurrency_.load(std::memory_order_relaxed);
    out.utilization_percent = 100.0 * static_cast<double>(counters_.active_weight) /
                              static_cast<double>(out.max_concurrency);
    if (rate_ && waiting > 0 && !paused_.load(std::memory_order_relaxed) &&
        !rate_->ready(detail::tick_clock::now()) && counters_.active_weight < out.max_concurrency) {
        out.held_by_rate = std::min(waiting, out.max_concurrency - counters_.active_weight);
    }
    out.capacity = capacity_;
    out.closed = is_closed();
    out.paused = paused_.load(std::memory_order_relaxed);
    more(out);
    return out;
}

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
void bounded_task_queue<Task, Executor, Gate>::add_waiting_at_zero(
    std::vector<priority_count>& counts, std::size_t waiting) {
    auto position = std::find_if(counts.begin(), counts.end(),
                                 [](const priority_count& each) { return each.priority <= 0; });
    if (position != counts.end() && position->priority == 0) {
        position->waiting += waiting;
    } else {
        counts.insert(position, priority_count{.priority = 0, .waiting = waiting});
    }
}

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
auto bounded_task_queue<Task, Executor, Gate>::observed(
    admission outcome, const submit_options& options) const noexcept -> admission {
    if (observer_) {
        const task_info info{.priority = options.priority, .weight = options.weight};
        switch (outcome) {
        case admission::started:
        case admission::queued:
            observer_->on_admitted(info);
            break;
        case admission::refused_full:
            observer_->on_refused(info, not_run_reason::queue_full);
            break;
        case admission::refused_closed:
            observer_->on_refused(info, not_run_reason::queue_closed);
            break;
        case admission::refused_expired:
            observer_->on_refused(info, not_run_reason::expired);
            break;
        case admission::refused_cancelled:
            observer_->on_refused(info, not_run_reason::cancelled);
            break;
        }
    }
    return outcome;
}

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
void bounded_task_queue<Task, Executor, Gate>::check_weight(std::size_t weight) const {
    if (weight == 0) {
        throw std::invalid_argument("btq: submit_options::weight must be at least 1");
    }
    if (weight > std::numeric_limits<std::uint16_t>::max()) {
        throw std::invalid_argument("btq: submit_options::weight must be at most 65535");
    }
    if (weight > max_concurrency_.load(std::memory_order_relaxed)) {
        throw std::invalid_argument(
            "btq: submit_options::weight " + std::to_string(weight) + " is above max_concurrency " +
            std::to_string(max_concurrency()) + ": the task could never start");
    }
}

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
bool bounded_task_queue<Task, Executor, Gate>::wait_for_size(
    std::size_t size, std::optional<clock::time_point> until) {
    if (size == 0) {
        throw std::invalid_argument("btq: wait_until_size_below(0) could never return");
    }
    throw_if_inside();
    std::unique_lock lock(mutex_);
    ++size_waiters_;
    const auto below = [this, size] { return waiting_count() < size; };
    const bool reached = until ? size_dropped_.wait_until(lock, *until, below)
                               : (size_dropped_.wait(lock, below), true);
    --size_waiters_;
    return reached;
}

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
bool bounded_task_queue<Task, Executor, Gate>::inside() const {
    if (detail::find_dispatch_frame(this) != nullptr) {
        return true;
    }
    if constexpr (requires(const Executor& e) {
                      { e.owns_this_thread() } -> std::convertible_to<bool>;
                  }) {
        if (executor_.owns_this_thread()) {
            return true;
        }
    }
    std::lock_guard lock(mutex_);
    return timer_.is_timer_thread();
}

template <class Task, class Executor, class Gate>
    requires executor_for<Executor, Task> && start_gate<Gate>
std::size_t bounded_task_queue<Task, Executor, Gate>::set_priority(std::uint64_t id, int priority) {
    std::size_t moved = 0;
    {
        std::lock_guard lock(mutex_);
        auto [first, last] = ids_.equal_range(id);
        for (; first != last; ++first) {
            detail::queue_node* node = first->second;
            if (node->priority == priority) {
                ++moved;
                continue;
            }
            waiting_.erase(node);
            unhold_locked(node);
            node->priority = priority;
            if (detail::key_record* record = node->extras->record) {
                node->extras->lane = &record->lane_for(priority);
            }
            waiting_.insert_by_stamp(node);
            ++moved;
        }
    }
    if (moved > 0 && slot_free()) {
        start_waiting(); // a gate may say yes to the new first in line
    }
    return moved;
}

} // namespace btq
