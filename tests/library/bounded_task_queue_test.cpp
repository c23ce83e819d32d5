// Behaviour of btq::bounded_task_queue: bounds, overflow, priority, deadlines, lifecycle, stats.
#include <btq/btq.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "test_support.hpp"

using namespace std::chrono_literals;
using btq_test::concurrency_probe;
using btq_test::eventually;
using btq_test::gate;

namespace {

using void_queue = btq::bounded_task_queue<std::function<void()>>;
using int_queue = btq::bounded_task_queue<std::function<int()>>;

/// A move-only task: lets a test see whether the queue moved from it.
struct owned_task {
    std::unique_ptr<int> payload = std::make_unique<int>(7);
    int operator()() const { return *payload; }
};

template <class Queue>
void check_identity(const btq::queue_stats& s) {
    INFO("submitted=" << s.submitted << " processed=" << s.total_processed << " active=" << s.active
                      << " queued=" << s.queued << " rejected=" << s.rejected << " cleared="
                      << s.cleared << " expired=" << s.expired << " cancelled=" << s.cancelled);
    CHECK(s.submitted == s.total_processed + s.active + s.queued + s.rejected + s.cleared +
                             s.expired + s.cancelled);
}

} // namespace

TEST_CASE("a submitted task's value reaches its future and its callback", "[queue]") {
    int_queue queue({.max_concurrency = 2, .capacity = 16});
    std::future<int> future = queue.submit([] { return 42; });
    CHECK(future.get() == 42);

    std::promise<int> delivered;
    queue.submit([] { return 7; },
                 [&](btq::task_result<int> result) noexcept { delivered.set_value(*result); });
    CHECK(delivered.get_future().get() == 7);
}

TEST_CASE("max_concurrency 0 is refused with invalid_argument", "[queue]") {
    CHECK_THROWS_AS(void_queue({.max_concurrency = 0}), std::invalid_argument);
    void_queue queue({.max_concurrency = 1});
    CHECK_THROWS_AS(queue.set_max_concurrency(0), std::invalid_argument);
}

TEST_CASE("8 producers x 10,000 tasks never see more than max_concurrency running or capacity "
          "waiting",
          "[queue][bound]") {
    constexpr std::size_t bound = 4;
    constexpr std::size_t capacity = 64;
    void_queue queue(
        {.max_concurrency = bound, .capacity = capacity, .overflow = btq::overflow_policy::block});
    concurrency_probe probe;
    std::atomic<bool> sampling{true};
    std::atomic<std::size_t> most_waiting{0};
    std::thread sampler([&] {
        while (sampling.load()) {
            const auto s = queue.stats();
            most_waiting.store(std::max(most_waiting.load(), s.queued));
            std::this_thread::yield();
        }
    });
    std::atomic<int> ran{0};
    std::vector<std::thread> producers;
    for (int p = 0; p < 8; ++p) {
        producers.emplace_back([&] {
            for (int i = 0; i < 10'000; ++i) {
                queue.submit(
                    [&] {
                        probe.enter();
                        std::this_thread::yield();
                        probe.leave();
                    },
                    [&](btq::task_result<void> r) noexcept {
                        if (r) {
                            ran.fetch_add(1);
                        }
                    });
            }
        });
    }
    for (auto& producer : producers) {
        producer.join();
    }
    queue.drain();
    sampling = false;
    sampler.join();

    const auto s = queue.stats();
    CHECK(ran.load() == 80'000);
    CHECK(probe.peak.load() <= static_cast<int>(bound));
    CHECK(s.peak_active <= bound);
    CHECK(s.peak_queue_size <= capacity);
    CHECK(most_waiting.load() <= capacity);
    CHECK(s.total_processed == 80'000);
}

TEST_CASE("the bound follows set_max_concurrency up and down mid-run", "[queue][bound]") {
    void_queue queue({.max_concurrency = 4, .capacity = 100'000});
    std::atomic<int> allowed{4};
    std::atomic<int> running{0};
    std::atomic<int> violations{0};
    std::atomic<int> peak{0};
    auto task = [&] {
        const int now = running.fetch_add(1) + 1;
        if (now > allowed.load()) {
            violations.fetch_add(1);
        }
        int seen = peak.load();
        while (now > seen && !peak.compare_exchange_weak(seen, now)) {
        }
        std::this_thread::sleep_for(50us);
        running.fetch_sub(1);
    };
    auto submit_batch = [&] {
        std::vector<std::thread> producers;
        for (int p = 0; p < 8; ++p) {
            producers.emplace_back([&] {
                for (int i = 0; i < 1'000; ++i) {
                    queue.submit(task, [](btq::task_result<void>) noexcept {});
                }
            });
        }
        return producers;
    };

    auto producers = submit_batch();
    REQUIRE(eventually([&] { return queue.stats().total_processed > 500; }));
    // Raising: announce the new bound first, then raise it.
    allowed = 8;
    queue.set_max_concurrency(8);
    REQUIRE(eventually([&] { return peak.load() > 4; }));
    // Lowering: the new bound applies once the tasks already started have left.
    queue.set_max_concurrency(2);
    REQUIRE(eventually([&] { return queue.stats().active <= 2; }));
    allowed = 2;
    const auto processed_at_lowering = queue.stats().total_processed;
    for (auto& producer : producers) {
        producer.join();
    }
    queue.drain();

    CHECK(violations.load() == 0);
    CHECK(peak.load() <= 8);
    CHECK(queue.stats().peak_active <= 8);
    CHECK(queue.stats().total_processed > processed_at_lowering);
    CHECK(queue.executor().thread_count() >= 8);
}

TEST_CASE("reject: a full queue refuses with queue_full and try_submit leaves the task untouched",
          "[queue][overflow]") {
    btq::bounded_task_queue<owned_task> queue(
        {.max_concurrency = 1, .capacity = 2, .start_paused = true});
    auto first = queue.submit(owned_task{});
    auto second = queue.submit(owned_task{});
    CHECK_THROWS_AS(queue.submit(owned_task{}), btq::queue_full);

    owned_task kept;
    CHECK_FALSE(queue.try_submit(std::move(kept)).has_value());
    REQUIRE(kept.payload != nullptr); // not moved from
    CHECK(*kept.payload == 7);

    bool called = false;
    auto callback = [&called](btq::task_result<int>) noexcept { called = true; };
    CHECK_FALSE(queue.try_submit(std::move(kept), callback));
    CHECK(kept.payload != nullptr);

    const auto s = queue.stats();
    CHECK(s.rejected == 3);
    CHECK(s.queued == 2);
    queue.resume();
    CHECK(first.get() == 7);
    CHECK(second.get() == 7);
    CHECK_FALSE(called);
}

TEST_CASE("drop_oldest displaces the oldest waiter but refuses a less important newcomer",
          "[queue][overflow]") {
    int_queue queue({.max_concurrency = 1,
                     .capacity = 2,
                     .overflow = btq::overflow_policy::drop_oldest,
                     .start_paused = true});
    auto oldest = queue.submit([] { return 1; });
    auto middle = queue.submit([] { return 2; });
    auto newest = queue.submit([] { return 3; });

    CHECK_THROWS_AS(oldest.get(), btq::task_displaced);
    try {
        (void)queue.submit([] { return 4; }, {.priority = -1}).get();
        FAIL("a newcomer below every waiter's priority must be refused");
    } catch (const btq::queue_full& e) {
        CHECK(e.reason() == btq::not_run_reason::queue_full);
    }
    auto important = queue.submit([] { return 5; }, {.priority = 9});
    CHECK_THROWS_AS(middle.get(), btq::task_displaced);

    queue.resume();
    CHECK(important.get() == 5);
    CHECK(newest.get() == 3);
    const auto s = queue.stats();
    CHECK(s.displaced == 2);
    CHECK(s.rejected == 3);
}

TEST_CASE("block: a submitter waits for room, then is admitted", "[queue][overflow]") {
    gate release;
    void_queue queue(
        {.max_concurrency = 1, .capacity = 1, .overflow = btq::overflow_policy::block});
    auto running = queue.submit([&] { release.wait(); });
    auto waiting = queue.submit([] {});
    std::atomic<bool> admitted{false};
    std::thread blocked([&] {
        auto third = queue.submit([] {});
        admitted = true;
        third.get();
    });
    std::this_thread::sleep_for(50ms);
    CHECK_FALSE(admitted.load()); // still blocked: the queue is full
    release.open();
    blocked.join();
    CHECK(admitted.load());
    running.get();
    waiting.get();
    CHECK(queue.stats().rejected == 0);
}

TEST_CASE("block with a timeout: the submitter gives up with queue_full", "[queue][overflow]") {
    gate release;
    void_queue queue({.max_concurrency = 1,
                      .capacity = 1,
                      .overflow = btq::overflow_policy::block,
                      .block_timeout = 30ms});
    auto running = queue.submit([&] { release.wait(); });
    auto waiting = queue.submit([] {});
    const auto before = btq::clock::now();
    CHECK_THROWS_AS(queue.submit([] {}), btq::queue_full);
    CHECK(btq::clock::now() - before >= 30ms);
    CHECK_FALSE(queue.try_submit([] {}).has_value()); // try_submit never blocks
    release.open();
    running.get();
    waiting.get();
    CHECK(queue.stats().rejected == 2);
}

TEST_CASE("block: close() wakes a blocked submitter with queue_closed", "[queue][overflow]") {
    gate release;
    void_queue queue(
        {.max_concurrency = 1, .capacity = 0, .overflow = btq::overflow_policy::block});
    auto running = queue.submit([&] { release.wait(); });
    std::promise<bool> closed_seen;
    std::thread blocked([&] {
        try {
            (void)queue.submit([] {});
            closed_seen.set_value(false);
        } catch (const btq::queue_closed&) {
            closed_seen.set_value(true);
        }
    });
    std::this_thread::sleep_for(20ms);
    queue.close();
    CHECK(closed_seen.get_future().get());
    blocked.join();
    release.open();
    running.get();
}

TEST_CASE("higher priority starts first, FIFO within a priority", "[queue][priority]") {
    std::vector<int> order;
    std::mutex order_mutex;
    void_queue queue({.max_concurrency = 1, .capacity = 100, .start_paused = true});
    auto record = [&](int id) {
        return [&, id] {
            std::lock_guard lock(order_mutex);
            order.push_back(id);
        };
    };
    const std::vector<std::pair<int, int>> submissions = {{1, 0},  {2, 5},  {3, 0}, {4, 5},
                                                          {5, -3}, {6, 10}, {7, 0}, {8, 5}};
    std::vector<std::future<void>> futures;
    for (auto [id, priority] : submissions) {
        futures.push_back(queue.submit(record(id), {.priority = priority}));
    }
    queue.resume();
    for (auto& f : futures) {
        f.get();
    }
    CHECK(order == std::vector<int>{6, 2, 4, 8, 1, 3, 7, 5});
}

TEST_CASE("a task past its queue deadline fails with task_expired and never starts",
          "[queue][deadline]") {
    std::atomic<int> started{0};
    void_queue queue({.max_concurrency = 1, .capacity = 10, .start_paused = true});
    auto stale = queue.submit([&] { ++started; }, btq::submit_options::within(20ms));
    auto fresh = queue.submit([&] { ++started; });

    // Answered by the deadline itself, while the queue is still paused.
    CHECK(stale.wait_for(5s) == std::future_status::ready);
    CHECK_THROWS_AS(stale.get(), btq::task_expired);
    queue.resume();
    fresh.get();
    CHECK(started.load() == 1);
    CHECK(queue.stats().expired == 1);

    CHECK_THROWS_AS(queue.submit([&] { ++started; }, {.deadline = btq::clock::now() - 1s}),
                    btq::task_expired);
    CHECK(started.load() == 1);
}

TEST_CASE("queue_timeout applies to tasks submitted without a deadline", "[queue][deadline]") {
    gate release;
    void_queue queue({.max_concurrency = 1, .capacity = 10, .queue_timeout = 20ms});
    auto running = queue.submit([&] { release.wait(); });
    std::atomic<bool> started{false};
    auto waiting = queue.submit([&] { started = true; });
    CHECK_THROWS_AS(waiting.get(), btq::task_expired);
    release.open();
    running.get(); // already running: the queue deadline no longer applies
    CHECK_FALSE(started.load());
}

TEST_CASE("clear answers every waiter with the reason and leaves running tasks alone",
          "[queue][lifecycle]") {
    gate release;
    int_queue queue({.max_concurrency = 1, .capacity = 100});
    auto running = queue.submit([&] {
        release.wait();
        return 1;
    });
    REQUIRE(eventually([&] { return queue.stats().active == 1; }));
    std::vector<std::future<int>> waiters;
    for (int i = 0; i < 10; ++i) {
        waiters.push_back(queue.submit([] { return 2; }));
    }
    CHECK(queue.clear("Server shutting down") == 10);
    for (auto& waiter : waiters) {
        try {
            (void)waiter.get();
            FAIL("a cleared waiter must not run");
        } catch (const btq::queue_cleared& e) {
            CHECK(e.clear_reason() == "Server shutting down");
            CHECK(std::string(e.what()).find("Server shutting down") != std::string::npos);
        }
    }
    release.open();
    CHECK(running.get() == 1);
    CHECK_FALSE(queue.is_closed());
    CHECK(queue.submit([] { return 3; }).get() == 3);
    CHECK(queue.stats().cleared == 10);
}

TEST_CASE("close stops admission but waiting tasks still run", "[queue][lifecycle]") {
    int_queue queue({.max_concurrency = 1, .capacity = 10, .start_paused = true});
    auto waiting = queue.submit([] { return 5; });
    queue.close();
    CHECK(queue.is_closed());
    CHECK_THROWS_AS(queue.submit([] { return 6; }), btq::queue_closed);
    CHECK_FALSE(queue.try_submit([] { return 6; }).has_value());
    queue.resume();
    CHECK(waiting.get() == 5);
}

TEST_CASE("drain reports both outcomes and does not close the queue", "[queue][lifecycle]") {
    gate release;
    void_queue queue({.max_concurrency = 1, .capacity = 10});
    auto running = queue.submit([&] { release.wait(); });
    auto waiting = queue.submit([] {});
    CHECK_FALSE(queue.drain(30ms));
    release.open();
    CHECK(queue.drain(10s));
    CHECK(waiting.wait_for(0s) == std::future_status::ready); // answered before drain returned
    CHECK_FALSE(queue.is_closed());
    queue.submit([] {}).get();
}

TEST_CASE("shutdown closes, clears and drains", "[queue][lifecycle]") {
    gate release;
    void_queue queue({.max_concurrency = 2, .capacity = 10});
    std::atomic<int> finished{0};
    std::vector<std::future<void>> running;
    for (int i = 0; i < 2; ++i) {
        running.push_back(queue.submit([&] {
            release.wait();
            ++finished;
        }));
    }
    REQUIRE(eventually([&] { return queue.stats().active == 2; }));
    std::vector<std::future<void>> waiting;
    for (int i = 0; i < 5; ++i) {
        waiting.push_back(queue.submit([] {}));
    }
    std::thread opener([&] {
        std::this_thread::sleep_for(20ms);
        release.open();
    });
    const auto result = queue.shutdown("bye", 10s);
    opener.join();
    CHECK(result.cleared == 5);
    CHECK(result.drained);
    CHECK(finished.load() == 2);
    for (auto& w : waiting) {
        CHECK_THROWS_AS(w.get(), btq::queue_cleared);
    }
    CHECK_THROWS_AS(queue.submit([] {}), btq::queue_closed);
}

TEST_CASE("destroying a queue with 1,000 waiters answers all 1,000", "[queue][lifecycle]") {
    std::atomic<int> cleared{0};
    std::atomic<int> other{0};
    {
        void_queue queue({.max_concurrency = 1, .capacity = 1'000, .start_paused = true});
        for (int i = 0; i < 1'000; ++i) {
            queue.submit([] {},
                         [&](btq::task_result<void> r) noexcept {
                             try {
                                 r.value();
                                 ++other;
                             } catch (const btq::queue_cleared& e) {
                                 if (e.clear_reason() == "queue destroyed") {
                                     ++cleared;
                                 }
                             } catch (...) {
                                 ++other;
                             }
                         });
        }
    }
    CHECK(cleared.load() == 1'000);
    CHECK(other.load() == 0);
}

TEST_CASE("a task's exception reaches its caller, is counted, and the queue keeps working",
          "[queue][errors]") {
    int_queue queue({.max_concurrency = 2, .capacity = 10});
    auto failing = queue.submit([]() -> int { throw std::runtime_error("broken input"); });
    CHECK_THROWS_WITH(failing.get(), "broken input");

    std::promise<std::string> message;
    queue.submit([]() -> int { throw std::domain_error("callback path"); },
                 [&](btq::task_result<int> r) noexcept {
                     try {
                         (void)r.value();
                     } catch (const std::exception& e) {
                         message.set_value(e.what());
                     }
                 });
    CHECK(message.get_future().get() == "callback path");
    CHECK(queue.submit([] { return 1; }).get() == 1);
    queue.drain();
    const auto s = queue.stats();
    CHECK(s.total_errors == 2);
    CHECK(s.total_processed == 3);
}

TEST_CASE("every callback runs exactly once across success, failure, clear and expiry",
          "[queue][callbacks]") {
    constexpr int tasks = 10'000;
    std::vector<std::atomic<int>> calls(tasks);
    {
        void_queue queue({.max_concurrency = 2,
                          .capacity = 2'000,
                          .overflow = btq::overflow_policy::drop_oldest});
        std::thread clearer([&] {
            for (int i = 0; i < 20; ++i) {
                std::this_thread::sleep_for(1ms);
                (void)queue.clear("periodic");
            }
        });
        for (int i = 0; i < tasks; ++i) {
            auto options =
                (i % 7 == 0) ? btq::submit_options::within(100us) : btq::submit_options{};
            try {
                queue.submit(
                    [i] {
                        if (i % 5 == 0) {
                            throw std::runtime_error("odd one");
                        }
                    },
                    [&calls, i](btq::task_result<void>) noexcept {
                        calls[static_cast<std::size_t>(i)]++;
                    },
                    options);
            } catch (const btq::task_expired&) {
                // Refused at submission (its deadline had already passed): the callback is
                // never called, so the refusal is this task's one answer.
                calls[static_cast<std::size_t>(i)]++;
            }
        }
        clearer.join();
    }
    for (int i = 0; i < tasks; ++i) {
        INFO("task " << i);
        REQUIRE(calls[static_cast<std::size_t>(i)].load() == 1);
    }
}

TEST_CASE("the stats identity holds in every snapshot while 4 threads submit", "[queue][stats]") {
    void_queue queue(
        {.max_concurrency = 2, .capacity = 50, .overflow = btq::overflow_policy::drop_oldest});
    std::atomic<bool> producing{true};
    std::vector<std::thread> producers;
    for (int p = 0; p < 4; ++p) {
        producers.emplace_back([&, p] {
            for (int i = 0; producing.load(); ++i) {
                auto options = (i % 3 == 0) ? btq::submit_options::within(50us, p)
                                            : btq::submit_options{.priority = p};
                try {
                    queue.submit([] { std::this_thread::yield(); },
                                 [](btq::task_result<void>) noexcept {}, options);
                } catch (const btq::task_not_run&) {
                }
                if (i % 500 == 0) {
                    (void)queue.clear("sweep");
                }
            }
        });
    }
    int snapshots = 0;
    const auto until = btq::clock::now() + 300ms;
    while (btq::clock::now() < until) {
        const auto s = queue.stats();
        const bool holds = s.submitted == s.total_processed + s.active + s.queued + s.rejected +
                                              s.cleared + s.expired + s.cancelled;
        if (!holds) {
            check_identity<void_queue>(s);
            FAIL("identity broken");
        }
        CHECK(s.active <= s.max_concurrency);
        CHECK(s.queued <= s.capacity);
        ++snapshots;
    }
    producing = false;
    for (auto& producer : producers) {
        producer.join();
    }
    queue.drain();
    const auto s = queue.stats();
    check_identity<void_queue>(s);
    CHECK(snapshots > 100);
    CHECK(s.rejected > 0);
    CHECK(s.displaced > 0);
    CHECK(s.cleared > 0);
    CHECK(s.total_processed > 0);
}

TEST_CASE("stats carry the seed's fields, counts and latency summaries", "[queue][stats]") {
    gate release;
    void_queue queue({.max_concurrency = 2, .capacity = 10});
    auto a = queue.submit([&] { release.wait(); });
    auto b = queue.submit([&] { release.wait(); });
    auto c = queue.submit([] {});
    REQUIRE(eventually([&] { return queue.stats().active == 2; }));
    auto busy = queue.stats();
    CHECK(busy.active == 2);
    CHECK(busy.queued == 1);
    CHECK(busy.max_concurrency == 2);
    CHECK(busy.capacity == 10);
    CHECK(busy.utilization_percent == Approx(100.0));
    CHECK(busy.peak_active == 2);
    CHECK(busy.peak_queue_size == 1);
    CHECK(busy.total_queued == 1);
    std::this_thread::sleep_for(10ms);
    release.open();
    a.get();
    b.get();
    c.get();
    queue.drain();
    const auto s = queue.stats();
    CHECK(s.utilization_percent == Approx(0.0));
    CHECK(s.total_processed == 3);
    CHECK(s.wait_time.count == 3);
    CHECK(s.run_time.count == 3);
    CHECK(s.run_time.max >= 10ms);
    CHECK(s.wait_time.max >= 10ms); // c waited for a slot
    CHECK(s.run_time.p50 <= s.run_time.p90);
    CHECK(s.run_time.p90 <= s.run_time.p99);
    CHECK(s.run_time.p99 <= s.run_time.max);
}

TEST_CASE("pause stops starting tasks and resume starts them", "[queue][lifecycle]") {
    std::atomic<int> ran{0};
    void_queue queue({.max_concurrency = 2, .capacity = 10});
    queue.pause();
    CHECK(queue.stats().paused);
    auto f = queue.submit([&] { ++ran; });
    std::this_thread::sleep_for(20ms);
    CHECK(ran.load() == 0);
    CHECK(queue.stats().queued == 1);
    queue.resume();
    f.get();
    CHECK(ran.load() == 1);
}

TEST_CASE("a synchronous executor does not grow the stack, however many tasks wait",
          "[queue][dispatch]") {
    std::atomic<std::uintptr_t> lowest{UINTPTR_MAX};
    std::atomic<std::uintptr_t> highest{0};
    auto run = [&](int) {
        int marker = 0;
        const auto address = reinterpret_cast<std::uintptr_t>(&marker);
        std::uintptr_t seen = lowest.load();
        while (address < seen && !lowest.compare_exchange_weak(seen, address)) {
        }
        seen = highest.load();
        while (address > seen && !highest.compare_exchange_weak(seen, address)) {
        }
        return 0;
    };
    using executor = btq::callable_executor<decltype(run)>;
    btq::bounded_task_queue<int, executor> queue(
        {.max_concurrency = 1, .capacity = 200'000, .start_paused = true}, executor(run));
    std::atomic<int> answered{0};
    for (int i = 0; i < 200'000; ++i) {
        queue.submit(i, [&](btq::task_result<int>) noexcept { ++answered; });
    }
    queue.resume(); // this thread runs all 200,000, one after another
    CHECK(answered.load() == 200'000);
    CHECK(highest.load() - lowest.load() < 4096);
}

TEST_CASE("an executor that drops a task's completion answers broken_completion and frees the "
          "slot",
          "[queue][errors]") {
    auto lose = [](int, btq::completion<int>&&) { /* forgets the completion */ };
    auto executor = btq::make_async_executor<int>(lose);
    btq::bounded_task_queue<int, decltype(executor)> queue({.max_concurrency = 1, .capacity = 4},
                                                           executor);
    CHECK_THROWS_AS(queue.submit(1).get(), btq::broken_completion);
    CHECK_THROWS_AS(queue.submit(2).get(), btq::broken_completion);
    CHECK(queue.stats().active == 0);
    CHECK(queue.stats().total_errors == 2);
}

TEST_CASE("every did-not-run error is caught as task_not_run", "[errors]") {
    const std::vector<std::exception_ptr> errors = {
        std::make_exception_ptr(btq::queue_full()), std::make_exception_ptr(btq::task_displaced()),
        std::make_exception_ptr(btq::queue_closed()),
        std::make_exception_ptr(btq::queue_cleared("why")),
        std::make_exception_ptr(btq::task_expired())};
    const std::vector<btq::not_run_reason> reasons = {
        btq::not_run_reason::queue_full, btq::not_run_reason::displaced,
        btq::not_run_reason::queue_closed, btq::not_run_reason::queue_cleared,
        btq::not_run_reason::expired};
    for (std::size_t i = 0; i < errors.size(); ++i) {
        try {
            std::rethrow_exception(errors[i]);
        } catch (const btq::task_not_run& e) {
            CHECK(e.reason() == reasons[i]);
        } catch (...) {
            FAIL("not a task_not_run");
        }
    }
    CHECK_FALSE(std::is_base_of_v<btq::task_not_run, btq::task_timeout>);
}

TEST_CASE("a callback may submit to its own queue and wait for that task", "[queue][dispatch]") {
    int_queue queue({.max_concurrency = 2, .capacity = 10});
    std::promise<std::future_status> status;
    queue.submit([] { return 1; },
                 [&](btq::task_result<int>) noexcept {
                     // Runs on the worker that finished the first task, while that task still holds
                     // a slot: the follow-up must go to the other worker, not wait behind this
                     // callback.
                     auto follow_up = queue.submit([] { return 2; });
                     status.set_value(follow_up.wait_for(std::chrono::seconds(10)));
                 });
    CHECK(status.get_future().get() == std::future_status::ready);
}
