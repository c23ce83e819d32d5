// Whitebox: process::deadline_heap, the process executors' deadlines.
#include <btq/process/deadline_heap.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <utility>
#include <vector>

namespace {

enum class kind : std::uint8_t { first, second };
using heap = btq::process::deadline_heap<int, kind>;
using clock_type = heap::clock_type;
using std::chrono::milliseconds;

} // namespace

TEST_CASE("deadlines come due earliest first, and only those at or before now", "[deadline_heap]") {
    heap deadlines;
    const auto t = clock_type::now();
    deadlines.push(t + milliseconds(30), 30, kind::first);
    deadlines.push(t + milliseconds(10), 10, kind::second);
    deadlines.push(t + milliseconds(20), 20, kind::first);
    std::vector<std::pair<int, kind>> due;
    deadlines.pop_due(t + milliseconds(20),
                      [&](int key, kind what) { due.emplace_back(key, what); });
    REQUIRE(due.size() == 2);
    CHECK(due[0] == std::pair{10, kind::second});
    CHECK(due[1] == std::pair{20, kind::first});
    CHECK(deadlines.size() == 1);
}

TEST_CASE("timeout_ms is -1 without deadlines, 0 once one is due, and rounds up otherwise",
          "[deadline_heap]") {
    heap deadlines;
    CHECK(deadlines.timeout_ms() == -1);
    deadlines.push(clock_type::now() + std::chrono::seconds(10), 1, kind::first);
    const int far = deadlines.timeout_ms();
    CHECK(far > 9'000);
    CHECK(far <= 10'000);
    deadlines.push(clock_type::now() + std::chrono::microseconds(100), 2, kind::first);
    CHECK(deadlines.timeout_ms() <= 1); // 100 us rounds up to 1 ms (0 if it has passed)
    deadlines.push(clock_type::now() - milliseconds(5), 3, kind::first);
    CHECK(deadlines.timeout_ms() == 0);
}

TEST_CASE("timeout_ms(is_stale) drops the earliest deadlines of gone keys, and only those",
          "[deadline_heap]") {
    heap deadlines;
    const auto t = clock_type::now();
    deadlines.push(t - milliseconds(2), 1, kind::first); // gone
    deadlines.push(t - milliseconds(1), 2, kind::first); // alive, due
    deadlines.push(t + milliseconds(1), 3, kind::first); // gone, behind an alive one
    CHECK(deadlines.timeout_ms([](int key) { return key != 2; }) == 0);
    CHECK(deadlines.size() == 2);
    std::vector<int> due;
    deadlines.pop_due(t + milliseconds(5), [&](int key, kind) { due.push_back(key); });
    CHECK(due == std::vector<int>{2, 3});
}

TEST_CASE("a deadline that on_due pushes already due is handled in the same pop_due",
          "[deadline_heap]") {
    heap deadlines;
    const auto t = clock_type::now();
    deadlines.push(t, 1, kind::first);
    std::vector<int> due;
    deadlines.pop_due(t, [&](int key, kind) {
        due.push_back(key);
        if (key == 1) {
            deadlines.push(t, 2, kind::second);                   // due now: this call
            deadlines.push(t + milliseconds(1), 3, kind::second); // later: stays
        }
    });
    CHECK(due == std::vector<int>{1, 2});
    CHECK(deadlines.size() == 1);
}
