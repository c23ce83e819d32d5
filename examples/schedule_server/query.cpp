#include "query.hpp"

#include "ascii.hpp"
#include "utf8.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <utility>

namespace schedule_server {
namespace {

int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

bool is_alpha(char c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

bool is_digit(char c) noexcept {
    return c >= '0' && c <= '9';
}

/// RFC 3986 unreserved and sub-delims: the characters of a reg-name besides pct-encoded.
bool is_reg_name_char(char c) noexcept {
    constexpr std::string_view others = "-._~!$&'()*+,;=";
    return is_alpha(c) || is_digit(c) || others.find(c) != std::string_view::npos;
}

/// `host` of RFC 3986 section 3.2.2: IP-literal, IPv4address or reg-name (the last includes the
/// second); may be empty.
bool valid_uri_host(std::string_view host) noexcept {
    if (!host.empty() && host.front() == '[') {
        if (host.size() < 3 || host.back() != ']') {
            return false;
        }
        const std::string_view inside = host.substr(1, host.size() - 2);
        if (inside.front() == 'v' || inside.front() == 'V') { // IPvFuture
            return std::all_of(inside.begin(), inside.end(),
                               [](char c) { return is_reg_name_char(c) || c == ':'; });
        }
        return std::all_of(inside.begin(), inside.end(),
                           [](char c) { return hex_value(c) >= 0 || c == ':' || c == '.'; });
    }
    for (std::size_t i = 0; i < host.size(); ++i) {
        if (host[i] == '%') {
            if (i + 2 >= host.size() || hex_value(host[i + 1]) < 0 || hex_value(host[i + 2]) < 0) {
                return false;
            }
            i += 2;
        } else if (!is_reg_name_char(host[i])) {
            return false;
        }
    }
    return true;
}

/// Splits `path?query` into a target of the given form.
std::variant<request_target, std::string> split_path_and_query(std::string_view rest,
                                                               request_target target) {
    const std::size_t mark = rest.find('?');
    const std::string_view path = rest.substr(0, mark);
    // A path is ASCII (RFC 3986: anything else percent-encoded). Beast lets other bytes through,
    // and a refusal that quotes the path (404 "no endpoint ...") must stay UTF-8 JSON.
    if (std::any_of(path.begin(), path.end(), [](char c) {
            const auto byte = static_cast<unsigned char>(c);
            return byte <= 0x20U || byte >= 0x7FU;
        })) {
        return "request target path '" + printable(path) +
               "' has a byte that is not printable ASCII (percent-encode it)";
    }
    target.path = std::string(path);
    if (target.path.empty()) {
        // http://host?x has the path "/" (RFC 9110 section 4.2.3). (push_back, not = "/": GCC
        // 12 at -O3 reports a false -Wrestrict for assigning a one-character literal.)
        target.path.push_back('/');
    }
    if (mark != std::string_view::npos) {
        auto query = parse_query(rest.substr(mark + 1));
        if (auto* message = std::get_if<std::string>(&query)) {
            return std::move(*message);
        }
        target.query = std::move(std::get<0>(query));
    }
    return target;
}

using ascii::iequals;

} // namespace

std::string printable(std::string_view raw) {
    constexpr std::string_view digits = "0123456789ABCDEF";
    std::string out;
    for (const char c : raw) {
        const auto byte = static_cast<unsigned char>(c);
        if (byte < 0x20U || byte >= 0x7FU) {
            out += '%';
            out += digits[byte >> 4U];
            out += digits[byte & 0x0FU];
        } else {
            out += c;
        }
    }
    return out;
}

std::optional<std::string> decode_component(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (c == '+') {
            out += ' ';
        } else if (c == '%') {
            if (i + 2 >= text.size()) {
                return std::nullopt;
            }
            const int high = hex_value(text[i + 1]);
            const int low = hex_value(text[i + 2]);
            if (high < 0 || low < 0) {
                return std::nullopt;
            }
            out += static_cast<char>(high * 16 + low);
            i += 2;
        } else {
            out += c;
        }
    }
    return out;
}

std::variant<std::map<std::string, std::string>, std::string> parse_query(std::string_view query) {
    std::map<std::string, std::string> parameters;
    std::string_view rest = query;
    while (!rest.empty()) {
        const std::size_t amp = rest.find('&');
        const std::string_view pair = rest.substr(0, amp);
        rest = amp == std::string_view::npos ? std::string_view{} : rest.substr(amp + 1);
        if (pair.empty()) {
            continue;
        }
        const std::size_t equals = pair.find('=');
        const std::string_view raw_key = pair.substr(0, equals);
        auto key = decode_component(raw_key);
        auto value = decode_component(equals == std::string_view::npos ? std::string_view{}
                                                                       : pair.substr(equals + 1));
        if (!key || !value) {
            return std::string("malformed percent-encoding in the query string");
        }
        if (find_invalid_utf8(*key)) {
            return "query parameter '" + printable(raw_key) + "' is not valid UTF-8";
        }
        if (find_invalid_utf8(*value)) {
            return "query parameter '" + printable(*key) + "' is not valid UTF-8";
        }
        if (!parameters.emplace(std::move(*key), std::move(*value)).second) {
            return "query parameter '" + printable(raw_key) + "' given twice";
        }
    }
    return parameters;
}

std::variant<request_target, std::string> parse_request_target(std::string_view target) {
    request_target parsed;
    if (target.find('#') != std::string_view::npos) {
        return std::string("a request target has no fragment ('#')");
    }
    if (target == "*") {
        parsed.form = target_form::asterisk;
        return parsed;
    }
    if (!target.empty() && target.front() == '/') {
        return split_path_and_query(target, std::move(parsed));
    }
    // absolute-form: scheme "://" authority path-abempty [ "?" query ]
    const std::size_t scheme_end = target.find(':');
    const std::string_view scheme = target.substr(0, scheme_end);
    const bool scheme_like =
        !scheme.empty() && is_alpha(scheme.front()) &&
        std::all_of(scheme.begin(), scheme.end(), [](char c) {
            return is_alpha(c) || is_digit(c) || c == '+' || c == '-' || c == '.';
        });
    if (scheme_end != std::string_view::npos && scheme_like &&
        target.substr(scheme_end, 3) == "://") {
        if (!iequals(scheme, "http") && !iequals(scheme, "https")) {
            return "request target '" + printable(target) +
                   "': only http and https URIs are served";
        }
        const std::string_view after = target.substr(scheme_end + 3);
        const std::size_t authority_end = std::min(after.find('/'), after.find('?'));
        const std::string_view authority = after.substr(0, authority_end);
        if (authority.find('@') != std::string_view::npos) {
            return "request target '" + printable(target) + "': an http URI has no user info";
        }
        if (authority.empty() || authority.front() == ':' || !valid_host(authority)) {
            return "request target '" + printable(target) + "': the host is missing or invalid";
        }
        parsed.form = target_form::absolute;
        parsed.authority = std::string(authority);
        return split_path_and_query(authority_end == std::string_view::npos
                                        ? std::string_view{}
                                        : after.substr(authority_end),
                                    std::move(parsed));
    }
    // authority-form: host ":" port (CONNECT's).
    const std::size_t colon = target.rfind(':');
    if (colon != std::string_view::npos && colon > 0 && colon + 1 < target.size() &&
        valid_host(target)) {
        parsed.form = target_form::authority;
        parsed.authority = std::string(target);
        return parsed;
    }
    return "request target '" + printable(target) +
           "' is neither a path (/...) nor an absolute http URI";
}

bool valid_host(std::string_view value) noexcept {
    std::string_view host = value;
    // The port: digits after the last ':' that is not inside an IP-literal.
    const std::size_t bracket = value.rfind(']');
    const std::size_t colon = value.rfind(':');
    if (colon != std::string_view::npos && (bracket == std::string_view::npos || colon > bracket)) {
        const std::string_view port = value.substr(colon + 1);
        if (!std::all_of(port.begin(), port.end(), is_digit)) {
            return false;
        }
        host = value.substr(0, colon);
    }
    return valid_uri_host(host);
}

} // namespace schedule_server
