// A worker for btq's worker pool, built on btq/worker.hpp. The pool's tests drive it; the
// operations exercise every path a worker can take:
//
//   echo   returns the body unchanged
//   upper  returns the body with ASCII letters uppercased
//   sleep  body = milliseconds (decimal); sleeps that long, returns "slept"
//   crash  calls std::abort(): the worker dies in the middle of a task
//   print  writes the body to stdout and to stderr (which btq logs, never parses), returns
//          "printed"
//   rss    body = MiB (decimal); allocates and touches that much memory and keeps it until
//          the worker exits (resident memory grows), returns "ok"
//   fail   throws: the task fails with the body as its message ("asked to fail" if empty),
//          and the worker goes on serving
//   pid    returns this worker's process id in decimal (tells workers apart)
//
// Run by hand it has no descriptors 3 and 4 and exits with status 2; see
// docs/worker-protocol.md for how btq starts it.
#include <btq/worker.hpp>

#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

namespace {

/// The body as a non-negative decimal number, or an exception naming the operation.
std::size_t number_in(std::string_view body, const char* operation) {
    std::size_t value = 0;
    const char* const end = body.data() + body.size();
    const auto [stop, error] = std::from_chars(body.data(), end, value);
    if (body.empty() || error != std::errc{} || stop != end) {
        throw std::invalid_argument(std::string(operation) +
                                    ": the body must be a decimal number, got '" +
                                    std::string(body) + "'");
    }
    return value;
}

std::string uppercase_ascii(std::string_view body) {
    std::string out(body);
    for (char& c : out) {
        if (c >= 'a' && c <= 'z') {
            c = static_cast<char>(c - 'a' + 'A');
        }
    }
    return out;
}

} // namespace

int main(int argc, char** argv) {
    // Memory the rss operation keeps, alive until the worker exits.
    std::vector<std::string> kept;

    btq::worker worker;
    worker.on("echo", [](std::string_view body) { return std::string(body); });
    worker.on("upper", uppercase_ascii);
    worker.on("sleep", [](std::string_view body) {
        std::this_thread::sleep_for(std::chrono::milliseconds(number_in(body, "sleep")));
        return std::string("slept");
    });
    worker.on("crash", [](std::string_view) -> std::string { std::abort(); });
    worker.on("print", [](std::string_view body) {
        std::fwrite(body.data(), 1, body.size(), stdout);
        std::fflush(stdout);
        std::fwrite(body.data(), 1, body.size(), stderr);
        std::fflush(stderr);
        return std::string("printed");
    });
    worker.on("rss", [&kept](std::string_view body) {
        const std::size_t mebibytes = number_in(body, "rss");
        if (mebibytes > (SIZE_MAX >> 20U)) {
            throw std::invalid_argument("rss: " + std::string(body) + " MiB is too much");
        }
        // Filled with a non-zero byte: every page is written, so every page is resident.
        kept.emplace_back(mebibytes << 20U, '\x01');
        return std::string("ok");
    });
    worker.on("fail", [](std::string_view body) -> std::string {
        throw std::runtime_error(body.empty() ? std::string("asked to fail") : std::string(body));
    });
    worker.on("pid", [](std::string_view) { return std::to_string(::getpid()); });
    return worker.main(argc, argv); // --once OPERATION: one request on stdin, as a process per task
}
