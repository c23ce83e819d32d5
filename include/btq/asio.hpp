/// @file asio.hpp
/// @brief Optional Boost.Asio binding: btq::async_submit() submits a task to a
///        bounded_task_queue and completes any Asio completion token (use_awaitable, use_future,
///        deferred, a plain callback, ...) with the task's outcome.
///
/// This header is not included by btq.hpp; include it explicitly and make Boost's headers
/// (1.81 or later, header-only Asio) available, e.g. `target_link_libraries(app PRIVATE btq::btq
/// Boost::headers)`. Only the stable Asio API is used (no `boost::asio::experimental`).
///
/// @code
/// #include <btq/asio.hpp>
///
/// btq::bounded_task_queue<std::function<int()>> queue({.max_concurrency = 4, .capacity = 100});
///
/// boost::asio::awaitable<void> handle(request r) {
///     try {
///         int answer = co_await btq::async_submit(queue, [r] { return work(r); },
///                                                 boost::asio::use_awaitable);
///         reply(answer);
///     } catch (const btq::task_not_run& e) { // full, closed, cleared, expired
///         reply_503(e.what());
///     }
/// }
/// @endcode
///
/// Semantics, in short:
/// - **Completion signature**: `void(std::exception_ptr, R)` for a task returning `R`,
///   `void(std::exception_ptr)` for a task returning nothing. The exception pointer is null on
///   success; otherwise it holds the task's own exception, or one derived from btq::task_not_run
///   when the task never started. On failure the `R` argument is value-initialised, so `R` must
///   be default-initialisable (as with `boost::asio::co_spawn`).
/// - **Refusals never throw from async_submit()**: queue_full, queue_closed and task_expired
///   (and anything else `queue.submit()` throws, such as std::bad_alloc) arrive through the
///   completion, exactly like queue_cleared, task_displaced and a waiting task's expiry. The only
///   exception async_submit() itself can throw is std::bad_alloc when the operation's own state
///   cannot be allocated (the token's handler is then destroyed uncalled, as in Asio).
/// - **Where the handler runs**: always *posted* (`boost::asio::post`) to the handler's
///   associated executor, never invoked inside async_submit() and never on a queue worker
///   thread. A coroutine therefore resumes on its own executor (its strand, if it has one). A
///   plain callback with no associated executor runs on Asio's `system_executor`; bind one with
///   `boost::asio::bind_executor` to choose the thread.
/// - **Work tracking**: from initiation until the handler has been posted, the operation holds
///   outstanding work on the handler's associated executor (`boost::asio::make_work_guard`), so
///   `io_context::run()` does not return while a submitted task waits or runs.
/// - **Ordering with the queue**: the handler is posted while the task still holds its slot (the
///   queue answers before it frees the slot), so a handler may run before the slot is free, and
///   when drain() returns every handler has been posted but not necessarily run.
/// - **overflow_policy::block** blocks the initiating thread, as submit() does (up to
///   `block_timeout`). On an event loop thread prefer `reject` or `drop_oldest`.
/// - **No per-operation cancellation**: a cancellation slot associated with the handler is
///   ignored. A started task cannot be withdrawn from its executor; a waiting one could in
///   principle, but the queue has no per-task withdrawal, so neither is offered. Use a queue
///   deadline (`btq::submit_options`), clear() or shutdown() to bound how long a caller waits.
/// - **Lifetimes**: the queue must outlive the initiation (with lazy tokens such as
///   use_awaitable and deferred, initiation happens when the operation is awaited or launched),
///   and the handler's execution context must outlive the operation: drain or shut the queue
///   down before destroying the `io_context`.
/// - **GCC 12 and braced temporaries**: in a coroutine, GCC 12 corrupts a *braced aggregate
///   temporary* holding a std::string when it is an argument inside a `co_await` expression
///   (its short-string pointer is left pointing at the temporary's old place; reproduced with
///   plain Asio operations, no btq involved). Build such a task in a named variable first:
///   `job task{...}; co_await btq::async_submit(queue, std::move(task), use_awaitable);`.
#pragma once

#include <concepts>
#include <exception>
#include <memory>
#include <type_traits>
#include <utility>

#include <boost/asio/append.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>

#include "bounded_task_queue.hpp"
#include "executor.hpp"
#include "options.hpp"

namespace btq {

namespace detail {

template <class R>
struct asio_signature {
    using type = void(std::exception_ptr, R);
};
template <>
struct asio_signature<void> {
    using type = void(std::exception_ptr);
};

/// The state of one async_submit() operation: the handler and the outstanding work that keeps
/// its executor alive. Owned by the initiation until the queue admits the task, then by the
/// queue callback, which is called exactly once for an admitted task.
template <class Handler, class R>
class asio_submit_op {
  public:
    explicit asio_submit_op(Handler handler)
        : work_(boost::asio::make_work_guard(handler)), handler_(std::move(handler)) {}

    /// Posts the handler with `result` to its associated executor and destroys the operation.
    static void complete(std::unique_ptr<asio_submit_op> self, task_result<R>&& result) {
        auto executor = self->work_.get_executor();
        Handler handler = std::move(self->handler_);
        auto work = std::move(self->work_); // keeps the executor busy until post() has run
        self.reset();
        if constexpr (std::is_void_v<R>) {
            boost::asio::post(executor,
                              boost::asio::append(std::move(handler), take_error(result)));
        } else if (result.has_value()) {
            boost::asio::post(executor,
                              boost::asio::append(std::move(handler), std::exception_ptr(),
                                                  std::move(result).value()));
        } else {
            boost::asio::post(executor,
                              boost::asio::append(std::move(handler), take_error(result), R{}));
        }
    }

  private:
    /// The error of `result`, leaving `result` without a reference to it, so the queue thread
    /// does not keep the exception alive through its bookkeeping after the handler is posted.
    static std::exception_ptr take_error(task_result<R>& result) noexcept {
        std::exception_ptr error = result.error();
        task_result<R> emptied(std::move(result)); // result's exception_ptr is now null
        return error;
    }

    boost::asio::executor_work_guard<boost::asio::associated_executor_t<Handler>> work_;
    Handler handler_;
};

/// The callback handed to bounded_task_queue::submit(): a pointer to the operation.
template <class Op, class R>
struct asio_submit_callback {
    Op* op;
    void operator()(task_result<R>&& result) const noexcept {
        try {
            Op::complete(std::unique_ptr<Op>(op), std::move(result));
        } catch (...) {
            // Only a failed post() (std::bad_alloc) gets here, and it cannot be reported to
            // anyone: the handler is gone. As with an exception escaping a std::thread, the
            // program ends rather than leave its caller waiting forever.
            std::terminate();
        }
    }
};

/// The initiation object passed to boost::asio::async_initiate.
template <class Task, class Executor>
struct initiate_async_submit {
    bounded_task_queue<Task, Executor>* queue;

    template <class Handler>
    void operator()(Handler&& handler, Task task, const submit_options& options) const {
        using result_type = typename bounded_task_queue<Task, Executor>::result_type;
        using op_type = asio_submit_op<std::decay_t<Handler>, result_type>;
        auto op = std::make_unique<op_type>(std::forward<Handler>(handler));
        try {
            queue->submit(std::move(task), asio_submit_callback<op_type, result_type>{op.get()},
                          options);
        } catch (...) {
            // Refused (the queue guarantees the callback is never called when submit throws):
            // the operation is still ours, and answers through its handler.
            op_type::complete(std::move(op), task_result<result_type>(std::current_exception()));
            return;
        }
        // Admitted: the callback owns the operation now (it may already have run and freed it).
        static_cast<void>(op.release());
    }
};

} // namespace detail

/// @brief The Asio completion signature of async_submit() for a task whose result is `R`:
///        `void(std::exception_ptr, R)`, or `void(std::exception_ptr)` when `R` is void.
/// @code
/// static_assert(std::is_same_v<btq::asio_submit_signature<int>, void(std::exception_ptr, int)>);
/// @endcode
template <class R>
using asio_submit_signature = typename detail::asio_signature<R>::type;

/// @brief Submits `task` to `queue` with per-task `options` (priority, deadline) and completes
///        `token` with the outcome: `(std::exception_ptr, R)`, or `(std::exception_ptr)` for a
///        void task.
///
/// Initiation calls `queue.submit(task, callback, options)`. Refusals (btq::queue_full,
/// btq::queue_closed, btq::task_expired) never throw from here: like every other outcome they
/// arrive through the completion, posted to the handler's associated executor. Outstanding
/// work is held on that executor until then. Per-operation cancellation is not supported.
/// See the file comment for the full semantics.
///
/// @param queue   the queue; must outlive the initiation (for use_awaitable: the co_await)
/// @param task    the task, moved into the queue
/// @param options priority and queue deadline of this task
/// @param token   any Asio completion token for asio_submit_signature<R>
/// @return whatever `token` makes of the operation (void for a callback, `awaitable<R>` for
///         use_awaitable, `std::future<R>` for use_future, ...)
/// @code
/// // inside a coroutine: a high-priority task that must start within 2 s
/// int n = co_await btq::async_submit(queue, [] { return count_rows(); },
///                                    btq::submit_options::within(std::chrono::seconds(2), 10),
///                                    boost::asio::use_awaitable);
/// @endcode
template <class Task, class Executor,
          boost::asio::completion_token_for<
              asio_submit_signature<typename bounded_task_queue<Task, Executor>::result_type>>
              CompletionToken>
auto async_submit(bounded_task_queue<Task, Executor>& queue, std::type_identity_t<Task> task,
                  const submit_options& options, CompletionToken&& token) {
    using result_type = typename bounded_task_queue<Task, Executor>::result_type;
    static_assert(std::is_void_v<result_type> || std::default_initializable<result_type>,
                  "btq::async_submit: the task's result type must be default-initialisable "
                  "(the completion passes a value-initialised R along with an error)");
    return boost::asio::async_initiate<CompletionToken, asio_submit_signature<result_type>>(
        detail::initiate_async_submit<Task, Executor>{&queue}, token, std::move(task), options);
}

/// @brief Submits `task` to `queue` with default options and completes `token` with the
///        outcome: `(std::exception_ptr, R)`, or `(std::exception_ptr)` for a void task.
///
/// The same as the overload taking btq::submit_options, with `submit_options{}`.
/// @code
/// // a coroutine: resumes on its own executor with the value, or throws the error
/// int answer = co_await btq::async_submit(queue, [] { return 6 * 7; },
///                                         boost::asio::use_awaitable);
///
/// // a callback, run on the io_context's thread
/// btq::async_submit(queue, [] { return 6 * 7; },
///                   boost::asio::bind_executor(io, [](std::exception_ptr error, int answer) {
///                       if (!error) use(answer);
///                   }));
///
/// // a future
/// std::future<int> f = btq::async_submit(queue, [] { return 6 * 7; }, boost::asio::use_future);
/// @endcode
template <class Task, class Executor,
          boost::asio::completion_token_for<
              asio_submit_signature<typename bounded_task_queue<Task, Executor>::result_type>>
              CompletionToken>
auto async_submit(bounded_task_queue<Task, Executor>& queue, std::type_identity_t<Task> task,
                  CompletionToken&& token) {
    return async_submit(queue, std::move(task), submit_options{},
                        std::forward<CompletionToken>(token));
}

} // namespace btq
