// Per-key fairness (submit_options::key): waiting tasks of different keys take turns, FIFO
// within a key, priorities first; per-key concurrency and capacity; keys forgotten when idle;
// the per-priority and per-key introspection of stats(top_keys).
#include <btq/bounded_task_queue.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "test_support.hpp"

using namespace std::chrono_literals;
using btq_test::eventually;
using btq_test::gate;
using btq_test::identity_holds;

namespace {

using void_queue = btq::bounded_task_queue<std::function<void()>>;

/// `prefix` and `number`, built by append: GCC 12 at -O3 reports a false -Wstringop-overflow in
/// operator+ of a literal and a std::string.
std::string named(const char* prefix, int number) {
    std::string name(prefix);
    name.append(std::to_string(number));
    return name;
}

/// Start order of tasks named by a string, as they record it.
using start_log = btq_test::start_log<std::string>;

/// Holds the queue's only slot until released, so everything submitted meanwhile waits.
struct blocker {
    gate release;
    std::future<void> done;
    explicit blocker(void_queue& queue) {
        done = queue.submit([this] { release.wait(); });
    }
    void open() {
        release.open();
        done.get();
    }
};

} // namespace

TEST_CASE("two keys, one with 1,000 tasks waiting and one with 10: the 10 all start within the "
          "first 30 starts",
          "[queue][keys]") {
    void_queue queue({.max_concurrency = 1, .capacity = 2000});
    start_log log;
    blocker first(queue);
    for (int i = 0; i < 1000; ++i) {
        queue.submit(log.task("heavy"), [](btq::task_result<void>) noexcept {}, {.key = "heavy"});
    }
    for (int i = 0; i < 10; ++i) {
        queue.submit(log.task(named("light", i)), [](btq::task_result<void>) noexcept {},
                     {.key = "light"});
    }
    first.open();
    queue.drain();
    const std::vector<std::string> order = log.get();
    REQUIRE(order.size() == 1010);
    std::vector<std::size_t> light_at;
    for (std::size_t at = 0; at < order.size(); ++at) {
        if (order[at].starts_with("light")) {
            light_at.push_back(at);
        }
    }
    REQUIRE(light_at.size() == 10);
    CHECK(light_at.back() < 30);
    for (std::size_t i = 0; i < light_at.size(); ++i) { // FIFO within the key
        CHECK(order[light_at[i]] == named("light", static_cast<int>(i)));
    }
    CHECK(queue.stats(10).keys.empty()); // idle keys are forgotten
}

TEST_CASE("keys take turns round robin, tasks without a key take one turn together, FIFO within "
          "each, and a new key joins at the end of the round",
          "[queue][keys]") {
    void_queue queue({.max_concurrency = 1, .capacity = 100});
    start_log log;
    blocker first(queue);
    const auto ignore = [](btq::task_result<void>) noexcept {};
    for (int i = 0; i < 3; ++i) {
        queue.submit(log.task(named("a", i)), ignore, {.key = "a"});
    }
    for (int i = 0; i < 3; ++i) {
        queue.submit(log.task(named("n", i)), ignore); // no key: one member
    }
    for (int i = 0; i < 3; ++i) {
        queue.submit(log.task(named("b", i)), ignore, {.key = 7});
    }
    first.open();
    queue.drain();
    const std::vector<std::string> order = log.get();
    // The keyless tasks' turn comes first in each round, then the keys in the order they came.
    CHECK(order == std::vector<std::string>{"n0", "a0", "b0", "n1", "a1", "b1", "n2", "a2", "b2"});
}

TEST_CASE("priorities come before turns: a higher priority key's tasks start first, FIFO",
          "[queue][keys]") {
    void_queue queue({.max_concurrency = 1, .capacity = 100});
    start_log log;
    blocker first(queue);
    const auto ignore = [](btq::task_result<void>) noexcept {};
    queue.submit(log.task("a-low0"), ignore, {.key = "a"});
    queue.submit(log.task("b-high0"), ignore, {.priority = 5, .key = "b"});
    queue.submit(log.task("a-high0"), ignore, {.priority = 5, .key = "a"});
    queue.submit(log.task("b-high1"), ignore, {.priority = 5, .key = "b"});
    queue.submit(log.task("a-low1"), ignore, {.key = "a"});
    first.open();
    queue.drain();
    CHECK(log.get() ==
          std::vector<std::string>{"b-high0", "a-high0", "b-high1", "a-low0", "a-low1"});
}

TEST_CASE("max_per_key: a key at its limit is passed over, and its waiting tasks start as its "
          "running ones end",
          "[queue][keys]") {
    void_queue queue({.max_concurrency = 4, .capacity = 100, .max_per_key = 1});
    std::array<std::atomic<int>, 2> running{};
    std::array<std::atomic<int>, 2> most{};
    std::vector<std::future<void>> answers;
    for (int i = 0; i < 12; ++i) {
        const int key = i % 3 == 0 ? 1 : 0; // key 0 submits twice as much
        answers.push_back(queue.submit(
            [&, key] {
                const auto at = static_cast<std::size_t>(key);
                const int now = running[at].fetch_add(1) + 1;
                int seen = most[at].load();
                while (now > seen && !most[at].compare_exchange_weak(seen, now)) {
                }
                std::this_thread::sleep_for(5ms);
                running[at].fetch_sub(1);
            },
            {.key = key}));
    }
    const auto s = queue.stats(5);
    CHECK(s.active <= 2); // one per key, though 4 slots are free
    for (auto& answer : answers) {
        answer.get();
    }
    CHECK(most[0].load() == 1);
    CHECK(most[1].load() == 1);
    queue.drain();
    CHECK(queue.stats(5).keys.empty());
}

TEST_CASE("capacity_per_key: one key cannot fill the queue, and its refusals are counted for it",
          "[queue][keys]") {
    void_queue queue({.max_concurrency = 1, .capacity = 10, .capacity_per_key = 3});
    blocker first(queue);
    std::vector<std::future<void>> answers;
    for (int i = 0; i < 3; ++i) {
        answers.push_back(queue.submit([] {}, {.key = "greedy"}));
    }
    CHECK_THROWS_AS(queue.submit([] {}, {.key = "greedy"}), btq::queue_full);
    std::function<void()> refused = [] {};
    CHECK_FALSE(queue.try_submit(std::move(refused), {.key = "greedy"}).has_value());
    answers.push_back(queue.submit([] {}, {.key = "other"}));
    answers.push_back(queue.submit([] {})); // no key: only the queue's capacity applies

    const auto s = queue.stats(10);
    REQUIRE(s.keys.size() == 2);
    CHECK(s.keys[0].key == btq::task_key("greedy"));
    CHECK(s.keys[0].waiting == 3);
    CHECK(s.keys[0].rejected == 2);
    CHECK(s.keys[1].key == btq::task_key("other"));
    CHECK(s.keys[1].waiting == 1);
    CHECK(s.rejected == 2);
    CHECK(s.waiting_by_priority == std::vector<btq::priority_count>{{0, 5}});
    first.open();
    for (auto& answer : answers) {
        answer.get();
    }
}

TEST_CASE("a key's record, kept for reuse once idle, comes back empty for the next key: no "
          "refusals, waiting or running carried over, across more keys than are kept",
          "[queue][keys]") {
    void_queue queue({.max_concurrency = 1, .capacity = 100, .capacity_per_key = 2});
    for (int round = 0; round < 3; ++round) {
        blocker first(queue);
        std::vector<std::future<void>> answers;
        for (int key = 0; key < 40; ++key) { // more than the 16 idle records the table keeps
            const std::string name = named("client-", key);
            answers.push_back(queue.submit([] {}, {.key = name}));
            answers.push_back(queue.submit([] {}, {.key = name}));
            if (key % 2 == 0) {
                CHECK_THROWS_AS(queue.submit([] {}, {.key = name}), btq::queue_full);
            }
        }
        const auto s = queue.stats(100);
        REQUIRE(s.keys.size() == 40);
        for (const btq::key_stats& each : s.keys) {
            CHECK(each.waiting == 2);
            CHECK(each.running == 0);
            const int number = std::stoi(each.key.to_string().substr(7));
            CHECK(each.rejected == (number % 2 == 0 ? 1U : 0U)); // this round's refusals only
        }
        first.open();
        for (auto& answer : answers) {
            answer.get();
        }
        queue.drain();
        CHECK(queue.stats(100).keys.empty());
    }
    CHECK(identity_holds(queue.stats()));
}

TEST_CASE("stats(top_keys) counts waiting tasks per priority and running ones per key, busiest "
          "keys first",
          "[queue][keys][stats]") {
    void_queue queue({.max_concurrency = 2, .capacity = 100});
    gate release;
    auto a = queue.submit([&] { release.wait(); }, {.key = "a"});
    auto b = queue.submit([&] { release.wait(); }, {.key = "b"});
    REQUIRE(eventually([&] { return queue.stats().active == 2; }));
    std::vector<std::future<void>> answers;
    for (int i = 0; i < 3; ++i) {
        answers.push_back(queue.submit([] {}, {.priority = 2, .key = "b"}));
    }
    answers.push_back(queue.submit([] {}, {.priority = -1}));
    answers.push_back(queue.submit([] {}));
    const auto s = queue.stats(1);
    REQUIRE(s.keys.size() == 1);
    CHECK(s.keys[0].key == btq::task_key("b"));
    CHECK(s.keys[0].running == 1);
    CHECK(s.keys[0].waiting == 3);
    CHECK(s.waiting_by_priority == std::vector<btq::priority_count>{{2, 3}, {0, 1}, {-1, 1}});
    CHECK(queue.stats().keys.empty()); // plain stats() leaves them out
    release.open();
    a.get();
    b.get();
    for (auto& answer : answers) {
        answer.get();
    }
}

TEST_CASE("keyed tasks cancelled, expired, cleared and displaced leave their lanes consistent",
          "[queue][keys]") {
    void_queue queue(
        {.max_concurrency = 1, .capacity = 4, .overflow = btq::overflow_policy::drop_oldest});
    blocker first(queue);
    std::stop_source stop;
    auto cancelled = queue.submit([] {}, {.stop = stop.get_token(), .key = "a"});
    auto expiring = queue.submit([] {}, {.deadline = btq::clock::now() + 20ms, .key = "b"});
    auto oldest = queue.submit([] {}, {.key = "c"});
    auto kept = queue.submit([] {}, {.key = "a"});
    auto newcomer = queue.submit([] {}, {.key = "d"}); // displaces the oldest: a's cancelled one
    CHECK_THROWS_AS(cancelled.get(), btq::task_displaced);
    stop.request_stop(); // too late to matter
    CHECK_THROWS_AS(expiring.get(), btq::task_expired);
    CHECK(queue.stats(10).keys.size() == 3); // a, c, d
    first.open();
    oldest.get();
    kept.get();
    newcomer.get();
    queue.drain();
    CHECK(queue.stats(10).keys.empty());
    CHECK(identity_holds(queue.stats()));

    queue.pause();
    auto cleared = queue.submit([] {}, {.key = "e"});
    CHECK(queue.clear("bye") == 1);
    CHECK_THROWS_AS(cleared.get(), btq::queue_cleared);
    CHECK(queue.stats(10).keys.empty());
}

TEST_CASE("under 6 producers with keys, priorities, weights, stops and deadlines, clear() and "
          "set_max_concurrency() racing, every snapshot keeps the identity and the per-key "
          "limit, and every key is forgotten at the end",
          "[queue][keys][stats][stress]") {
    void_queue queue({.max_concurrency = 3, .capacity = 40, .max_per_key = 2});
    std::array<std::atomic<int>, 5> running{};
    std::atomic<int> most_per_key{0};
    std::atomic<bool> producing{true};
    std::atomic<std::uint64_t> answered{0};
    std::atomic<std::uint64_t> admitted{0};
    std::vector<std::thread> producers;
    for (int p = 0; p < 6; ++p) {
        producers.emplace_back([&, p] {
            std::minstd_rand random(static_cast<unsigned>(p) + 11);
            std::stop_source source;
            while (producing.load(std::memory_order_relaxed)) {
                int key = static_cast<int>(random() % 5);
                btq::submit_options options{.priority = static_cast<int>(random() % 2),
                                            .weight = 1 + random() % 2,
                                            .key = key};
                const auto pick = random() % 6;
                if (pick == 0) {
                    options.deadline =
                        btq::clock::now() + std::chrono::microseconds(random() % 300);
                } else if (pick == 1) {
                    source = std::stop_source();
                    options.stop = source.get_token();
                } else if (pick == 2) {
                    options.key = btq::task_key(); // some without a key: not limited
                    key = -1;
                }
                try {
                    queue.submit(
                        [&, key] {
                            if (key < 0) {
                                return;
                            }
                            const auto at = static_cast<std::size_t>(key);
                            const int now = running[at].fetch_add(1) + 1;
                            int seen = most_per_key.load();
                            while (now > seen && !most_per_key.compare_exchange_weak(seen, now)) {
                            }
                            std::this_thread::yield();
                            running[at].fetch_sub(1);
                        },
                        [&](btq::task_result<void>) noexcept { answered.fetch_add(1); }, options);
                    admitted.fetch_add(1);
                } catch (const btq::task_not_run&) {
                }
                if (pick == 3) {
                    source.request_stop();
                }
            }
        });
    }
    btq_test::disturber disturber(3, 400, btq_test::clear_or_resize(queue, 3, 2, 4));
    CHECK(btq_test::first_broken_snapshot([&] { return queue.stats(8); },
                                          [](const btq::queue_stats& s) -> std::string {
                                              bool per_key_ok = true;
                                              std::size_t keyed_waiting = 0;
                                              for (const auto& key : s.keys) {
                                                  per_key_ok = per_key_ok && key.running <= 2;
                                                  keyed_waiting += key.waiting;
                                              }
                                              if (identity_holds(s) && per_key_ok &&
                                                  keyed_waiting <= s.queued) {
                                                  return {};
                                              }
                                              return "queued " + std::to_string(s.queued) +
                                                     ", keyed waiting " +
                                                     std::to_string(keyed_waiting);
                                          }) == "");
    producing = false;
    btq_test::join_all(producers);
    disturber.stop();
    queue.drain();
    const auto s = queue.stats(8);
    CHECK(identity_holds(s));
    CHECK(s.keys.empty());
    CHECK(most_per_key.load() <= 2);
    CHECK(answered.load() == admitted.load());
}

TEST_CASE("task_key: strings and integers, never equal to each other, and the empty key is none",
          "[queue][keys]") {
    CHECK(btq::task_key().empty());
    CHECK(btq::task_key("").empty());
    CHECK(btq::task_key(std::string("7")) != btq::task_key(7));
    CHECK(btq::task_key(7) == btq::task_key(7L));
    CHECK(btq::task_key("client-7").to_string() == "client-7");
    CHECK(btq::task_key(-3).to_string() == "-3");
    CHECK(btq::task_key(7).is_number());
    // Long keys: their first 39 bytes and a hash of the whole, so keys that differ late differ.
    const std::string common(60, 'k');
    const btq::task_key long_a(common + "a");
    const btq::task_key long_b(common + "b");
    CHECK(long_a != long_b);
    CHECK(long_a == btq::task_key(common + "a"));
    CHECK(long_a.to_string().starts_with(std::string(39, 'k') + "...#"));
    CHECK(btq::task_key(std::string(47, 'x')).to_string() == std::string(47, 'x'));
    static_assert(std::is_trivially_copyable_v<btq::task_key>);
    CHECK(std::hash<btq::task_key>{}(btq::task_key("x")) ==
          std::hash<btq::task_key>{}(btq::task_key(std::string_view("x"))));
}

TEST_CASE("set_priority moves a waiting task to the place its submission gives it at the new "
          "priority, and leaves a started one alone",
          "[queue][priority]") {
    void_queue queue({.max_concurrency = 1, .capacity = 100});
    start_log log;
    blocker first(queue);
    const auto ignore = [](btq::task_result<void>) noexcept {};
    queue.submit(log.task("a"), ignore, {.id = 1});
    queue.submit(log.task("b"), ignore, {.priority = 5});
    queue.submit(log.task("c"), ignore, {.id = 3});
    queue.submit(log.task("d"), ignore, {.priority = 5, .key = "k", .id = 4});
    queue.submit(log.task("e"), ignore, {.priority = 5, .key = "k"});
    CHECK(queue.set_priority(3, 5) == 1);  // c joins priority 5, after b (submitted before it)
    CHECK(queue.set_priority(4, -1) == 1); // d goes last, its key's turn kept for e
    CHECK(queue.set_priority(99, 7) == 0); // no such task
    first.open();
    queue.drain();
    CHECK(log.get() == std::vector<std::string>{"b", "e", "c", "a", "d"});
    CHECK(queue.set_priority(1, 9) == 0); // started and answered: unaffected
    CHECK(queue.stats(5).keys.empty());
}

TEST_CASE("tasks sharing an id all move; one that started is left out of the count",
          "[queue][priority]") {
    void_queue queue({.max_concurrency = 1, .capacity = 100});
    gate release;
    auto running = queue.submit([&] { release.wait(); }, {.id = 7});
    REQUIRE(eventually([&] { return queue.stats().active == 1; }));
    start_log log;
    const auto ignore = [](btq::task_result<void>) noexcept {};
    queue.submit(log.task("plain"), ignore);
    queue.submit(log.task("seven-1"), ignore, {.id = 7});
    queue.submit(log.task("seven-2"), ignore, {.id = 7});
    CHECK(queue.set_priority(7, 3) == 2);
    release.open();
    running.get();
    queue.drain();
    CHECK(log.get() == std::vector<std::string>{"seven-1", "seven-2", "plain"});
}

TEST_CASE("plain tasks pushed from 4 producers while keyed ones wait each start exactly once",
          "[queue][keys][stress]") {
    // Plain tasks travel through the lock-free inbox, keyed ones through the list: while keys
    // take turns the inbox's oldest competes as the keyless tasks' head, and a producer may
    // push onto an empty inbox at any moment of a take.
    constexpr int per_producer = 25'000;
    void_queue queue({.max_concurrency = 2, .capacity = 4 * per_producer});
    std::atomic<int> runs{0};
    std::atomic<int> answers{0};
    std::vector<std::thread> producers;
    for (int p = 0; p < 4; ++p) {
        producers.emplace_back([&, p] {
            for (int i = 0; i < per_producer; ++i) {
                btq::submit_options options;
                if (i % 10 == 0) {
                    options.key = (p * per_producer + i) % 8;
                }
                queue.submit([&runs] { runs.fetch_add(1, std::memory_order_relaxed); },
                             [&answers](btq::task_result<void> result) noexcept {
                                 if (result) {
                                     answers.fetch_add(1, std::memory_order_relaxed);
                                 }
                             },
                             options);
            }
        });
    }
    btq_test::join_all(producers);
    queue.drain();
    CHECK(runs.load() == 4 * per_producer);
    CHECK(answers.load() == 4 * per_producer);
    CHECK(identity_holds(queue.stats()));
    CHECK(queue.stats(8).keys.empty());
}
