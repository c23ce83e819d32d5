/// @file bounded_task_queue.hpp
/// @brief bounded_task_queue: at most `max_concurrency` tasks run, at most `capacity` wait, and
///        every caller gets an answer.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>

#include "detail/adaptive_mutex.hpp"
#include "detail/waiting_list.hpp"
#include "errors.hpp"
#include "executor.hpp"
#include "executors/thread_executor.hpp"
#include "options.hpp"
#include "stats.hpp"

namespace btq {

/// @brief What shutdown() did.
struct shutdown_result {
    std::size_t cleared = 0; ///< waiters answered with queue_cleared
    bool drained = false;    ///< every running task finished within the timeout
};

namespace detail {
/// The queues whose dispatch loop is running on this thread, innermost first. A task that
/// completes while its queue is dispatching on the same thread (a synchronous executor) only
/// releases its slot; the loop already on the stack starts the next task. Dispatch therefore
/// never recurses, however many tasks wait.
struct dispatch_frame {
    const void* queue;
    dispatch_frame* outer;
    bool released;
};
inline thread_local dispatch_frame* innermost_dispatch_frame = nullptr;

inline bool is_timeout(const std::exception_ptr& error) noexcept {
    try {
        std::rethrow_exception(error);
    } catch (const task_timeout&) {
        return true;
    } catch (...) {
        return false;
    }
}
} // namespace detail

/// @brief A queue that bounds both how many tasks run at once (`max_concurrency`) and how many
///        may wait (`capacity`), and hands tasks to a pluggable executor.
///
/// The queue decides *when* a task starts; the executor decides *how* it runs
/// (thread_executor, callable_executor, and the process executors).
///
/// Guarantees:
/// - Never more than `max_concurrency` tasks inside the executor, never more than `capacity`
///   waiting.
/// - Every admitted task is answered exactly once: with its outcome, or with an error derived
///   from btq::task_not_run if it never started. Nothing throws after a task is admitted.
/// - Higher priority starts first, FIFO within a priority; a task past its queue deadline never
///   starts.
/// - Results are delivered (future made ready, callback run) before the task's slot is freed, so
///   once drain() returns every admitted task has been answered.
///
/// @code
/// btq::bounded_task_queue<std::function<int()>> queue({.max_concurrency = 4, .capacity = 100});
/// std::future<int> answer = queue.submit([] { return 6 * 7; });
/// queue.submit([] { return 1; }, [](btq::task_result<int> r) noexcept { /* r.value() */ });
/// auto result = queue.shutdown("done", std::chrono::seconds(5));
/// @endcode
///
/// @tparam Task     what is submitted (moved into the queue, then into the executor)
/// @tparam Executor how a task runs; must satisfy btq::executor_for<Executor, Task>
template <class Task, class Executor = thread_executor>
requires executor_for<Executor, Task>
class bounded_task_queue {
  public:
    using task_type = Task;
    using executor_type = Executor;
    /// What a task produces: futures are `std::future<result_type>`.
    using result_type = executor_result_t<Executor, Task>;

    /// @brief Creates the queue and its executor from `executor_args`. With no arguments, an
    ///        executor that can be sized (thread_executor) gets `max_concurrency` threads.
    /// @throws std::invalid_argument if `options.max_concurrency` is 0.
    /// @code
    /// btq::bounded_task_queue<job, btq::callable_executor<handler>> queue(
    ///     {.max_concurrency = 2, .capacity = 8}, btq::callable_executor(handler{}));
    /// @endcode
    template <class... ExecutorArgs>
    explicit bounded_task_queue(queue_options options = {}, ExecutorArgs&&... executor_args)
        : max_concurrency_(checked_concurrency(options.max_concurrency)),
          paused_(options.start_paused), capacity_(options.capacity), overflow_(options.overflow),
          block_timeout_(options.block_timeout), queue_timeout_(options.queue_timeout),
          executor_(make_executor(options, std::forward<ExecutorArgs>(executor_args)...)) {}

    bounded_task_queue(const bounded_task_queue&) = delete;
    bounded_task_queue& operator=(const bounded_task_queue&) = delete;
    bounded_task_queue(bounded_task_queue&&) = delete;
    bounded_task_queue& operator=(bounded_task_queue&&) = delete;

    /// @brief Closes the queue, answers every waiter with queue_cleared("queue destroyed"), and
    ///        waits for the tasks already running (it never waits for waiting tasks). With an
    ///        executor that can cancel (btq::cancellable_executor, e.g. subprocess_executor),
    ///        the running tasks are cancelled first, so the wait is short.
    /// @warning Do not destroy a queue from inside one of its own tasks.
    ~bounded_task_queue() {
        close();
        static_cast<void>(clear("queue destroyed"));
        if constexpr (cancellable_executor<Executor>) {
            executor_.cancel_running();
        }
        drain();
        {
            std::lock_guard lock(mutex_);
            timer_stopping_ = true;
        }
        deadline_changed_.notify_all();
        if (timer_.joinable()) {
            timer_.join();
        }
    }

    // ---- submission ---------------------------------------------------------------------

    /// @brief Submits a task; its outcome arrives through the returned future.
    /// @throws queue_full   the queue is full (reject; drop_oldest with every waiter more
    ///                      important; block after block_timeout)
    /// @throws queue_closed close() or shutdown() was called
    /// @throws task_expired the task's deadline passed before it could be admitted
    /// @code
    /// std::future<int> f = queue.submit([] { return 42; }, {.priority = 5});
    /// @endcode
    [[nodiscard]] std::future<result_type> submit(Task task, const submit_options& options = {}) {
        promise_sink sink;
        std::future<result_type> future = sink.promise.get_future();
        throw_if_refused(admit(task, std::move(sink), options, true));
        return future;
    }

    /// @brief Submits a task; `callback(task_result<R>)` is called exactly once with its outcome,
    ///        on the thread that completes it (or the one that clears, expires or displaces it).
    ///        If submit throws, the callback is never called.
    /// @note The callback runs while the task still holds its slot: keep it short. It must not
    ///       throw (an escaping exception calls std::terminate, as for std::stop_callback).
    /// @throws the same as the future form.
    /// @code
    /// queue.submit(task, [](btq::task_result<int> r) noexcept { if (r) total += *r; });
    /// @endcode
    template <class Callback>
    requires std::invocable < std::decay_t<Callback>
    &, task_result<result_type>&& >
           void submit(Task task, Callback&& callback, const submit_options& options = {}) {
        throw_if_refused(admit(task, std::forward<Callback>(callback), options, true));
    }

    /// @brief Submits without ever blocking or throwing for a full or closed queue. Under
    ///        overflow_policy::block it behaves as reject; under drop_oldest it may displace.
    /// @return the future, or nothing if the task was not admitted; then `task` is left
    ///         untouched (not moved from), so the caller can retry or run it elsewhere.
    /// @code
    /// if (auto f = queue.try_submit(std::move(task))) use(f->get()); else run_inline(task);
    /// @endcode
    [[nodiscard]] std::optional<std::future<result_type>>
    try_submit(Task&& task, const submit_options& options = {}) {
        promise_sink sink;
        std::future<result_type> future = sink.promise.get_future();
        if (!admitted(admit(task, std::move(sink), options, false))) {
            return std::nullopt;
        }
        return future;
    }

    /// @brief Callback form of try_submit(). Returns false, leaving both `task` and `callback`
    ///        untouched, if the task was not admitted.
    template <class Callback>
    requires std::invocable < std::decay_t<Callback>
    &, task_result<result_type>&& >
           [[nodiscard]] bool try_submit(Task&& task, Callback&& callback,
                                         const submit_options& options = {}) {
        return admitted(admit(task, std::forward<Callback>(callback), options, false));
    }

    // ---- lifecycle ----------------------------------------------------------------------

    /// @brief Stops admission: later submits throw queue_closed (try_submit returns nothing),
    ///        blocked submitters wake and throw queue_closed. Waiting and running tasks go on.
    void close() noexcept {
        {
            std::lock_guard lock(mutex_);
            closed_ = true;
        }
        room_available_.notify_all();
    }

    /// @brief Fails every waiting task with queue_cleared carrying `reason`; running tasks are
    ///        left alone. Does not close the queue.
    /// @return how many waiting tasks were answered.
    /// @code
    /// std::size_t cleared = queue.clear("Server shutting down");
    /// @endcode
    std::size_t clear(const std::string& reason = "cleared") {
        detail::node_chain taken;
        {
            std::lock_guard lock(mutex_);
            waiting_.take_all(taken);
            for (detail::queue_node* node = taken.head; node != nullptr; node = node->next) {
                forget_deadline(*node);
            }
            cleared_ += taken.size;
            answering_ += taken.size;
        }
        room_available_.notify_all();
        answer_unstarted(taken, std::make_exception_ptr(queue_cleared(reason)));
        return taken.size;
    }

    /// @brief Waits until nothing runs and nothing waits, for at most `timeout`. Does not close
    ///        the queue, so under steady submission it may never see idle.
    /// @return true if the queue was idle before the timeout.
    /// @warning Calling it from inside one of the queue's own tasks waits for that task: it
    ///          returns false at the timeout (or never, with drain()).
    [[nodiscard]] bool drain(clock::duration timeout) {
        std::unique_lock lock(mutex_);
        ++drain_waiters_;
        const bool idle = became_idle_.wait_for(lock, timeout, [this] { return is_idle_locked(); });
        --drain_waiters_;
        return idle;
    }

    /// @brief Waits, without limit, until nothing runs and nothing waits.
    void drain() {
        std::unique_lock lock(mutex_);
        ++drain_waiters_;
        became_idle_.wait(lock, [this] { return is_idle_locked(); });
        --drain_waiters_;
    }

    /// @brief close() + clear(reason) + drain(timeout): refuse new work, answer every waiter,
    ///        and wait for the running tasks (without limit if `timeout` is empty).
    /// @code
    /// auto done = queue.shutdown("Server shutting down", std::chrono::seconds(10));
    /// log("cleared {} waiting, drained: {}", done.cleared, done.drained);
    /// @endcode
    shutdown_result shutdown(const std::string& reason = "shutting down",
                             std::optional<clock::duration> timeout = std::nullopt) {
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

    /// @brief Changes the running bound. Raising it starts waiting tasks at once; lowering it
    ///        lets running tasks finish (nothing is interrupted) and starts no more until the
    ///        count is below the new bound.
    /// @throws std::invalid_argument if `max_concurrency` is 0 (use pause() to stop starting).
    void set_max_concurrency(std::size_t max_concurrency) {
        checked_concurrency(max_concurrency);
        if constexpr (concurrency_aware_executor<Executor>) {
            executor_.reserve_concurrency(max_concurrency);
        }
        {
            std::lock_guard lock(mutex_);
            max_concurrency_ = max_concurrency;
        }
        room_available_.notify_all();
        start_waiting();
    }

    /// @brief Stops starting tasks; admission, expiry and running tasks go on.
    void pause() noexcept {
        std::lock_guard lock(mutex_);
        paused_ = true;
    }

    /// @brief Starts waiting tasks again after pause().
    void resume() {
        {
            std::lock_guard lock(mutex_);
            paused_ = false;
        }
        room_available_.notify_all();
        start_waiting();
    }

    // ---- observation --------------------------------------------------------------------

    /// @brief A consistent snapshot of counters, bounds and latencies (see queue_stats).
    [[nodiscard]] queue_stats stats() const {
        std::lock_guard lock(mutex_);
        queue_stats out;
        out.total_processed = processed_;
        out.total_queued = total_queued_;
        out.total_errors = errors_;
        out.peak_active = peak_active_;
        out.peak_queue_size = peak_queued_;
        out.active = active_;
        out.queued = waiting_.size();
        out.max_concurrency = max_concurrency_;
        out.utilization_percent =
            100.0 * static_cast<double>(active_) / static_cast<double>(max_concurrency_);
        out.capacity = capacity_;
        out.submitted = submitted_;
        out.rejected = rejected_;
        out.displaced = displaced_;
        out.cleared = cleared_;
        out.expired = expired_;
        out.timed_out = timed_out_;
        out.closed = closed_;
        out.paused = paused_;
        out.wait_time = wait_times_.summary();
        out.run_time = run_times_.summary();
        return out;
    }

    [[nodiscard]] std::size_t max_concurrency() const {
        std::lock_guard lock(mutex_);
        return max_concurrency_;
    }
    [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
    [[nodiscard]] bool is_closed() const {
        std::lock_guard lock(mutex_);
        return closed_;
    }
    /// @brief The executor the queue owns.
    [[nodiscard]] Executor& executor() noexcept { return executor_; }

  private:
    enum class admission { started, queued, refused_full, refused_closed, refused_expired };

    struct promise_sink {
        std::promise<result_type> promise;
        void operator()(task_result<result_type>&& result) {
            if (!result.has_value()) {
                promise.set_exception(result.error());
            } else if constexpr (std::is_void_v<result_type>) {
                promise.set_value();
            } else {
                promise.set_value(std::move(result).value());
            }
        }
    };

    /// One task with the sink its outcome goes to.
    template <class Sink>
    struct task_node final : detail::queue_node {
        friend class bounded_task_queue;

        template <class S>
        task_node(bounded_task_queue* owner, Task&& work, S&& answer)
            : queue(owner), task(std::move(work)), sink(std::forward<S>(answer)) {}

        bounded_task_queue* queue;
        Task task;
        Sink sink;

        void start() override {
            try {
                queue->executor_.execute(std::move(task),
                                         completion<result_type>(&on_complete, this, waited));
            } catch (...) { // NOLINT(bugprone-empty-catch)
                // The completion handed to execute() has already answered (broken_completion).
            }
        }
        void fail(std::exception_ptr error) noexcept override {
            deliver(task_result<result_type>(std::move(error)));
            destroy(this);
        }
        void deliver(task_result<result_type>&& result) noexcept { sink(std::move(result)); }

        static void on_complete(void* context, task_result<result_type>&& result) noexcept {
            auto* self = static_cast<task_node*>(context);
            const bool failed = !result.has_value();
            const bool timed_out = failed && detail::is_timeout(result.error());
            self->deliver(std::move(result));
            bounded_task_queue* owner = self->queue;
            const clock::time_point started = self->stamp;
            self->~task_node();
            owner->finish(static_cast<void*>(self), started, failed, timed_out);
        }
        static void destroy(detail::queue_node* base) noexcept {
            auto* self = static_cast<task_node*>(base);
            self->~task_node();
            ::operator delete(static_cast<void*>(self));
        }

        task_node(const task_node&) = delete;
        task_node& operator=(const task_node&) = delete;
        task_node(task_node&&) = delete;
        task_node& operator=(task_node&&) = delete;

      protected:
        ~task_node() = default; // nodes end through destroy() or on_complete()
    };

    struct free_memory {
        void operator()(void* memory) const noexcept { ::operator delete(memory); }
    };
    template <class Node>
    struct destroy_node {
        void operator()(Node* node) const noexcept { Node::destroy(node); }
    };

    static std::size_t checked_concurrency(std::size_t max_concurrency) {
        if (max_concurrency == 0) {
            throw std::invalid_argument("btq: max_concurrency must be at least 1");
        }
        return max_concurrency;
    }

    template <class... ExecutorArgs>
    static Executor make_executor(const queue_options& options, ExecutorArgs&&... executor_args) {
        if constexpr (sizeof...(ExecutorArgs) == 0 && concurrency_aware_executor<Executor> &&
                      std::constructible_from<Executor, std::size_t>) {
            return Executor(options.max_concurrency);
        } else {
            return Executor(std::forward<ExecutorArgs>(executor_args)...);
        }
    }

    static bool admitted(admission outcome) noexcept {
        return outcome == admission::started || outcome == admission::queued;
    }

    static void throw_if_refused(admission outcome) {
        switch (outcome) {
        case admission::refused_full:
            throw queue_full();
        case admission::refused_closed:
            throw queue_closed();
        case admission::refused_expired:
            throw task_expired();
        default:
            return;
        }
    }

    /// Decides a task's fate. `task` and `sink` are moved from only if it is admitted.
    template <class Sink>
    admission admit(Task& task, Sink&& sink, const submit_options& options, bool may_block) {
        using node_type = task_node<std::decay_t<Sink>>;
        std::unique_ptr<void, free_memory> memory(::operator new(sizeof(node_type)));

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
        // submit() consumes the task whatever happens, so its node is built before taking the
        // lock; try_submit() must leave a refused task untouched, so it builds under the lock.
        std::unique_ptr<node_type, destroy_node<node_type>> early;
        auto make_node = [&]() -> node_type* {
            if (early) {
                return early.release();
            }
            auto* created =
                ::new (memory.get()) node_type(this, std::move(task), std::forward<Sink>(sink));
            static_cast<void>(memory.release());
            created->stamp = now;
            created->priority = options.priority;
            return created;
        };
        if (may_block) {
            early.reset(make_node());
        }

        std::unique_lock lock(mutex_);
        for (;;) {
            if (closed_) {
                return refuse_locked(admission::refused_closed);
            }
            if (deadline && *deadline <= (block_limit ? clock::now() : now)) {
                ++submitted_;
                ++expired_;
                return admission::refused_expired;
            }
            if (!paused_ && active_ < max_concurrency_ && waiting_.empty()) {
                node_type* started = make_node();
                ++submitted_;
                take_slot_locked();
                wait_times_.record(clock::duration::zero());
                lock.unlock();
                run_dispatch(started, false);
                return admission::started;
            }
            if (waiting_.size() < capacity_) {
                enqueue_locked(make_node(), deadline);
                return admission::queued;
            }
            if (overflow_ == overflow_policy::drop_oldest && capacity_ > 0 &&
                waiting_.lowest_oldest()->priority <= options.priority) {
                detail::queue_node* victim = waiting_.lowest_oldest();
                waiting_.erase(victim);
                forget_deadline(*victim);
                ++rejected_;
                ++displaced_;
                ++answering_;
                enqueue_locked(make_node(), deadline);
                lock.unlock();
                detail::node_chain displaced;
                displaced.push(victim);
                answer_unstarted(displaced, std::make_exception_ptr(task_displaced()));
                return admission::queued;
            }
            if (overflow_ != overflow_policy::block || !may_block) {
                return refuse_locked(admission::refused_full);
            }
            if (block_limit && clock::now() >= *block_limit) {
                return refuse_locked(admission::refused_full);
            }
            ++blocked_submitters_;
            if (block_limit) {
                room_available_.wait_until(lock, *block_limit);
            } else {
                room_available_.wait(lock);
            }
            --blocked_submitters_;
        }
    }

    admission refuse_locked(admission outcome) noexcept {
        ++submitted_;
        ++rejected_;
        return outcome;
    }

    void take_slot_locked() noexcept {
        ++active_;
        peak_active_ = std::max(peak_active_, active_);
    }

    void enqueue_locked(detail::queue_node* node, std::optional<clock::time_point> deadline) {
        waiting_.push_back(node);
        ++submitted_;
        ++total_queued_;
        peak_queued_ = std::max(peak_queued_, waiting_.size());
        if (deadline) {
            node->has_deadline = true;
            node->deadline_position = deadlines_.emplace(*deadline, node);
            if (node->deadline_position == deadlines_.begin()) {
                if (!timer_.joinable()) {
                    timer_ = std::thread([this] { expire_loop(); });
                }
                deadline_changed_.notify_one();
            }
        }
    }

    void forget_deadline(detail::queue_node& node) noexcept {
        if (node.has_deadline) {
            deadlines_.erase(node.deadline_position);
            node.has_deadline = false;
        }
    }

    [[nodiscard]] bool is_idle_locked() const noexcept {
        return active_ == 0 && waiting_.empty() && answering_ == 0;
    }

    void notify_if_idle_locked() {
        if (drain_waiters_ > 0 && is_idle_locked()) {
            became_idle_.notify_all();
        }
    }

    /// Takes the next task that may start now, answering stale ones into `expired`. Sets
    /// `more` when yet another task could start after this one.
    detail::queue_node* take_startable_locked(clock::time_point now, detail::node_chain& expired,
                                              bool& more) {
        more = false;
        while (!paused_ && active_ < max_concurrency_ && !waiting_.empty()) {
            detail::queue_node* node = waiting_.pop_front();
            if (node->has_deadline) {
                const bool stale = node->deadline_position->first <= now;
                forget_deadline(*node);
                if (stale) {
                    ++expired_;
                    ++answering_;
                    expired.push(node);
                    continue;
                }
            }
            take_slot_locked();
            node->waited = now - node->stamp;
            wait_times_.record(node->waited);
            node->stamp = now;
            if (blocked_submitters_ > 0) {
                room_available_.notify_one();
            }
            more = active_ < max_concurrency_ && !waiting_.empty();
            return node;
        }
        return nullptr;
    }

    /// Starts `first` (already holding a slot), then keeps starting waiting tasks while slots
    /// are free. Runs without the lock; see detail::dispatch_frame.
    void run_dispatch(detail::queue_node* first, bool more) {
        detail::dispatch_frame frame{this, detail::innermost_dispatch_frame, false};
        detail::innermost_dispatch_frame = &frame;
        detail::node_chain expired;
        for (detail::queue_node* next = first; next != nullptr;) {
            frame.released = false;
            next->start();
            if (!more && !frame.released) {
                break;
            }
            const clock::time_point now = clock::now();
            std::lock_guard lock(mutex_);
            next = take_startable_locked(now, expired, more);
            notify_if_idle_locked();
        }
        detail::innermost_dispatch_frame = frame.outer;
        if (expired.size > 0) {
            answer_unstarted(expired, std::make_exception_ptr(task_expired()));
        }
    }

    /// Starts waiting tasks on this thread while slots are free (after resume() and friends).
    void start_waiting() {
        detail::node_chain expired;
        detail::queue_node* next = nullptr;
        bool more = false;
        const clock::time_point now = clock::now();
        {
            std::lock_guard lock(mutex_);
            next = take_startable_locked(now, expired, more);
            notify_if_idle_locked();
        }
        if (expired.size > 0) {
            answer_unstarted(expired, std::make_exception_ptr(task_expired()));
        }
        if (next != nullptr) {
            run_dispatch(next, more);
        }
    }

    detail::dispatch_frame* frame_on_this_thread() const noexcept {
        for (detail::dispatch_frame* frame = detail::innermost_dispatch_frame; frame != nullptr;
             frame = frame->outer) {
            if (frame->queue == this) {
                return frame;
            }
        }
        return nullptr;
    }

    /// A task's outcome has been delivered: free its slot and start what may start.
    /// `node_memory` is the finished task's node, already destroyed.
    void finish(void* node_memory, clock::time_point started, bool failed,
                bool timed_out) noexcept {
        const clock::time_point now = clock::now();
        detail::dispatch_frame* frame = frame_on_this_thread();
        detail::node_chain expired;
        detail::queue_node* next = nullptr;
        bool more = false;
        {
            std::lock_guard lock(mutex_);
            --active_;
            ++processed_;
            errors_ += failed ? 1 : 0;
            timed_out_ += timed_out ? 1 : 0;
            run_times_.record(now - started);
            if (frame != nullptr) {
                frame->released = true;
            } else {
                next = take_startable_locked(now, expired, more);
            }
            if (blocked_submitters_ > 0) {
                room_available_.notify_one();
            }
            notify_if_idle_locked();
        }
        ::operator delete(node_memory);
        if (expired.size > 0) {
            answer_unstarted(expired, std::make_exception_ptr(task_expired()));
        }
        if (next != nullptr) {
            const void* outer_handoff = std::exchange(detail::handoff_target, &executor_);
            run_dispatch(next, more);
            detail::handoff_target = outer_handoff;
        }
    }

    /// Answers tasks already taken out of the queue (and counted in `answering_`).
    void answer_unstarted(detail::node_chain& chain, const std::exception_ptr& error) noexcept {
        const std::size_t count = chain.size;
        chain.fail_all(error);
        std::lock_guard lock(mutex_);
        answering_ -= count;
        notify_if_idle_locked();
    }

    /// The deadline thread: fails waiting tasks whose deadline has passed, even while the queue
    /// is paused or every slot is held by a long task. Started by the first deadline.
    void expire_loop() {
        std::unique_lock lock(mutex_);
        while (!timer_stopping_) {
            if (deadlines_.empty()) {
                deadline_changed_.wait(lock);
                continue;
            }
            const clock::time_point now = clock::now();
            const clock::time_point earliest = deadlines_.begin()->first; // a copy: the entry
            if (now < earliest) { // may be erased while we wait
                deadline_changed_.wait_until(lock, earliest);
                continue;
            }
            detail::node_chain expired;
            while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
                detail::queue_node* node = deadlines_.begin()->second;
                forget_deadline(*node);
                waiting_.erase(node);
                expired.push(node);
            }
            expired_ += expired.size;
            answering_ += expired.size;
            if (blocked_submitters_ > 0) {
                room_available_.notify_all();
            }
            lock.unlock();
            answer_unstarted(expired, std::make_exception_ptr(task_expired()));
            lock.lock();
        }
    }

    // Fields touched on every submit and completion come first, next to the lock, so a critical
    // section touches as few cache lines as possible.
    mutable detail::adaptive_mutex mutex_;
    std::size_t active_ = 0;
    std::size_t max_concurrency_;
    bool closed_ = false;
    bool paused_;
    bool timer_stopping_ = false;
    std::size_t answering_ = 0; // taken out of the queue, answer not yet delivered
    std::size_t blocked_submitters_ = 0;
    std::size_t drain_waiters_ = 0;
    std::uint64_t submitted_ = 0;
    std::uint64_t processed_ = 0;
    std::uint64_t errors_ = 0;
    std::size_t peak_active_ = 0;
    detail::waiting_list waiting_;

    std::uint64_t timed_out_ = 0;
    std::uint64_t rejected_ = 0;
    std::uint64_t displaced_ = 0;
    std::uint64_t cleared_ = 0;
    std::uint64_t expired_ = 0;
    std::uint64_t total_queued_ = 0;
    std::size_t peak_queued_ = 0;
    detail::latency_histogram wait_times_;
    detail::latency_histogram run_times_;

    const std::size_t capacity_;
    const overflow_policy overflow_;
    const std::optional<clock::duration> block_timeout_;
    const std::optional<clock::duration> queue_timeout_;

    std::multimap<clock::time_point, detail::queue_node*> deadlines_;
    std::thread timer_;
    std::condition_variable_any room_available_;   // blocked submitters
    std::condition_variable_any became_idle_;      // drain()
    std::condition_variable_any deadline_changed_; // the deadline thread

    // Last, so it is destroyed first: its threads may still call back into the queue.
    Executor executor_;
};

} // namespace btq
