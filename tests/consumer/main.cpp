// A separate project that finds the installed btq with find_package(btq CONFIG REQUIRED) and
// uses it: the test fails unless the installed headers and CMake package work on their own.
#include <btq/btq.hpp>

#include <functional>

int main() {
    btq::bounded_task_queue<std::function<int()>> queue({.max_concurrency = 2, .capacity = 4});
    const int answer = queue.submit([] { return 6 * 7; }).get();
    queue.drain(); // the answer is delivered just before the slot is released and counted
    const btq::queue_stats stats = queue.stats();
    return (answer == 42 && stats.total_processed == 1) ? 0 : 1;
}
