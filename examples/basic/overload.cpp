// A bounded queue answering overload: 200 requests arrive at once for 4 workers and 20 waiting
// places. The rest are refused at once (what a server turns into 503 + Retry-After) instead of
// piling up; stale requests expire; shutdown answers everyone.
#include <btq/btq.hpp>

#include <chrono>
#include <cstdio>
#include <functional>
#include <thread>
#include <vector>

int main() {
    using namespace std::chrono_literals;
    btq::bounded_task_queue<std::function<int()>> queue(
        {.max_concurrency = 4, .capacity = 20, .queue_timeout = 70ms});

    int accepted = 0;
    int refused = 0;
    std::vector<std::future<int>> answers;
    for (int request = 0; request < 200; ++request) {
        try {
            answers.push_back(queue.submit([request] {
                std::this_thread::sleep_for(20ms); // the work
                return request;
            }));
            ++accepted;
        } catch (const btq::queue_full&) {
            ++refused; // answered immediately: "503, retry later"
        }
    }

    int served = 0;
    int expired = 0;
    for (auto& answer : answers) {
        try {
            answer.get();
            ++served;
        } catch (const btq::task_expired&) {
            ++expired; // waited longer than the queue timeout: never started
        }
    }

    const btq::queue_stats stats = queue.stats();
    std::printf("requests: 200, accepted: %d, refused at once: %d\n", accepted, refused);
    std::printf("served: %d, expired in the queue: %d\n", served, expired);
    std::printf("peak running: %zu (bound 4), peak waiting: %zu (bound 20)\n", stats.peak_active,
                stats.peak_queue_size);
    std::printf("wait p50 %.1f ms, p99 %.1f ms; run p50 %.1f ms\n",
                static_cast<double>(stats.wait_time.p50.count()) / 1e6,
                static_cast<double>(stats.wait_time.p99.count()) / 1e6,
                static_cast<double>(stats.run_time.p50.count()) / 1e6);

    const btq::shutdown_result done = queue.shutdown("Server shutting down", 5s);
    std::printf("shutdown: cleared %zu waiting, drained: %s\n", done.cleared,
                done.drained ? "yes" : "no");
    return stats.peak_active <= 4 && stats.peak_queue_size <= 20 ? 0 : 1;
}
