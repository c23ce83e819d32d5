// Cancellation (submit_options::stop), run timeouts, refused self-waits, and the queue's
// accounting under racing producers, clear() and set_max_concurrency().
#include <btq/bounded_task_queue.hpp>

#include <btq/executors/callable_executor.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <mutex>
#include <random>
#include <stop_token>
#include <thread>
#include <vector>

#include "test_support.hpp"

using namespace std::chrono_literals;
using btq_test::eventually;
using btq_test::gate;
using btq_test::identity_holds;

namespace {

using void_queue = btq::bounded_task_queue<std::function<void()>>;
using stoppable_queue = btq::bounded_task_queue<std::function<int(std::stop_token)>>;

/// A task that holds its slot until `release` opens.
std::function<void()> holding(gate& release) {
    return [&release] { release.wait(); };
}

/// A cooperative task's loop: returns once its stop token is requested.
void sleep_until_stopped(const std::stop_token& stop) {
    while (!stop.stop_requested()) {
        std::this_thread::sleep_for(1ms);
    }
}

template <class Future>
bool ready_now(Future& future) {
    return future.wait_for(0s) == std::future_status::ready;
}

} // namespace

// ---- stop while waiting -------------------------------------------------------------------

TEST_CASE("a waiting task whose stop is requested is answered at once with task_cancelled, "
          "never starts, and frees its place",
          "[cancel]") {
    gate release;
    void_queue queue({.max_concurrency = 1, .capacity = 1});
    auto running = queue.submit(holding(release));
    REQUIRE(eventually([&] { return queue.stats().active == 1; }));

    std::stop_source source;
    std::atomic<bool> started{false};
    auto waiting = queue.submit([&] { started = true; }, {.stop = source.get_token()});
    CHECK_FALSE(queue.try_submit([] {})); // the one place is taken

    source.request_stop();
    REQUIRE(ready_now(waiting)); // answered inside request_stop(), not later
    CHECK_THROWS_AS(waiting.get(), btq::task_cancelled);
    auto after = queue.try_submit([] {});
    CHECK(after.has_value()); // its place was freed at once

    const auto s = queue.stats();
    CHECK(s.cancelled == 1);
    CHECK(s.queued == 1);
    CHECK(identity_holds(s));

    release.open();
    running.get();
    after->get();
    queue.drain();
    CHECK_FALSE(started.load());
    CHECK(queue.stats().cancelled == 1);
}

TEST_CASE("task_cancelled is a task_not_run with reason cancelled", "[cancel][errors]") {
    const btq::task_cancelled error;
    const btq::task_not_run& base = error;
    CHECK(base.reason() == btq::not_run_reason::cancelled);
}

TEST_CASE("a stop already requested refuses the task: submit throws task_cancelled, "
          "try_submit leaves the task untouched",
          "[cancel]") {
    void_queue queue({.max_concurrency = 1, .capacity = 4});
    std::stop_source source;
    source.request_stop();
    CHECK_THROWS_AS(queue.submit([] {}, {.stop = source.get_token()}), btq::task_cancelled);

    btq::bounded_task_queue<std::function<int()>> ints({.max_concurrency = 1});
    auto payload = std::make_shared<int>(5);
    std::function<int()> task = [payload] { return *payload; };
    CHECK_FALSE(ints.try_submit(std::move(task), {.stop = source.get_token()}));
    REQUIRE(task); // NOLINT(bugprone-use-after-move): a refused task is not moved from
    CHECK(task() == 5);
    CHECK(queue.stats().cancelled == 1);
    CHECK(identity_holds(queue.stats()));
}

TEST_CASE("a cancelled task's deadline and priority leave no trace", "[cancel][deadline]") {
    gate release;
    void_queue queue({.max_concurrency = 1, .capacity = 8});
    auto running = queue.submit(holding(release));
    REQUIRE(eventually([&] { return queue.stats().active == 1; }));
    std::stop_source source;
    auto cancelled = queue.submit(
        [] {}, {.priority = 3, .deadline = btq::clock::now() + 30ms, .stop = source.get_token()});
    source.request_stop();
    CHECK_THROWS_AS(cancelled.get(), btq::task_cancelled);
    std::this_thread::sleep_for(60ms); // past the deadline it no longer has
    release.open();
    running.get();
    queue.drain();
    const auto s = queue.stats();
    CHECK(s.expired == 0);
    CHECK(s.cancelled == 1);
    CHECK(identity_holds(s));
}

TEST_CASE("a stop requested after the task finished changes nothing", "[cancel]") {
    void_queue queue({.max_concurrency = 2});
    std::stop_source source;
    auto done = queue.submit([] {}, {.stop = source.get_token()});
    done.get();
    queue.drain();
    source.request_stop();
    const auto s = queue.stats();
    CHECK(s.cancelled == 0);
    CHECK(s.total_processed == 1);
}

// ---- stop while running -------------------------------------------------------------------

TEST_CASE("a running task that takes a std::stop_token sees its stop requested", "[cancel]") {
    stoppable_queue queue({.max_concurrency = 1});
    std::stop_source source;
    std::atomic<bool> started{false};
    auto answer = queue.submit(
        [&](std::stop_token stop) {
            started = true;
            sleep_until_stopped(stop);
            return 7;
        },
        {.stop = source.get_token()});
    REQUIRE(eventually([&] { return started.load(); }));
    source.request_stop();
    CHECK(answer.get() == 7);            // cooperative: the task decides what it returns
    CHECK(queue.stats().cancelled == 0); // it had started: not a cancellation in the queue
}

TEST_CASE("a task without a stop token gets one that can never be stopped", "[cancel]") {
    stoppable_queue queue({.max_concurrency = 1});
    auto answer = queue.submit([](std::stop_token stop) { return stop.stop_possible() ? 1 : 0; });
    CHECK(answer.get() == 0);
}

TEST_CASE("a synchronous callable executor hands the stop token to a function that takes one",
          "[cancel][callable]") {
    auto function = [](int value, std::stop_token stop) {
        return stop.stop_requested() ? -value : value;
    };
    btq::bounded_task_queue<int, btq::callable_executor<decltype(function)>> queue(
        {.max_concurrency = 1}, btq::callable_executor(function));
    std::stop_source source;
    CHECK(queue.submit(3, {.stop = source.get_token()}).get() == 3);
    CHECK(queue.submit(4).get() == 4);
}

// ---- run timeouts -------------------------------------------------------------------------

TEST_CASE("at its run timeout a task's caller is answered task_timeout at once while the task "
          "keeps its slot until it returns",
          "[cancel][timeout]") {
    stoppable_queue queue({.max_concurrency = 1, .capacity = 8});
    gate finish;
    std::atomic<bool> saw_stop{false};
    auto slow = queue.submit(
        [&](std::stop_token stop) {
            sleep_until_stopped(stop);
            saw_stop = true;
            finish.wait(); // ignores the stop for a while: the slot must stay taken
            return 1;
        },
        {.run_timeout = 30ms});
    std::atomic<bool> second_started{false};
    auto second = queue.submit([&](std::stop_token) {
        second_started = true;
        return 2;
    });

    CHECK_THROWS_AS(slow.get(), btq::task_timeout);
    REQUIRE(eventually([&] { return saw_stop.load(); }));
    auto s = queue.stats();
    CHECK(s.active == 1);
    CHECK(s.overrunning == 1);
    CHECK(s.timed_out == 1);
    CHECK(s.total_errors == 1);
    std::this_thread::sleep_for(20ms);
    CHECK_FALSE(second_started.load()); // never more than max_concurrency running

    finish.open();
    CHECK(second.get() == 2);
    queue.drain();
    s = queue.stats();
    CHECK(s.overrunning == 0);
    CHECK(s.timed_out == 1);
    CHECK(s.total_errors == 1); // counted once, when it was answered
    CHECK(s.total_processed == 2);
    CHECK(identity_holds(s));
}

TEST_CASE("the queue's default run timeout applies to tasks submitted without one",
          "[cancel][timeout]") {
    stoppable_queue queue({.max_concurrency = 2, .run_timeout = 20ms});
    auto waits_for_stop = [](std::stop_token stop) {
        sleep_until_stopped(stop);
        return 0;
    };
    auto defaulted = queue.submit(waits_for_stop);
    auto own = queue.submit([](std::stop_token) { return 5; }, {.run_timeout = 10s});
    CHECK_THROWS_AS(defaulted.get(), btq::task_timeout);
    CHECK(own.get() == 5);
    queue.drain();
    CHECK(queue.stats().timed_out == 1);
}

TEST_CASE("a task that returns before its run timeout is answered with its own outcome",
          "[cancel][timeout]") {
    stoppable_queue queue({.max_concurrency = 1});
    for (int i = 0; i < 200; ++i) {
        CHECK(queue.submit([i](std::stop_token) { return i; }, {.run_timeout = 1s}).get() == i);
    }
    queue.drain();
    CHECK(queue.stats().timed_out == 0);
}

TEST_CASE("a run timeout racing the task's own return answers the caller exactly once",
          "[cancel][timeout]") {
    stoppable_queue queue({.max_concurrency = 4, .capacity = 4096});
    std::atomic<int> answers{0};
    std::atomic<int> timeouts{0};
    constexpr int tasks = 2000;
    for (int i = 0; i < tasks; ++i) {
        queue.submit(
            [i](std::stop_token) {
                std::this_thread::sleep_for(std::chrono::microseconds(i % 200));
                return i;
            },
            [&](btq::task_result<int> r) noexcept {
                answers.fetch_add(1);
                if (!r) {
                    timeouts.fetch_add(1);
                }
            },
            {.run_timeout = 100us});
    }
    queue.drain();
    CHECK(answers.load() == tasks);
    const auto s = queue.stats();
    CHECK(s.timed_out == static_cast<std::uint64_t>(timeouts.load()));
    CHECK(s.total_processed == static_cast<std::uint64_t>(tasks));
    CHECK(s.overrunning == 0);
}

// ---- waits that would wait for themselves -------------------------------------------------

TEST_CASE("drain and shutdown called from one of the queue's own tasks throw wait_deadlock",
          "[queue][lifecycle]") {
    void_queue queue({.max_concurrency = 2});
    std::promise<bool> drain_threw;
    std::promise<bool> shutdown_threw;
    auto inside = queue.submit([&] {
        try {
            queue.drain();
            drain_threw.set_value(false);
        } catch (const btq::wait_deadlock&) {
            drain_threw.set_value(true);
        }
        try {
            static_cast<void>(queue.shutdown("from inside", 1s));
            shutdown_threw.set_value(false);
        } catch (const btq::wait_deadlock&) {
            shutdown_threw.set_value(true);
        }
    });
    CHECK(drain_threw.get_future().get());
    CHECK(shutdown_threw.get_future().get());
    inside.get();
    CHECK_FALSE(queue.is_closed()); // the refused shutdown did nothing
    queue.drain();                  // from outside it still works
}

TEST_CASE("drain from a synchronous executor's task or a completion callback throws "
          "wait_deadlock",
          "[queue][lifecycle]") {
    std::function<bool()> from_task;
    auto run = [&](int /*unused*/) { return from_task(); };
    btq::bounded_task_queue<int, btq::callable_executor<decltype(run)>> queue(
        {.max_concurrency = 1}, btq::callable_executor(run));
    from_task = [&] {
        try {
            queue.drain();
            return false;
        } catch (const btq::wait_deadlock&) {
            return true;
        }
    };
    CHECK(queue.submit(1).get());

    void_queue threads({.max_concurrency = 1});
    std::promise<bool> callback_threw;
    threads.submit([] {},
                   [&](btq::task_result<void>) noexcept {
                       try {
                           threads.drain();
                           callback_threw.set_value(false);
                       } catch (const btq::wait_deadlock&) {
                           callback_threw.set_value(true);
                       }
                   });
    CHECK(callback_threw.get_future().get());
}

// ---- order between the lock-free path and the locked path ---------------------------------

TEST_CASE("plain tasks and tasks with a deadline or stop token keep FIFO order within a "
          "priority",
          "[queue][priority]") {
    btq::bounded_task_queue<std::function<void()>> queue(
        {.max_concurrency = 1, .capacity = 16, .start_paused = true});
    std::mutex mutex;
    std::vector<int> order;
    auto record = [&](int id) {
        return [&, id] {
            std::lock_guard lock(mutex);
            order.push_back(id);
        };
    };
    std::stop_source source;
    std::vector<std::future<void>> futures;
    futures.push_back(queue.submit(record(1)));
    futures.push_back(queue.submit(record(2), btq::submit_options::within(1h)));
    futures.push_back(queue.submit(record(3)));
    futures.push_back(queue.submit(record(4), {.stop = source.get_token()}));
    futures.push_back(queue.submit(record(5)));
    futures.push_back(queue.submit(record(0), {.priority = 1}));
    queue.resume();
    for (auto& f : futures) {
        f.get();
    }
    CHECK(order == std::vector<int>{0, 1, 2, 3, 4, 5});
}

// ---- accounting under races ---------------------------------------------------------------

TEST_CASE("the stats identity and both bounds hold in every snapshot under 8 producers with "
          "stops, deadlines and priorities, racing clear() and set_max_concurrency()",
          "[queue][stats][stress]") {
    constexpr std::size_t capacity = 32;
    void_queue queue({.max_concurrency = 3, .capacity = capacity});
    std::atomic<bool> producing{true};
    std::atomic<std::uint64_t> calls_begun{0};
    std::atomic<std::uint64_t> calls_done{0};
    std::atomic<std::uint64_t> answered{0};
    std::array<std::atomic<std::uint64_t>, 4> by_kind{}; // ran, cancelled, cleared, expired
    std::atomic<std::uint64_t> expired_at_admission{0};
    std::vector<std::thread> producers;
    for (int p = 0; p < 8; ++p) {
        producers.emplace_back([&, p] {
            std::minstd_rand random(static_cast<unsigned>(p) + 1);
            std::vector<std::stop_source> sources(16);
            for (std::uint64_t i = 0; producing.load(std::memory_order_relaxed); ++i) {
                btq::submit_options options;
                const auto pick = random() % 8;
                std::stop_source& source = sources[i % sources.size()];
                if (pick == 0) {
                    options =
                        btq::submit_options::within(std::chrono::microseconds(random() % 200));
                } else if (pick == 1) {
                    source = std::stop_source();
                    options.stop = source.get_token();
                } else if (pick == 2) {
                    options.priority = static_cast<int>(random() % 3);
                }
                calls_begun.fetch_add(1);
                try {
                    queue.submit([] { std::this_thread::yield(); },
                                 [&](btq::task_result<void> r) noexcept {
                                     answered.fetch_add(1);
                                     if (r) {
                                         by_kind[0].fetch_add(1);
                                         return;
                                     }
                                     try {
                                         std::rethrow_exception(r.error());
                                     } catch (const btq::task_cancelled&) {
                                         by_kind[1].fetch_add(1);
                                     } catch (const btq::queue_cleared&) {
                                         by_kind[2].fetch_add(1);
                                     } catch (const btq::task_expired&) {
                                         by_kind[3].fetch_add(1);
                                     } catch (...) {
                                     }
                                 },
                                 options);
                } catch (const btq::task_expired&) {
                    expired_at_admission.fetch_add(1); // its deadline had passed already
                } catch (const btq::task_not_run&) {
                }
                calls_done.fetch_add(1);
                if (pick == 3) {
                    sources[random() % sources.size()].request_stop();
                }
            }
        });
    }
    btq_test::disturber disturber(99, 500, btq_test::clear_or_resize(queue, 2, 1, 4));

    int snapshots = 0;
    std::uint64_t last_processed = 0;
    const auto start = btq::clock::now();
    while ((btq::clock::now() < start + 400ms || snapshots < 50) &&
           btq::clock::now() < start + 10s) {
        const std::uint64_t done_before = calls_done.load();
        const auto s = queue.stats();
        const std::uint64_t begun_after = calls_begun.load();
        if (!identity_holds(s) || s.queued > capacity || s.active > 4 ||
            s.submitted < done_before || s.submitted > begun_after ||
            s.total_processed < last_processed) {
            INFO("submitted=" << s.submitted << " processed=" << s.total_processed
                              << " active=" << s.active << " queued=" << s.queued
                              << " rejected=" << s.rejected << " cleared=" << s.cleared
                              << " expired=" << s.expired << " cancelled=" << s.cancelled
                              << " calls done/begun=" << done_before << "/" << begun_after);
            FAIL("a snapshot broke the accounting");
        }
        last_processed = s.total_processed;
        ++snapshots;
        std::this_thread::yield();
    }
    producing = false;
    btq_test::join_all(producers);
    disturber.stop();
    queue.drain();

    const auto s = queue.stats();
    CHECK(identity_holds(s));
    CHECK(s.submitted == calls_done.load());
    CHECK(s.active == 0);
    CHECK(s.queued == 0);
    CHECK(answered.load() + expired_at_admission.load() ==
          s.total_processed + s.cleared + s.expired + s.cancelled + s.displaced);
    CHECK(by_kind[0].load() == s.total_processed);
    CHECK(by_kind[1].load() == s.cancelled);
    CHECK(by_kind[2].load() == s.cleared);
    CHECK(by_kind[3].load() + expired_at_admission.load() == s.expired);
    CHECK(snapshots >= 50);
    CHECK(s.cancelled > 0);
    CHECK(s.cleared > 0);
}

TEST_CASE("no lost wake-up: every task admitted to an idle queue starts within 1 s while "
          "producers stop and start in bursts",
          "[queue][dispatch][stress]") {
    void_queue queue({.max_concurrency = 2, .capacity = 4096});
    std::atomic<bool> failed{false};
    std::atomic<std::int64_t> oldest_unstarted_ns{0}; // submit time of a task not yet started
    std::mutex mutex;
    std::condition_variable changed;
    std::atomic<int> outstanding{0};
    std::atomic<bool> stop_watchdog{false};

    std::thread watchdog([&] {
        while (!stop_watchdog.load()) {
            std::this_thread::sleep_for(10ms);
            // A burst that has not drained within a second means a task admitted to an idle
            // queue was left waiting with a free slot.
            const auto since = oldest_unstarted_ns.load();
            if (since != 0 &&
                btq::clock::now().time_since_epoch() - std::chrono::nanoseconds(since) > 1s) {
                failed = true;
            }
        }
    });
    std::minstd_rand random(7);
    for (int burst = 0; burst < 300 && !failed.load(); ++burst) {
        const int producers = 1 + static_cast<int>(random() % 4);
        const int per_producer = 1 + static_cast<int>(random() % 20);
        // The queue is idle here: everything from the previous burst has run.
        REQUIRE(eventually([&] { return outstanding.load() == 0; }, 2s));
        oldest_unstarted_ns = btq::clock::now().time_since_epoch().count();
        std::vector<std::thread> threads;
        for (int p = 0; p < producers; ++p) {
            threads.emplace_back([&] {
                for (int i = 0; i < per_producer; ++i) {
                    outstanding.fetch_add(1);
                    queue.submit([] {},
                                 [&](btq::task_result<void>) noexcept {
                                     if (outstanding.fetch_sub(1) == 1) {
                                         std::lock_guard lock(mutex);
                                         changed.notify_all();
                                     }
                                 });
                }
            });
        }
        for (auto& thread : threads) {
            thread.join();
        }
        {
            std::unique_lock lock(mutex);
            const bool drained =
                changed.wait_for(lock, 1s, [&] { return outstanding.load() == 0; });
            if (!drained) {
                failed = true;
            }
        }
        oldest_unstarted_ns = 0;
        std::this_thread::sleep_for(std::chrono::microseconds(random() % 300)); // workers idle
    }
    stop_watchdog = true;
    watchdog.join();
    CHECK_FALSE(failed.load());
    queue.drain();
    CHECK(queue.stats().total_processed == queue.stats().submitted);
}

TEST_CASE("stops racing the start of their tasks answer every task exactly once, ran or "
          "cancelled",
          "[cancel][stress]") {
    void_queue queue({.max_concurrency = 2, .capacity = 8192});
    constexpr int tasks = 4000;
    std::vector<std::stop_source> sources(tasks);
    std::atomic<int> ran{0};
    std::atomic<int> cancelled{0};
    std::atomic<int> answers{0};
    std::thread stopper([&] {
        for (int i = tasks - 1; i >= 0; i -= 2) {
            sources[static_cast<std::size_t>(i)].request_stop();
        }
    });
    for (int i = 0; i < tasks; ++i) {
        try {
            queue.submit([&] { ran.fetch_add(1); },
                         [&](btq::task_result<void> r) noexcept {
                             answers.fetch_add(1);
                             if (!r) {
                                 cancelled.fetch_add(1);
                             }
                         },
                         {.stop = sources[static_cast<std::size_t>(i)].get_token()});
        } catch (const btq::task_cancelled&) { // stopped before it was submitted
            answers.fetch_add(1);
            cancelled.fetch_add(1);
        }
    }
    stopper.join();
    queue.drain();
    CHECK(answers.load() == tasks);
    CHECK(ran.load() + cancelled.load() == tasks);
    const auto s = queue.stats();
    CHECK(s.cancelled == static_cast<std::uint64_t>(cancelled.load()));
    CHECK(identity_holds(s));
}
