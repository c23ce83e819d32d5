// libFuzzer target: schedule::parse_import_request on any bytes (JSON and XMLTV forms). It may
// succeed or throw schedule::input_error; anything else escaping aborts (a finding). A schedule
// it accepts must keep the documented rules.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string_view>

#include "errors.hpp"
#include "schedule.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    try {
        const auto parsed = schedule::parse_import_request(text);
        if (parsed.schedules.empty()) {
            std::fprintf(stderr, "an accepted request has no schedule\n");
            std::abort();
        }
        for (const auto& one : parsed.schedules) {
            const auto& items = one.items;
            if (items.empty() || items.size() > schedule::max_items || one.name.empty() ||
                one.channel.empty()) {
                std::fprintf(stderr, "an accepted schedule breaks the rules\n");
                std::abort();
            }
            for (std::size_t i = 0; i < items.size(); ++i) {
                if (items[i].duration < 1 || items[i].duration > schedule::max_duration ||
                    (i > 0 && items[i - 1].end() > items[i].start)) {
                    std::fprintf(stderr, "accepted item %zu: bad duration or overlap\n", i);
                    std::abort();
                }
            }
        }
    } catch (const schedule::input_error&) {
    } catch (const std::exception& e) {
        std::fprintf(stderr,
                     "parse_import_request let an exception other than input_error escape: %s\n",
                     e.what());
        std::abort();
    }
    return 0;
}
