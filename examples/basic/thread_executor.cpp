// The thread executor: run CPU work on 4 threads, with at most 16 jobs waiting.
#include <btq/btq.hpp>

#include <cstdio>
#include <functional>
#include <future>
#include <vector>

namespace {
long collatz_steps(long n) {
    long steps = 0;
    while (n != 1) {
        n = (n % 2 == 0) ? n / 2 : 3 * n + 1;
        ++steps;
    }
    return steps;
}
} // namespace

int main() {
    btq::bounded_task_queue<std::function<long()>> queue(
        {.max_concurrency = 4, .capacity = 16, .overflow = btq::overflow_policy::block});

    std::vector<std::future<long>> results;
    for (long start = 1; start <= 40; ++start) {
        // Blocks while 16 jobs wait: the producer slows to the queue's pace.
        results.push_back(queue.submit([start] { return collatz_steps(start * 1'000'003); }));
    }
    long most = 0;
    for (auto& result : results) {
        most = std::max(most, result.get());
    }

    const btq::queue_stats stats = queue.stats();
    std::printf("longest chain: %ld steps\n", most);
    std::printf("processed %llu tasks, at most %zu at once, at most %zu waiting\n",
                static_cast<unsigned long long>(stats.total_processed), stats.peak_active,
                stats.peak_queue_size);
    return 0;
}
