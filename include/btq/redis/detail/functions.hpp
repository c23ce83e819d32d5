/// @file redis/detail/functions.hpp
/// @brief The Redis 7 function library behind btq::redis_permits, and the call that loads it
///        again when the server lost it (a restart without persistence, a failover to a replica
///        that never had it).
///
/// Keys of a pool named P (hash-tagged, so a Redis Cluster keeps them in one slot):
/// - `{P}:holders`: sorted set; member = a lease id ("<owner>:<fencing token>"), score = the
///   lease's expiry in milliseconds on the Redis server's clock (TIME);
/// - `{P}:fence`: the fencing-token counter (INCR). When it is missing (first use, or lost by
///   Redis) it is seeded with the server's time in microseconds, or with the highest token the
///   calling client has seen if that is higher, so tokens keep growing across such a loss.
/// Channel `{P}:wake`: published to whenever a lease leaves the set (release or expiry), so
/// waiting instances ask again at once.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "connection.hpp"

namespace btq::redis_detail {

/// The library's name; its version is part of every function name, so instances of another
/// version of btq on the same server call their own functions.
inline constexpr std::string_view library_name = "btq_permits_1";

/// The library's source, for FUNCTION LOAD REPLACE. Every number written to Redis is formatted
/// with %d: Lua's default number format keeps only 14 digits.
inline constexpr std::string_view library_source = R"lua(#!lua name=btq_permits_1
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function int(n) return string.format('%d', n) end
local function expire(holders, now, channel)
  if redis.call('ZREMRANGEBYSCORE', holders, '-inf', int(now)) > 0 then
    redis.call('PUBLISH', channel, 'expired')
  end
end
local function earliest(holders, now)
  local first = redis.call('ZRANGE', holders, 0, 0, 'WITHSCORES')
  if #first == 0 then return -1 end
  return math.max(0, tonumber(first[2]) - now)
end

-- KEYS holders, fence; ARGV limit, ttl_ms, want, owner, min_token, channel.
-- Reply: {server ms, ms until the earliest lease expires (-1: none), granted tokens...}
redis.register_function('btq_permits_1_acquire', function(keys, args)
  local holders, fence = keys[1], keys[2]
  local limit, ttl, want = tonumber(args[1]), tonumber(args[2]), tonumber(args[3])
  local owner, min_token, channel = args[4], tonumber(args[5]), args[6]
  local now = now_ms()
  expire(holders, now, channel)
  local grant = math.min(want, limit - redis.call('ZCARD', holders))
  local out = {now, -1}
  if grant > 0 then
    if redis.call('EXISTS', fence) == 0 then
      redis.call('SET', fence, int(math.max(now * 1000, min_token)))
    end
    for _ = 1, grant do
      local token = redis.call('INCR', fence)
      redis.call('ZADD', holders, int(now + ttl), owner .. ':' .. int(token))
      out[#out + 1] = token
    end
  end
  out[2] = earliest(holders, now)
  return out
end)

-- KEYS holders; ARGV ttl_ms, lease ids... Reply: {server ms, 1 (renewed) or 0 (gone) per id}
redis.register_function('btq_permits_1_renew', function(keys, args)
  local holders, ttl = keys[1], tonumber(args[1])
  local now = now_ms()
  local out = {now}
  for i = 2, #args do
    local score = redis.call('ZSCORE', holders, args[i])
    if score and tonumber(score) > now then
      redis.call('ZADD', holders, 'XX', int(now + ttl), args[i])
      out[#out + 1] = 1
    else
      if score then redis.call('ZREM', holders, args[i]) end
      out[#out + 1] = 0
    end
  end
  return out
end)

-- KEYS holders; ARGV channel, lease ids... Reply: how many were still held.
redis.register_function('btq_permits_1_release', function(keys, args)
  local released = 0
  for i = 2, #args do released = released + redis.call('ZREM', keys[1], args[i]) end
  if released > 0 then redis.call('PUBLISH', args[1], 'released') end
  return released
end)

-- KEYS holders; ARGV channel. Reply: {server ms, live leases} (expired ones are removed first).
redis.register_function('btq_permits_1_count', function(keys, args)
  local now = now_ms()
  expire(keys[1], now, args[1])
  return {now, redis.call('ZCARD', keys[1])}
end)
)lua";

/// The names of one pool's keys and channel.
struct pool_keys {
    std::string holders;
    std::string fence;
    std::string channel;

    explicit pool_keys(const std::string& prefix)
        : holders("{" + prefix + "}:holders"), fence("{" + prefix + "}:fence"),
          channel("{" + prefix + "}:wake") {}
};

/// FCALL `function` (a name without the library prefix) with `keys` and `args`; loads the
/// library and calls again if the server does not know the function. Returns the reply (an
/// error reply too); `loads` counts the loads. Throws io_error.
inline reply_ptr call_function(connection& link, std::string_view function,
                               const std::vector<std::string>& keys,
                               const std::vector<std::string>& args, std::uint64_t& loads) {
    std::vector<std::string> command;
    command.reserve(3 + keys.size() + args.size());
    command.emplace_back("FCALL");
    command.emplace_back(std::string(library_name) + "_" + std::string(function));
    command.push_back(std::to_string(keys.size()));
    command.insert(command.end(), keys.begin(), keys.end());
    command.insert(command.end(), args.begin(), args.end());
    reply_ptr reply = link.command(command);
    if (!is_error(*reply) || text_of(*reply).find("Function not found") == std::string_view::npos) {
        return reply;
    }
    reply_ptr loaded = link.command({"FUNCTION", "LOAD", "REPLACE", std::string(library_source)});
    ++loads;
    if (is_error(*loaded)) {
        return loaded;
    }
    return link.command(command);
}

} // namespace btq::redis_detail
