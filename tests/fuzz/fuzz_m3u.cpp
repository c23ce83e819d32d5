// libFuzzer target: schedule::parse_m3u on any bytes. It may succeed or throw
// schedule::input_error; anything else escaping aborts (a finding).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string_view>

#include "errors.hpp"
#include "m3u.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    try {
        const auto playlist = schedule::parse_m3u(text);
        // What was parsed is consistent.
        if (playlist.entries.size() > schedule::max_m3u_entries) {
            std::fprintf(stderr, "more than max_m3u_entries entries\n");
            std::abort();
        }
        for (const auto& entry : playlist.entries) {
            if (entry.url.empty()) {
                std::fprintf(stderr, "an entry without a URL\n");
                std::abort();
            }
        }
    } catch (const schedule::input_error&) {
    } catch (const std::exception& e) {
        std::fprintf(stderr, "parse_m3u let an exception other than input_error escape: %s\n",
                     e.what());
        std::abort();
    }
    return 0;
}
