/// @file thread_executor.hpp
/// @brief thread_executor: runs invocable tasks on its own worker threads.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "../detail/adaptive_mutex.hpp" // cpu_relax
#include "../detail/unique_job.hpp"
#include "../executor.hpp"

namespace btq {

/// @brief Runs invocable tasks (`task()`) on a set of worker threads it owns.
///
/// Used with a bounded_task_queue, the queue hands it at most `max_concurrency` tasks at once,
/// so it never holds a backlog of its own; the queue creates it with `max_concurrency` threads
/// and grows it when set_max_concurrency() raises the bound.
///
/// When a task finishes and the queue hands over the next one from the same worker thread, the
/// worker runs it next itself instead of going through the shared job list: the hand-over costs
/// no lock and no wake-up.
/// @code
/// btq::thread_executor executor(2);
/// executor.execute([] { return 42; },
///                  btq::completion<int>::from([](btq::task_result<int> r) { assert(*r == 42); }));
/// @endcode
class thread_executor {
  public:
    /// @brief The value a task of type `Task` produces. A task may take a std::stop_token as its
    ///        only argument: it then gets its completion's stop token (cooperative cancellation).
    template <class Task>
    using result_type = typename detail::stop_invoke_result<Task&>::type;

    /// @brief Starts `threads` worker threads (at least one).
    explicit thread_executor(std::size_t threads = std::thread::hardware_concurrency()) {
        reserve_concurrency(threads == 0 ? 1 : threads);
    }

    thread_executor(const thread_executor&) = delete;
    thread_executor& operator=(const thread_executor&) = delete;
    thread_executor(thread_executor&&) = delete;
    thread_executor& operator=(thread_executor&&) = delete;

    /// @brief Runs every job already handed over, then joins the workers.
    ~thread_executor() {
        {
            std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        work_available_.notify_all();
        for (std::thread& worker : workers_) {
            worker.join();
        }
    }

    /// @brief Runs `task()` (or `task(done.stop_token())`) on a worker thread and reports its
    ///        value or exception to `done`.
    template <class Task, class R>
        requires std::is_invocable_v<Task&> || stop_token_invocable<Task&>
    void execute(Task&& task, completion<R> done) {
        auto job = [task = std::forward<Task>(task), done = std::move(done)]() mutable {
            task_result<R> result = detail::invoke_to_result<R>([&]() -> decltype(auto) {
                return detail::invoke_with_stop(done.stop_token(), task);
            });
            // Completing may hand this worker its next task (see execute()).
            worker_context* self = current_worker;
            self->in_completion = true;
            done.complete(std::move(result));
            self->in_completion = false;
        };
        worker_context* context = current_worker;
        if (context != nullptr && context->owner == this && context->in_completion &&
            detail::handoff_target == this && !context->next) {
            context->next = detail::unique_job(std::move(job));
            return;
        }
        push(detail::unique_job(std::move(job)));
    }

    /// @brief Grows the pool to at least `threads` workers. Never shrinks it.
    void reserve_concurrency(std::size_t threads) {
        std::lock_guard lock(mutex_);
        while (workers_.size() < threads) {
            workers_.emplace_back([this] { work(); });
        }
    }

    /// @brief True on one of this executor's worker threads (a queue's drain() uses it to refuse
    ///        a wait that would wait for itself).
    [[nodiscard]] bool owns_this_thread() const noexcept {
        return current_worker != nullptr && current_worker->owner == this;
    }

    /// @brief Makes idle workers take tasks from `source` themselves (btq::pulling_executor).
    ///        Called by a queue before it submits anything.
    void attach_source(detail::task_source source) {
        std::lock_guard lock(mutex_);
        source_ = source;
    }

    /// @brief True while at least one worker is idle and looking for work.
    [[nodiscard]] bool idle_pulling() const noexcept {
        return looking_.load(std::memory_order_seq_cst) > 0;
    }

    /// @brief Number of worker threads.
    [[nodiscard]] std::size_t thread_count() const {
        std::lock_guard lock(mutex_);
        return workers_.size();
    }

  private:
    struct worker_context {
        thread_executor* owner;
        bool in_completion = false;
        detail::unique_job next;
    };
    static inline thread_local worker_context* current_worker = nullptr;

    void push(detail::unique_job job) {
        bool wake = false;
        {
            std::lock_guard lock(mutex_);
            jobs_.push_back(std::move(job));
            pending_.store(jobs_.size(), std::memory_order_relaxed);
            wake = sleeping_workers_ > 0;
        }
        if (wake) {
            work_available_.notify_one();
        }
    }

    void work() {
        worker_context context{.owner = this, .in_completion = false, .next = {}};
        current_worker = &context;
        std::unique_lock lock(mutex_);
        for (;;) {
            if (jobs_.empty()) {
                if (stopping_) {
                    break;
                }
                if (look_for_work(lock, context)) {
                    continue;
                }
                ++sleeping_workers_;
                work_available_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
                --sleeping_workers_;
                continue;
            }
            detail::unique_job job = std::move(jobs_.front());
            jobs_.pop_front();
            pending_.store(jobs_.size(), std::memory_order_relaxed);
            lock.unlock();
            job();
            // While a job's completion runs, a follow-up handed to execute() by the queue is
            // parked in `context.next`: run it here, without the shared list.
            while (context.next) {
                detail::unique_job next = std::move(context.next);
                next();
            }
            lock.lock();
        }
        current_worker = nullptr;
    }

    // Before sleeping, an idle worker looks for work for a few microseconds without the lock:
    // its own list, and the attached queue, whose tasks it starts itself. Work that arrives
    // meanwhile costs the submitter no dispatch and no wake-up system call, and the worker no
    // sleep. Returns true if work (or the stop) may have arrived; the lock is held again.
    bool look_for_work(std::unique_lock<std::mutex>& lock, worker_context& context) {
        const detail::task_source source = source_;
        lock.unlock();
        looking_.fetch_add(1, std::memory_order_seq_cst);
        bool found = false;
        for (int round = 0; round < spin_rounds && !found; ++round) {
            found = pending_.load(std::memory_order_relaxed) > 0 || pull(source, context);
            for (int i = 0; i < 32 && !found; ++i) {
                detail::cpu_relax();
            }
            if (round % 16 == 15) {
                std::this_thread::yield(); // let a submitter on this core run
            }
        }
        // A submitter that saw this worker looking left its task to it: one more look after
        // saying it stopped looking (both sequentially consistent), so none is left behind.
        looking_.fetch_sub(1, std::memory_order_seq_cst);
        found = found || pending_.load(std::memory_order_relaxed) > 0 || pull(source, context);
        lock.lock();
        return found;
    }

    /// Starts a task of the attached queue on this thread. The queue's execute() call lands in
    /// `context.next`, as a hand-over does, and runs here.
    bool pull(const detail::task_source& source, worker_context& context) {
        if (source.start_next == nullptr || !source.has_work(source.context)) {
            return false;
        }
        context.in_completion = true;
        const void* outer_handoff = std::exchange(detail::handoff_target, this);
        const bool started = source.start_next(source.context);
        detail::handoff_target = outer_handoff;
        context.in_completion = false;
        while (context.next) {
            detail::unique_job next = std::move(context.next);
            next();
        }
        return started;
    }

    static constexpr int spin_rounds = 64;

    // A plain mutex and condition variable: with a queue attached this lock is off the hot path,
    // and std::condition_variable wakes a sleeper with one futex call (condition_variable_any
    // takes an internal lock that the woken thread must then wait for too).
    mutable std::mutex mutex_;
    std::condition_variable work_available_;
    std::deque<detail::unique_job> jobs_;
    std::atomic<std::size_t> pending_{0}; // jobs_.size(), readable without the lock
    std::atomic<int> looking_{0};         // workers in look_for_work()
    detail::task_source source_;
    std::vector<std::thread> workers_;
    std::size_t sleeping_workers_ = 0;
    bool stopping_ = false;
};

} // namespace btq
