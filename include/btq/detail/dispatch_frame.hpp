/// @file dispatch_frame.hpp
/// @brief Thread-local bookkeeping that keeps dispatch from recursing and lets a finishing task
///        hand its slot's next task to the same thread.
#pragma once

namespace btq::detail {

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

/// The frame of `queue` on this thread, or null.
[[nodiscard]] inline dispatch_frame* find_dispatch_frame(const void* queue) noexcept {
    for (dispatch_frame* frame = innermost_dispatch_frame; frame != nullptr; frame = frame->outer) {
        if (frame->queue == queue) {
            return frame;
        }
    }
    return nullptr;
}

/// Set by a queue, on the thread that is completing a task, while it hands the task that takes
/// the freed slot to its executor (the value is that executor's address). An executor may then
/// run the new task on this thread right after the current one, instead of queueing it and
/// waking another thread. Anywhere else (a submit from a callback, say) it is null.
inline thread_local const void* handoff_target = nullptr;

} // namespace btq::detail
