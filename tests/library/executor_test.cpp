// The completion handle, task_result, and the two in-process executors.
#include <btq/btq.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <future>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "test_support.hpp"

TEST_CASE("task_result holds a value or an error", "[executor]") {
    btq::task_result<int> value(std::in_place, 5);
    CHECK(value.has_value());
    CHECK(*value == 5);
    CHECK(value.error() == nullptr);

    btq::task_result<int> failed(std::make_exception_ptr(std::runtime_error("no")));
    CHECK_FALSE(failed);
    CHECK_THROWS_WITH(failed.value(), "no");

    btq::task_result<void> done(std::in_place);
    CHECK(done.has_value());
    CHECK_NOTHROW(done.value());
}

TEST_CASE("a completion answers exactly once and refuses a second use", "[executor]") {
    int calls = 0;
    int seen = 0;
    auto done = btq::completion<int>::from([&](btq::task_result<int> r) {
        ++calls;
        seen = *r;
    });
    CHECK(done.pending());
    done.set_value(3);
    CHECK_FALSE(done.pending());
    CHECK_THROWS_AS(done.set_value(4), std::logic_error);
    CHECK(calls == 1);
    CHECK(seen == 3);
}

TEST_CASE("a completion dropped unused answers broken_completion and a moved-from one does nothing",
          "[executor]") {
    int calls = 0;
    std::exception_ptr error;
    {
        auto done = btq::completion<void>::from([&](btq::task_result<void> r) {
            ++calls;
            error = r.error();
        });
        btq::completion<void> moved = std::move(done);
        CHECK_FALSE(done.pending()); // NOLINT(bugprone-use-after-move)
        CHECK(moved.pending());
    }
    CHECK(calls == 1);
    CHECK_THROWS_AS(std::rethrow_exception(error), btq::broken_completion);
}

TEST_CASE("thread_executor runs tasks on its own threads and reports values and exceptions",
          "[executor][thread]") {
    btq::thread_executor executor(2);
    CHECK(executor.thread_count() == 2);
    std::promise<std::thread::id> where;
    executor.execute([] { return std::this_thread::get_id(); },
                     btq::completion<std::thread::id>::from(
                         [&](btq::task_result<std::thread::id> r) { where.set_value(*r); }));
    CHECK(where.get_future().get() != std::this_thread::get_id());

    std::promise<std::string> message;
    executor.execute([]() -> int { throw std::runtime_error("thrown in task"); },
                     btq::completion<int>::from([&](btq::task_result<int> r) {
                         try {
                             (void)r.value();
                         } catch (const std::exception& e) {
                             message.set_value(e.what());
                         }
                     }));
    CHECK(message.get_future().get() == "thrown in task");

    executor.reserve_concurrency(5);
    CHECK(executor.thread_count() == 5);
    executor.reserve_concurrency(3); // never shrinks
    CHECK(executor.thread_count() == 5);
}

TEST_CASE("thread_executor's destructor runs every job already handed over", "[executor][thread]") {
    std::atomic<int> answered{0};
    {
        btq::thread_executor executor(1);
        for (int i = 0; i < 1'000; ++i) {
            executor.execute([] { std::this_thread::yield(); },
                             btq::completion<void>::from([&](btq::task_result<void> r) {
                                 if (r) {
                                     ++answered;
                                 }
                             }));
        }
    }
    CHECK(answered.load() == 1'000);
}

TEST_CASE("thread_executor runs large tasks that do not fit the inline job buffer",
          "[executor][thread]") {
    btq::thread_executor executor(1);
    std::array<char, 256> big{};
    big[255] = 'z';
    std::promise<char> last;
    executor.execute(
        [big] { return big[255]; },
        btq::completion<char>::from([&](btq::task_result<char> r) { last.set_value(*r); }));
    CHECK(last.get_future().get() == 'z');
}

TEST_CASE("a synchronous callable_executor runs the function on the dispatching thread",
          "[executor][callable]") {
    std::thread::id ran_on;
    auto function = [&](int x) {
        ran_on = std::this_thread::get_id();
        if (x < 0) {
            throw std::invalid_argument("negative");
        }
        return x * 2;
    };
    btq::bounded_task_queue<int, btq::callable_executor<decltype(function)>> queue(
        {.max_concurrency = 2, .capacity = 4}, btq::callable_executor(function));
    CHECK(queue.submit(21).get() == 42);
    CHECK(ran_on == std::this_thread::get_id());
    CHECK_THROWS_AS(queue.submit(-1).get(), std::invalid_argument);
}

TEST_CASE("an asynchronous callable_executor holds the slot until the work completes",
          "[executor][callable]") {
    std::vector<std::thread> workers;
    std::mutex workers_mutex;
    btq_test::gate release;
    auto start = [&](int x, btq::completion<int>&& done) {
        std::lock_guard lock(workers_mutex);
        workers.emplace_back([&release, x, d = std::move(done)]() mutable {
            release.wait();
            d.set_value(x + 1);
        });
    };
    auto executor = btq::make_async_executor<int>(start);
    btq::bounded_task_queue<int, decltype(executor)> queue({.max_concurrency = 1, .capacity = 4},
                                                           executor);
    auto first = queue.submit(1);
    auto second = queue.submit(2);
    CHECK(queue.stats().active == 1);
    CHECK(queue.stats().queued == 1);
    release.open();
    CHECK(first.get() == 2);
    CHECK(second.get() == 3);
    std::lock_guard lock(workers_mutex);
    for (auto& worker : workers) {
        worker.join();
    }
}

TEST_CASE("an asynchronous function that throws before taking its completion fails the task with "
          "that exception",
          "[executor][callable]") {
    auto executor = btq::make_async_executor<int>(
        [](int, btq::completion<int>&&) { throw std::runtime_error("could not start"); });
    btq::bounded_task_queue<int, decltype(executor)> queue({.max_concurrency = 1, .capacity = 4},
                                                           executor);
    CHECK_THROWS_WITH(queue.submit(1).get(), "could not start");
    CHECK(queue.stats().active == 0);
}
