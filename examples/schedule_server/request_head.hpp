/// @file request_head.hpp
/// @brief What the endpoints need of a request's header, taken from Beast's parsed message (the
///        HTTP layer and the request path's fuzzer share it).
#pragma once

#include "api.hpp"

#include <boost/beast/http/field.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include <cstddef>
#include <iterator>

namespace schedule_server {

/// The api_request of `request`; its views point into `request`.
inline api_request
describe(const boost::beast::http::request<boost::beast::http::string_body>& request) {
    namespace http = boost::beast::http;
    api_request call;
    call.method = request.method_string();
    call.target = request.target();
    call.version = request.version();
    const auto hosts = request.equal_range(http::field::host);
    call.host_fields = static_cast<std::size_t>(std::distance(hosts.first, hosts.second));
    if (call.host_fields > 0) {
        call.host = hosts.first->value();
    }
    call.expect = request[http::field::expect];
    call.content_type = request[http::field::content_type];
    call.authorization = request[http::field::authorization];
    call.if_none_match = request[http::field::if_none_match];
    return call;
}

} // namespace schedule_server
