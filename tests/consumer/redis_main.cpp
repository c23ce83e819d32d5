// Uses the installed btq::redis target: the Redis gate's header, its hiredis include and link
// line must work from the installed package alone. No server is needed: it parses a URL and
// makes a gate whose connection attempts fail.
#include <btq/redis/redis_permits.hpp>

#include <chrono>

int main() {
    const btq::redis_endpoint where = btq::parse_redis_url("redis://127.0.0.1:1/consumer");
    btq::redis_permits permits({.endpoint = where,
                                .limit = 2,
                                .lease_ttl = std::chrono::milliseconds(1000),
                                .when_unreachable = btq::redis_unreachable::fail_fast});
    return (where.port == 1 && where.key_prefix == "consumer" && permits.stats().limit == 2) ? 0
                                                                                             : 1;
}
