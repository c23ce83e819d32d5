// A holder process of the Redis tests: one gate and one queue, tasks that report to the shared
// oracle (oracle.hpp).
//   btq_redis_holder contend <url> <limit> <tasks> <hold_ms> <ttl_ms> <oracle>
//       submits <tasks> tasks at once; each enters the oracle, writes with its token, sleeps
//       <hold_ms>, leaves. Exits 0 when all ran.
//   btq_redis_holder hold <url> <limit> 1 0 <ttl_ms> <oracle>
//       one task that holds its permit until its stop token is requested (lease lost), writing
//       to the fenced resource every 5 ms; then records what it saw and exits 0.
#include <btq/bounded_task_queue.hpp>
#include <btq/redis/redis_permits.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "oracle.hpp"

namespace {

using queue_type =
    btq::bounded_task_queue<btq::fenced_task<void>, btq::thread_executor, btq::redis_permits>;

int run(int argc, char** argv) {
    if (argc != 8) {
        std::fprintf(stderr, "usage: btq_redis_holder contend|hold url limit tasks hold_ms ttl_ms "
                             "oracle\n");
        return 2;
    }
    const std::string mode = argv[1];
    const std::size_t limit = std::stoul(argv[3]);
    const std::size_t tasks = std::stoul(argv[4]);
    const auto hold = std::chrono::milliseconds(std::stol(argv[5]));
    const auto ttl = std::chrono::milliseconds(std::stol(argv[6]));
    const btq_redis_test::oracle shared(argv[7]);

    btq::redis_permits permits(
        {.endpoint = btq::parse_redis_url(argv[2]),
         .limit = limit,
         .lease_ttl = ttl,
         .on_lease_lost = [&shared](const btq::redis_lease_lost&) { shared->leases_lost++; }});
    std::vector<std::future<void>> done;
    {
        queue_type queue(permits, {.max_concurrency = tasks, .capacity = tasks});
        for (std::size_t i = 0; i < tasks; ++i) {
            if (mode == "contend") {
                done.push_back(queue.submit(btq::fenced_task<void>(
                    [&shared, hold](const btq::redis_permit_info& permit, std::stop_token) {
                        shared.enter(permit.fencing_token);
                        shared.write(permit.fencing_token);
                        std::this_thread::sleep_for(hold);
                        shared.leave();
                    })));
            } else {
                done.push_back(queue.submit(btq::fenced_task<void>(
                    [&shared](const btq::redis_permit_info& permit, std::stop_token stop) {
                        shared.enter(permit.fencing_token);
                        shared->holding_token = permit.fencing_token;
                        shared->holding = 1;
                        while (!stop.stop_requested()) {
                            shared.write(permit.fencing_token);
                            std::this_thread::sleep_for(std::chrono::milliseconds(5));
                        }
                        shared->stop_seen++;
                        shared.leave();
                    })));
            }
        }
        for (std::future<void>& one : done) {
            one.get();
        }
        queue.drain();
    }
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception& error) {
        std::fprintf(stderr, "btq_redis_holder: %s\n", error.what());
        return 1;
    }
}
