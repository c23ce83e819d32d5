// The callable executor: throttle calls to a function, synchronously and asynchronously.
#include <btq/btq.hpp>

#include <chrono>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

int main() {
    using namespace std::chrono_literals;

    // Synchronous: F(task) runs on the thread that dispatches it. Here, at most 2 "API calls"
    // at once across 6 client threads.
    auto call_api = [](const std::string& query) {
        std::this_thread::sleep_for(10ms); // stands in for a rate-limited service
        return "result for " + query;
    };
    using sync_executor = btq::callable_executor<decltype(call_api)>;
    btq::bounded_task_queue<std::string, sync_executor> api(
        {.max_concurrency = 2, .capacity = 8, .overflow = btq::overflow_policy::block},
        sync_executor(call_api));

    std::vector<std::thread> clients;
    for (int i = 0; i < 6; ++i) {
        clients.emplace_back([&api, i] {
            // Appending, not "q" + std::to_string(i): GCC 12 at -O3 reports a false -Wrestrict
            // inside libstdc++ for operator+(const char*, std::string&&) (GCC bug 105329).
            std::string query = "q";
            query += std::to_string(i);
            const std::string answer = api.submit(std::move(query)).get();
            std::printf("client %d got '%s'\n", i, answer.c_str());
        });
    }
    for (auto& client : clients) {
        client.join();
    }
    std::printf("api calls: %llu, never more than %zu at once\n",
                static_cast<unsigned long long>(api.stats().total_processed),
                api.stats().peak_active);

    // Asynchronous: F(task, done) starts work and returns; the slot stays taken until `done`.
    // start_io is called from whichever thread dispatches: the submitter, or an I/O thread
    // whose completion freed a slot, so the list of threads needs its own lock.
    std::mutex io_mutex;
    std::vector<std::thread> io_threads;
    auto start_io = [&io_threads, &io_mutex](int n, btq::completion<int>&& done) {
        std::lock_guard lock(io_mutex);
        io_threads.emplace_back([n, done = std::move(done)]() mutable {
            std::this_thread::sleep_for(5ms);
            done.set_value(n * n);
        });
    };
    auto async_executor = btq::make_async_executor<int>(start_io);
    {
        btq::bounded_task_queue<int, decltype(async_executor)> io({.max_concurrency = 3},
                                                                  async_executor);
        int sum = 0;
        std::vector<std::future<int>> squares;
        for (int n = 1; n <= 9; ++n) {
            squares.push_back(io.submit(n));
        }
        for (auto& square : squares) {
            sum += square.get();
        }
        std::printf("sum of squares 1..9 = %d, at most %zu in flight\n", sum,
                    io.stats().peak_active);
    }
    for (auto& thread : io_threads) {
        thread.join();
    }
    return 0;
}
