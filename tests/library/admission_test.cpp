// Admission beyond a count: weighted tasks (submit_options::weight), the start rate limit
// (queue_options::rate), and producers waiting for room (wait_until_size_below / _empty).
#include <btq/bounded_task_queue.hpp>

#include <btq/executors/callable_executor.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "test_support.hpp"

using namespace std::chrono_literals;
using btq_test::eventually;
using btq_test::gate;
using btq_test::identity_holds;

namespace {

using void_queue = btq::bounded_task_queue<std::function<void()>>;

/// The weight running now, and the most ever seen, kept by the tasks themselves.
struct weight_meter {
    std::atomic<std::size_t> running{0};
    std::atomic<std::size_t> most{0};

    void enter(std::size_t weight) {
        const std::size_t now = running.fetch_add(weight) + weight;
        std::size_t seen = most.load();
        while (now > seen && !most.compare_exchange_weak(seen, now)) {
        }
    }
    void leave(std::size_t weight) { running.fetch_sub(weight); }
};

using start_log = btq_test::start_log<int>;

} // namespace

// ---- weights ------------------------------------------------------------------------------

TEST_CASE("a weight-3 task in a queue of 4 starts before every weight-1 task submitted after "
          "it, and the running weight never exceeds 4",
          "[queue][weight]") {
    void_queue queue({.max_concurrency = 4, .capacity = 100});
    weight_meter meter;
    start_log log;
    gate first_four;
    for (int i = 0; i < 4; ++i) {
        queue.submit(
            [&] {
                meter.enter(1);
                first_four.wait();
                meter.leave(1);
            },
            [](btq::task_result<void>) noexcept {});
    }
    REQUIRE(eventually([&] { return queue.stats().active == 4; }));
    // A light task that starts while the heavy one still waits has overtaken it. The probe is
    // set_priority with the priority the heavy task already has: it answers under the queue's
    // lock whether that task still waits, and moves nothing.
    constexpr std::uint64_t heavy_id = 7;
    std::atomic<int> overtook{0};
    std::future<void> heavy = queue.submit(
        [&] {
            meter.enter(3);
            log.add(0);
            std::this_thread::sleep_for(20ms);
            meter.leave(3);
        },
        {.weight = 3, .id = heavy_id});
    // A stream of light tasks behind it, submitted while it waits and while it runs.
    std::atomic<bool> streaming{true};
    std::atomic<int> next_id{1};
    std::thread producer([&] {
        while (streaming.load()) {
            const int id = next_id.fetch_add(1);
            queue.submit(
                [&, id] {
                    meter.enter(1);
                    if (queue.set_priority(heavy_id, 0) != 0) {
                        overtook.fetch_add(1);
                    }
                    log.add(id);
                    std::this_thread::sleep_for(1ms);
                    meter.leave(1);
                },
                [](btq::task_result<void>) noexcept {});
            std::this_thread::sleep_for(200us);
        }
    });
    REQUIRE(eventually([&] { return next_id.load() > 20; }));
    CHECK(log.get().empty()); // nothing overtook it while the first four held every slot
    first_four.open();
    heavy.get();
    REQUIRE(eventually([&] { return log.get().size() > 30; }));
    streaming = false;
    producer.join();
    queue.drain();

    const std::vector<int> order = log.get();
    REQUIRE(std::find(order.begin(), order.end(), 0) != order.end());
    // Nothing behind it started before it. (Its body may still log after light tasks that
    // run beside it on other threads, so the log's order is not the start order.)
    CHECK(overtook.load() == 0);
    CHECK(meter.most.load() <= 4);
    const auto s = queue.stats();
    CHECK(identity_holds(s));
    CHECK(s.active_weight == 0);
}

TEST_CASE("a weight of 0, above max_concurrency or above 65535 is refused at submit with "
          "std::invalid_argument, before anything is counted",
          "[queue][weight]") {
    void_queue queue({.max_concurrency = 4, .capacity = 10});
    CHECK_THROWS_AS(queue.submit([] {}, {.weight = 0}), std::invalid_argument);
    CHECK_THROWS_WITH(queue.submit([] {}, {.weight = 5}),
                      Catch::Contains("above max_concurrency 4"));
    std::function<void()> task = [] {};
    CHECK_THROWS_AS(static_cast<void>(queue.try_submit(std::move(task), {.weight = 9})),
                    std::invalid_argument);
    CHECK(static_cast<bool>(task));         // left untouched
    auto run = [](int job) { return job; }; // inline: no thread per slot
    btq::bounded_task_queue<int, btq::callable_executor<decltype(run)>> wide(
        {.max_concurrency = 100'000, .capacity = 10}, btq::callable_executor(run));
    CHECK_THROWS_WITH(wide.submit(1, {.weight = 70'000}), Catch::Contains("65535"));
    CHECK(wide.submit(2, {.weight = 65'535}).get() == 2);
    CHECK(queue.stats().submitted == 0);
    queue.submit([] {}, {.weight = 4}).get(); // the whole bound is fine
}

TEST_CASE("active_weight and utilization count weights, active counts tasks", "[queue][weight]") {
    void_queue queue({.max_concurrency = 4, .capacity = 10});
    gate release;
    auto heavy = queue.submit([&] { release.wait(); }, {.weight = 3});
    REQUIRE(eventually([&] { return queue.stats().active == 1; }));
    auto s = queue.stats();
    CHECK(s.active_weight == 3);
    CHECK(s.utilization_percent == Approx(75.0));
    // A task of weight 2 does not fit beside it: it waits; one of weight 1 would not overtake it.
    auto second = queue.submit([] {}, {.weight = 2});
    auto light = queue.submit([] {});
    std::this_thread::sleep_for(20ms);
    s = queue.stats();
    CHECK(s.active == 1);
    CHECK(s.queued == 2);
    release.open();
    heavy.get();
    second.get();
    light.get();
    queue.drain();
    CHECK(queue.stats().active_weight == 0);
}

TEST_CASE("lowering max_concurrency below a waiting task's weight starts it once nothing else "
          "runs, holding the whole bound",
          "[queue][weight]") {
    void_queue queue({.max_concurrency = 4, .capacity = 10});
    gate release;
    gate heavy_release;
    auto blocker = queue.submit([&] { release.wait(); });
    REQUIRE(eventually([&] { return queue.stats().active == 1; }));
    auto heavy = queue.submit([&] { heavy_release.wait(); }, {.weight = 4});
    queue.set_max_concurrency(2);
    release.open();
    blocker.get();
    REQUIRE(eventually([&] { return queue.stats().active == 1 && queue.stats().queued == 0; }));
    CHECK(queue.stats().active_weight == 2);
    auto light = queue.submit([] {});
    std::this_thread::sleep_for(20ms);
    CHECK(queue.stats().queued == 1); // the bound is all taken
    heavy_release.open();
    heavy.get();
    light.get();
    queue.drain();
    CHECK(queue.stats().active_weight == 0);
}

TEST_CASE("under 4 producers of weights 1 to 3, clear() and set_max_concurrency() racing, the "
          "running weight stays within the largest bound and every snapshot keeps the identity",
          "[queue][weight][stats][stress]") {
    void_queue queue({.max_concurrency = 3, .capacity = 32});
    weight_meter meter;
    std::atomic<bool> producing{true};
    std::atomic<std::uint64_t> answered{0};
    std::atomic<std::uint64_t> admitted{0};
    std::vector<std::thread> producers;
    for (int p = 0; p < 4; ++p) {
        producers.emplace_back([&, p] {
            std::minstd_rand random(static_cast<unsigned>(p) + 7);
            while (producing.load(std::memory_order_relaxed)) {
                const std::size_t weight = 1 + random() % 3;
                const int priority = static_cast<int>(random() % 2);
                try {
                    queue.submit(
                        [&meter, weight] {
                            meter.enter(weight);
                            std::this_thread::yield();
                            meter.leave(weight);
                        },
                        [&](btq::task_result<void>) noexcept { answered.fetch_add(1); },
                        {.priority = priority, .weight = weight});
                    admitted.fetch_add(1);
                } catch (const btq::queue_full&) {
                }
            }
        });
    }
    btq_test::disturber disturber(5, 400, btq_test::clear_or_resize(queue, 3, 3, 4));
    CHECK(btq_test::first_broken_snapshot([&] { return queue.stats(); },
                                          [](const btq::queue_stats& s) -> std::string {
                                              if (identity_holds(s) && s.active_weight <= 6 &&
                                                  s.active <= s.active_weight) {
                                                  return {};
                                              }
                                              return "submitted " + std::to_string(s.submitted) +
                                                     ", active " + std::to_string(s.active) +
                                                     ", active_weight " +
                                                     std::to_string(s.active_weight);
                                          }) == "");
    producing = false;
    btq_test::join_all(producers);
    disturber.stop();
    queue.drain();
    const auto s = queue.stats();
    CHECK(identity_holds(s));
    CHECK(meter.most.load() <= 6);
    CHECK(s.active_weight == 0);
    CHECK(answered.load() == admitted.load());
}

// ---- the rate limit -----------------------------------------------------------------------

TEST_CASE("rate 100/s with a burst of 1: the starts in 2 s are 200, within 10%", "[queue][rate]") {
    void_queue queue({.max_concurrency = 4,
                      .capacity = 1000,
                      .rate = btq::rate_limit{.starts = 100, .per = 1s, .burst = 1}});
    std::mutex mutex;
    std::vector<btq::clock::time_point> starts;
    for (int i = 0; i < 400; ++i) {
        queue.submit(
            [&] {
                std::lock_guard lock(mutex);
                starts.push_back(btq::clock::now());
            },
            [](btq::task_result<void>) noexcept {});
    }
    std::this_thread::sleep_for(2200ms);
    static_cast<void>(queue.clear("enough"));
    queue.drain();
    std::lock_guard lock(mutex);
    REQUIRE(!starts.empty());
    const auto window_end = starts.front() + 2s;
    const auto in_window =
        std::count_if(starts.begin(), starts.end(), [&](auto at) { return at < window_end; });
    INFO("starts in the first 2 s: " << in_window);
    CHECK(in_window <= 201); // the bucket's bound: one at once, then one per 10 ms
    CHECK(in_window >= 180);
}

TEST_CASE("a full bucket starts a burst at once, then holds the rest for tokens, counted in stats",
          "[queue][rate]") {
    void_queue queue({.max_concurrency = 8,
                      .capacity = 100,
                      .rate = btq::rate_limit{.starts = 10, .per = 1s, .burst = 5}});
    std::atomic<int> started{0};
    std::vector<std::future<void>> answers;
    const auto begun = btq::clock::now();
    for (int i = 0; i < 8; ++i) {
        answers.push_back(queue.submit([&] { started.fetch_add(1); }));
    }
    REQUIRE(eventually([&] { return started.load() == 5; }, 1s));
    const auto s = queue.stats();
    if (btq::clock::now() < begun + 90ms) { // before the first token after the burst
        CHECK(s.queued == 3);
        CHECK(s.held_by_rate == 3);
    }
    CHECK(s.rate_holds_total >= 1);
    for (auto& answer : answers) {
        answer.get();
    }
    // Three more tokens, one every 100 ms: not before 300 ms after the burst.
    CHECK(btq::clock::now() - begun >= 290ms);
    queue.drain();
    CHECK(queue.stats().held_by_rate == 0);
    CHECK(identity_holds(queue.stats()));
}

TEST_CASE("tasks held by the rate limit keep priority order, and their deadlines and stop "
          "tokens still apply",
          "[queue][rate]") {
    void_queue queue({.max_concurrency = 4,
                      .capacity = 100,
                      .rate = btq::rate_limit{.starts = 1, .per = 150ms, .burst = 1}});
    start_log log;
    auto first = queue.submit([&] { log.add(0); }); // takes the token
    first.get();
    std::stop_source stop;
    auto low = queue.submit([&] { log.add(1); });
    auto stale = queue.submit([&] { log.add(2); }, btq::submit_options::within(30ms, 10));
    auto stopped = queue.submit([&] { log.add(3); }, {.priority = 10, .stop = stop.get_token()});
    auto high = queue.submit([&] { log.add(4); }, {.priority = 5});
    stop.request_stop();
    CHECK_THROWS_AS(stopped.get(), btq::task_cancelled);
    CHECK_THROWS_AS(stale.get(), btq::task_expired); // expired while held, never started
    high.get();
    low.get();
    CHECK(log.get() == std::vector<int>{0, 4, 1});
    queue.drain();
    const auto s = queue.stats();
    CHECK(s.expired == 1);
    CHECK(s.cancelled == 1);
    CHECK(identity_holds(s));
}

TEST_CASE("a rate limit of 0 starts or a zero interval is refused", "[queue][rate]") {
    CHECK_THROWS_AS(void_queue({.rate = btq::rate_limit{.starts = 0}}), std::invalid_argument);
    CHECK_THROWS_AS(void_queue({.rate = btq::rate_limit{.starts = 5, .per = 0s}}),
                    std::invalid_argument);
}

// ---- waiting for room ---------------------------------------------------------------------

TEST_CASE("wait_until_size_below returns once fewer wait, and times out while they do not",
          "[queue][wait]") {
    void_queue queue({.max_concurrency = 2, .capacity = 100, .start_paused = true});
    gate release;
    std::vector<std::future<void>> answers;
    for (int i = 0; i < 6; ++i) {
        answers.push_back(queue.submit([&] { release.wait(); }));
    }
    CHECK_FALSE(queue.wait_until_size_below(6, 30ms));
    CHECK(queue.wait_until_size_below(7, 0ms));
    auto waiter = std::async(std::launch::async, [&] { queue.wait_until_size_below(3); });
    queue.resume(); // two start: 4 wait
    CHECK(waiter.wait_for(50ms) == std::future_status::timeout);
    release.open(); // they run through: the waiter wakes when the third last starts
    CHECK(waiter.wait_for(5s) == std::future_status::ready);
    waiter.get();
    CHECK(queue.wait_until_empty(5s));
    for (auto& answer : answers) {
        answer.get();
    }
}

TEST_CASE("wait_until_empty returns when nothing waits though tasks still run, and wakes on "
          "clear(), cancellation and expiry",
          "[queue][wait]") {
    void_queue queue({.max_concurrency = 1, .capacity = 100});
    gate release;
    auto running = queue.submit([&] { release.wait(); });
    REQUIRE(eventually([&] { return queue.stats().active == 1; }));
    CHECK(queue.wait_until_empty(0ms));

    std::stop_source stop;
    auto cancelled = queue.submit([] {}, {.stop = stop.get_token()});
    auto expiring = queue.submit([] {}, btq::submit_options::within(40ms));
    auto cleared = queue.submit([] {});
    auto waiter = std::async(std::launch::async, [&] { return queue.wait_until_empty(5s); });
    auto below_three = std::async(std::launch::async, [&] { queue.wait_until_size_below(3); });
    stop.request_stop();
    CHECK(below_three.wait_for(5s) == std::future_status::ready);
    CHECK_THROWS_AS(expiring.get(), btq::task_expired);
    CHECK(waiter.wait_for(50ms) == std::future_status::timeout); // one still waits
    CHECK(queue.clear("done") == 1);
    CHECK(waiter.get());
    CHECK(queue.stats().active == 1);
    release.open();
    running.get();
}

TEST_CASE("wait_until_size_below(0) is refused, and so is waiting from inside a task",
          "[queue][wait]") {
    void_queue queue({.max_concurrency = 1, .capacity = 10});
    CHECK_THROWS_AS(queue.wait_until_size_below(0), std::invalid_argument);
    auto inside = queue.submit([&] { queue.wait_until_empty(); });
    CHECK_THROWS_AS(inside.get(), btq::wait_deadlock);
}

// ---- observers ----------------------------------------------------------------------------

namespace {

/// Records every event; each callback also takes a snapshot, which would deadlock if the
/// queue called it under its lock.
struct recording_observer : btq::queue_observer {
    std::function<btq::queue_stats()> snapshot;
    std::mutex mutex;
    int admitted = 0;
    int started = 0;
    std::vector<btq::task_outcome> finished;
    std::vector<btq::not_run_reason> refused;
    std::vector<btq::not_run_reason> not_started;
    std::vector<std::size_t> weights_started;

    void touch() {
        if (snapshot) {
            static_cast<void>(snapshot());
        }
    }
    void on_admitted(const btq::task_info& /*task*/) noexcept override {
        touch();
        std::lock_guard lock(mutex);
        ++admitted;
    }
    void on_refused(const btq::task_info& /*task*/, btq::not_run_reason reason) noexcept override {
        touch();
        std::lock_guard lock(mutex);
        refused.push_back(reason);
    }
    void on_started(const btq::task_info& task,
                    std::chrono::nanoseconds /*waited*/) noexcept override {
        touch();
        std::lock_guard lock(mutex);
        ++started;
        weights_started.push_back(task.weight);
    }
    void on_finished(const btq::task_info& /*task*/, btq::task_outcome outcome,
                     std::chrono::nanoseconds /*ran*/) noexcept override {
        touch();
        std::lock_guard lock(mutex);
        finished.push_back(outcome);
    }
    void on_not_started(const btq::task_info& /*task*/,
                        btq::not_run_reason reason) noexcept override {
        touch();
        std::lock_guard lock(mutex);
        not_started.push_back(reason);
    }
};

} // namespace

TEST_CASE("an observer is told of every admission, refusal, start, end and unstarted leaving, "
          "with outcomes and reasons, outside the queue's lock",
          "[queue][observer]") {
    auto observer = std::make_shared<recording_observer>();
    void_queue queue({.max_concurrency = 2, .capacity = 2, .observer = observer});
    observer->snapshot = [&queue] { return queue.stats(); };
    gate release;
    auto holding = queue.submit([&] { release.wait(); }, {.weight = 2}); // starts at once
    REQUIRE(eventually([&] { return queue.stats().active == 1; }));
    auto failing = queue.submit([] { throw std::runtime_error("boom"); });
    auto stale = queue.submit([] {}, btq::submit_options::within(20ms));
    std::function<void()> refused_task = [] {};
    CHECK_FALSE(queue.try_submit(std::move(refused_task)).has_value()); // full
    CHECK_THROWS_AS(stale.get(), btq::task_expired);
    std::stop_source stop;
    auto cancelled = queue.submit([] {}, {.stop = stop.get_token()});
    stop.request_stop();
    CHECK_THROWS_AS(cancelled.get(), btq::task_cancelled);
    release.open();
    holding.get();
    CHECK_THROWS_AS(failing.get(), std::runtime_error);
    queue.pause();
    auto cleared = queue.submit([] {});
    CHECK(queue.clear("bye") == 1);
    CHECK_THROWS_AS(cleared.get(), btq::queue_cleared);
    queue.close();
    CHECK_THROWS_AS(queue.submit([] {}), btq::queue_closed);
    queue.resume();
    queue.drain();

    std::lock_guard lock(observer->mutex);
    CHECK(observer->admitted == 5);
    CHECK(observer->started == 2);
    CHECK(observer->weights_started == std::vector<std::size_t>{2, 1});
    CHECK(observer->finished ==
          std::vector<btq::task_outcome>{btq::task_outcome::succeeded, btq::task_outcome::failed});
    CHECK(observer->refused == std::vector<btq::not_run_reason>{btq::not_run_reason::queue_full,
                                                                btq::not_run_reason::queue_closed});
    CHECK(observer->not_started == std::vector<btq::not_run_reason>{
                                       btq::not_run_reason::expired, btq::not_run_reason::cancelled,
                                       btq::not_run_reason::queue_cleared});
}

TEST_CASE("an observer hears of a run timeout as a timed_out finish, when the task returns",
          "[queue][observer]") {
    auto observer = std::make_shared<recording_observer>();
    btq::bounded_task_queue<std::function<void(std::stop_token)>> queue(
        {.max_concurrency = 1, .capacity = 4, .observer = observer});
    auto answer = queue.submit(
        [](const std::stop_token& stop) {
            while (!stop.stop_requested()) {
                std::this_thread::sleep_for(1ms);
            }
        },
        {.run_timeout = 20ms});
    CHECK_THROWS_AS(answer.get(), btq::task_timeout);
    queue.drain();
    std::lock_guard lock(observer->mutex);
    CHECK(observer->finished == std::vector<btq::task_outcome>{btq::task_outcome::timed_out});
}
