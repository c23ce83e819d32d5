// btq::gate_chain: several start gates asked in order, all of which must grant. Two counting
// gates the test opens and closes, and the real memory gate driven by injected readings.
#include <btq/bounded_task_queue.hpp>
#include <btq/detail/waker_registry.hpp>
#include <btq/gates/gate_chain.hpp>
#include <btq/gates/memory_gate.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <stop_token>
#include <thread>
#include <utility>
#include <vector>

#include "test_support.hpp"

using namespace std::chrono_literals;
using btq_test::eventually;

namespace {

/// A synchronous counting gate of `capacity` permits that the test opens and closes. Opening,
/// and every permit given back, wake the queues. It records what the chain tells it.
class counting_gate {
  public:
    class permit_type {
      public:
        permit_type(permit_type&& other) noexcept
            : gate_(std::exchange(other.gate_, nullptr)), serial_(other.serial_) {}
        permit_type& operator=(permit_type&&) = delete;
        permit_type(const permit_type&) = delete;
        permit_type& operator=(const permit_type&) = delete;
        ~permit_type() {
            if (gate_ != nullptr) {
                gate_->release(serial_);
            }
        }
        [[nodiscard]] std::uint64_t serial() const noexcept { return serial_; }
        /// btq::revocable_permit: kept so lose_all() can request it.
        void bind_stop(std::stop_source source) { gate_->bound(serial_, std::move(source)); }

      private:
        friend class counting_gate;
        permit_type(counting_gate* gate, std::uint64_t serial) : gate_(gate), serial_(serial) {}
        counting_gate* gate_;
        std::uint64_t serial_;
    };

    explicit counting_gate(std::size_t capacity, bool open = true, std::uint64_t tag = 0)
        : capacity_(capacity), open_(open), tag_(tag) {}

    std::optional<permit_type> try_acquire(const btq::start_request& /*request*/) noexcept {
        std::lock_guard lock(mutex_);
        ++asked_;
        if (!open_ || out_.size() >= capacity_) {
            return std::nullopt;
        }
        const std::uint64_t serial = ++serials_;
        out_.emplace(serial, std::nullopt);
        peak_out_ = std::max(peak_out_, out_.size());
        return permit_type(this, serial);
    }

    void return_unstarted(permit_type&& permit) noexcept {
        std::lock_guard lock(mutex_);
        out_.erase(std::exchange(permit.gate_, nullptr) == this ? permit.serial_ : 0);
        ++returned_;
    }

    void demand(const btq::start_gate_waker& /*queue*/, std::size_t held) noexcept {
        std::lock_guard lock(mutex_);
        demand_ = held;
        demand_calls_.push_back(held);
    }

    template <class Task>
    void prepare(Task& task, const permit_type& permit)
        requires requires { task.tokens; }
    {
        task.tokens.push_back(tag_ + permit.serial());
    }

    void attach(btq::start_gate_waker waker) { wakers_.attach(waker); }
    void detach(btq::start_gate_waker waker) { wakers_.detach(waker); }

    void set_open(bool open) {
        {
            std::lock_guard lock(mutex_);
            open_ = open;
        }
        if (open) {
            wakers_.wake_all();
        }
    }

    void lose_all() {
        std::vector<std::stop_source> losing;
        {
            std::lock_guard lock(mutex_);
            for (const auto& [serial, source] : out_) {
                if (source) {
                    losing.push_back(*source);
                }
            }
        }
        for (std::stop_source& source : losing) {
            source.request_stop();
        }
    }

    [[nodiscard]] std::size_t out() {
        std::lock_guard lock(mutex_);
        return out_.size();
    }
    [[nodiscard]] std::size_t peak_out() {
        std::lock_guard lock(mutex_);
        return peak_out_;
    }
    [[nodiscard]] std::uint64_t asked() {
        std::lock_guard lock(mutex_);
        return asked_;
    }
    [[nodiscard]] std::uint64_t returned() {
        std::lock_guard lock(mutex_);
        return returned_;
    }
    [[nodiscard]] std::uint64_t released() {
        std::lock_guard lock(mutex_);
        return released_;
    }
    [[nodiscard]] std::size_t demand() {
        std::lock_guard lock(mutex_);
        return demand_;
    }
    [[nodiscard]] std::size_t demand_calls() {
        std::lock_guard lock(mutex_);
        return demand_calls_.size();
    }

  private:
    void release(std::uint64_t serial) noexcept {
        {
            std::lock_guard lock(mutex_);
            if (out_.erase(serial) == 1) {
                ++released_;
            }
        }
        wakers_.wake_all();
    }
    void bound(std::uint64_t serial, std::stop_source source) {
        std::lock_guard lock(mutex_);
        if (auto found = out_.find(serial); found != out_.end()) {
            found->second = std::move(source);
        }
    }

    btq::detail::waker_registry wakers_;
    std::mutex mutex_;
    const std::size_t capacity_;
    bool open_;
    const std::uint64_t tag_; // added to the serials prepare() hands out
    std::map<std::uint64_t, std::optional<std::stop_source>> out_;
    std::size_t peak_out_ = 0;
    std::uint64_t serials_ = 0;
    std::uint64_t asked_ = 0;
    std::uint64_t returned_ = 0;
    std::uint64_t released_ = 0;
    std::size_t demand_ = 0;
    std::vector<std::size_t> demand_calls_;
};

static_assert(btq::start_gate<btq::gate_chain<counting_gate, counting_gate>>);
static_assert(btq::returns_unstarted<btq::memory_gate>);
static_assert(btq::revocable_permit<btq::gate_chain<counting_gate, counting_gate>::permit_type>);
static_assert(!btq::revocable_permit<btq::gate_chain<btq::memory_gate>::permit_type>);

using two_gates = btq::gate_chain<counting_gate, counting_gate>;
using two_gate_queue =
    btq::bounded_task_queue<std::function<void(std::stop_token)>, btq::thread_executor, two_gates>;

template <class Future>
bool ready_now(Future& future) {
    return future.wait_for(0s) == std::future_status::ready;
}

} // namespace

TEST_CASE("a gate chain starts a task only when every gate grants, asks them in order, and gives "
          "every permit back when the task ends",
          "[gate][chain]") {
    counting_gate first(4, false);
    counting_gate second(4, false);
    two_gates chain(first, second);
    two_gate_queue queue(chain, {.max_concurrency = 2});

    std::future<void> answer = queue.submit([](std::stop_token) {});
    std::this_thread::sleep_for(20ms);
    CHECK_FALSE(ready_now(answer));
    CHECK(first.asked() >= 1);
    CHECK(second.asked() == 0); // never asked while the first refuses
    CHECK(first.demand() == 1); // the held task is the first gate's demand
    CHECK(second.demand_calls() == 0);
    CHECK(chain.blocker_of(&queue) == 0);

    first.set_open(true); // the first grants now, the second still refuses
    REQUIRE(eventually([&] { return second.asked() >= 1; }));
    CHECK_FALSE(ready_now(answer));
    CHECK(first.returned() >= 1); // the first gate's permit went back unstarted...
    CHECK(first.out() == 0);      // ...so none of its permits is out
    CHECK(first.demand() == 0);   // the demand moved to the gate that refused
    CHECK(second.demand() == 1);
    CHECK(chain.blocker_of(&queue) == 1);
    CHECK(chain.held_by(0) == 0);
    CHECK(chain.held_by(1) == 1);
    CHECK(chain.holds_total(0) == 1);
    CHECK(chain.holds_total(1) == 1);

    second.set_open(true);
    REQUIRE(answer.wait_for(10s) == std::future_status::ready);
    REQUIRE(queue.drain(10s));
    CHECK(chain.held_by(1) == 0);
    CHECK(first.released() == 1);
    CHECK(second.released() == 1);
    CHECK(first.out() == 0);
    CHECK(second.out() == 0);
}

TEST_CASE("a gate chain bounds running tasks by its tightest gate and gets every permit back "
          "under producers, deadlines, clear() and random refusals",
          "[gate][chain][stress]") {
    counting_gate wide(5);
    counting_gate narrow(2);
    std::atomic<int> running{0};
    std::atomic<int> over{0};
    std::atomic<int> answered{0};
    constexpr int producers = 3;
    constexpr int per_producer = 250;
    {
        two_gates chain(wide, narrow);
        two_gate_queue queue(chain, {.max_concurrency = 4, .capacity = 4096});
        std::atomic<bool> chaos_done{false};
        std::thread chaos([&] {
            std::minstd_rand random(11);
            while (!chaos_done.load()) {
                wide.set_open(random() % 4 != 0);
                narrow.set_open(random() % 3 != 0);
                std::this_thread::sleep_for(std::chrono::microseconds(100 + random() % 600));
            }
            wide.set_open(true);
            narrow.set_open(true);
        });
        auto body = [&](std::stop_token) {
            if (running.fetch_add(1) + 1 > 2) {
                ++over;
            }
            std::this_thread::yield();
            running.fetch_sub(1);
        };
        std::vector<std::thread> threads;
        for (int p = 0; p < producers; ++p) {
            threads.emplace_back([&, p] {
                std::minstd_rand random(static_cast<unsigned>(p) + 3);
                for (int i = 0; i < per_producer; ++i) {
                    btq::submit_options options;
                    if (random() % 4 == 0) {
                        options.deadline =
                            btq::clock::now() + std::chrono::microseconds(200 + random() % 2000);
                    } else if (random() % 4 == 0) {
                        options.priority = static_cast<int>(random() % 3);
                    }
                    try {
                        queue.submit(
                            body, [&](btq::task_result<void>) noexcept { ++answered; }, options);
                    } catch (const btq::task_expired&) {
                        ++answered; // the deadline passed before submit() looked
                    }
                    if (p == 0 && i == per_producer / 2) {
                        queue.clear();
                    }
                }
            });
        }
        for (std::thread& thread : threads) {
            thread.join();
        }
        chaos_done = true;
        chaos.join();
        REQUIRE(queue.drain(30s));
        // A permit goes back only after its task's slot is free: the queue never counts more
        // running than the tighter gate granted.
        CHECK(queue.stats().peak_active <= 2);
    }
    CHECK(answered.load() == producers * per_producer);
    CHECK(over.load() == 0);
    CHECK(narrow.peak_out() <= 2);
    CHECK(wide.out() == 0);
    CHECK(narrow.out() == 0);
    CHECK(wide.released() == narrow.released()); // every start took one of each, and gave both
}

TEST_CASE("a gate chain's permit is revocable when one part is: a lost part requests the task's "
          "stop",
          "[gate][chain][cancel]") {
    counting_gate first(1);
    counting_gate second(1);
    two_gates chain(first, second);
    two_gate_queue queue(chain, {.max_concurrency = 1});
    std::atomic<bool> started{false};
    std::atomic<bool> stopped{false};
    std::future<void> answer = queue.submit([&](const std::stop_token& stop) {
        started = true;
        while (!stop.stop_requested()) {
            std::this_thread::sleep_for(1ms);
        }
        stopped = true;
    });
    REQUIRE(eventually([&] { return started.load(); }));
    second.lose_all();
    REQUIRE(answer.wait_for(10s) == std::future_status::ready);
    CHECK(stopped.load());
    REQUIRE(queue.drain(10s));
    CHECK(first.out() == 0);
    CHECK(second.out() == 0);
}

namespace {
struct token_job {
    std::vector<std::uint64_t> tokens;
    std::vector<std::uint64_t>* seen = nullptr;
    void operator()(const std::stop_token& /*stop*/) const { *seen = tokens; }
};
} // namespace

TEST_CASE("a gate chain runs every gate's prepare hook, in order", "[gate][chain]") {
    counting_gate first(1, true, 100);
    counting_gate second(1, true, 200);
    two_gates chain(first, second);
    btq::bounded_task_queue<token_job, btq::thread_executor, two_gates> queue(
        chain, {.max_concurrency = 1});
    // Each gate's hook adds its own serial (tagged 100+ and 200+), the first gate's first. (A
    // serial can be skipped: the second task may be asked for before the first one's permits
    // are back, which takes one of the first gate's and gives it back unstarted.)
    std::vector<std::uint64_t> seen;
    queue.submit(token_job{.tokens = {}, .seen = &seen}).get();
    REQUIRE(seen.size() == 2);
    CHECK(seen[0] == 101);
    CHECK(seen[1] == 201);
    queue.submit(token_job{.tokens = {}, .seen = &seen}).get();
    REQUIRE(seen.size() == 2);
    CHECK((seen[0] > 101 && seen[0] < 200));
    CHECK(seen[1] > 201);
}

TEST_CASE("memory first, then a permit pool: a task waiting for memory holds no permit of the "
          "pool, and the memory gate counts no permit of a start the pool refused",
          "[gate][chain][memory]") {
    std::atomic<std::uint64_t> available{64ull << 20};
    btq::memory_gate memory({.min_available_bytes = 256ull << 20,
                             .interval = std::chrono::hours(1),
                             .progress_guarantee = false,
                             .source = [&] {
                                 btq::memory_reading reading;
                                 reading.mem_available = available.load();
                                 return reading;
                             }});
    counting_gate pool(1, false);
    btq::gate_chain<btq::memory_gate, counting_gate> chain(memory, pool);
    btq::bounded_task_queue<std::function<void()>, btq::thread_executor,
                            btq::gate_chain<btq::memory_gate, counting_gate>>
        queue(chain, {.max_concurrency = 2});

    std::future<void> first = queue.submit([] {});
    std::future<void> second = queue.submit([] {});
    std::this_thread::sleep_for(20ms);
    CHECK_FALSE(ready_now(first));
    CHECK(pool.asked() == 0); // memory refuses: the pool is not asked
    CHECK(pool.demand_calls() == 0);
    CHECK(queue.stats().held_by_gate == 2);

    available = 1024ull << 20;
    memory.refresh(); // admits now and wakes the queue; the pool still refuses
    REQUIRE(eventually([&] { return pool.asked() >= 1; }));
    CHECK(memory.permits_out() == 0); // the admission went back unstarted
    CHECK(pool.demand() == 1);        // the pool is told of the one task memory let through so far
    CHECK_FALSE(ready_now(first));

    pool.set_open(true);
    REQUIRE(first.wait_for(10s) == std::future_status::ready);
    REQUIRE(second.wait_for(10s) == std::future_status::ready);
    REQUIRE(queue.drain(10s));
    CHECK(pool.peak_out() == 1);
    CHECK(memory.permits_out() == 0);
    CHECK(pool.out() == 0);
}

TEST_CASE("a gated queue gives a permit back only after its task's slot is free, so it never "
          "counts more tasks running than its gate grants",
          "[gate][permit]") {
    counting_gate one(1);
    std::atomic<int> answered{0};
    {
        btq::bounded_task_queue<std::function<void()>, btq::thread_executor, counting_gate> queue(
            one, {.max_concurrency = 4});
        for (int i = 0; i < 400; ++i) {
            queue.submit([] {}, [&](btq::task_result<void>) noexcept { ++answered; });
        }
        REQUIRE(queue.drain(30s));
        CHECK(queue.stats().peak_active == 1);
        CHECK(one.peak_out() == 1);
    }
    CHECK(answered.load() == 400);
    CHECK(one.out() == 0);
}
