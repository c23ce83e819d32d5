// libFuzzer target: the server's parsers of what clients send (examples/schedule_server:
// query.hpp, xml_charset.hpp) on any bytes. The input's first line is a request target and a
// Host value (it is also tried as a Content-Type); the rest is an XML body. Nothing may throw,
// and what they accept must keep their promises: queries decode to UTF-8,
// an XML body decodes to UTF-8 with as many lines as it has.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <variant>

#include "query.hpp"
#include "utf8.hpp"
#include "xml_charset.hpp"

namespace {

void require(bool condition, const char* what) {
    if (!condition) {
        std::fprintf(stderr, "broken promise: %s\n", what);
        std::abort();
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace schedule_server;
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const std::size_t newline = input.find('\n');
    const std::string_view first = input.substr(0, newline);
    const std::string_view body =
        newline == std::string_view::npos ? std::string_view{} : input.substr(newline + 1);

    auto target = parse_request_target(first);
    if (const auto* parsed = std::get_if<request_target>(&target)) {
        for (const auto& [key, value] : parsed->query) {
            require(!find_invalid_utf8(key) && !find_invalid_utf8(value),
                    "a query key or value that is not UTF-8");
        }
        if (parsed->form == target_form::origin || parsed->form == target_form::absolute) {
            require(!parsed->path.empty() && parsed->path.front() == '/',
                    "a path that does not start with '/'");
        }
    } else {
        require(find_invalid_utf8(std::get<std::string>(target)) == std::nullopt,
                "a refusal message that is not UTF-8");
    }
    (void)valid_host(first);

    for (const std::string_view content_type : {std::string_view{}, first}) {
        auto decoded = xml_to_utf8(body, content_type);
        if (const auto* text = std::get_if<std::string>(&decoded)) {
            require(!find_invalid_utf8(*text), "a decoded body that is not UTF-8");
        } else {
            const auto& error = std::get<xml_charset_error>(decoded);
            require(!find_invalid_utf8(error.message), "an error message that is not UTF-8");
        }
    }
    return 0;
}
