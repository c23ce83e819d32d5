/// @file options.hpp
/// @brief How a queue is bounded (queue_options) and how one task is submitted (submit_options).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>

#include "observer.hpp"
#include "task_key.hpp"

namespace btq {

/// @brief Clock used for every deadline and duration in btq.
using clock = std::chrono::steady_clock;

/// @brief What submit() does when `capacity` tasks are already waiting.
enum class overflow_policy {
    /// Fail the new task with btq::queue_full. The default: overload is answered at once.
    reject,
    /// Fail the oldest waiter of the lowest waiting priority with btq::task_displaced and admit the
    /// new task. A new task whose priority is below every waiter's is itself refused (queue_full):
    /// less important work never displaces more important work.
    drop_oldest,
    /// Make the submitting thread wait for room, up to queue_options::block_timeout, then fail
    /// with btq::queue_full.
    /// @warning Deadlock hazard: a task that submits to its own queue with this policy can wait
    /// forever when every running slot is taken by such tasks and the queue is full. Give
    /// block_timeout a value, or never submit to a queue from inside its own tasks.
    block,
};

/// @brief At most `starts` task starts per `per`, with bursts of up to `burst` (a token bucket:
///        it holds at most `burst` tokens, gains one every `per / starts`, and each start takes
///        one). Applied in addition to the concurrency bound (queue_options::rate).
/// @code
/// btq::queue_options options{.max_concurrency = 8,
///                            .rate = btq::rate_limit{.starts = 100, .per =
///                            std::chrono::seconds(1)}};
/// @endcode
struct rate_limit {
    /// Starts allowed per `per`. At least 1.
    std::size_t starts = 1;
    /// The interval `starts` are counted over. Above zero.
    clock::duration per = std::chrono::seconds(1);
    /// Most starts at once after a quiet spell (the bucket's size); 0 means `starts`. A bucket
    /// starts full.
    std::size_t burst = 0;
};

/// @brief How a failed task is tried again (submit_options::retry).
///
/// The n-th retry waits `backoff * multiplier^(n-1)`, at most `max_backoff`, less a random part
/// of up to `jitter` of it (so retries of many tasks that failed together spread out), without a
/// slot: the task gives its slot (and its gate's permit) back, and re-enters the queue at its
/// priority (behind the tasks waiting there) when the wait is over.
/// @code
/// queue.submit(task, {.retry = btq::retry_policy{.attempts = 3,
///                                                .backoff = std::chrono::milliseconds(50)}});
/// @endcode
struct retry_policy {
    /// Attempts in all, the first one included: 1 tries once (no retry). At least 1.
    std::size_t attempts = 3;
    /// The wait before the first retry.
    clock::duration backoff = std::chrono::milliseconds(100);
    /// Each later wait is this many times the one before. At least 1.
    double multiplier = 2.0;
    /// The longest wait.
    clock::duration max_backoff = std::chrono::seconds(30);
    /// 0 to 1: each wait is drawn uniformly from [wait * (1 - jitter), wait].
    double jitter = 0.5;
    /// Which failures are tried again; empty: every one. A btq::task_not_run (the task never
    /// ran: cancelled, expired, cleared, refused by a gate, not startable) never is, nor a
    /// failure after the caller's stop was requested, nor one in a closed queue.
    std::function<bool(const std::exception_ptr&)> retry_on{};
};

/// @brief The bounds and policies of a bounded_task_queue.
/// @code
/// btq::queue_options options{.max_concurrency = 4, .capacity = 100,
///                            .overflow = btq::overflow_policy::reject};
/// @endcode
struct queue_options {
    /// Tasks inside the executor at once. At least 1.
    std::size_t max_concurrency = 4;
    /// Tasks allowed to wait for a slot. 0 means a task either starts at once or overflows.
    std::size_t capacity = 1024;
    /// What happens when `capacity` tasks are waiting.
    overflow_policy overflow = overflow_policy::reject;
    /// With overflow_policy::block: how long submit() waits for room. Empty = forever.
    std::optional<clock::duration> block_timeout{};
    /// Queue deadline applied to every task submitted without one: a task still waiting this
    /// long after submission fails with btq::task_expired and never starts. Empty = none.
    std::optional<clock::duration> queue_timeout{};
    /// Start paused: tasks are admitted but none starts until resume().
    bool start_paused = false;
    /// Run timeout applied to every task submitted without one (see submit_options::run_timeout).
    /// Empty = none.
    std::optional<clock::duration> run_timeout{};
    /// At most so many starts per interval (see btq::rate_limit), on top of `max_concurrency`:
    /// a task that could start but finds no token waits in its place (priority and FIFO order
    /// kept, deadlines and stop tokens still apply) until the next token. Empty = no limit.
    std::optional<rate_limit> rate{};
    /// Told of every task's admission, refusal, start, end, or leaving unstarted (see
    /// btq::queue_observer); shared, so it may outlive the queue. Empty = none, at no cost.
    std::shared_ptr<queue_observer> observer{};
    /// Most tasks of one key (submit_options::key) running at once; 0 = no limit but
    /// max_concurrency. A waiting task whose key is at its limit is passed over (the next key
    /// takes its turn); it keeps its place in its key's lane.
    std::size_t max_per_key = 0;
    /// Most tasks of one key waiting at once; 0 = no limit but capacity. Beyond it the task is
    /// refused with btq::queue_full (whatever the overflow policy), so one key cannot fill the
    /// queue.
    std::size_t capacity_per_key = 0;
};

/// @brief Per-task options for submit() and try_submit().
/// @code
/// queue.submit(task, btq::submit_options{.priority = 10});
/// queue.submit(task, btq::submit_options::within(std::chrono::seconds(2)));
/// @endcode
struct submit_options {
    /// Higher starts first; equal priorities start in submission order (FIFO).
    int priority = 0;
    /// Queue deadline: if the task has not started by then it fails with btq::task_expired and
    /// never starts. Overrides queue_options::queue_timeout. Empty = use the queue's default.
    std::optional<clock::time_point> deadline{};
    /// Cancellation. Stop requested while the task waits: it is answered at once with
    /// btq::task_cancelled, never starts, and frees its place. Requested while it runs: the
    /// executor is told through the task's completion (completion::stop_token()); a task that
    /// takes a std::stop_token as its last argument sees it stopped (thread_executor,
    /// callable_executor: cooperative), the process executors stop the process or worker
    /// (btq::cancellable_executor). An empty token (the default) costs nothing.
    std::stop_token stop{};
    /// Run timeout: this long after the task started, its stop token is requested and the caller
    /// is answered at once with btq::task_timeout. The slot stays taken until the task really
    /// returns (its late outcome is dropped), so never more than max_concurrency run. Overrides
    /// queue_options::run_timeout. Empty = the queue's default.
    std::optional<clock::duration> run_timeout{};
    /// How much of `max_concurrency` the task holds while it runs (at least 1, at most the
    /// queue's max_concurrency and 65,535: a task that could never start is refused at submit
    /// with std::invalid_argument). A waiting task is never overtaken by a lighter one of its
    /// priority: the first in line waits until enough is free, and the ones behind it wait too
    /// (so it starts after at most the running tasks finish). `capacity` counts tasks, whatever
    /// their weight. If max_concurrency is lowered below a waiting task's weight, the task
    /// starts once nothing else runs and holds the whole bound.
    std::size_t weight = 1;
    /// Whose task it is (a client, a tenant): waiting tasks of one priority take turns by key,
    /// round robin, one start per key per round, FIFO within a key; tasks without a key (the
    /// default) take one turn per round together, FIFO among them. Priorities still come first.
    /// A key costs a small record while it has tasks waiting or running, nothing after.
    task_key key{};
    /// A caller-chosen id (0 = none) by which set_priority() finds the task while it waits. Ids
    /// need not be unique: set_priority() moves every waiting task with the id.
    std::uint64_t id = 0;
    /// Try a failed task again (see btq::retry_policy); empty (the default): never. The caller
    /// gets one answer, the last attempt's; the callback form's task_result says how many
    /// attempts there were (task_result::attempts()). Needs a copyable task (refused at submit
    /// with std::invalid_argument otherwise): each attempt runs a copy.
    std::optional<retry_policy> retry{};

    /// @brief Options whose deadline is `timeout` from now.
    [[nodiscard]] static submit_options within(clock::duration timeout, int priority = 0) {
        return submit_options{.priority = priority, .deadline = clock::now() + timeout};
    }
};

} // namespace btq
