/// @file callable_executor.hpp
/// @brief callable_executor<F>: throttles any function through a queue.
#pragma once

#include <functional>
#include <type_traits>
#include <utility>

#include "../executor.hpp"

namespace btq {

namespace detail {
template <class F, class Task, class AsyncResult,
          bool Synchronous = std::is_invocable_v<F&, Task&&> || stop_token_invocable<F&, Task&&>>
struct callable_result {
    using type = typename stop_invoke_result<F&, Task&&>::type;
};
template <class F, class Task, class AsyncResult>
struct callable_result<F, Task, AsyncResult, false> {
    using type = AsyncResult;
};
} // namespace detail

/// @brief Runs each task by calling a user function. Two forms, chosen by what `F` accepts:
///
/// - synchronous, `F(task) -> R` or `F(task, std::stop_token) -> R` (then it gets the task's stop
///   token: cooperative cancellation): called on the dispatching thread (the thread that submitted
///   the task, or the one whose task just finished and freed the slot); its return value or
///   exception is the task's outcome. The queue bounds how many calls run at once.
/// - asynchronous, `F(task, btq::completion<AsyncResult>&& done)`: starts the work and returns;
///   the work calls `done` later, from any thread. The slot stays taken until `done` is called.
///   An exception thrown by `F` before it took `done` fails the task with that exception.
///   `done.stop_token()` is the task's stop token.
///
/// @code
/// // synchronous: at most 4 calls to the rate-limited API at once
/// btq::bounded_task_queue<request, btq::callable_executor<call_api_fn>> queue(
///     {.max_concurrency = 4}, btq::callable_executor(call_api));
///
/// // asynchronous, result int
/// auto executor = btq::make_async_executor<int>([](job j, btq::completion<int>&& done) {
///     start_io(j, [d = std::move(done)](int n) mutable { d.set_value(n); });
/// });
/// @endcode
template <class F, class AsyncResult = void>
class callable_executor {
  public:
    template <class Task>
    /// What a task yields: `F`'s result for a synchronous `F`, `AsyncResult` for an
    /// asynchronous one.
    using result_type = typename detail::callable_result<F, Task, AsyncResult>::type;

    /// @brief An executor that runs each task through `function`.
    explicit callable_executor(F function) noexcept(std::is_nothrow_move_constructible_v<F>)
        : function_(std::move(function)) {}

    /// @brief Runs `task`: a synchronous `F` at once, on the calling thread, its result or
    ///        exception completing `done`; an asynchronous `F` is handed `done` to complete later.
    template <class Task, class R>
    void execute(Task&& task, completion<R> done) {
        if constexpr (std::is_invocable_v<F&, Task&&> || stop_token_invocable<F&, Task&&>) {
            done.complete(detail::invoke_to_result<R>([&]() -> decltype(auto) {
                return detail::invoke_with_stop(done.stop_token(), function_,
                                                std::forward<Task>(task));
            }));
        } else {
            static_assert(std::is_invocable_v<F&, Task&&, completion<R>&&>,
                          "F must be callable as F(task) or F(task, btq::completion<R>&&)");
            try {
                std::invoke(function_, std::forward<Task>(task), std::move(done));
            } catch (...) {
                if (done.pending()) {
                    done.set_exception(std::current_exception());
                }
            }
        }
    }

    /// @brief The wrapped function.
    [[nodiscard]] F& function() noexcept { return function_; }

  private:
    F function_;
};

/// @brief A callable_executor whose asynchronous function completes with a value of type `R`.
template <class R, class F>
[[nodiscard]] callable_executor<F, R> make_async_executor(F function) {
    return callable_executor<F, R>(std::move(function));
}

} // namespace btq
