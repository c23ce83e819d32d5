/// @file query.hpp
/// @brief The request line's target and the Host field as RFC 9112 section 3.2 reads them:
///        origin-form (`/path?query`), absolute-form (`http://host/path?query`), asterisk-form
///        (`*`) and authority-form (`host:port`); the query percent-decoded and checked to be
///        UTF-8. Pure functions, no Beast.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace schedule_server {

/// The four forms of request-target (RFC 9112 section 3.2).
enum class target_form { origin, absolute, asterisk, authority };

/// A request target taken apart.
struct request_target {
    target_form form = target_form::origin;
    std::string path;                         ///< not decoded: the endpoints' paths are ASCII
    std::map<std::string, std::string> query; ///< decoded; keys and values are valid UTF-8
    std::string authority;                    ///< absolute- and authority-form: host[:port]
};

/// Raw text from a request (a query key, a path, a header's value) for a message: bytes that
/// are not printable ASCII are percent-encoded, so the message stays valid UTF-8.
[[nodiscard]] std::string printable(std::string_view raw);

/// Percent-decoding of one query component ('+' is a space); nothing when a '%' is not followed
/// by two hexadecimal digits.
[[nodiscard]] std::optional<std::string> decode_component(std::string_view text);

/// Decodes a query string (`a=1&b=x%20y`, without the '?'); a message for the client (answered
/// 400) when it is malformed, names a parameter twice, or decodes to something not UTF-8.
[[nodiscard]] std::variant<std::map<std::string, std::string>, std::string>
parse_query(std::string_view query);

/// Takes a request target apart; a message for the client (answered 400) when it is none of
/// the four forms, or an absolute URI that is not http(s) with a valid host and no user info.
/// The absolute-form's path and query are served like the origin-form's; its authority
/// replaces the Host field (RFC 9112 section 3.2.2).
[[nodiscard]] std::variant<request_target, std::string>
parse_request_target(std::string_view target);

/// Whether `value` is a valid Host field value: `uri-host [ ":" port ]` (RFC 9110 section 7.2,
/// RFC 3986 section 3.2.2); an empty host is valid (RFC 9112 section 3.2).
[[nodiscard]] bool valid_host(std::string_view value) noexcept;

} // namespace schedule_server
