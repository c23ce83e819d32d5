/// @file event_thread.hpp
/// @brief event_thread: the thread a process executor's event loop runs on, its poller, and the
///        list through which other threads hand the loop work. Both process executors hold one
///        as a member, as Asio's thread_pool holds its scheduler; each keeps its own state
///        machine (children, workers) and its own loop.
///
/// The class is declared first, with its contracts; the definitions follow in the order an item
/// travels: the thread starts, an item is watched and handed over, the loop waits and takes it,
/// a cancel or a stop comes.
#pragma once

#include <sys/epoll.h>

#include <atomic>
#include <concepts>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <stop_token>
#include <thread>
#include <utility>
#include <vector>

#include "event_loop.hpp"

namespace btq::process {

/// What an event_thread hands over: anything with a stop_watch named `stop` (a child, a
/// request), which watch_stop() arms and hand_over() looks at.
template <class Item>
concept stop_watched_item = requires(Item& item) {
    { item.stop } -> std::same_as<stop_watch&>;
};

/// @brief The event thread of a process executor: one thread, its poller, and the hand-over
///        list, with the executor's stop, cancel and "a stop token was requested" flags.
///
/// The owner runs its own loop on the thread (start()). Other threads build an `Item`, arm its
/// stop watch (watch_stop()) and hand it over (hand_over(), try_hand_over()), which wakes the
/// poller if the loop is waiting; the loop, after each wait(), take()s what was handed over,
/// together with the flags set since. The loop itself decides when to return: typically once take()
/// has reported `stopping` and nothing it owns is left, and pending() says nothing is still in
/// transit.
///
/// @par Thread Safety
/// - Any thread, the loop's included (a completion that submits again runs there): watch_stop(),
///   hand_over(), try_hand_over(), request_cancel(), stopping(), owns_this_thread(), and
///   `poller().wake()`.
/// - The loop only: wait(), take(), pending(), and the rest of poller() (add, watch, remove).
/// - The owner's constructor calls start() once, last, when everything the loop uses exists;
///   its destructor calls stop_and_join() once, first, never on the loop thread. Nothing else
///   may race stop_and_join().
///
/// @code
/// class my_executor {
///   public:
///     my_executor() { events_.start([this] { run_loop(); }); }
///     ~my_executor() { events_.stop_and_join(); }
///     void execute(job j) {
///         auto item = std::make_unique<entry>(std::move(j));
///         events_.watch_stop(*item, item->done.stop_token());
///         if (!events_.try_hand_over(item)) item->done.set_exception(...); // stopping
///     }
///   private:
///     void run_loop(); // events_.wait(...), then events_.take(taken_), ...
///     process::event_thread<entry> events_; // before the containers of entries it points into
/// };
/// @endcode
///
/// Items hold stop watches that point into this object: declare it before the owner's
/// containers of items, so that they are destroyed first.
template <class Item>
    requires stop_watched_item<Item>
class event_thread {
  public:
    using item_pointer = std::unique_ptr<Item>; ///< how items are handed over and owned

    /// What take() hands the loop. Kept by the loop across calls: take() clears it and reuses
    /// its vectors' storage, so handing over allocates nothing once the lists have grown.
    struct taken {
        /// Handed over since the last take(), oldest first (after `cancelled`).
        std::vector<item_pointer> arrived;
        /// Handed over before the last request_cancel() and not yet taken, oldest first.
        std::vector<item_pointer> cancelled;
        /// stop_and_join() has begun: try_hand_over() refuses from now on.
        bool stopping = false;
        /// request_cancel() was called since the last take().
        bool cancel = false;
        /// The stop token of some item (taken now or earlier) was requested since the last
        /// take(): look for the items whose `stop.requested()` is true.
        bool stop_requested = false;
    };

    /// Creates the poller; the thread is not started yet.
    /// @throws std::system_error when epoll or the eventfd cannot be created
    event_thread() = default;
    event_thread(const event_thread&) = delete;
    event_thread& operator=(const event_thread&) = delete;
    event_thread(event_thread&&) = delete;
    event_thread& operator=(event_thread&&) = delete;
    /// @pre stop_and_join() has returned, or start() was never called.
    ~event_thread() = default;

    /// Starts the thread, which blocks SIGPIPE for itself (it writes to children's pipes) and
    /// runs `loop()` until it returns.
    /// @pre Called once, from the owner's constructor, after everything `loop` uses exists.
    template <class Loop>
    void start(Loop loop);

    /// True on the event thread (where the owner's completions, and so callbacks, run).
    [[nodiscard]] bool owns_this_thread() const noexcept {
        return loop_id_.load(std::memory_order_relaxed) == std::this_thread::get_id();
    }

    /// Arms `item.stop` on `token`: a stop request (any thread) then sets the item's flag and
    /// take()'s `stop_requested`, and wakes the poller. Call it before handing `item` over.
    void watch_stop(Item& item, const std::stop_token& token);

    /// Hands `item` to the loop, which must take() it even when stopping() (the loop checks
    /// pending() before it returns). Wakes the poller if the loop is inside wait(); otherwise
    /// (busy, or this is the event thread) the loop takes it before it waits again, and no
    /// wake-up is spent on it.
    void hand_over(item_pointer item);

    /// hand_over(), unless stop_and_join() has begun: then returns false and leaves `item` with
    /// the caller, to be answered outside any lock of this object (the answer may submit again).
    [[nodiscard]] bool try_hand_over(item_pointer& item);

    /// Everything handed over so far, and what the loop already holds, is to be cancelled: the
    /// next take() reports `cancel` and moves the items handed over before this call into
    /// `cancelled`. Wakes the poller.
    void request_cancel();

    /// Whether stop_and_join() has begun.
    [[nodiscard]] bool stopping() const;

    /// Moves into `out` (cleared first) what was handed over since the last call, and the flags
    /// set since (each reported once). The loop calls it after every wait.
    void take(taken& out);

    /// Whether items were handed over that take() has not taken yet.
    [[nodiscard]] bool pending() const;

    /// The loop's wait: poller().wait(events, timeout_ms, woken), during which a hand-over
    /// wakes the poller. If an item was handed over since the loop last waited (it saw no
    /// wake-up), returns at once, and sets `*woken` as a wake-up would. The loop take()s after
    /// every wait.
    int wait(std::span<epoll_event> events, int timeout_ms, bool* woken = nullptr);

    /// The epoll set the loop watches descriptors in (wait through wait()), with the eventfd
    /// that wakes it.
    [[nodiscard]] process::poller& poller() noexcept { return poller_; }

    /// Tells the loop to stop (take() reports `stopping`; try_hand_over() refuses), wakes it and
    /// joins the thread.
    /// @pre Not on the event thread; called once, from the owner's destructor.
    void stop_and_join();

  private:
    void push_locked(item_pointer item);
    void wake_unless_on_loop() noexcept;

    process::poller poller_;
    std::atomic<bool> stop_requested_{false}; // the stop watches' `any` flag

    mutable std::mutex mutex_; // guards incoming_, cancelled_, stopping_ and cancel_requested_
    std::vector<item_pointer> incoming_;
    std::vector<item_pointer> cancelled_;
    bool stopping_ = false;
    bool cancel_requested_ = false;

    std::atomic<bool> waiting_{false}; // the loop is in wait(): a hand-over must wake it
    std::atomic<std::thread::id> loop_id_{};
    std::thread thread_;
};

// ---- definitions, in the order an item travels -------------------------------------------------

template <class Item>
    requires stop_watched_item<Item>
template <class Loop>
void event_thread<Item>::start(Loop loop) {
    thread_ = std::thread([this, loop = std::move(loop)]() mutable {
        loop_id_.store(std::this_thread::get_id());
        // Writing to a pipe whose reader has exited raises SIGPIPE for the writing thread: kept
        // blocked here (and consumed by write_some()), it never reaches the process.
        block_sigpipe_on_this_thread();
        loop();
    });
}

template <class Item>
    requires stop_watched_item<Item>
void event_thread<Item>::watch_stop(Item& item, const std::stop_token& token) {
    item.stop.watch(token, stop_requested_, poller_);
}

template <class Item>
    requires stop_watched_item<Item>
void event_thread<Item>::hand_over(item_pointer item) {
    {
        std::lock_guard lock(mutex_);
        push_locked(std::move(item));
    }
    wake_unless_on_loop();
}

template <class Item>
    requires stop_watched_item<Item>
bool event_thread<Item>::try_hand_over(item_pointer& item) {
    {
        std::lock_guard lock(mutex_);
        if (stopping_) {
            return false;
        }
        push_locked(std::move(item));
    }
    wake_unless_on_loop();
    return true;
}

template <class Item>
    requires stop_watched_item<Item>
void event_thread<Item>::push_locked(item_pointer item) {
    // A stop requested before this push may have been looked for before the item was there to
    // be found: have it looked for again, now that it is.
    if (item->stop.requested()) {
        stop_requested_.store(true);
    }
    incoming_.push_back(std::move(item));
}

template <class Item>
    requires stop_watched_item<Item>
void event_thread<Item>::wake_unless_on_loop() noexcept {
    // After the push and its unlock: a loop that set waiting_ before it looked at the list
    // either found the item there or is woken now.
    if (!owns_this_thread() && waiting_.load()) {
        poller_.wake();
    }
}

template <class Item>
    requires stop_watched_item<Item>
int event_thread<Item>::wait(std::span<epoll_event> events, int timeout_ms, bool* woken) {
    waiting_.store(true); // before the look at the list: see wake_unless_on_loop()
    if (pending()) {      // handed over while the loop was busy: no wake-up was spent on it
        if (woken != nullptr) {
            *woken = true;
        }
        timeout_ms = 0;
    }
    const int ready = poller_.wait(events, timeout_ms, woken);
    waiting_.store(false, std::memory_order_relaxed);
    return ready;
}

template <class Item>
    requires stop_watched_item<Item>
void event_thread<Item>::take(taken& out) {
    out.arrived.clear();
    out.cancelled.clear();
    std::lock_guard lock(mutex_);
    out.arrived.swap(incoming_); // incoming_ keeps the storage of the last batch
    out.cancelled.swap(cancelled_);
    out.stopping = stopping_;
    out.cancel = std::exchange(cancel_requested_, false);
    out.stop_requested = stop_requested_.exchange(false);
}

template <class Item>
    requires stop_watched_item<Item>
bool event_thread<Item>::pending() const {
    std::lock_guard lock(mutex_);
    return !incoming_.empty() || !cancelled_.empty();
}

template <class Item>
    requires stop_watched_item<Item>
void event_thread<Item>::request_cancel() {
    {
        std::lock_guard lock(mutex_);
        cancel_requested_ = true;
        for (item_pointer& item : incoming_) {
            cancelled_.push_back(std::move(item));
        }
        incoming_.clear();
    }
    poller_.wake();
}

template <class Item>
    requires stop_watched_item<Item>
bool event_thread<Item>::stopping() const {
    std::lock_guard lock(mutex_);
    return stopping_;
}

template <class Item>
    requires stop_watched_item<Item>
void event_thread<Item>::stop_and_join() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    poller_.wake();
    if (thread_.joinable()) {
        thread_.join();
    }
}

} // namespace btq::process
