/// @file executor.hpp
/// @brief The executor concept, the completion handle an executor answers through, and the
///        task_result a callback receives.
///
/// The queue decides *when* a task runs; an executor decides *how*. An executor is any type with
/// a member alias template `result_type<Task>` and a member
/// `execute(Task&&, btq::completion<result_type<Task>>)` that eventually calls the completion
/// exactly once, from any thread, or lets it go out of scope (which answers broken_completion).
#pragma once

#include <chrono>
#include <concepts>
#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <stop_token>
#include <type_traits>
#include <utility>
#include <variant>

#include "detail/dispatch_frame.hpp"
#include "errors.hpp"

namespace btq {

/// @brief The outcome of a task: its value, or the exception it (or the queue) failed with.
/// @code
/// queue.submit(task, [](btq::task_result<int> result) noexcept {
///     if (result) use(*result); else log(result.error());
/// });
/// @endcode
template <class R>
class task_result {
    static_assert(std::is_object_v<R> && std::is_move_constructible_v<R>,
                  "a task's result must be a move-constructible object type or void");

  public:
    /// @brief A result holding a value constructed from `args`.
    template <class... Args>
    explicit task_result(std::in_place_t /*tag*/, Args&&... args)
        : state_(std::in_place_index<0>, std::forward<Args>(args)...) {}
    /// @brief A failed result. `error` must not be null.
    explicit task_result(std::exception_ptr error)
        : state_(std::in_place_index<1>, std::move(error)) {}

    /// @brief True when the task produced a value.
    [[nodiscard]] bool has_value() const noexcept { return state_.index() == 0; }
    /// @brief has_value().
    explicit operator bool() const noexcept { return has_value(); }

    /// @brief The value; rethrows the error if there is none.
    [[nodiscard]] R& value() & {
        rethrow_if_error();
        return std::get<0>(state_);
    }
    /// @brief The value (const); rethrows the error if there is none.
    [[nodiscard]] const R& value() const& {
        rethrow_if_error();
        return std::get<0>(state_);
    }
    /// @brief The value, moved out; rethrows the error if there is none.
    [[nodiscard]] R&& value() && {
        rethrow_if_error();
        return std::get<0>(std::move(state_));
    }
    /// @brief value().
    [[nodiscard]] R& operator*() & { return value(); }
    /// @brief A pointer to value(); rethrows the error if there is none.
    [[nodiscard]] R* operator->() { return &value(); }

    /// @brief The error, or null when there is a value.
    [[nodiscard]] std::exception_ptr error() const noexcept {
        return has_value() ? nullptr : std::get<1>(state_);
    }
    /// @brief How many times the task ran for this result (more than 1 with
    ///        submit_options::retry; 0 if it never started).
    [[nodiscard]] std::size_t attempts() const noexcept { return attempts_; }
    /// @brief Sets attempts() (the queue does, before it answers).
    void set_attempts(std::size_t attempts) noexcept { attempts_ = attempts; }

  private:
    void rethrow_if_error() const {
        if (!has_value()) {
            std::rethrow_exception(std::get<1>(state_));
        }
    }

    std::variant<R, std::exception_ptr> state_;
    std::size_t attempts_ = 1;
};

/// @brief The outcome of a task that returns nothing: success, or an exception.
template <>
class task_result<void> {
  public:
    /// @brief A successful result.
    explicit task_result(std::in_place_t /*tag*/) noexcept {}
    /// @brief A failed result. `error` must not be null.
    explicit task_result(std::exception_ptr error) noexcept : error_(std::move(error)) {}

    /// @brief True when the task succeeded.
    [[nodiscard]] bool has_value() const noexcept { return !error_; }
    /// @brief has_value().
    explicit operator bool() const noexcept { return has_value(); }
    /// @brief Returns on success; rethrows the error otherwise.
    void value() const {
        if (error_) {
            std::rethrow_exception(error_);
        }
    }
    /// @brief The error, or null on success.
    [[nodiscard]] std::exception_ptr error() const noexcept { return error_; }
    /// @brief How many times the task ran for this result (more than 1 with
    ///        submit_options::retry; 0 if it never started).
    [[nodiscard]] std::size_t attempts() const noexcept { return attempts_; }
    /// @brief Sets attempts() (the queue does, before it answers).
    void set_attempts(std::size_t attempts) noexcept { attempts_ = attempts; }

  private:
    std::exception_ptr error_;
    std::size_t attempts_ = 1;
};

/// @brief A move-only, call-once handle through which an executor reports a task's outcome.
///
/// Exactly one of set_value(), set_exception() or complete() may be called, once, from any
/// thread. A completion destroyed without being called answers the task with
/// btq::broken_completion, so an executor that loses a task can never strand its caller.
/// @code
/// template <class Task, class R>
/// void execute(Task&& task, btq::completion<R> done) {
///     start_async(std::move(task), [done = std::move(done)](R value) mutable {
///         done.set_value(std::move(value));
///     });
/// }
/// @endcode
template <class R>
class completion {
  public:
    /// The task's result type: what set_value() constructs.
    using result_type = R;
    /// The function a completion forwards to, with its context pointer.
    using target_function = void (*)(void* context, task_result<R>&& result) noexcept;

    completion() noexcept = default;
    /// @brief A completion that calls `target(context, result)` once. `waited` is how long the
    ///        task waited in its queue before it was handed over (executors may report it);
    ///        `stop` is the task's stop token (see stop_token()).
    completion(target_function target, void* context,
               std::chrono::nanoseconds waited = std::chrono::nanoseconds::zero(),
               std::stop_token stop = {}) noexcept
        : target_(target), context_(context), waited_(waited), stop_(std::move(stop)) {}

    /// @brief A completion that calls `callback(task_result<R>)` once (allocates). Handy for
    ///        using an executor without a queue, and in tests.
    template <class Callback>
        requires std::invocable<Callback&, task_result<R>&&>
    [[nodiscard]] static completion from(Callback callback, std::stop_token stop = {}) {
        auto* owned = new Callback(std::move(callback));
        return completion(
            [](void* context, task_result<R>&& result) noexcept {
                std::unique_ptr<Callback> call(static_cast<Callback*>(context));
                (*call)(std::move(result));
            },
            owned, std::chrono::nanoseconds::zero(), std::move(stop));
    }

    /// @brief Takes over `other`'s call; `other` is left used (not pending).
    completion(completion&& other) noexcept
        : target_(std::exchange(other.target_, nullptr)), context_(other.context_),
          waited_(other.waited_), stop_(std::move(other.stop_)) {}
    /// @brief Answers a still-pending target with btq::broken_completion, then takes over
    ///        `other`'s call.
    completion& operator=(completion&& other) noexcept {
        if (this != &other) {
            abandon();
            target_ = std::exchange(other.target_, nullptr);
            context_ = other.context_;
            waited_ = other.waited_;
            stop_ = std::move(other.stop_);
        }
        return *this;
    }
    completion(const completion&) = delete;
    completion& operator=(const completion&) = delete;
    ~completion() { abandon(); }

    /// @brief How long the task waited in its queue before it reached the executor.
    [[nodiscard]] std::chrono::nanoseconds waited() const noexcept { return waited_; }

    /// @brief The running task's stop token: requested when the caller's submit_options::stop is
    ///        requested, or at the task's run timeout. `stop_possible()` is false when nothing can
    ///        ever stop it. Executors watch it (std::stop_callback) or hand it to the task.
    [[nodiscard]] const std::stop_token& stop_token() const noexcept { return stop_; }

    /// @brief True until the completion has been used or moved from.
    [[nodiscard]] bool pending() const noexcept { return target_ != nullptr; }
    /// @brief pending().
    explicit operator bool() const noexcept { return pending(); }

    /// @brief Reports success; the value is constructed from `args` (nothing for void).
    template <class... Args>
    void set_value(Args&&... args) {
        complete(task_result<R>(std::in_place, std::forward<Args>(args)...));
    }
    /// @brief Reports failure.
    void set_exception(std::exception_ptr error) { complete(task_result<R>(std::move(error))); }
    /// @brief Reports an outcome. Throws std::logic_error if already used.
    void complete(task_result<R>&& result) {
        if (target_ == nullptr) {
            throw std::logic_error("btq: completion used twice or after being moved from");
        }
        std::exchange(target_, nullptr)(context_, std::move(result));
    }

  private:
    void abandon() noexcept {
        if (target_ != nullptr) [[unlikely]] {
            report_broken();
        }
    }
    [[gnu::noinline]] void report_broken() noexcept {
        std::exchange(target_, nullptr)(
            context_, task_result<R>(std::make_exception_ptr(broken_completion())));
    }

    target_function target_ = nullptr;
    void* context_ = nullptr;
    std::chrono::nanoseconds waited_{0};
    std::stop_token stop_;
};

/// @brief What an executor produces for a given task type.
template <class Executor, class Task>
using executor_result_t = typename Executor::template result_type<Task>;

/// @brief An executor that can run `Task`: it names a result type for it and accepts the task
///        with a completion for that result.
template <class Executor, class Task>
concept executor_for = std::move_constructible<Task> && requires {
    typename executor_result_t<Executor, Task>;
} && requires(Executor& executor, Task&& task, completion<executor_result_t<Executor, Task>> done) {
    executor.execute(std::move(task), std::move(done));
};

/// @brief An executor that wants to know the queue's concurrency bound (thread_executor grows
///        its threads to match). Optional.
template <class Executor>
concept concurrency_aware_executor =
    requires(Executor& executor, std::size_t n) { executor.reserve_concurrency(n); };

/// @brief An executor that can stop work it is already running, by force (the process
///        executors kill the process or the worker). It says so with
///        `static constexpr bool stops_running_tasks = true` and honours both ways of asking:
///        - one task: a stop requested on the task's completion::stop_token() ends that task (the
///          outcome says it was stopped);
///        - every task: `cancel_running()`. A queue's destructor calls it before it waits for
///          running tasks, so it never waits for a task that would run for a long time.
///
/// Executors without it (thread_executor, callable_executor) stop running work cooperatively:
/// they hand the stop token to a task that takes one, and the task decides. Optional.
template <class Executor>
concept cancellable_executor =
    Executor::stops_running_tasks && requires(Executor& executor) { executor.cancel_running(); };

namespace detail {
/// A queue as seen by an executor whose idle threads take tasks themselves (see
/// pulling_executor).
struct task_source {
    /// Starts the next task that may start now, on the calling thread: the queue calls the
    /// executor's execute() from inside. False if none may start.
    bool (*start_next)(void* context) = nullptr;
    /// True when a task waits and a slot is free (a cheap look, without the queue's lock).
    bool (*has_work)(const void* context) noexcept = nullptr;
    void* context = nullptr;
};
} // namespace detail

/// @brief An executor whose idle threads take tasks from the queue themselves
///        (thread_executor). The queue attaches itself with `attach_source()`; while
///        `idle_pulling()` says a thread is looking, a submitter leaves its task to that thread
///        instead of dispatching it (no lock, no hand-over, no wake-up). Optional.
template <class Executor>
concept pulling_executor = requires(Executor& executor, detail::task_source source) {
    executor.attach_source(source);
    { executor.idle_pulling() } -> std::convertible_to<bool>;
};

/// @brief Whether invoking `Task` with a std::stop_token as its last argument is how it accepts
///        cooperative cancellation (thread_executor, callable_executor).
template <class F, class... Args>
concept stop_token_invocable = std::invocable<F, Args..., std::stop_token>;

namespace detail {
/// Invokes `f(args..., token)` if it accepts a stop token, else `f(args...)`.
template <class F, class... Args>
decltype(auto) invoke_with_stop(const std::stop_token& token, F&& f, Args&&... args) {
    if constexpr (stop_token_invocable<F, Args...>) {
        return std::invoke(std::forward<F>(f), std::forward<Args>(args)..., token);
    } else {
        return std::invoke(std::forward<F>(f), std::forward<Args>(args)...);
    }
}
/// What `f(args...)` (or `f(args..., std::stop_token)`) returns.
template <class F, class... Args>
struct stop_invoke_result {
    using type = std::invoke_result_t<F, Args...>;
};
template <class F, class... Args>
    requires stop_token_invocable<F, Args...>
struct stop_invoke_result<F, Args...> {
    using type = std::invoke_result_t<F, Args..., std::stop_token>;
};
} // namespace detail

namespace detail {

/// Calls `invoke()` and captures its value or exception.
template <class R, class Invoke>
task_result<R> invoke_to_result(Invoke&& invoke) noexcept {
    try {
        if constexpr (std::is_void_v<R>) {
            std::forward<Invoke>(invoke)();
            return task_result<R>(std::in_place);
        } else {
            return task_result<R>(std::in_place, std::forward<Invoke>(invoke)());
        }
    } catch (...) {
        return task_result<R>(std::current_exception());
    }
}

} // namespace detail
} // namespace btq
