/// @file frames.hpp
/// @brief The framing of the worker protocol (docs/worker-protocol.md), shared by the
///        worker-pool executor and by btq/worker.hpp.
///
/// A frame is a 4-byte big-endian length N, then N bytes: a 1-byte type and its payload.
/// Types: 'H' hello (worker to btq: "btq-worker 1"), 'Q' request (btq to worker: a 2-byte
/// big-endian operation length, the operation, the body), 'R' result (worker to btq: the body),
/// 'E' error (worker to btq: a message; the task failed, the worker goes on).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace btq::protocol {

/// The hello a worker sends first: protocol name and version.
inline constexpr std::string_view hello_text = "btq-worker 1";
/// Default largest frame (type + payload) either side accepts.
inline constexpr std::size_t default_max_frame = std::size_t{16} << 20;

/// The type byte of a frame (docs/worker-protocol.md, "Frames").
enum class frame_type : char {
    hello = 'H',   ///< worker to btq, first: hello_text
    request = 'Q', ///< btq to worker: an operation and a body
    result = 'R',  ///< worker to btq: the request succeeded, with its result
    error = 'E',   ///< worker to btq: the request failed, with a message
};

/// One frame: its type and its payload.
struct frame {
    frame_type type = frame_type::error; ///< what it is
    std::string payload;                 ///< the bytes after the type byte
};

/// A frame that breaks the protocol: unknown type, over the size limit, malformed request.
class protocol_error : public std::runtime_error {
  public:
    /// @brief An error whose what() is "btq: worker protocol: " + `message`.
    explicit protocol_error(const std::string& message)
        : std::runtime_error("btq: worker protocol: " + message) {}
};

/// The bytes of one frame.
inline std::string encode(frame_type type, std::string_view payload) {
    const std::size_t length = payload.size() + 1;
    if (length > UINT32_MAX) {
        throw protocol_error("frame too large to encode");
    }
    std::string out;
    out.reserve(4 + length);
    out.push_back(static_cast<char>((length >> 24U) & 0xFFU));
    out.push_back(static_cast<char>((length >> 16U) & 0xFFU));
    out.push_back(static_cast<char>((length >> 8U) & 0xFFU));
    out.push_back(static_cast<char>(length & 0xFFU));
    out.push_back(static_cast<char>(type));
    out.append(payload);
    return out;
}

/// The payload of a request frame.
inline std::string encode_request(std::string_view operation, std::string_view body) {
    if (operation.size() > 0xFFFFU) {
        throw protocol_error("operation name longer than 65535 bytes");
    }
    std::string payload;
    payload.reserve(2 + operation.size() + body.size());
    payload.push_back(static_cast<char>((operation.size() >> 8U) & 0xFFU));
    payload.push_back(static_cast<char>(operation.size() & 0xFFU));
    payload.append(operation);
    payload.append(body);
    return payload;
}

/// Splits a request payload into (operation, body): views into `payload`, which must outlive
/// them. Throws protocol_error if malformed.
inline std::pair<std::string_view, std::string_view> decode_request(std::string_view payload) {
    if (payload.size() < 2) {
        throw protocol_error("request shorter than its operation length");
    }
    const std::size_t length =
        (static_cast<std::size_t>(static_cast<unsigned char>(payload[0])) << 8U) |
        static_cast<unsigned char>(payload[1]);
    if (payload.size() < 2 + length) {
        throw protocol_error("request operation runs past the frame");
    }
    return {payload.substr(2, length), payload.substr(2 + length)};
}

/// Reassembles frames from a byte stream fed in pieces of any size.
/// @code
/// frame_reader reader(max);
/// reader.feed(buffer, n);
/// while (auto f = reader.next()) handle(*f);   // throws protocol_error on a bad frame
/// @endcode
class frame_reader {
  public:
    /// @brief A reader that refuses frames (type and payload) over `max_frame` bytes.
    explicit frame_reader(std::size_t max_frame = default_max_frame) : max_frame_(max_frame) {}

    /// @brief Appends `size` bytes read from the stream.
    void feed(const char* data, std::size_t size) { buffer_.append(data, size); }

    /// The next complete frame, or nothing if more bytes are needed.
    [[nodiscard]] std::optional<frame> next() {
        if (buffer_.size() - consumed_ < 4) {
            compact();
            return std::nullopt;
        }
        const auto* header =
            reinterpret_cast<const unsigned char*>(buffer_.data() + consumed_); // NOLINT
        const std::size_t length = (static_cast<std::size_t>(header[0]) << 24U) |
                                   (static_cast<std::size_t>(header[1]) << 16U) |
                                   (static_cast<std::size_t>(header[2]) << 8U) | header[3];
        if (length == 0) {
            throw protocol_error("empty frame (no type byte)");
        }
        if (length > max_frame_) {
            throw protocol_error("frame of " + std::to_string(length) +
                                 " bytes exceeds the limit of " + std::to_string(max_frame_));
        }
        if (buffer_.size() - consumed_ < 4 + length) {
            compact();
            return std::nullopt;
        }
        const char type = buffer_[consumed_ + 4];
        if (type != 'H' && type != 'Q' && type != 'R' && type != 'E') {
            static constexpr std::string_view hex = "0123456789abcdef";
            const auto byte = static_cast<unsigned char>(type);
            throw protocol_error(std::string("unknown frame type 0x") + hex[byte >> 4U] +
                                 hex[byte & 0xFU]);
        }
        frame out{static_cast<frame_type>(type), buffer_.substr(consumed_ + 5, length - 1)};
        consumed_ += 4 + length;
        return out;
    }

    /// Bytes received that are not yet part of a returned frame (a partial frame).
    [[nodiscard]] std::size_t pending() const noexcept { return buffer_.size() - consumed_; }

  private:
    void compact() {
        if (consumed_ > 0) {
            buffer_.erase(0, consumed_);
            consumed_ = 0;
        }
    }

    std::size_t max_frame_;
    std::string buffer_;
    std::size_t consumed_ = 0;
};

} // namespace btq::protocol
