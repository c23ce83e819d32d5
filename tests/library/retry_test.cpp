// Retries (submit_options::retry): back-off without a slot, one answer with the attempt count,
// what is never retried, and the accounting of a task that waits out its back-off.
#include <btq/bounded_task_queue.hpp>

#include <btq/executors/callable_executor.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "test_support.hpp"

using namespace std::chrono_literals;
using btq_test::eventually;
using btq_test::gate;
using btq_test::identity_holds;

namespace {

using int_queue = btq::bounded_task_queue<std::function<int()>>;
using void_queue = btq::bounded_task_queue<std::function<void()>>;

/// A task that fails its first `failures` attempts, then returns 42 (copies share the count).
std::function<int()> failing_first(int failures, std::shared_ptr<std::atomic<int>> runs) {
    return [failures, runs] {
        const int run = runs->fetch_add(1) + 1;
        if (run <= failures) {
            throw std::runtime_error("attempt " + std::to_string(run));
        }
        return 42;
    };
}

/// Keeps the answer of a callback-form submit.
template <class R>
struct answer_box {
    std::promise<btq::task_result<R>> promise;
    std::future<btq::task_result<R>> future = promise.get_future();
    auto callback() {
        return
            [this](btq::task_result<R> result) noexcept { promise.set_value(std::move(result)); };
    }
};

} // namespace

TEST_CASE("a failing task is tried again after its back-off without holding its slot, and the "
          "caller gets one answer with the attempt count",
          "[queue][retry]") {
    int_queue queue({.max_concurrency = 1, .capacity = 10});
    auto runs = std::make_shared<std::atomic<int>>(0);
    answer_box<int> answer;
    const auto begun = btq::clock::now();
    queue.submit(failing_first(2, runs), answer.callback(),
                 {.retry = btq::retry_policy{
                      .attempts = 3, .backoff = 40ms, .multiplier = 2.0, .jitter = 0.0}});
    REQUIRE(eventually([&] { return queue.stats().retrying == 1; }, 2s));
    // Backing off, it holds no slot: another task runs meanwhile.
    CHECK(queue.submit([] { return 7; }).get() == 7);
    btq::task_result<int> result = answer.future.get();
    const auto took = btq::clock::now() - begun;
    REQUIRE(result.has_value());
    CHECK(*result == 42);
    CHECK(result.attempts() == 3);
    CHECK(runs->load() == 3);
    CHECK(took >= 120ms); // 40 ms, then 80 ms of back-off
    queue.drain();
    const auto s = queue.stats();
    CHECK(s.retries_total == 2);
    CHECK(s.total_processed == 2); // the retried task once, and the other one
    CHECK(s.total_errors == 0);
    CHECK(s.retrying == 0);
    CHECK(identity_holds(s));
}

TEST_CASE("when every attempt fails the caller gets the last attempt's error, counted once",
          "[queue][retry]") {
    int_queue queue({.max_concurrency = 2, .capacity = 10});
    auto runs = std::make_shared<std::atomic<int>>(0);
    answer_box<int> answer;
    queue.submit(failing_first(100, runs), answer.callback(),
                 {.retry = btq::retry_policy{.attempts = 3, .backoff = 1ms}});
    btq::task_result<int> result = answer.future.get();
    CHECK(result.attempts() == 3);
    CHECK_THROWS_WITH(result.value(), "attempt 3");
    std::future<int> future =
        queue.submit(failing_first(100, std::make_shared<std::atomic<int>>(0)),
                     {.retry = btq::retry_policy{.attempts = 2, .backoff = 1ms}});
    CHECK_THROWS_WITH(future.get(), "attempt 2");
    queue.drain();
    const auto s = queue.stats();
    CHECK(s.total_errors == 2);
    CHECK(s.retries_total == 3);
    CHECK(identity_holds(s));
}

TEST_CASE("retry_on picks the failures tried again; a task_not_run is never retried",
          "[queue][retry]") {
    int_queue queue({.max_concurrency = 1, .capacity = 10});
    answer_box<int> picky;
    queue.submit([]() -> int { throw std::logic_error("a bug, not bad luck"); }, picky.callback(),
                 {.retry = btq::retry_policy{
                      .attempts = 5, .backoff = 1ms, .retry_on = [](const std::exception_ptr& e) {
                          try {
                              std::rethrow_exception(e);
                          } catch (const std::runtime_error&) {
                              return true;
                          } catch (...) {
                              return false;
                          }
                      }}});
    CHECK(picky.future.get().attempts() == 1);
    answer_box<int> not_run;
    queue.submit([]() -> int { throw btq::queue_full(); }, not_run.callback(),
                 {.retry = btq::retry_policy{.attempts = 5, .backoff = 1ms}});
    btq::task_result<int> result = not_run.future.get();
    CHECK(result.attempts() == 1);
    CHECK_THROWS_AS(result.value(), btq::queue_full);
    queue.drain();
    CHECK(queue.stats().retries_total == 0);
}

TEST_CASE("a task backing off counts as waiting: clear() answers it, its stop token cancels it, "
          "and its queue deadline still expires it",
          "[queue][retry]") {
    int_queue queue({.max_concurrency = 1, .capacity = 10});
    const btq::retry_policy slow{.attempts = 3, .backoff = 2s, .jitter = 0.0};
    answer_box<int> cleared;
    queue.submit(failing_first(5, std::make_shared<std::atomic<int>>(0)), cleared.callback(),
                 {.retry = slow});
    REQUIRE(eventually([&] { return queue.stats().retrying == 1; }, 2s));
    auto s = queue.stats();
    CHECK(s.queued == 1);
    CHECK(s.active == 0);
    CHECK(identity_holds(s));
    CHECK(queue.clear("bye") == 1);
    btq::task_result<int> result = cleared.future.get();
    CHECK_THROWS_AS(result.value(), btq::queue_cleared);
    CHECK(result.attempts() == 1);

    std::stop_source stop;
    answer_box<int> cancelled;
    queue.submit(failing_first(5, std::make_shared<std::atomic<int>>(0)), cancelled.callback(),
                 {.stop = stop.get_token(), .retry = slow});
    REQUIRE(eventually([&] { return queue.stats().retrying == 1; }, 2s));
    stop.request_stop();
    CHECK_THROWS_AS(cancelled.future.get().value(), btq::task_cancelled);

    answer_box<int> expired;
    queue.submit(failing_first(5, std::make_shared<std::atomic<int>>(0)), expired.callback(),
                 {.deadline = btq::clock::now() + 100ms,
                  .retry = btq::retry_policy{.attempts = 3, .backoff = 300ms, .jitter = 0.0}});
    CHECK_THROWS_AS(expired.future.get().value(), btq::task_expired);
    queue.drain();
    s = queue.stats();
    CHECK(s.cleared == 1);
    CHECK(s.cancelled == 1);
    CHECK(s.expired == 1);
    CHECK(s.retrying == 0);
    CHECK(identity_holds(s));
}

TEST_CASE("a retry policy on a move-only task, or a bad policy, is refused at submit",
          "[queue][retry]") {
    auto run = [](std::unique_ptr<int> job) { return *job; };
    btq::bounded_task_queue<std::unique_ptr<int>, btq::callable_executor<decltype(run)>> only_moves(
        {.max_concurrency = 1}, btq::callable_executor(run));
    CHECK_THROWS_WITH(only_moves.submit(std::make_unique<int>(1), {.retry = btq::retry_policy{}}),
                      Catch::Contains("copyable"));
    CHECK(only_moves.submit(std::make_unique<int>(2)).get() == 2);
    int_queue queue({.max_concurrency = 1});
    CHECK_THROWS_AS(queue.submit([] { return 1; }, {.retry = btq::retry_policy{.attempts = 0}}),
                    std::invalid_argument);
    CHECK_THROWS_AS(queue.submit([] { return 1; }, {.retry = btq::retry_policy{.multiplier = 0.5}}),
                    std::invalid_argument);
    CHECK(queue.stats().submitted == 0);
}

TEST_CASE("under 4 producers of tasks that fail at random and retry, with clear() racing, every "
          "snapshot keeps the identity and every task is answered once",
          "[queue][retry][stats][stress]") {
    void_queue queue({.max_concurrency = 3, .capacity = 24});
    std::atomic<bool> producing{true};
    std::atomic<std::uint64_t> answered{0};
    std::atomic<std::uint64_t> admitted{0};
    std::vector<std::thread> producers;
    for (int p = 0; p < 4; ++p) {
        producers.emplace_back([&, p] {
            std::minstd_rand random(static_cast<unsigned>(p) + 21);
            while (producing.load(std::memory_order_relaxed)) {
                const bool fails = random() % 2 == 0;
                try {
                    queue.submit(
                        [fails] {
                            if (fails) {
                                throw std::runtime_error("unlucky");
                            }
                        },
                        [&](btq::task_result<void>) noexcept { answered.fetch_add(1); },
                        {.key = static_cast<int>(random() % 3),
                         .retry = btq::retry_policy{.attempts = 3,
                                                    .backoff = std::chrono::microseconds(200)}});
                    admitted.fetch_add(1);
                } catch (const btq::queue_full&) {
                    std::this_thread::yield();
                }
            }
        });
    }
    btq_test::disturber disturber(8, 3000, [&queue](std::minstd_rand& /*random*/) {
        static_cast<void>(queue.clear("sweep"));
    });
    CHECK(btq_test::first_broken_snapshot([&] { return queue.stats(); },
                                          [](const btq::queue_stats& s) -> std::string {
                                              if (identity_holds(s) && s.retrying <= s.queued) {
                                                  return {};
                                              }
                                              return "queued " + std::to_string(s.queued) +
                                                     ", retrying " + std::to_string(s.retrying);
                                          }) == "");
    producing = false;
    btq_test::join_all(producers);
    disturber.stop();
    queue.drain();
    const auto s = queue.stats();
    CHECK(identity_holds(s));
    CHECK(answered.load() == admitted.load());
    CHECK(s.retries_total > 0);
    CHECK(s.queued == 0);
    CHECK(queue.stats(3).keys.empty());
}
