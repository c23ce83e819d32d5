#include "memory_probe.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <thread>
#include <vector>

#include "json_writer.hpp"
#include "request.hpp"

namespace schedule {
namespace {

constexpr std::size_t mebibyte = std::size_t{1} << 20;

/// VmHWM of /proc/self/status, in bytes (0 if it cannot be read).
std::uint64_t own_peak_resident() {
    std::ifstream status("/proc/self/status");
    for (std::string line; std::getline(status, line);) {
        if (line.rfind("VmHWM:", 0) == 0) {
            return std::strtoull(line.c_str() + 6, nullptr, 10) * 1024;
        }
    }
    return 0;
}

struct free_deleter {
    void operator()(char* block) const noexcept { std::free(block); }
};

/// One MiB, every page written (so it is resident), or the end of the process when the
/// allocation is refused.
std::unique_ptr<char, free_deleter> touched_mebibyte(std::size_t touched_so_far) {
    // NOLINTNEXTLINE(cppcoreguidelines-no-malloc): the failure must be seen, not thrown
    std::unique_ptr<char, free_deleter> block(static_cast<char*>(std::malloc(mebibyte)));
    if (!block) {
        std::fprintf(stderr,
                     "schedule_worker: memory_probe: allocation refused after %zu MiB touched "
                     "(memory limit?)\n",
                     touched_so_far / mebibyte);
        std::_Exit(1);
    }
    static const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    volatile char* const bytes = block.get(); // the writes must happen
    for (std::size_t at = 0; at < mebibyte; at += page) {
        bytes[at] = 1;
    }
    return block;
}

} // namespace

memory_probe_request parse_memory_probe_request(std::string_view json) {
    const boost::json::object request = parse_request_object(json);
    using limits = memory_probe_request;
    memory_probe_request probe;
    probe.megabytes = *integer_field(request, "megabytes", {}, true, 0, limits::max_megabytes);
    probe.hold_ms = integer_field(request, "hold_ms", {}, false, 0, limits::max_ms).value_or(0);
    probe.step_megabytes =
        integer_field(request, "step_megabytes", {}, false, 1, limits::max_megabytes)
            .value_or(probe.step_megabytes);
    probe.step_ms = integer_field(request, "step_ms", {}, false, 0, limits::max_ms).value_or(0);
    return probe;
}

std::string run_memory_probe(std::string_view json) {
    const memory_probe_request probe = parse_memory_probe_request(json);
    const auto total = static_cast<std::size_t>(probe.megabytes);
    const auto step = static_cast<std::size_t>(probe.step_megabytes);
    std::vector<std::unique_ptr<char, free_deleter>> blocks;
    blocks.reserve(total);
    while (blocks.size() < total) {
        const std::size_t step_end = std::min(total, blocks.size() + step);
        while (blocks.size() < step_end) {
            blocks.push_back(touched_mebibyte(blocks.size() * mebibyte));
        }
        if (blocks.size() < total) {
            std::this_thread::sleep_for(std::chrono::milliseconds(probe.step_ms));
        }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(probe.hold_ms));
    const std::uint64_t peak = own_peak_resident();
    const std::uint64_t touched = blocks.size() * mebibyte;
    blocks.clear();

    json_writer out;
    out.begin_object();
    out.key("status").value("success");
    out.key("touchedBytes").value(touched);
    out.key("peakResidentBytes").value(peak);
    out.end_object();
    return out.take();
}

} // namespace schedule
