// btq::async_submit (include/btq/asio.hpp): use_awaitable, callbacks, use_future, refusals, work
// tracking, strands, per-operation cancellation.
#include <btq/asio.hpp>
#include <btq/btq.hpp>
#include <btq/gates/memory_gate.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include <catch2/catch.hpp>

#include "../library/test_support.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;

#if defined(__SANITIZE_THREAD__)
#define BTQ_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define BTQ_TEST_TSAN 1
#endif
#endif
#ifdef BTQ_TEST_TSAN
// ThreadSanitizer cannot see the reference counts of std::exception_ptr and of the message of
// std::runtime_error / std::logic_error: they are atomics inside libstdc++.so, which is not
// instrumented. When the last reference to an exception is dropped on a queue or Asio thread
// (a use_future promise, say) after the test thread has caught it and read what(), TSan reports
// the free as racing with that read, although the atomic count orders them. Only reports whose
// stack holds one of these three libstdc++ functions are silenced.
extern "C" const char* __tsan_default_suppressions() { // NOLINT(bugprone-reserved-identifier)
    return "race:std::__exception_ptr::exception_ptr::_M_release\n"
           "race:std::runtime_error::~runtime_error\n"
           "race:std::logic_error::~logic_error\n";
}
#endif

namespace {

using int_queue = btq::bounded_task_queue<std::function<int()>>;
using void_queue = btq::bounded_task_queue<std::function<void()>>;
/// Tasks that take a std::stop_token: thread_executor hands them theirs.
using stoppable_queue = btq::bounded_task_queue<std::function<int(std::stop_token)>>;

using btq_test::concurrency_probe;
using btq_test::eventually;
using btq_test::gate;

/// Spawns `coroutine` on `io`; when it ends, `ended` is set and `ended_with` holds the
/// exception it ended with (null if none).
template <class Coroutine>
void spawn(asio::io_context& io, Coroutine coroutine, std::exception_ptr& ended_with, bool& ended) {
    asio::co_spawn(io, std::move(coroutine), [&ended_with, &ended](std::exception_ptr e) {
        ended_with = std::move(e);
        ended = true;
    });
}

/// What a stoppable task does: waits (up to 10 s) for its stop token, then returns 7 if it saw
/// the stop and 0 if it did not.
int wait_for_stop(const std::stop_token& stop) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!stop.stop_requested() && std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return stop.stop_requested() ? 7 : 0;
}

/// A queue of max_concurrency 1 whose only slot is taken until release() (or the destructor):
/// what is submitted next waits.
class occupied_queue {
  public:
    occupied_queue()
        : blocker_(queue.submit([this] {
              gate_.wait();
              return 0;
          })) {}
    occupied_queue(const occupied_queue&) = delete;
    occupied_queue& operator=(const occupied_queue&) = delete;
    ~occupied_queue() { gate_.open(); }
    /// Frees the slot and waits for the blocking task to end.
    void release() {
        gate_.open();
        static_cast<void>(blocker_.get());
    }

    gate gate_;
    int_queue queue{btq::queue_options{.max_concurrency = 1, .capacity = 4}};

  private:
    std::future<int> blocker_;
};

} // namespace

TEST_CASE("use_awaitable returns the task's value and resumes on the io_context's thread",
          "[asio]") {
    int_queue queue({.max_concurrency = 2});
    asio::io_context io;
    std::thread::id task_thread;
    std::thread::id resumed_thread;
    int value = 0;
    std::exception_ptr error;
    bool ended = false;
    spawn(
        io,
        [&]() -> asio::awaitable<void> {
            value = co_await btq::async_submit(
                queue,
                [&] {
                    task_thread = std::this_thread::get_id();
                    return 42;
                },
                asio::use_awaitable);
            resumed_thread = std::this_thread::get_id();
        },
        error, ended);
    io.run();

    REQUIRE(ended);
    CHECK_FALSE(error);
    CHECK(value == 42);
    CHECK(resumed_thread == std::this_thread::get_id()); // the thread that ran io.run()
    CHECK(task_thread != std::this_thread::get_id());    // the task ran on a queue thread
}

TEST_CASE("use_awaitable with submit_options passes the priority and deadline to the queue",
          "[asio]") {
    int_queue queue({.max_concurrency = 1, .start_paused = true});
    asio::io_context io;
    std::vector<int> order;
    std::exception_ptr error;
    bool ended = false;
    for (int priority : {1, 5, 3}) {
        spawn(
            io,
            [&, priority]() -> asio::awaitable<void> {
                order.push_back(co_await btq::async_submit(
                    queue, [priority] { return priority; },
                    btq::submit_options{.priority = priority}, asio::use_awaitable));
            },
            error, ended);
    }
    std::exception_ptr expired_error;
    bool expired_ended = false;
    bool expired = false;
    spawn(
        io,
        [&]() -> asio::awaitable<void> {
            try {
                co_await btq::async_submit(
                    queue, [] { return 0; },
                    btq::submit_options{.deadline = btq::clock::now() - std::chrono::seconds(1)},
                    asio::use_awaitable);
            } catch (const btq::task_expired&) {
                expired = true;
            }
        },
        expired_error, expired_ended);
    io.poll(); // runs the coroutines up to their co_await: three tasks wait, one is refused
    REQUIRE(queue.stats().queued == 3);
    queue.resume();
    io.restart();
    io.run();

    CHECK_FALSE(error);
    CHECK(order == std::vector<int>{5, 3, 1});
    CHECK_FALSE(expired_error);
    CHECK(expired);
}

TEST_CASE("use_awaitable with submit_options built in the co_await: keys short and long, a "
          "weight and a retry policy reach the queue intact",
          "[asio]") {
    // GCC 12 copies some coroutine temporaries byte by byte: submit_options must survive that
    // (btq::task_key keeps its text on the heap for it).
    int_queue queue({.max_concurrency = 2, .start_paused = true});
    asio::io_context io;
    std::vector<int> values;
    std::exception_ptr error;
    bool ended = false;
    spawn(
        io,
        [&]() -> asio::awaitable<void> {
            values.push_back(co_await btq::async_submit(
                queue, [] { return 1; }, btq::submit_options{.key = "client-7"},
                asio::use_awaitable));
            values.push_back(co_await btq::async_submit(
                queue, [] { return 2; },
                btq::submit_options{.weight = 2,
                                    .key = "a key far longer than any short string buffer",
                                    .retry = btq::retry_policy{.attempts = 2}},
                asio::use_awaitable));
        },
        error, ended);
    io.poll();
    REQUIRE(queue.stats(4).keys.size() == 1);
    CHECK(queue.stats(4).keys.front().key == btq::task_key("client-7"));
    queue.resume();
    io.restart();
    io.run();
    CHECK_FALSE(error);
    CHECK(ended);
    CHECK(values == std::vector<int>{1, 2});
}

TEST_CASE("a throwing task's exception reaches the coroutine as that exception", "[asio]") {
    int_queue queue({.max_concurrency = 1});
    asio::io_context io;
    std::string message;
    bool saw_not_run = false;
    std::exception_ptr error;
    bool ended = false;
    spawn(
        io,
        [&]() -> asio::awaitable<void> {
            try {
                co_await btq::async_submit(
                    queue, []() -> int { throw std::invalid_argument("boom"); },
                    asio::use_awaitable);
            } catch (const btq::task_not_run&) {
                saw_not_run = true;
            } catch (const std::invalid_argument& e) {
                message = e.what();
            }
        },
        error, ended);
    io.run();

    REQUIRE(ended);
    CHECK_FALSE(error);
    CHECK_FALSE(saw_not_run);
    CHECK(message == "boom");
}

TEST_CASE("a full queue's refusal reaches the coroutine as btq::queue_full", "[asio]") {
    int_queue queue({.max_concurrency = 1, .capacity = 0});
    gate release;
    std::future<int> holder = queue.submit([&] {
        release.wait();
        return 1;
    });
    REQUIRE(eventually([&] { return queue.stats().active == 1; }));

    asio::io_context io;
    bool refused = false;
    bool ran = false;
    std::exception_ptr error;
    bool ended = false;
    spawn(
        io,
        [&]() -> asio::awaitable<void> {
            try {
                co_await btq::async_submit(
                    queue,
                    [&] {
                        ran = true;
                        return 2;
                    },
                    asio::use_awaitable);
            } catch (const btq::queue_full&) {
                refused = true;
            }
        },
        error, ended);
    io.run();
    release.open();

    REQUIRE(ended);
    CHECK_FALSE(error);
    CHECK(refused);
    CHECK(holder.get() == 1);
    CHECK_FALSE(ran);
}

TEST_CASE("a closed queue's refusal reaches the coroutine as btq::queue_closed", "[asio]") {
    int_queue queue({.max_concurrency = 1});
    queue.close();
    asio::io_context io;
    bool refused = false;
    std::exception_ptr error;
    bool ended = false;
    spawn(
        io,
        [&]() -> asio::awaitable<void> {
            try {
                co_await btq::async_submit(
                    queue, [] { return 1; }, asio::use_awaitable);
            } catch (const btq::queue_closed&) {
                refused = true;
            }
        },
        error, ended);
    io.run();

    REQUIRE(ended);
    CHECK_FALSE(error);
    CHECK(refused);
}

TEST_CASE("a waiting task cleared by the queue reaches the coroutine as btq::queue_cleared "
          "with the reason",
          "[asio]") {
    int_queue queue({.max_concurrency = 1, .start_paused = true});
    asio::io_context io;
    std::string reason;
    std::exception_ptr error;
    bool ended = false;
    spawn(
        io,
        [&]() -> asio::awaitable<void> {
            try {
                co_await btq::async_submit(
                    queue, [] { return 1; }, asio::use_awaitable);
            } catch (const btq::queue_cleared& e) {
                reason = e.clear_reason();
            }
        },
        error, ended);
    std::thread runner([&] { io.run(); });
    REQUIRE(eventually([&] { return queue.stats().queued == 1; }));
    CHECK(queue.clear("Server shutting down") == 1);
    runner.join();

    REQUIRE(ended);
    CHECK_FALSE(error);
    CHECK(reason == "Server shutting down");
}

TEST_CASE("a refusal never throws from async_submit and reaches a callback through the "
          "io_context",
          "[asio]") {
    int_queue queue({.max_concurrency = 1});
    queue.close();
    asio::io_context io;
    int calls = 0;
    std::exception_ptr seen;
    int value = -1;
    CHECK_NOTHROW(btq::async_submit(
        queue, [] { return 1; }, asio::bind_executor(io, [&](std::exception_ptr e, int v) {
            ++calls;
            seen = std::move(e);
            value = v;
        })));
    CHECK(calls == 0); // posted, not invoked inside async_submit
    io.run();

    REQUIRE(calls == 1);
    CHECK_THROWS_AS(std::rethrow_exception(seen), btq::queue_closed);
    CHECK(value == 0); // a value-initialised int accompanies the error
}

TEST_CASE("void tasks complete use_awaitable with no value and report their exception", "[asio]") {
    void_queue queue({.max_concurrency = 2});
    asio::io_context io;
    std::atomic<int> ran{0};
    bool failed_as_thrown = false;
    std::exception_ptr error;
    bool ended = false;
    spawn(
        io,
        [&]() -> asio::awaitable<void> {
            co_await btq::async_submit(
                queue, [&] { ran.fetch_add(1); }, asio::use_awaitable);
            co_await btq::async_submit(
                queue, [&] { ran.fetch_add(1); }, btq::submit_options{}, asio::use_awaitable);
            try {
                co_await btq::async_submit(
                    queue, [] { throw std::runtime_error("void failed"); }, asio::use_awaitable);
            } catch (const std::runtime_error& e) {
                failed_as_thrown = std::string(e.what()) == "void failed";
            }
        },
        error, ended);
    io.run();

    REQUIRE(ended);
    CHECK_FALSE(error);
    CHECK(ran.load() == 2);
    CHECK(failed_as_thrown);
}

TEST_CASE("a callback token receives the error pointer and the value on the io_context thread",
          "[asio]") {
    int_queue queue({.max_concurrency = 2});
    asio::io_context io;
    int calls = 0;
    std::exception_ptr seen;
    int value = 0;
    std::thread::id called_on;
    btq::async_submit(
        queue, [] { return 7; }, asio::bind_executor(io, [&](std::exception_ptr e, int v) {
            ++calls;
            seen = std::move(e);
            value = v;
            called_on = std::this_thread::get_id();
        }));
    // The task finishes on a queue thread, but the callback waits for the io_context.
    REQUIRE(queue.drain(std::chrono::seconds(10)));
    CHECK(calls == 0);
    io.run();

    REQUIRE(calls == 1);
    CHECK_FALSE(seen);
    CHECK(value == 7);
    CHECK(called_on == std::this_thread::get_id());
}

TEST_CASE("a synchronous executor's completion is posted and never invoked inside async_submit",
          "[asio]") {
    struct doubler {
        int operator()(int x) const { return 2 * x; }
    };
    btq::bounded_task_queue<int, btq::callable_executor<doubler>> queue(
        {.max_concurrency = 1}, btq::callable_executor(doubler{}));
    asio::io_context io;
    int calls = 0;
    int value = 0;
    btq::async_submit(queue, 21, asio::bind_executor(io, [&](const std::exception_ptr& e, int v) {
                          ++calls;
                          CHECK_FALSE(e);
                          value = v;
                      }));
    CHECK(queue.stats().total_processed == 1); // ran inline, on this thread, during submit
    CHECK(calls == 0);
    io.run();

    CHECK(calls == 1);
    CHECK(value == 42);
}

TEST_CASE("deferred submits nothing until the deferred operation is launched", "[asio]") {
    int_queue queue({.max_concurrency = 1});
    asio::io_context io;
    auto operation = btq::async_submit(
        queue, [] { return 9; }, asio::deferred);
    CHECK(queue.stats().submitted == 0);
    int value = 0;
    std::move(operation)(asio::bind_executor(io, [&](const std::exception_ptr& e, int v) {
        CHECK_FALSE(e);
        value = v;
    }));
    CHECK(queue.stats().submitted == 1);
    io.run();

    CHECK(value == 9);
}

TEST_CASE("use_future delivers the value, the task's exception and a refusal", "[asio]") {
    int_queue queue({.max_concurrency = 1});
    std::future<int> value = btq::async_submit(
        queue, [] { return 5; }, asio::use_future);
    CHECK(value.get() == 5);

    std::future<int> thrown = btq::async_submit(
        queue, []() -> int { throw std::runtime_error("future boom"); }, asio::use_future);
    CHECK_THROWS_WITH(thrown.get(), "future boom");

    // A future may become ready before its task's slot is released (the completion is posted
    // first), so the refusal uses a queue that is certainly full: one task held running.
    int_queue full({.max_concurrency = 1, .capacity = 0});
    gate release;
    std::future<int> holder = btq::async_submit(
        full,
        [&] {
            release.wait();
            return 1;
        },
        asio::use_future);
    REQUIRE(eventually([&] { return full.stats().active == 1; }));
    std::future<int> refused = btq::async_submit(
        full, [] { return 2; }, asio::use_future);
    CHECK_THROWS_AS(refused.get(), btq::queue_full);
    release.open();
    CHECK(holder.get() == 1);

    void_queue voids({.max_concurrency = 1});
    std::atomic<bool> ran{false};
    std::future<void> done = btq::async_submit(
        voids, [&] { ran = true; }, asio::use_future);
    CHECK_NOTHROW(done.get());
    CHECK(ran.load());
}

TEST_CASE("io_context run does not return while a submitted task is still running", "[asio]") {
    int_queue queue({.max_concurrency = 1});
    asio::io_context io;
    gate release;
    std::atomic<bool> task_started{false};
    std::atomic<bool> run_returned{false};
    std::atomic<int> calls{0};
    std::atomic<int> value{0};
    btq::async_submit(
        queue,
        [&] {
            task_started = true;
            release.wait();
            return 3;
        },
        asio::bind_executor(io, [&](const std::exception_ptr& e, int v) {
            if (!e) {
                value = v;
            }
            calls.fetch_add(1);
        }));
    std::thread runner([&] {
        io.run(); // nothing else is queued on io: only the operation's outstanding work
        run_returned = true;
    });
    REQUIRE(eventually([&] { return task_started.load(); }));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    CHECK_FALSE(run_returned.load());
    release.open();
    runner.join();

    CHECK(run_returned.load());
    CHECK(calls.load() == 1);
    CHECK(value.load() == 3);
}

TEST_CASE("1000 concurrent coroutines through a queue of max_concurrency 4 all complete and "
          "never exceed 4 running",
          "[asio]") {
    constexpr int coroutines = 1000;
    int_queue queue({.max_concurrency = 4, .capacity = coroutines});
    asio::io_context io;
    concurrency_probe probe;
    std::atomic<int> completed{0};
    std::atomic<long> sum{0};
    std::atomic<int> failed{0};
    for (int i = 0; i < coroutines; ++i) {
        asio::co_spawn(
            io,
            [&, i]() -> asio::awaitable<void> {
                const int got = co_await btq::async_submit(
                    queue,
                    [&probe, i] {
                        probe.enter();
                        std::this_thread::sleep_for(std::chrono::microseconds(50));
                        probe.leave();
                        return i;
                    },
                    asio::use_awaitable);
                sum.fetch_add(got);
                completed.fetch_add(1);
            },
            [&](const std::exception_ptr& e) {
                if (e) {
                    failed.fetch_add(1);
                }
            });
    }
    std::vector<std::thread> runners;
    runners.reserve(2);
    for (int t = 0; t < 2; ++t) {
        runners.emplace_back([&] { io.run(); });
    }
    for (auto& runner : runners) {
        runner.join();
    }

    CHECK(failed.load() == 0);
    CHECK(completed.load() == coroutines);
    CHECK(sum.load() == static_cast<long>(coroutines) * (coroutines - 1) / 2);
    CHECK(probe.peak.load() <= 4);
    CHECK(probe.peak.load() >= 1);
    // The last completions are posted just before their slots are released: wait for that.
    REQUIRE(queue.drain(std::chrono::seconds(10)));
    const btq::queue_stats stats = queue.stats();
    CHECK(stats.peak_active <= 4);
    CHECK(stats.total_processed == coroutines);
    CHECK(stats.rejected == 0);
}

TEST_CASE("a completion whose handler is bound to a strand runs on that strand", "[asio]") {
    constexpr int operations = 50;
    int_queue queue({.max_concurrency = 4});
    asio::io_context io;
    auto strand = asio::make_strand(io);
    std::atomic<int> on_strand{0};
    std::atomic<int> off_strand{0};
    int serial_counter = 0; // touched only on the strand: a data race here would be caught by TSan
    std::atomic<int> failed{0};
    for (int i = 0; i < operations; ++i) {
        asio::co_spawn(
            strand,
            [&, i]() -> asio::awaitable<void> {
                const int got = co_await btq::async_submit(
                    queue, [i] { return i; }, asio::use_awaitable);
                (strand.running_in_this_thread() ? on_strand : off_strand).fetch_add(1);
                serial_counter += got >= 0 ? 1 : 0;
            },
            [&](const std::exception_ptr& e) {
                if (e) {
                    failed.fetch_add(1);
                }
            });
        btq::async_submit(
            queue, [i] { return i; },
            asio::bind_executor(strand, [&](const std::exception_ptr& e, int) {
                if (e) {
                    failed.fetch_add(1);
                }
                (strand.running_in_this_thread() ? on_strand : off_strand).fetch_add(1);
                ++serial_counter;
            }));
    }
    std::vector<std::thread> runners;
    runners.reserve(4);
    for (int t = 0; t < 4; ++t) {
        runners.emplace_back([&] { io.run(); });
    }
    for (auto& runner : runners) {
        runner.join();
    }

    CHECK(failed.load() == 0);
    CHECK(on_strand.load() == 2 * operations);
    CHECK(off_strand.load() == 0);
    CHECK(serial_counter == 2 * operations);
}

// ---- per-operation cancellation -------------------------------------------------------------

TEST_CASE("a waiting task whose async_submit loses to a timer under || is cancelled at once and "
          "never starts",
          "[asio]") {
    using namespace asio::experimental::awaitable_operators;
    occupied_queue occupied;
    asio::io_context io;
    // Bounds the test: were the task not cancelled, || would wait for it, and it for the slot.
    asio::steady_timer guard(io, std::chrono::seconds(10));
    guard.async_wait([&](const boost::system::error_code&) { occupied.gate_.open(); });
    std::atomic<bool> started{false};
    std::optional<std::size_t> winner;
    btq::queue_stats after{};
    std::exception_ptr error;
    bool ended = false;
    spawn(
        io,
        [&]() -> asio::awaitable<void> {
            asio::steady_timer timer(co_await asio::this_coro::executor,
                                     std::chrono::milliseconds(50));
            const auto result = co_await (btq::async_submit(
                                              occupied.queue,
                                              [&started] {
                                                  started = true;
                                                  return 1;
                                              },
                                              asio::use_awaitable) ||
                                          timer.async_wait(asio::use_awaitable));
            winner = result.index();
            after = occupied.queue.stats(); // the slot is still taken
            guard.cancel();
        },
        error, ended);
    io.run();

    REQUIRE(ended);
    CHECK_FALSE(error);
    REQUIRE(winner.has_value());
    CHECK(*winner == 1); // the timer
    CHECK(after.cancelled == 1);
    CHECK(after.queued == 0); // its place was freed at once
    CHECK(after.active == 1);
    occupied.release();
    REQUIRE(occupied.queue.drain(std::chrono::seconds(10)));
    CHECK_FALSE(started.load());
    CHECK(occupied.queue.stats().total_processed == 1); // only the blocking task ran
}

TEST_CASE("a running task that takes a std::stop_token sees it stopped when its async_submit "
          "loses under ||",
          "[asio]") {
    using namespace asio::experimental::awaitable_operators;
    stoppable_queue queue({.max_concurrency = 1, .capacity = 4});
    asio::io_context io;
    // Completes (cancelled, as_tuple: no throw) as soon as the task has started.
    asio::steady_timer started(io, asio::steady_timer::time_point::max());
    std::atomic<int> task_returned{-1};
    std::optional<std::size_t> winner;
    std::exception_ptr error;
    bool ended = false;
    const auto begin = std::chrono::steady_clock::now();
    spawn(
        io,
        [&]() -> asio::awaitable<void> {
            const auto result = co_await (btq::async_submit(
                                              queue,
                                              [&](const std::stop_token& stop) {
                                                  asio::post(io, [&started] { started.cancel(); });
                                                  task_returned = wait_for_stop(stop);
                                                  return task_returned.load();
                                              },
                                              asio::use_awaitable) ||
                                          started.async_wait(asio::as_tuple(asio::use_awaitable)));
            winner = result.index();
        },
        error, ended);
    io.run(); // || resumes once both have completed, the task too

    REQUIRE(ended);
    CHECK_FALSE(error);
    REQUIRE(winner.has_value());
    CHECK(*winner == 1);
    CHECK(task_returned.load() == 7); // it saw its stop token stopped
    CHECK(std::chrono::steady_clock::now() - begin < std::chrono::seconds(5));
    REQUIRE(queue.drain(std::chrono::seconds(10)));
    CHECK(queue.stats().cancelled == 0); // it ran: not a cancellation of a waiting task
}

TEST_CASE("a callback bound to a cancellation slot: terminal cancels its waiting task with "
          "task_cancelled, total alone is ignored, and each slot is cleared when its operation "
          "completes",
          "[asio]") {
    occupied_queue occupied;
    asio::io_context io;
    asio::cancellation_signal terminal_signal;
    asio::cancellation_signal total_signal;
    std::atomic<bool> cancelled_started{false};
    int terminal_calls = 0;
    std::exception_ptr terminal_error;
    int total_calls = 0;
    std::exception_ptr total_error;
    int total_value = -1;
    btq::async_submit(
        occupied.queue,
        [&cancelled_started] {
            cancelled_started = true;
            return 6;
        },
        asio::bind_cancellation_slot(
            terminal_signal.slot(),
            asio::bind_executor(io, [&](std::exception_ptr e, int /*value*/) {
                ++terminal_calls;
                terminal_error = std::move(e);
            })));
    btq::async_submit(
        occupied.queue, [] { return 5; },
        asio::bind_cancellation_slot(total_signal.slot(),
                                     asio::bind_executor(io, [&](std::exception_ptr e, int value) {
                                         ++total_calls;
                                         total_error = std::move(e);
                                         total_value = value;
                                     })));
    CHECK(terminal_signal.slot().has_handler());
    CHECK(total_signal.slot().has_handler());
    REQUIRE(occupied.queue.stats().queued == 2);

    total_signal.emit(asio::cancellation_type::total);
    terminal_signal.emit(asio::cancellation_type::terminal);
    CHECK(occupied.queue.stats().queued == 1); // the terminal one left the queue at once
    CHECK(occupied.queue.stats().cancelled == 1);
    CHECK(terminal_calls == 0); // posted, not invoked inside emit()
    io.poll();
    REQUIRE(terminal_calls == 1);
    CHECK_THROWS_AS(std::rethrow_exception(terminal_error), btq::task_cancelled);
    CHECK_FALSE(terminal_signal.slot().has_handler());
    CHECK(total_calls == 0);
    CHECK(total_signal.slot().has_handler()); // still waiting, still cancellable

    occupied.release();
    io.restart();
    io.run();
    REQUIRE(total_calls == 1);
    CHECK_FALSE(total_error);
    CHECK(total_value == 5);
    CHECK_FALSE(total_signal.slot().has_handler());
    CHECK_FALSE(cancelled_started.load());
}

TEST_CASE("a callback bound to a cancellation slot: partial cancellation of a running task "
          "requests its stop token and the callback gets what the task returned",
          "[asio]") {
    stoppable_queue queue({.max_concurrency = 1, .capacity = 4});
    asio::io_context io;
    gate started;
    asio::cancellation_signal signal;
    int calls = 0;
    std::exception_ptr error;
    int value = -1;
    btq::async_submit(
        queue,
        [&started](const std::stop_token& stop) {
            started.open();
            return wait_for_stop(stop);
        },
        asio::bind_cancellation_slot(signal.slot(),
                                     asio::bind_executor(io, [&](std::exception_ptr e, int v) {
                                         ++calls;
                                         error = std::move(e);
                                         value = v;
                                     })));
    started.wait();
    signal.emit(asio::cancellation_type::partial);
    io.run();

    REQUIRE(calls == 1);
    CHECK_FALSE(error);
    CHECK(value == 7); // the task saw the stop, and its value is the answer
    CHECK_FALSE(signal.slot().has_handler());
}

TEST_CASE("with a connected cancellation slot, the stop token passed in submit_options still "
          "cancels the waiting task",
          "[asio]") {
    occupied_queue occupied;
    asio::io_context io;
    asio::cancellation_signal signal;
    std::stop_source caller;
    std::atomic<bool> started{false};
    int calls = 0;
    std::exception_ptr error;
    btq::async_submit(
        occupied.queue,
        [&started] {
            started = true;
            return 1;
        },
        btq::submit_options{.stop = caller.get_token()},
        asio::bind_cancellation_slot(signal.slot(),
                                     asio::bind_executor(io, [&](std::exception_ptr e, int) {
                                         ++calls;
                                         error = std::move(e);
                                     })));
    caller.request_stop();
    CHECK(occupied.queue.stats().cancelled == 1);
    io.poll();

    REQUIRE(calls == 1);
    CHECK_THROWS_AS(std::rethrow_exception(error), btq::task_cancelled);
    CHECK_FALSE(signal.slot().has_handler());
    occupied.release();
    REQUIRE(occupied.queue.drain(std::chrono::seconds(10)));
    CHECK_FALSE(started.load());
}

TEST_CASE("async_submit works on a queue behind a start gate: a held task completes once the "
          "gate lets it start",
          "[asio][gate]") {
    // A memory gate reading 0 bytes available, its floor 1 byte, no progress guarantee: every
    // start is held until the reading recovers and refresh() wakes the queue.
    std::atomic<std::uint64_t> available{0};
    btq::memory_gate memory(btq::memory_gate_options{.min_available_bytes = 1,
                                                     .interval = std::chrono::hours(1),
                                                     .progress_guarantee = false,
                                                     .source = [&available] {
                                                         btq::memory_reading reading;
                                                         reading.mem_available = available.load();
                                                         return reading;
                                                     }});
    memory.refresh();
    btq::bounded_task_queue<std::function<int()>, btq::thread_executor, btq::memory_gate> queue(
        memory, {.max_concurrency = 1});

    std::future<int> answer = btq::async_submit(
        queue, [] { return 42; }, asio::use_future);
    CHECK(eventually([&] { return queue.stats().held_by_gate == 1; }));
    CHECK(answer.wait_for(std::chrono::milliseconds(50)) == std::future_status::timeout);

    available = 1U << 30U;
    memory.refresh();
    REQUIRE(answer.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    CHECK(answer.get() == 42);
    CHECK(queue.stats().gate_holds_total == 1);
}
