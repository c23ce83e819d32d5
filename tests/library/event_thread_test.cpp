// Whitebox: process::event_thread, the thread, poller and hand-over list of the process
// executors. Some cases start no thread: the test's own thread then plays the loop.
#include <btq/process/event_thread.hpp>

#include <catch2/catch.hpp>

#include <sys/epoll.h>

#include <array>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <stop_token>
#include <thread>
#include <utility>
#include <vector>

namespace {

struct entry {
    int value = 0;
    btq::process::stop_watch stop;
};
using event_thread = btq::process::event_thread<entry>;

std::unique_ptr<entry> make_entry(int value) {
    auto made = std::make_unique<entry>();
    made->value = value;
    return made;
}

/// Whether the poller has been woken (consumes the wake-up).
bool woken(event_thread& events) {
    std::array<epoll_event, 4> ready{};
    bool was_woken = false;
    events.poller().wait(ready, 0, &was_woken);
    return was_woken;
}

/// The smallest owner: its loop records the values it takes, and returns once stopping with
/// nothing in transit. An item of value -1 makes the loop hand itself the value 42.
class recorder {
  public:
    recorder() {
        events_.start([this] { run(); });
    }
    recorder(const recorder&) = delete;
    recorder& operator=(const recorder&) = delete;
    ~recorder() { events_.stop_and_join(); }

    event_thread& events() { return events_; }

    /// The values taken so far, once there are at least `count`.
    std::vector<int> wait_for(std::size_t count) {
        std::unique_lock lock(mutex_);
        changed_.wait_for(lock, std::chrono::seconds(10), [&] { return values_.size() >= count; });
        return values_;
    }

    bool loop_owned_its_thread = false;
    bool self_hand_over_woke = true;

  private:
    void run() {
        std::array<epoll_event, 4> ready{};
        for (;;) {
            events_.wait(ready, -1);
            events_.take(taken_);
            for (auto& item : taken_.arrived) {
                if (item->value == -1) {
                    loop_owned_its_thread = events_.owns_this_thread();
                    events_.hand_over(make_entry(42));
                    self_hand_over_woke = woken(events_); // the next wait() takes the 42
                }
                std::lock_guard lock(mutex_);
                values_.push_back(item->value);
            }
            changed_.notify_all();
            if (taken_.stopping && !events_.pending()) {
                return;
            }
        }
    }

    event_thread events_;
    event_thread::taken taken_;
    std::mutex mutex_;
    std::condition_variable changed_;
    std::vector<int> values_;
};

} // namespace

TEST_CASE("items handed over from other threads reach the loop in order, on its own thread",
          "[event_thread]") {
    recorder owner;
    CHECK_FALSE(owner.events().owns_this_thread());
    std::thread producer([&] {
        for (int i = 0; i < 100; ++i) {
            owner.events().hand_over(make_entry(i));
        }
    });
    producer.join();
    const std::vector<int> got = owner.wait_for(100);
    REQUIRE(got.size() == 100);
    for (int i = 0; i < 100; ++i) {
        CHECK(got[static_cast<std::size_t>(i)] == i);
    }
}

TEST_CASE("a hand-over from the loop's own thread does not wake its poller", "[event_thread]") {
    recorder owner;
    owner.events().hand_over(make_entry(-1));
    const std::vector<int> got = owner.wait_for(2);
    CHECK(got == std::vector<int>{-1, 42});
    CHECK(owner.loop_owned_its_thread);
    CHECK_FALSE(owner.self_hand_over_woke);
}

TEST_CASE("an item handed over while the loop is not waiting costs no wake-up, and the next "
          "wait returns at once, as woken",
          "[event_thread]") {
    event_thread events; // not started: this thread is no loop
    events.hand_over(make_entry(1));
    CHECK_FALSE(woken(events));
    CHECK(events.pending());
    std::array<epoll_event, 4> ready{};
    bool was_woken = false;
    const auto start = std::chrono::steady_clock::now();
    CHECK(events.wait(ready, 10'000, &was_woken) == 0);
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
    CHECK(was_woken);
}

TEST_CASE("request_cancel withdraws what was handed over before it; later items arrive as usual",
          "[event_thread]") {
    event_thread events;
    event_thread::taken taken;
    events.hand_over(make_entry(1));
    events.hand_over(make_entry(2));
    events.request_cancel();
    events.hand_over(make_entry(3));
    events.take(taken);
    CHECK(taken.cancel);
    REQUIRE(taken.cancelled.size() == 2);
    CHECK(taken.cancelled[0]->value == 1);
    CHECK(taken.cancelled[1]->value == 2);
    REQUIRE(taken.arrived.size() == 1);
    CHECK(taken.arrived[0]->value == 3);
    CHECK_FALSE(events.pending());

    events.take(taken); // each flag is reported once
    CHECK_FALSE(taken.cancel);
    CHECK(taken.cancelled.empty());
    CHECK(taken.arrived.empty());
}

TEST_CASE("a stop requested before the hand-over, or after it, is reported by take()",
          "[event_thread]") {
    event_thread events;
    event_thread::taken taken;
    std::stop_source early;
    auto first = make_entry(1);
    events.watch_stop(*first, early.get_token());
    early.request_stop();
    events.take(taken); // the request was seen before the item was there to be found...
    CHECK(taken.stop_requested);
    events.hand_over(std::move(first));
    events.take(taken); // ...so the hand-over has it looked for again
    CHECK(taken.stop_requested);
    REQUIRE(taken.arrived.size() == 1);
    CHECK(taken.arrived[0]->stop.requested());

    std::stop_source late;
    auto second = make_entry(2);
    events.watch_stop(*second, late.get_token());
    events.hand_over(std::move(second));
    events.take(taken);
    CHECK_FALSE(taken.stop_requested);
    REQUIRE(taken.arrived.size() == 1);
    static_cast<void>(woken(events));
    late.request_stop();
    CHECK(woken(events));
    events.take(taken);
    CHECK(taken.stop_requested);
    taken.arrived.clear(); // the stop watch before the stop source: destroyed first
}

TEST_CASE("once stopping, try_hand_over refuses and leaves the item; hand_over still delivers",
          "[event_thread]") {
    event_thread events;
    event_thread::taken taken;
    CHECK_FALSE(events.stopping());
    events.stop_and_join(); // no thread: only the flag
    CHECK(events.stopping());
    auto refused = make_entry(1);
    CHECK_FALSE(events.try_hand_over(refused));
    REQUIRE(refused != nullptr);
    CHECK(refused->value == 1);
    CHECK_FALSE(events.pending());
    events.hand_over(make_entry(2));
    CHECK(events.pending());
    events.take(taken);
    CHECK(taken.stopping);
    REQUIRE(taken.arrived.size() == 1);
    CHECK(taken.arrived[0]->value == 2);
}
